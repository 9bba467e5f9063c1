"""The HTTP API for tills and online shops (JSON, `Authorization: Bearer <key>`).

    GET  /health                      200 {"status": "ok"}, 503 no database  (no key)
    GET  /api/v1/openapi.json         the OpenAPI document                   (no key)
    POST /api/v1/purchases            201 new, 200 the same request again, 409 same id other body
    POST /api/v1/refunds              201 new, 200 again, 409, 404 unknown receipt, 422 too much
    GET  /api/v1/members/{customer}   200 balance and tier, 404 unknown
    GET  /api/v1/confirmations/{id}   a large redemption's answer from the member (see
                                      api.confirmations), 404 unknown or another key's
    POST /api/v1/segments/preview     200 the count of a segment's members and the reachable
                                      ones (marketing keys), 422 a bad filter
    POST /api/v1/broadcasts           201 new, 200 the same request again, 409 same id other
                                      body, 422 a bad filter or text (marketing keys)
    GET  /api/v1/broadcasts/{id}      200 where it stands (counts, gift points, attribution)
    POST /api/v1/broadcasts/{id}/cancel  200 cancelled (also again), 409 already done

A key has a scope (api.keys): a till key gets 403 on the marketing endpoints, a marketing key
on purchases and refunds.

Every error is `{"error": {"code": ..., "message": ...}}` with a code a program can act on, and
changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from api.confirmations import TillConfirmations
from api.errors import ApiError
from api.keys import MARKETING, TILL, ApiKey, ApiKeyService
from api.openapi import openapi_document
from cards.token import verify_card_token
from ledger import policy
from ledger.errors import (
    IdempotencyConflict,
    InvalidAmount,
    LedgerError,
    MemberNotFound,
    PurchaseNotFound,
    RedeemAboveLimit,
    RefundExceedsPurchase,
)
from ledger.service import LedgerService
from ledger.views import MemberView
from marketing.broadcasts import (
    Broadcast,
    BroadcastError,
    Broadcasts,
    Draft,
    valid_public_id,
)
from marketing.saved import Segments
from marketing.segments import SegmentError
from messaging.notifier import Notifier
from messaging.outbox import Outbox
from staff.sales import ConfirmationService
from usecases.sales import Purchase, Sales, record_purchase, record_refund

log = logging.getLogger("loyalty.api")

MAX_BODY_BYTES = 16 * 1024
# After answering before the whole body came (a 408, a 401 or a 413), what is still coming is
# read and dropped for this long, so the client can read the answer; then the connection
# closes (aiohttp's default, 10 s, would let a trickling client hold it that much longer).
LINGER_S = 2.0
HEALTH_TIMEOUT_S = 3.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS_FOR = {
    MemberNotFound: 404,
    PurchaseNotFound: 404,
    IdempotencyConflict: 409,
    RedeemAboveLimit: 422,
    RefundExceedsPurchase: 422,
}


@dataclass
class ApiServices:
    ledger: LedgerService
    keys: ApiKeyService
    secret_key: str
    notifier: Notifier | None = None
    body_timeout: float = 30.0
    # The bot's, so that the member's answer in the chat reaches the till (one made here when
    # none is given: the API never spends above the threshold without the member).
    confirmations: ConfirmationService | None = None
    # The bot's, so that what the API queues wakes its sender (one made here when none is
    # given; the leader's tick sends it all the same).
    broadcasts: Broadcasts | None = None


SERVICES = web.AppKey("services", ApiServices)
SALES = web.AppKey("sales", Sales)
TILL_CONFIRMATIONS = web.AppKey("till_confirmations", TillConfirmations)
API_KEY = web.RequestKey("api_key", ApiKey)
SEGMENTS = web.AppKey("segments", Segments)
BROADCASTS = web.AppKey("broadcasts", Broadcasts)
# The scope a key needs, by route; any key's elsewhere.
SCOPE_OF_ROUTE = {
    "/api/v1/purchases": TILL,
    "/api/v1/refunds": TILL,
    "/api/v1/segments/preview": MARKETING,
    "/api/v1/broadcasts": MARKETING,
    "/api/v1/broadcasts/{broadcast_id}": MARKETING,
    "/api/v1/broadcasts/{broadcast_id}/cancel": MARKETING,
}


def build_api(services: ApiServices) -> web.Application:
    app = web.Application(
        middlewares=[_errors_as_json, _require_key], client_max_size=MAX_BODY_BYTES
    )
    app[SERVICES] = services
    ledger = services.ledger
    sales = Sales(
        ledger=ledger,
        confirmations=services.confirmations or ConfirmationService(ledger.engine, ledger.clock),
        notifier=services.notifier,
    )
    app[SALES] = sales
    app[TILL_CONFIRMATIONS] = TillConfirmations(sales)
    app.router.add_get("/health", health)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_post("/api/v1/purchases", create_purchase)
    app.router.add_post("/api/v1/refunds", create_refund)
    app.router.add_get("/api/v1/members/{customer}", get_member)
    app.router.add_get("/api/v1/confirmations/{confirmation_id}", get_confirmation)
    app[SEGMENTS] = Segments(ledger.engine, ledger.rules, ledger.clock)
    app.router.add_post("/api/v1/segments/preview", preview_segment)
    app[BROADCASTS] = services.broadcasts or Broadcasts(
        ledger, Outbox(ledger.engine, ledger.clock, ledger.db)
    )
    app.router.add_post("/api/v1/broadcasts", create_broadcast)
    app.router.add_get("/api/v1/broadcasts/{broadcast_id}", get_broadcast)
    app.router.add_post("/api/v1/broadcasts/{broadcast_id}/cancel", cancel_broadcast)
    return app


def api_runner(app: web.Application, *, header_timeout: float) -> web.AppRunner:
    """The server for the API, with its read timeouts.

    header_timeout: a connection that has not sent a whole request head by then (from its
    opening, or since its last answer: an idle keep-alive connection too) is closed. The body
    has its own limit, ApiServices.body_timeout, checked where it is read (a 408)."""
    return web.AppRunner(
        app, access_log=None, keepalive_timeout=header_timeout, lingering_time=LINGER_S
    )


# ------------------------------------------------------------------------ middlewares


def _error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        response = _error_response(error.status, error.code, error.message, **error.extra)
        if error.close:
            response.force_close()
        return response
    except LedgerError as error:
        status = STATUS_FOR.get(type(error), 422)
        return _error_response(status, error.code, error.message, **_public(error.details))
    except web.HTTPRequestEntityTooLarge:
        return _error_response(
            413, "body_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes"
        )
    except web.HTTPNotFound:
        return _error_response(404, "not_found", "no such endpoint; see /api/v1/openapi.json")
    except web.HTTPMethodNotAllowed as error:
        allowed = ", ".join(sorted(error.allowed_methods))
        response = _error_response(405, "method_not_allowed", f"use {allowed}")
        response.headers["Allow"] = allowed  # RFC 9110: a 405 names the methods that work
        return response
    except web.HTTPException as error:
        return _error_response(error.status, "http_error", error.reason)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error_response(500, "internal_error", "unexpected error; nothing was changed")


@web.middleware
async def _require_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in ("/health", "/api/v1/openapi.json") or not request.path.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    key = None
    if scheme.lower() == "bearer" and secret.strip():
        key = await request.app[SERVICES].keys.verify(secret.strip())
    if key is None:
        raise ApiError(
            401, "unauthorized", "missing or invalid API key: send 'Authorization: Bearer <key>'"
        )
    resource = request.match_info.route.resource
    needed = SCOPE_OF_ROUTE.get(resource.canonical) if resource is not None else None
    if needed is not None and key.scope != needed:
        raise ApiError(
            403, "forbidden", f"this is a {key.scope} key; this endpoint needs a {needed} key"
        )
    request[API_KEY] = key
    return await handler(request)


def _public(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if k in {"allowed", "refundable", "field", "key"}}


# --------------------------------------------------------------------------- handlers


async def health(request: web.Request) -> web.Response:
    """Up means able to record a purchase: the database answers too (503 if it does not)."""
    db = request.app[SERVICES].ledger.db
    try:
        await asyncio.wait_for(
            db.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar(), single=True),
            HEALTH_TIMEOUT_S,
        )
    except Exception as error:
        log.warning("health: the database did not answer (%s)", type(error).__name__)
        return _error_response(503, "database_unavailable", "the database does not answer")
    return web.json_response({"status": "ok"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def create_purchase(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await _json_object(request)
    receipt_id = _string(body, "receipt_id", max_length=100)
    customer = _string(body, "customer", max_length=300)
    amount = _amount(body)
    redeem_points = _points(body, "redeem_points")
    reference, by_qr_token = _customer_reference(services, customer)
    gate = request.app[TILL_CONFIRMATIONS]
    if gate.needed(redeem_points, by_qr_token=by_qr_token):
        await gate.check(
            key_id=request[API_KEY].key_id,
            receipt_id=receipt_id,
            customer=reference,
            amount=amount,
            redeem_points=redeem_points,
        )
    # The member is looked up inside the purchase's transaction: one trip to the database.
    result = await record_purchase(
        request.app[SALES],
        _actor(request),
        Purchase(receipt_id=receipt_id, customer=reference, amount=amount, redeem=redeem_points),
    )
    return web.json_response(result.to_json(), status=200 if result.replayed else 201)


async def create_refund(request: web.Request) -> web.Response:
    body = await _json_object(request)
    refund_id = _string(body, "refund_id", max_length=100)
    receipt_id = _string(body, "receipt_id", max_length=100)
    amount = _amount(body)
    result = await record_refund(
        request.app[SALES],
        _actor(request),
        refund_id=refund_id,
        receipt_id=receipt_id,
        amount=amount,
    )
    return web.json_response(result.to_json(), status=200 if result.replayed else 201)


async def get_member(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    member = await _resolve_customer(services, request.match_info["customer"])
    view = await services.ledger.balance(member.member_id)
    return web.json_response(
        {
            "member_id": member.member_id,
            "card_number": member.card_number,
            "balance": view.balance,
            "pending": view.pending,
            "tier": view.tier,
        }
    )


async def get_confirmation(request: web.Request) -> web.Response:
    text = request.match_info["confirmation_id"]
    found = None
    if text.isascii() and text.isdigit() and int(text) < 2**31:  # (an id column's range)
        found = await request.app[TILL_CONFIRMATIONS].status(request[API_KEY].key_id, int(text))
    if found is None:
        raise ApiError(404, "confirmation_not_found", "no confirmation with this id for this key")
    return web.json_response(found)


async def preview_segment(request: web.Request) -> web.Response:
    body = await _json_object(request)
    segments = request.app[SEGMENTS]
    try:
        segment = segments.parse(body.get("filter"))
    except SegmentError as error:
        raise ApiError(422, error.code, error.message, field=error.field) from error
    counts = await segments.preview(segment)
    return web.json_response(counts.to_json())


BROADCAST_FIELDS = frozenset(
    {
        "broadcast_id",
        "filter",
        "text",
        "control_percent",
        "gift_points",
        "gift_days",
        "send_at",
        "button",
    }
)
BUTTON_TEXT_MAX = 64


async def create_broadcast(request: web.Request) -> web.Response:
    """201 with the broadcast's counts; the same request again: 200 and the first answer."""
    broadcasts = request.app[BROADCASTS]
    draft = _draft(request.app[SEGMENTS], broadcasts, await _json_object(request))
    try:
        broadcast, created = await broadcasts.create(draft, actor=_actor(request))
    except BroadcastError as error:
        raise _broadcast_error(error) from error
    # The answer to the request that made it, on a retry too (GET says where it stands now).
    first = "scheduled" if broadcast.send_at > broadcast.created_at else "sending"
    body = {
        "broadcast_id": broadcast.public_id,
        "status": first,
        "audience": broadcast.audience,
        "control": broadcast.control,
        "recipients": broadcast.recipients,
    }
    return web.json_response(body, status=201 if created else 200)


