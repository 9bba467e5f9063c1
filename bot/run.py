"""Running what bot.build builds: the bot's session, polling (while this process leads), the
HTTP API, the scheduler and the outbox's sender. `running()` starts them all and stops them in
order when its block ends; `Application` is the same for callers that start and stop at
different places (tests, the demo); `run_app` runs until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.utils.i18n import I18n
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import ApiServices, api_runner, build_api
from bot.build import Services, build_dispatcher, build_services, close_services
from bot.failures import StartupError, failing_as, reason, safe_url
from bot.retries import RetryBriefFailures
from bot.settings import Settings
from handlers.broadcasts import ProgressMessages
from handlers.commands import set_all_staff_commands, set_member_commands
from ledger.clock import Clock, SystemClock
from marketing.broadcasts import KIND as BROADCAST
from marketing.offer import OfferComposer
from messaging.notices import Notices
from messaging.notifier import Notifier
from messaging.sender import Sender
from scheduler.jobs import Jobs, Leadership, SchedulerRunner, new_runner_id
from usecases.sales import expire_due

BROADCAST_TICK_S = 2.0
log = logging.getLogger("loyalty")
_PINNED_RESPONSE_TYPES: list[object] = []


def pin_response_types() -> None:
    """aiogram parametrizes `Response[...]` for every call and pydantic keeps those classes
    only weakly, so each garbage collection drops them and the next call rebuilds one, slowly.
    Holding them once keeps them built."""
    if _PINNED_RESPONSE_TYPES:
        return
    import aiogram.methods
    from aiogram.methods.base import Response, TelegramMethod

    for name in aiogram.methods.__all__:
        method = getattr(aiogram.methods, name)
        if isinstance(method, type) and issubclass(method, TelegramMethod):
            returning = getattr(method, "__returning__", None)
            if method is not TelegramMethod and returning is not None:
                _PINNED_RESPONSE_TYPES.append(Response[returning])  # type: ignore[index,valid-type]


class Polling:
    """Telegram hands updates to one poller at a time (a second one gets 409 Conflict, and
    both keep losing), so with several processes only the scheduler's leader polls; the
    others serve the HTTP API, and one of them takes over the chat when the leader goes."""

    def __init__(self, dispatcher: Dispatcher, bot: Bot, where: str) -> None:
        self.dispatcher = dispatcher
        self.bot = bot
        self.where = where
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.task is not None:
            return
        self.task = asyncio.create_task(
            self.dispatcher.start_polling(
                self.bot,
                handle_signals=False,
                close_bot_session=False,
                allowed_updates=self.dispatcher.resolve_used_update_types(),
            ),
            name="polling",
        )
        log.info("bot @%s is polling %s", (await self.bot.me()).username, self.where)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        with contextlib.suppress(RuntimeError):  # polling already stopped
            await self.dispatcher.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True, slots=True)
class Running:
    """One running program: everything started, nothing missing."""

    services: Services
    bot: Bot
    outbox_bot: Bot  # the outbox's sends: its own session, its own retries
    dispatcher: Dispatcher
    bot_username: str
    sender: Sender
    jobs: Jobs
    scheduler: SchedulerRunner
    polling: Polling
    api_url: str


@contextlib.asynccontextmanager
async def running(settings: Settings, clock: Clock) -> AsyncIterator[Running]:
    """Start everything; a StartupError says in one line what could not start (whatever had
    started is stopped again). Stops it all, in order, when the block ends."""
    pin_response_types()
    async with contextlib.AsyncExitStack() as stack:
        services = await build_services(settings, clock)
        stack.push_async_callback(close_services, services)
        bot = await _connected_bot(settings, stack)
        bot_username = (await bot.me()).username or ""
        dispatcher = build_dispatcher(services, bot_username=bot_username)
        stack.push_async_callback(dispatcher.storage.close)
        if settings.redis_url:
            with failing_as(f"cannot reach Redis at {safe_url(settings.redis_url)} (REDIS_URL)"):
                await dispatcher.storage.redis.ping()  # type: ignore[attr-defined]
        await set_member_commands(bot, services.i18n)
        await set_all_staff_commands(bot, services.i18n, await services.staff.list_staff())
        await bot.delete_webhook(drop_pending_updates=False)
        # The outbox retries in its own way: its sends go through a session of their own,
        # without the replies' retries (bot/retries.py).
        outbox_bot = Bot(
            token=settings.bot_token or "",
            session=AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url)),
        )
        stack.push_async_callback(outbox_bot.session.close)
        runner_id = new_runner_id()
        sender = Sender(
            services.outbox,
            outbox_bot,
            services.rules.messages,
            rate_per_second=settings.send_rate_per_second,
            per_chat_interval=settings.send_per_chat_interval,
            on_undelivered=services.support_news.undelivered,  # support's news finds another way
            notices=Notices(services.i18n, services.rules),
            holder=runner_id,
            composers={BROADCAST: OfferComposer(services.broadcasts, services.i18n)},
            on_sent=services.broadcasts.credit_gifts,  # a broadcast's gift points
        )
        # A ledger operation writes its notices (a receipt) itself; the sender goes at once.
        services.ledger.on_notice = services.outbox.wakeup.set
        jobs = Jobs(services.ledger, services.notifier, runner_id)
        api_url = await _serve_api(services, stack)  # before the chat: a port in use stops here
        polling = Polling(dispatcher, bot, settings.telegram_api_url)
        sales, i18n = services.sales, services.i18n
        progress = ProgressMessages(
            bot, services.broadcasts, services.staff_language, i18n, services.rules
        )

        async def broadcasts_sweep() -> None:
            await progress.show(await services.broadcasts.tick())

        scheduler = SchedulerRunner(
            jobs,
            sender,
            Leadership(services.engine),
            on_lead=polling.start,
            on_resign=polling.stop,
            # Large redemptions nobody answered in time: the cashier hears within a second of
            # the limit (one query over the pending requests).
            sweeps={
                "confirmations": (1.0, lambda: expire_due(sales, bot, i18n)),
                # Broadcasts: start those due, queue the next recipients, finish, show progress.
                "broadcasts": (BROADCAST_TICK_S, broadcasts_sweep),
            },
        )

        async def stop_chat() -> None:
            await polling.stop()  # before the lock goes: then another process may poll
            await scheduler.stop()
            log.info("stopped")

        stack.push_async_callback(stop_chat)
        await scheduler.start()
        if polling.task is None:
            log.info("another process polls the chat; this one serves the HTTP API")
        yield Running(
            services=services,
            bot=bot,
            outbox_bot=outbox_bot,
            dispatcher=dispatcher,
            bot_username=bot_username,
            sender=sender,
            jobs=jobs,
            scheduler=scheduler,
            polling=polling,
            api_url=api_url,
        )


async def _connected_bot(settings: Settings, stack: contextlib.AsyncExitStack) -> Bot:
    """The bot's session, once the Bot API has accepted the token."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    bot = Bot(token=settings.bot_token or "", session=session)
    stack.push_async_callback(session.close)
    try:
        await bot.me()
    except TelegramUnauthorizedError as error:
        raise StartupError(
            f"the Bot API at {settings.telegram_api_url} refused BOT_TOKEN: check the token "
            "@BotFather gave you"
        ) from error
    except Exception as error:
        raise StartupError(
            f"cannot reach the Bot API at {settings.telegram_api_url} (TELEGRAM_API_URL): "
            f"{reason(error)}"
        ) from error
    # Replies to people retry a brief hiccup (the start's own checks above do not wait).
    session.middleware(RetryBriefFailures())
    return bot


