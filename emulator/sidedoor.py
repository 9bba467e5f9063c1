"""The HTTP side door: the test-side API as JSON endpoints under ``/_emu/``.

It lets another process (a demo script, a benchmark) drive users and inspect what the bot
did. Every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``
with status 400 (bad input), 404 (unknown bot, user or fault rule) or 422 (an expectation
failed, e.g. ``wait_messages`` timed out or a message or button does not exist).

Bots are chosen with a ``bot`` field (body or query: token, username or id); without it, the
first registered bot is used.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .client import OWN, CallbackHandle, EmulatedUser
from .faults import FaultRule
from .state import JsonDict

if TYPE_CHECKING:
    from .server import BotAPIEmulator

SideDoorHandler = Callable[[web.Request, JsonDict], Awaitable[Any]]


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _fail(status: int, error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error}, status=status)


def _endpoint(handler: SideDoorHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap a handler taking (request, merged query+JSON body) with uniform error answers."""

    async def wrapped(request: web.Request) -> web.Response:
        data: JsonDict = dict(request.query)
        if request.body_exists:
            try:
                body = await request.json()
            except ValueError:
                return _fail(400, "body must be JSON")
            if not isinstance(body, dict):
                return _fail(400, "body must be a JSON object")
            data.update(body)
        try:
            return _ok(await handler(request, data))
        except AssertionError as error:
            return _fail(422, str(error))
        except LookupError as error:
            return _fail(404, str(error.args[0] if error.args else error))
        except (ValueError, TypeError) as error:
            return _fail(400, str(error))

    return wrapped