async def get_broadcast(request: web.Request) -> web.Response:
    broadcast = await _find_broadcast(request)
    return web.json_response(await _broadcast_report(request, broadcast))


async def cancel_broadcast(request: web.Request) -> web.Response:
    """Cancelled: nothing pending goes out afterwards. A retry (already cancelled) is 200 too;
    a broadcast that is done cannot be cancelled (409 invalid_state)."""
    broadcast = await _find_broadcast(request)
    if broadcast.status != "cancelled":
        try:
            broadcast = await request.app[BROADCASTS].cancel(broadcast, actor=_actor(request))
        except BroadcastError as error:
            now = await request.app[BROADCASTS].get(broadcast.public_id)
            if now is None or now.status != "cancelled":  # (not a cancel that raced this one)
                raise _broadcast_error(error) from error
            broadcast = now
    return web.json_response(await _broadcast_report(request, broadcast))


async def _find_broadcast(request: web.Request) -> Broadcast:
    public_id = request.match_info["broadcast_id"]
    found = None
    if valid_public_id(public_id):
        found = await request.app[BROADCASTS].get(public_id)
    if found is None:
        raise ApiError(404, "not_found", f"no broadcast with broadcast_id {public_id!r}")
    return found


async def _broadcast_report(request: web.Request, broadcast: Broadcast) -> dict[str, Any]:
    broadcasts = request.app[BROADCASTS]
    progress = await broadcasts.progress(broadcast)
    attribution = await broadcasts.attribution(broadcast)  # None before sending started
    return {
        "broadcast_id": broadcast.public_id,
        "status": broadcast.status,
        "audience": broadcast.audience,
        "control": broadcast.control,
        "recipients": broadcast.recipients,
        **progress.to_json(),
        "gift_points": await broadcasts.gifted_points(broadcast),
        "attribution": None if attribution is None else attribution.to_json(),
    }


