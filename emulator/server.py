"""The emulator itself: an aiohttp server speaking the Telegram Bot API, plus its Python API.

Typical in-process use::

    emu = BotAPIEmulator()
    bot_state = emu.add_bot("123456:TEST", username="loyalty_test_bot")
    base_url = await emu.start()                   # http://127.0.0.1:<free port>
    bot = emu.aiogram_bot()                        # aiogram Bot wired to the emulator
    alice = emu.user(1001, first_name="Alice")
    await alice.send_command("/start")
    [reply] = await alice.wait_messages(1)
    await emu.stop()

Request pipeline for ``/bot<token>/<method>``: token check (401), method lookup (404),
parameter parsing, fault rules, rate limiter, then the method itself
(:mod:`emulator.methods`). Every answered call is appended to :attr:`BotAPIEmulator.calls`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiohttp import ClientSession, web

from .client import EmulatedUser
from .errors import NOT_FOUND, UNAUTHORIZED, ApiError
from .faults import FaultInjector, FaultKind, FaultRule, RateLimitConfig, RateLimiter
from .methods import METHODS, MethodOptions
from .params import MAX_BODY_BYTES, read_params
from .state import ApiCall, Chat, EmulatedBot, JsonDict, Stats, UserProfile, scope_key

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession

logger = logging.getLogger(__name__)

BotRef = EmulatedBot | str | int | None
"""A bot given as its state object, token, username (with or without ``@``) or id;
``None`` means the first bot added."""


class BotAPIEmulator:
    """An in-memory Telegram Bot API server for tests, demos and benchmarks.

    Args:
        rate_limit: Flood limits; ``True`` enables Telegram's defaults, ``None``/``False``
            leaves the limiter off (it can be switched on later via :attr:`rate_limiter`).
        seed: Seed for probabilistic fault rules.
        strict_images: Refuse ``sendPhoto`` uploads that are not decodable images.
        call_log_size: How many recent API calls :attr:`calls` keeps (``None`` = all).
        clock: Monotonic clock used by the rate limiter.
    """

    def __init__(
        self,
        *,
        rate_limit: RateLimitConfig | bool | None = None,
        seed: int = 0,
        strict_images: bool = False,
        call_log_size: int | None = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(rate_limit, bool) or rate_limit is None:
            rate_limit = RateLimitConfig(enabled=bool(rate_limit))
        self.stats = Stats()
        """Counters: calls per method, statuses, 429s, updates."""
        self.faults = FaultInjector(seed)
        """Fault injection rules (see :class:`emulator.faults.FaultInjector`)."""
        self.rate_limiter = RateLimiter(rate_limit, clock)
        """Flood control (see :class:`emulator.faults.RateLimiter`)."""
        self.options = MethodOptions(strict_images=strict_images)
        self.calls: deque[ApiCall] = deque(maxlen=call_log_size)
        """Log of answered Bot API calls, oldest first."""
        self._bots: dict[int, EmulatedBot] = {}
        self._bots_by_token: dict[str, EmulatedBot] = {}
        self._users: dict[tuple[int, int], EmulatedUser] = {}
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # -- bots and users ------------------------------------------------------------------

    def add_bot(self, token: str, username: str, first_name: str = "Bot") -> EmulatedBot:
        """Register a bot account; its id is the numeric part of ``token``."""
        if token in self._bots_by_token:
            raise ValueError(f"bot token {token!r} is already registered")
        bot = EmulatedBot(token, username, first_name, stats=self.stats)
        if bot.id in self._bots:
            raise ValueError(f"a bot with id {bot.id} is already registered")
        self._bots[bot.id] = bot
        self._bots_by_token[token] = bot
        return bot

    @property
    def bots(self) -> list[EmulatedBot]:
        """All registered bots, in the order they were added."""
        return list(self._bots.values())

    def bot(self, ref: BotRef = None) -> EmulatedBot:
        """Find a bot by state object, token, username or id (``None`` = the first added)."""
        if isinstance(ref, EmulatedBot):
            return ref
        if ref is None:
            if not self._bots:
                raise LookupError("no bot registered; call add_bot() first")
            return next(iter(self._bots.values()))
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            found = self._bots.get(int(ref))
        elif ref in self._bots_by_token:
            found = self._bots_by_token[ref]
        else:
            name = ref.lstrip("@").lower()
            found = next((b for b in self._bots.values() if b.username.lower() == name), None)
        if found is None:
            raise LookupError(f"unknown bot {ref!r}")
        return found

    def user(
        self,
        user_id: int,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        *,
        is_premium: bool = False,
        bot: BotRef = None,
    ) -> EmulatedUser:
        """The user's private chat with ``bot`` (created on first call; later calls return
        the same handle and update any profile field passed explicitly)."""
        state = self.bot(bot)
        existing = self._users.get((state.id, user_id))
        if existing is not None:
            profile = existing.profile
            if first_name is not None:
                profile.first_name = first_name
            if last_name is not None:
                profile.last_name = last_name
            if username is not None:
                profile.username = username
            return existing
        profile = UserProfile(
            id=user_id,
            first_name=first_name or f"User{user_id}",
            last_name=last_name,
            username=username,
            language_code=language_code,
            is_premium=is_premium,
        )
        chat = Chat(bot=state, user=profile)
        state.chats[user_id] = chat
        handle = EmulatedUser(chat, self.calls)
        self._users[(state.id, user_id)] = handle
        return handle

    def users(self, bot: BotRef = None) -> list[EmulatedUser]:
        """Every user handle of ``bot``."""
        state = self.bot(bot)
        return [u for (bot_id, _), u in self._users.items() if bot_id == state.id]

    def commands(
        self, bot: BotRef = None, language_code: str | None = None, scope: JsonDict | None = None
    ) -> list[JsonDict]:
        """What ``setMyCommands`` stored for exactly this scope and language (``[]`` if none).

        ``scope`` is a BotCommandScope dict such as ``{"type": "chat", "chat_id": 1}``;
        ``None`` is the default scope. ``language_code`` ``None`` means "all languages".
        """
        state = self.bot(bot)
        return list(state.commands.get((scope_key(scope), language_code or ""), []))

    # -- log and faults ------------------------------------------------------------------

    def calls_to(self, method: str, bot: BotRef = None) -> list[ApiCall]:
        """Logged calls of ``method`` (case-insensitive), optionally for one bot only."""
        bot_id = None if bot is None else self.bot(bot).id
        wanted = method.lower()
        return [
            call
            for call in self.calls
            if call.method.lower() == wanted and (bot_id is None or call.bot_id == bot_id)
        ]

    def add_fault(self, kind: FaultKind | str, **options: Any) -> FaultRule:
        """Shortcut for ``emu.faults.add(kind, **options)``."""
        return self.faults.add(kind, **options)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self.faults.clear()

    # -- aiogram helpers -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._base_url is None:
            raise RuntimeError("emulator is not started")
        return self._base_url

    def aiogram_session(self) -> AiohttpSession:
        """An aiogram ``AiohttpSession`` pointed at this emulator.

        Its ``close()`` skips aiogram's 250 ms grace sleep (meant for TLS connections), which
        keeps test teardown fast.
        """
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        class LocalAiohttpSession(AiohttpSession):
            client: ClientSession | None = None  # the one create_session() made last

            async def create_session(self) -> ClientSession:
                self.client = await super().create_session()
                return self.client

            async def close(self) -> None:
                if self.client is not None and not self.client.closed:
                    await self.client.close()

        return LocalAiohttpSession(api=TelegramAPIServer.from_base(self.base_url))

    def aiogram_bot(self, bot: BotRef = None, **kwargs: Any) -> Bot:
        """An aiogram ``Bot`` for a registered bot, talking to this emulator.

        ``kwargs`` go to ``aiogram.Bot`` (e.g. ``default=DefaultBotProperties(...)``).
        """
        from aiogram import Bot

        return Bot(self.bot(bot).token, session=self.aiogram_session(), **kwargs)

    # -- server lifecycle ------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """Build the aiohttp application (Bot API routes, file downloads, side door)."""
        from .sidedoor import add_side_door_routes

        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        add_side_door_routes(app, self)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; ``port=0`` picks a free port. Returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        for bot in self._bots.values():
            bot.closed = False
        runner = web.AppRunner(
            self.make_app(), handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        actual_port = runner.addresses[0][1] if runner.addresses else port
        self._base_url = f"http://{host}:{actual_port}"
        return self._base_url

    async def stop(self) -> None:
        """Stop serving; pending long polls return immediately."""
        for bot in self._bots.values():
            bot.closed = True
            bot.updates_changed.notify()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._base_url = None

    async def __aenter__(self) -> BotAPIEmulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- HTTP handlers -----------------------------------------------------------------------

    async def call(self, bot: EmulatedBot, method: str, request: web.Request) -> web.Response:
        """Run one Bot API call through faults, the rate limiter and the method."""
        started = time.monotonic()
        arrived = time.time()
        params_log: JsonDict = {}
        result: Any = None
        try:
            handler = METHODS.get(method.lower())
            if handler is None:
                raise ApiError(404, "Not Found")
            params = await read_params(request)
            params_log = params.for_log()
            chat_id = _loose_int(params.values.get("chat_id"))
            try:
                await self.faults.apply(method, chat_id)
            except ApiError:
                self.stats.faults_injected += 1
                raise
            try:
                self.rate_limiter.check(bot.id, method, chat_id)
            except ApiError:
                self.stats.rate_limited += 1
                raise
            result = await handler(bot, params, self.options)
            status, body = 200, {"ok": True, "result": result}
            description = None
        except ApiError as error:
            status, body, description = error.status, error.to_json(), error.description
        except Exception as error:  # a bug in the emulator or input it does not understand
            logger.exception("emulator failed on %s", method)
            description = f"Internal Server Error: emulator failed: {type(error).__name__}: {error}"
            status, body = 500, {"ok": False, "error_code": 500, "description": description}
        except asyncio.CancelledError:
            # The client went away (e.g. a long poll of a stopped dispatcher): log it as
            # nginx's 499 so the log shows every request, then let the cancellation proceed.
            self._log(bot, method, params_log, 499, arrived, started, "client closed request")
            raise
        self._log(bot, method, params_log, status, arrived, started, description, result)
        return web.json_response(body, status=status)

    def _log(
        self,
        bot: EmulatedBot | None,
        method: str,
        params: JsonDict,
        status: int,
        arrived: float,
        started: float,
        description: str | None,
        result: Any = None,
    ) -> None:
        self.stats.calls[method] += 1
        self.stats.statuses[status] += 1
        self.calls.append(
            ApiCall(
                bot_id=None if bot is None else bot.id,
                method=method,
                params=params,
                status=status,
                time=arrived,
                duration=time.monotonic() - started,
                description=description,
                result=result,
            )
        )

    async def _handle_api(self, request: web.Request) -> web.Response:
        bot = self._bots_by_token.get(request.match_info["token"])
        if bot is None:
            now = time.monotonic()
            method = request.match_info["method"]
            self._log(None, method, {}, 401, time.time(), now, UNAUTHORIZED.description)
            return web.json_response(UNAUTHORIZED.to_json(), status=401)
        return await self.call(bot, request.match_info["method"], request)

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        bot = self._bots_by_token.get(request.match_info["token"])
        if bot is None:
            return web.json_response(UNAUTHORIZED.to_json(), status=401)
        stored = bot.files_by_path.get(request.match_info["path"])
        if stored is None:
            return web.json_response(NOT_FOUND.to_json(), status=404)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return web.json_response(NOT_FOUND.to_json(), status=404)


def _loose_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