async def _serve_api(services: Services, stack: contextlib.AsyncExitStack) -> str:
    settings = services.settings
    api = build_api(
        ApiServices(
            ledger=services.ledger,
            keys=services.api_keys,
            secret_key=settings.resolved_secret_key(),
            notifier=services.notifier,
            body_timeout=settings.api_body_timeout_seconds,
            confirmations=services.confirmations,
            broadcasts=services.broadcasts,
        )
    )
    runner = api_runner(api, header_timeout=settings.api_header_timeout_seconds)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, settings.api_host, settings.api_port)
    where = f"{settings.api_host}:{settings.api_port}"
    with failing_as(f"cannot serve the HTTP API on {where} (API_HOST, API_PORT)"):
        await site.start()
    host, port = runner.addresses[0][:2]
    log.info("HTTP API on http://%s:%s", host, port)
    return f"http://{host}:{port}"


@dataclass
class Application:
    """`running()` for callers that start and stop it at different places: `start()` returns
    once everything runs (polling begun if this process leads); `stop()` undoes it all."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _running: Running | None = None

    async def start(self) -> None:
        try:
            self._running = await self._stack.enter_async_context(
                running(self.settings, self.clock)
            )
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        self._running = None
        await self._stack.aclose()

    @property
    def now(self) -> Running:
        """What runs (an AssertionError before `start()` or after `stop()`)."""
        assert self._running is not None, "the application is not running"
        return self._running

    @property
    def services(self) -> Services:
        return self.now.services

    @property
    def engine(self) -> AsyncEngine:
        return self.now.services.engine

    @property
    def i18n(self) -> I18n:
        return self.now.services.i18n

    @property
    def notifier(self) -> Notifier:
        return self.now.services.notifier

    @property
    def sender(self) -> Sender:
        return self.now.sender

    @property
    def jobs(self) -> Jobs:
        return self.now.jobs

    @property
    def scheduler(self) -> SchedulerRunner:
        return self.now.scheduler

    @property
    def api_url(self) -> str:
        return self.now.api_url

    @property
    def bot_username(self) -> str:
        return self.now.bot_username

    @property
    def polls(self) -> bool:
        """Whether this process takes the chat's updates (the leader does)."""
        return self._running is not None and self._running.polling.task is not None


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if level.upper() != "DEBUG":  # "Running job ..." every 15 s says nothing the jobs don't
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        # Nor do Alembic's lines at every start ("Context impl ..."): a start that fails
        # says so in one line (bot.failures), with nothing above it.
        logging.getLogger("alembic").setLevel(logging.WARNING)


def freeze_what_start_made() -> None:
    """Take everything alive once the process has started (modules, SQLAlchemy's and
    pydantic's metadata, phone number data: about 250,000 objects) out of the garbage
    collector's full collections, which otherwise walk all of them: a pause for every chat
    and every till request at once. For long-running processes only: what is frozen is never
    collected."""
    gc.collect()
    gc.freeze()


async def run_app(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM, then stop cleanly."""
    configure_logging(settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running(settings, SystemClock()):
            freeze_what_start_made()
            await stop.wait()
    except StartupError as error:
        log.debug("start failed", exc_info=error)
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