def _draft(segments: Segments, broadcasts: Broadcasts, body: dict[str, Any]) -> Draft:
    """The broadcast a request asks for, its fields checked as purchases' are; what only the
    broadcast can judge (the text's HTML, the ranges) is checked by Broadcasts.create."""
    unknown = sorted(set(body) - BROADCAST_FIELDS)
    if unknown:
        raise ApiError(
            422,
            "unknown_field",
            f"{unknown[0][:40]!r} is not a field of a broadcast; the fields are "
            + ", ".join(sorted(BROADCAST_FIELDS)),
            field=unknown[0][:100],
        )
    public_id = _string(body, "broadcast_id", max_length=100)
    try:
        segment = segments.parse(body.get("filter"))
    except SegmentError as error:
        raise ApiError(422, error.code, error.message, field=error.field) from error
    text = body.get("text")
    if not isinstance(text, str):
        raise ApiError(422, "invalid_field", "text is required and must be a string", field="text")
    if "\x00" in text or not _encodable(text):  # what no database stores (nor Telegram sends)
        raise ApiError(
            422, "invalid_field", "text must not contain NUL or lone surrogates", field="text"
        )
    defaults = broadcasts.rules.broadcasts
    button_text, button_url = _button(body.get("button"))
    return Draft(
        filter=segment,
        text=text,
        public_id=public_id,
        button_text=button_text,
        button_url=button_url,
        control_percent=_points_or(body, "control_percent", defaults.control_percent),
        gift_points=_points_or(body, "gift_points", 0),
        gift_days=_points_or(body, "gift_days", defaults.gift_days),
        send_at=_moment(body.get("send_at"), "send_at"),
    )