def add_side_door_routes(app: web.Application, emu: BotAPIEmulator) -> None:
    """Register the ``/_emu/...`` routes for ``emu`` on ``app``."""

    def user_of(request: web.Request, data: JsonDict) -> EmulatedUser:
        bot = emu.bot(data.get("bot"))
        user_id = int(request.match_info["user_id"])
        for handle in emu.users(bot):
            if handle.id == user_id:
                return handle
        raise LookupError(f"unknown user {user_id} of bot @{bot.username}; POST /_emu/users")

    def require(data: JsonDict, name: str) -> Any:
        if name not in data:
            raise ValueError(f"missing field {name!r}")
        return data[name]

    async def callback_result(handle: CallbackHandle, data: JsonDict) -> JsonDict:
        wait = data.get("wait_answer")
        if wait:
            await handle.wait_answer(float(wait))
        answer = handle.answer
        return {
            "callback_query_id": handle.id,
            "answer": None if answer is None else vars(answer),
        }

    # -- bots and users ------------------------------------------------------------------

    async def health(request: web.Request, data: JsonDict) -> Any:
        return {"bots": len(emu.bots)}

    async def list_bots(request: web.Request, data: JsonDict) -> Any:
        return [
            {"id": b.id, "token": b.token, "username": b.username, "first_name": b.first_name}
            for b in emu.bots
        ]

    async def add_bot(request: web.Request, data: JsonDict) -> Any:
        bot = emu.add_bot(
            str(require(data, "token")),
            str(require(data, "username")),
            str(data.get("first_name") or "Bot"),
        )
        return {"id": bot.id, "token": bot.token, "username": bot.username}

    async def add_user(request: web.Request, data: JsonDict) -> Any:
        handle = emu.user(
            int(require(data, "user_id")),
            first_name=data.get("first_name"),
            last_name=data.get("last_name"),
            username=data.get("username"),
            language_code=data.get("language_code", "en"),
            bot=data.get("bot"),
        )
        return {**handle.profile.to_json(), "chat_id": handle.chat_id}

    async def list_users(request: web.Request, data: JsonDict) -> Any:
        return [u.profile.to_json() for u in emu.users(data.get("bot"))]

    # -- user actions --------------------------------------------------------------------

    async def send_text(request: web.Request, data: JsonDict) -> Any:
        user = user_of(request, data)
        return await user.send_text(str(require(data, "text")), reply_to=data.get("reply_to"))

    async def send_command(request: web.Request, data: JsonDict) -> Any:
        return await user_of(request, data).send_command(str(require(data, "command")))

    async def send_contact(request: web.Request, data: JsonDict) -> Any:
        return await user_of(request, data).send_contact(
            str(require(data, "phone_number")),
            user_id=data["user_id"] if "user_id" in data else OWN,
            first_name=data.get("first_name"),
            last_name=data.get("last_name"),
        )

    async def send_sticker(request: web.Request, data: JsonDict) -> Any:
        return await user_of(request, data).send_sticker(str(data.get("emoji", "👍")))

    async def send_photo(request: web.Request, data: JsonDict) -> Any:
        raw = base64.b64decode(str(require(data, "base64")))
        return await user_of(request, data).send_photo(raw, caption=data.get("caption"))

    async def send_document(request: web.Request, data: JsonDict) -> Any:
        raw = base64.b64decode(str(require(data, "base64")))
        return await user_of(request, data).send_document(
            raw, str(data.get("file_name", "file.bin")), caption=data.get("caption")
        )

    async def send_location(request: web.Request, data: JsonDict) -> Any:
        return await user_of(request, data).send_location(
            float(require(data, "latitude")), float(require(data, "longitude"))
        )

    async def send_raw(request: web.Request, data: JsonDict) -> Any:
        content = require(data, "message")
        if not isinstance(content, dict):
            raise ValueError("'message' must be an object of Message fields")
        return await user_of(request, data).send_raw(**content)

    async def press(request: web.Request, data: JsonDict) -> Any:
        user = user_of(request, data)
        handle = await user.press(int(require(data, "message_id")), str(require(data, "data")))
        return await callback_result(handle, data)

    async def press_button(request: web.Request, data: JsonDict) -> Any:
        user = user_of(request, data)
        handle = await user.press_button(
            int(require(data, "message_id")), str(require(data, "text"))
        )
        return await callback_result(handle, data)

    async def press_reply_button(request: web.Request, data: JsonDict) -> Any:
        return await user_of(request, data).press_reply_button(
            str(require(data, "text")), phone_number=data.get("phone_number")
        )

    async def block(request: web.Request, data: JsonDict) -> Any:
        user_of(request, data).block_bot()
        return True

    async def unblock(request: web.Request, data: JsonDict) -> Any:
        user_of(request, data).unblock_bot()
        return True

    # -- observing -----------------------------------------------------------------------

    def include_files(data: JsonDict) -> bool:
        return str(data.get("include_files", "")).lower() in ("1", "true", "yes")

    async def messages(request: web.Request, data: JsonDict) -> Any:
        user = user_of(request, data)
        since = int(data.get("since", 0))
        files = include_files(data)
        return [m.to_json(files) for m in user.messages if m.message_id > since]

    async def wait_messages(request: web.Request, data: JsonDict) -> Any:
        user = user_of(request, data)
        got = await user.wait_messages(int(data.get("n", 1)), float(data.get("timeout", 5.0)))
        return [m.to_json(include_files(data)) for m in got]

    async def wait_edit(request: web.Request, data: JsonDict) -> Any:
        user = user_of(request, data)
        message = await user.wait_edit(
            int(require(data, "message_id")), float(data.get("timeout", 5.0))
        )
        return message.to_json(include_files(data))

    async def commands(request: web.Request, data: JsonDict) -> Any:
        scope = data.get("scope")
        if isinstance(scope, str):
            scope = json.loads(scope)
        return emu.commands(data.get("bot"), data.get("language_code"), scope)

    async def calls(request: web.Request, data: JsonDict) -> Any:
        method = str(data.get("method", "")).lower()
        since = float(data.get("since", 0))
        selected = [
            c.to_json()
            for c in emu.calls
            if c.time >= since and (not method or c.method.lower() == method)
        ]
        limit = int(data.get("limit", 1000))
        return selected[-limit:]

    async def stats(request: web.Request, data: JsonDict) -> Any:
        return emu.stats.to_json()

    async def reset_stats(request: web.Request, data: JsonDict) -> Any:
        emu.stats.reset()
        emu.calls.clear()
        return True

    # -- faults and limits ---------------------------------------------------------------

    async def list_faults(request: web.Request, data: JsonDict) -> Any:
        return [rule.to_json() for rule in emu.faults.rules]

    async def add_fault(request: web.Request, data: JsonDict) -> Any:
        fields = {k: v for k, v in data.items() if k != "seed"}
        if "seed" in data:
            emu.faults.seed(int(data["seed"]))
        if not fields:
            return [rule.to_json() for rule in emu.faults.rules]
        return emu.faults.add(FaultRule.from_json(fields)).to_json()

    async def clear_faults(request: web.Request, data: JsonDict) -> Any:
        emu.faults.clear()
        return True

    async def delete_fault(request: web.Request, data: JsonDict) -> Any:
        if not emu.faults.remove(int(request.match_info["rule_id"])):
            raise LookupError(f"no fault rule {request.match_info['rule_id']}")
        return True

    async def get_rate_limit(request: web.Request, data: JsonDict) -> Any:
        return emu.rate_limiter.config.to_json()

    async def set_rate_limit(request: web.Request, data: JsonDict) -> Any:
        return emu.rate_limiter.configure(**data).to_json()

    routes: list[tuple[str, str, SideDoorHandler]] = [
        ("GET", "/_emu/health", health),
        ("GET", "/_emu/bots", list_bots),
        ("POST", "/_emu/bots", add_bot),
        ("GET", "/_emu/users", list_users),
        ("POST", "/_emu/users", add_user),
        ("POST", "/_emu/users/{user_id}/send_text", send_text),
        ("POST", "/_emu/users/{user_id}/send_command", send_command),
        ("POST", "/_emu/users/{user_id}/send_contact", send_contact),
        ("POST", "/_emu/users/{user_id}/send_sticker", send_sticker),
        ("POST", "/_emu/users/{user_id}/send_photo", send_photo),
        ("POST", "/_emu/users/{user_id}/send_document", send_document),
        ("POST", "/_emu/users/{user_id}/send_location", send_location),
        ("POST", "/_emu/users/{user_id}/send_raw", send_raw),
        ("POST", "/_emu/users/{user_id}/press", press),
        ("POST", "/_emu/users/{user_id}/press_button", press_button),
        ("POST", "/_emu/users/{user_id}/press_reply_button", press_reply_button),
        ("POST", "/_emu/users/{user_id}/block", block),
        ("POST", "/_emu/users/{user_id}/unblock", unblock),
        ("GET", "/_emu/users/{user_id}/messages", messages),
        ("POST", "/_emu/users/{user_id}/wait_messages", wait_messages),
        ("POST", "/_emu/users/{user_id}/wait_edit", wait_edit),
        ("GET", "/_emu/commands", commands),
        ("GET", "/_emu/calls", calls),
        ("GET", "/_emu/stats", stats),
        ("POST", "/_emu/stats/reset", reset_stats),
        ("GET", "/_emu/faults", list_faults),
        ("POST", "/_emu/faults", add_fault),
        ("DELETE", "/_emu/faults", clear_faults),
        ("DELETE", "/_emu/faults/{rule_id}", delete_fault),
        ("GET", "/_emu/rate_limit", get_rate_limit),
        ("POST", "/_emu/rate_limit", set_rate_limit),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _endpoint(handler))
