"""schemathesis against the OpenAPI document: generated requests, with and without a key, to the
real aiohttp server on a real database (both backends). Every answer must be documented (status,
content type, headers, body schema), none a 500, and a body the document accepts must not be
refused as invalid (the document says what the server takes).

Bounded: EXAMPLES cases per operation, with a key and without (9 x 2 x 20 = 360 a backend)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import ApiServices, api_runner, build_api
from api.keys import ApiKeyService
from api.openapi import openapi_document
from bot.i18n import build_i18n
from ledger.clock import SystemClock
from ledger.rules import load_rules
from ledger.service import LedgerService
from messaging.notifier import Notifier
from messaging.outbox import Outbox
from storage.engine import create_engine
from tests.api.conftest import SECRET
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # schemathesis walks every operation

EXAMPLES = 20
# The server's refusals of what the request says (not of the state it meets: those are
# redeem_above_limit, points_limit, refund_exceeds_purchase, the 404s and 409s).
INVALID_INPUT = {
    "invalid_amount",
    "invalid_field",
    "invalid_points",
    "invalid_json",
    "invalid_filter",
    "unknown_condition",
    "invalid_condition",
    "unknown_field",
}
# The operations a till key may not call: they are sent with a marketing key.
MARKETING = {
    "/api/v1/segments/preview",
    "/api/v1/broadcasts",
    "/api/v1/broadcasts/{broadcast_id}",
    "/api/v1/broadcasts/{broadcast_id}/cancel",
}


@dataclass
class Served:
    base_url: str
    key: str
    marketing_key: str
    card: str  # a member's, with 5,100 points
    receipt_id: str  # a purchase of theirs, 1,000.00


def _serve(database_url: str, ready: Future[Served], stop: threading.Event) -> None:
    """The API as bot.run serves it, on its own loop in this thread."""

    async def main() -> None:
        engine = create_engine(database_url)
        ledger = LedgerService(engine, load_rules(ROOT / "rules.toml"), SystemClock())
        keys = ApiKeyService(engine, ledger.clock, ledger.db)
        notifier = Notifier(build_i18n(), ledger, Outbox(engine, ledger.clock))
        app = build_api(ApiServices(ledger=ledger, keys=keys, secret_key=SECRET, notifier=notifier))
        runner = api_runner(app, header_timeout=10)
        try:
            _, key = await keys.create("schemathesis")
            _, marketing_key = await keys.create("schemathesis-crm", "marketing")
            member = (await ledger.register_member("+79990000001", telegram_id=1)).member
            await ledger.adjust(member_id=member.member_id, points=5000, reason="t", actor="t")
            await ledger.purchase(
                receipt_id="R-0", member_id=member.member_id, amount_kopecks=100_000
            )
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            host, port = runner.addresses[0][:2]
            ready.set_result(
                Served(f"http://{host}:{port}", key, marketing_key, member.card_number, "R-0")
            )
            await asyncio.to_thread(stop.wait)
        except BaseException as error:
            if not ready.done():
                ready.set_exception(error)
            raise
        finally:
            await runner.cleanup()
            await keys.close()
            ledger.close()
            await engine.dispose()

    asyncio.run(main())


@pytest.fixture
def served(database_url: str) -> Iterator[Served]:
    ready: Future[Served] = Future()
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(database_url, ready, stop), daemon=True)
    thread.start()
    yield ready.result(timeout=30)
    stop.set()
    thread.join(timeout=30)


def valid_input_is_taken(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request the document accepts is not refused for what it says (it may be for the state
    it meets: an unknown customer, too few points)."""
    if case.meta is None or case.meta.generation.mode != "positive":
        return None
    if response.status_code in (400, 422):
        code = (response.json().get("error") or {}).get("code")
        assert code not in INVALID_INPUT, (
            f"{case.method} {case.formatted_path}: the document accepts {case.body!r}, "
            f"the server refused it: {response.text}"
        )
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    valid_input_is_taken,
]


@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
def test_every_answer_fits_the_openapi_document(served: Served, with_key: bool) -> None:
    schema = schemathesis.openapi.from_dict(openapi_document())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:
        strategy = operation.as_strategy()
        if operation.path == "/api/v1/members/{customer}":  # now and then a real member
            strategy = st.one_of(
                strategy, operation.as_strategy(path_parameters={"customer": served.card})
            )

        @given(case=strategy, known=st.booleans())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,  # the same cases every run: a failure reproduces
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any, known: bool) -> None:
            key = served.marketing_key if case.path in MARKETING else served.key
            headers = {"Authorization": f"Bearer {key}"} if with_key else {}
            if known and isinstance(case.body, dict):  # half the time, a real member or sale
                if "customer" in case.body:
                    case.body["customer"] = served.card
                elif "refund_id" in case.body:
                    case.body["receipt_id"] = served.receipt_id
            response = case.call(base_url=served.base_url, headers=headers, timeout=10)
            case.validate_response(response, checks=CHECKS)

        check()