def _points_or(body: dict[str, Any], field: str, default: int) -> int:
    return default if body.get(field) is None else _points(body, field)


def _moment(value: Any, field: str) -> datetime | None:
    """An ISO 8601 moment, in UTC (the same moment written with another offset is the same
    request); one without its offset is refused by Broadcasts.check."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        if moment is not None and moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        moment = None
    if moment is None:
        raise ApiError(
            422,
            "invalid_field",
            f'{field} is an ISO 8601 moment with its offset, e.g. "2026-03-01T10:00:00+03:00"',
            field=field,
        )
    return moment


def _button(value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict) or set(value) != {"text", "url"}:
        raise ApiError(
            422, "invalid_field", 'button is {"text": ..., "url": "https://..."}', field="button"
        )
    fields = {"button.text": value["text"], "button.url": value["url"]}
    text = _string(fields, "button.text", max_length=BUTTON_TEXT_MAX)
    url = _string(fields, "button.url", max_length=2000)
    return text, url


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _broadcast_error(error: BroadcastError) -> ApiError:
    conflict = error.code in ("broadcast_id_conflict", "invalid_state")
    extra: dict[str, Any] = dict(error.details)
    if error.field:
        extra["field"] = error.field
    return ApiError(409 if conflict else 422, error.code, error.message, **extra)


# ------------------------------------------------------------------- input checking


async def _json_object(request: web.Request) -> dict[str, Any]:
    timeout = request.app[SERVICES].body_timeout
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    except TimeoutError as error:
        log.info("%s %s: the body took longer than %g s", request.method, request.path, timeout)
        raise ApiError(
            408, "body_timeout", f"the body did not arrive within {timeout:g} seconds", close=True
        ) from error
    except ConnectionError as error:
        # Nobody will read this answer: the client is gone. Not an error of ours (no trace).
        log.info(
            "%s %s: the client disconnected while sending the body", request.method, request.path
        )
        raise ApiError(400, "invalid_body", "the body ended early", close=True) from error
    except RequestPayloadError as error:
        # A body that is not what its headers say: broken gzip or deflate, a cut chunk.
        raise ApiError(
            400, "invalid_body", "the body could not be read as its headers describe it"
        ) from error
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:  # (nested too deep)
        raise ApiError(400, "invalid_json", "the body must be a JSON object") from error
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


def _string(body: dict[str, Any], field: str, *, max_length: int) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(
            422, "invalid_field", f"{field} is required and must be a string", field=field
        )
    if len(value) > max_length:
        raise ApiError(
            422, "invalid_field", f"{field} is longer than {max_length} characters", field=field
        )
    value = value.strip()
    if not policy.is_plain_text(value):
        raise ApiError(
            422,
            "invalid_field",
            f"{field} must not contain control or invisible formatting characters "
            "(such as NUL, U+200B or U+202E)",
            field=field,
        )
    return value


def _amount(body: dict[str, Any]) -> int:
    value = _whole(body.get("amount"))
    if value is None:
        raise ApiError(422, "invalid_amount", 'amount is required, e.g. "1500.00"', field="amount")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ApiError(
            422,
            "invalid_amount",
            'amount must be a string with at most two decimals, e.g. "1500.00"',
            field="amount",
        )
    try:
        return policy.parse_amount(value)
    except InvalidAmount as error:
        error.details["field"] = "amount"
        raise


def _points(body: dict[str, Any], field: str) -> int:
    value = _whole(body.get(field, 0))
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError(
            422, "invalid_points", f"{field} must be a whole number, 0 or more", field=field
        )
    return value


def _whole(value: Any) -> Any:
    """A JSON number with no fraction as the integer it is: JSON Schema's "integer" takes
    1500.0 (and Python's json reads it as a float)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


async def _resolve_customer(services: ApiServices, customer: str) -> MemberView:
    """A card number, a phone in any common format, or the card's QR token (bare, with its
    "c_" prefix, or the whole t.me link)."""
    return await services.ledger.find_member(_customer_reference(services, customer)[0])


def _customer_reference(services: ApiServices, customer: str) -> tuple[str, bool]:
    """The card number a QR token (bare, with its "c_" prefix, or the whole t.me link) was
    signed for, and True; anything else as given (a card number or a phone), and False."""
    text = customer.strip()
    if "start=" in text:
        try:
            text = parse_qs(urlparse(text).query).get("start", [text])[0]
        except ValueError:  # not a URL after all ("http://[start=..."): no such member
            pass
    token = text[2:] if text.startswith("c_") else text
    card_number = verify_card_token(token, services.secret_key) if len(token) >= 20 else None
    return (card_number, True) if card_number is not None else (text, False)


def _actor(request: web.Request) -> str:
    key = request[API_KEY]
    return f"api:{key.name}"[:64]
