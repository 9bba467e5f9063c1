"""The process: settings -> database -> services -> bot and dispatcher -> polling (and, as they
arrive, the HTTP API and the scheduler). The only module that knows how the pieces are wired."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from dataclasses import dataclass, field
from datetime import timedelta

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import ErrorEvent
from aiogram.utils.i18n import I18n
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import ApiServices, api_runner, build_api
from api.keys import ApiKeyService
from bot.failures import StartupError, failing_as, failing_database, reason, safe_url
from bot.i18n import MemberLanguageMiddleware, build_i18n
from bot.middlewares import MemberMiddleware, OwnChatCallbackMiddleware
from bot.retries import RetryBriefFailures
from bot.settings import Settings
from cards.service import CardService
from handlers.admin import build_admin_router, build_staff_help_router
from handlers.cashier import build_cashier_router, build_confirmation_router
from handlers.commands import set_all_staff_commands, set_member_commands
from handlers.fallback import build_anytime_router, build_fallback_router
from handlers.member import build_member_router
from handlers.onboarding import build_onboarding_router
from handlers.support import build_support_router
from ledger.clock import Clock, SystemClock
from ledger.rules import Rules, RulesError, load_rules
from ledger.service import LedgerService
from messaging.languages import StaffLanguage
from messaging.notices import Notices
from messaging.notifier import Notifier, SupportNews
from messaging.outbox import Outbox
from messaging.sender import Sender
from scheduler.jobs import Jobs, Leadership, SchedulerRunner, new_runner_id
from staff.audit import AuditLog
from staff.roles import StaffService
from staff.sales import ConfirmationService
from storage.engine import create_engine
from storage.migrate import upgrade_schema
from storage.transactions import SyncDatabase, share_the_gil_quickly
from support.tickets import TicketService

log = logging.getLogger("loyalty")
_PINNED_RESPONSE_TYPES: list[object] = []


def pin_response_types() -> None:
    """aiogram parametrizes `Response[...]` for every call and pydantic keeps those classes
    only weakly, so each garbage collection drops them and the next call rebuilds one (3-16 ms
    each; measured by bench/updates.py). Holding them once keeps them built."""
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


@dataclass
class Services:
    """Everything handlers may ask for, passed to them as keyword arguments."""

    rules: Rules
    ledger: LedgerService
    tickets: TicketService
    cards: CardService
    settings: Settings
    outbox: Outbox
    audit: AuditLog
    staff: StaffService
    api_keys: ApiKeyService
    confirmations: ConfirmationService  # large redemptions, asked for by a cashier or a till


@dataclass
class Application:
    """One running program. `start()` returns once polling has begun; `stop()` undoes it all."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    engine: AsyncEngine | None = None
    bot: Bot | None = None
    outbox_bot: Bot | None = None  # the outbox's sends: its own session, its own retries
    dispatcher: Dispatcher | None = None
    services: Services | None = None
    i18n: I18n | None = None
    bot_username: str = ""
    api_url: str = ""
    sender: Sender | None = None
    notifier: Notifier | None = None
    support_news: SupportNews | None = None
    scheduler: SchedulerRunner | None = None
    jobs: Jobs | None = None
    _polling: asyncio.Task[None] | None = None
    _api_runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Start everything; a StartupError says in one line what could not start (whatever
        had started is stopped by `stop()`)."""
        pin_response_types()
        settings = self.settings
        try:
            rules = load_rules(settings.rules_file)
        except RulesError as error:
            raise StartupError(str(error)) from error
        with failing_database(settings.database_url):
            self.engine = create_engine(settings.database_url)
            await upgrade_schema(self.engine)
        audit = AuditLog(self.engine, self.clock)
        db = SyncDatabase(self.engine)  # the ledger's and the cards' sync transactions
        share_the_gil_quickly()  # the writer thread and the event loop share one GIL
        self.services = Services(
            rules=rules,
            ledger=LedgerService(self.engine, rules, self.clock, db),
            tickets=TicketService(self.engine, self.clock),
            cards=CardService(self.engine, settings.resolved_secret_key(), self.clock, db),
            settings=settings,
            outbox=Outbox(self.engine, self.clock),
            audit=audit,
            staff=StaffService(self.engine, settings.admin_ids, audit, self.clock),
            api_keys=ApiKeyService(self.engine, self.clock, db),
            confirmations=ConfirmationService(
                self.engine, self.clock, ttl=timedelta(seconds=settings.redemption_confirm_seconds)
            ),
        )
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
        self.bot = Bot(token=settings.bot_token or "", session=session)
        try:
            me = await self.bot.get_me()
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
        self.bot_username = me.username or ""
        # Replies to people retry a brief hiccup (the start's own checks above do not wait).
        session.middleware(RetryBriefFailures())
        self.i18n = build_i18n()
        self.notifier = Notifier(self.i18n, self.services.ledger, self.services.outbox)
        staff_language = StaffLanguage(self.services.ledger, self.i18n, self.services.staff)
        self.support_news = SupportNews(
            self.notifier, self.services.staff, staff_language, self.services.tickets
        )
        self.dispatcher = self._build_dispatcher(self.services, self.i18n)
        if settings.redis_url:
            with failing_as(f"cannot reach Redis at {safe_url(settings.redis_url)} (REDIS_URL)"):
                await self.dispatcher.storage.redis.ping()  # type: ignore[attr-defined]
        await set_member_commands(self.bot, self.i18n)
        await set_all_staff_commands(self.bot, self.i18n, await self.services.staff.list_staff())
        await self.bot.delete_webhook(drop_pending_updates=False)
        # The outbox retries in its own way: its sends go through a session of their own,
        # without the replies' retries (bot/retries.py).
        self.outbox_bot = Bot(
            token=settings.bot_token or "",
            session=AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url)),
        )
        runner_id = new_runner_id()
        self.sender = Sender(
            self.services.outbox,
            self.outbox_bot,
            rules.messages,
            rate_per_second=settings.send_rate_per_second,
            per_chat_interval=settings.send_per_chat_interval,
            on_undelivered=self.support_news.undelivered,  # support's news finds another way
            notices=Notices(self.i18n, rules),
            holder=runner_id,
        )
        # A ledger operation writes its notices (a receipt) itself; the sender goes at once.
        self.services.ledger.on_notice = self.services.outbox.wakeup.set
        self.jobs = Jobs(self.services.ledger, self.notifier, runner_id)
        await self._start_api(settings)  # before the chat: a port in use stops the start here
        # Telegram hands updates to one poller at a time (a second one gets 409 Conflict, and
        # both keep losing), so with several processes only the leader polls; the others serve
        # the HTTP API, and one of them takes over the chat when the leader goes away.
        self.scheduler = SchedulerRunner(
            self.jobs,
            self.sender,
            Leadership(self.engine),
            on_lead=self._start_polling,
            on_resign=self._stop_polling,
        )
        await self.scheduler.start()
        if self._polling is None:
            log.info("another process polls the chat; this one serves the HTTP API")

    @property
    def polls(self) -> bool:
        """Whether this process takes the chat's updates (the leader does)."""
        return self._polling is not None

    async def _start_polling(self) -> None:
        assert self.dispatcher is not None and self.bot is not None
        if self._polling is not None:
            return
        self._polling = asyncio.create_task(
            self.dispatcher.start_polling(
                self.bot,
                handle_signals=False,
                close_bot_session=False,
                allowed_updates=self.dispatcher.resolve_used_update_types(),
            ),
            name="polling",
        )
        log.info("bot @%s is polling %s", self.bot_username, self.settings.telegram_api_url)

    async def _stop_polling(self) -> None:
        polling, self._polling = self._polling, None
        if polling is None or self.dispatcher is None:
            return
        with contextlib.suppress(RuntimeError):  # polling already stopped
            await self.dispatcher.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await polling

    async def _start_api(self, settings: Settings) -> None:
        assert self.services is not None
        api = build_api(
            ApiServices(
                ledger=self.services.ledger,
                keys=self.services.api_keys,
                secret_key=settings.resolved_secret_key(),
                notifier=self.notifier,
                body_timeout=settings.api_body_timeout_seconds,
                confirmations=self.services.confirmations,
            )
        )
        self._api_runner = api_runner(api, header_timeout=settings.api_header_timeout_seconds)
        await self._api_runner.setup()
        site = web.TCPSite(self._api_runner, settings.api_host, settings.api_port)
        where = f"{settings.api_host}:{settings.api_port}"
        with failing_as(f"cannot serve the HTTP API on {where} (API_HOST, API_PORT)"):
            await site.start()
        host, port = self._api_runner.addresses[0][:2]
        self.api_url = f"http://{host}:{port}"
        log.info("HTTP API on %s", self.api_url)

    def _build_dispatcher(self, services: Services, i18n: I18n) -> Dispatcher:
        assert self.support_news is not None
        dispatcher = Dispatcher(storage=self._fsm_storage())
        dispatcher.workflow_data.update(
            rules=services.rules,
            ledger=services.ledger,
            tickets=services.tickets,
            cards=services.cards,
            settings=services.settings,
            bot_username=self.bot_username,
            outbox=services.outbox,
            audit=services.audit,
            staff=services.staff,
            notifier=self.notifier,
            confirmations=services.confirmations,
            staff_language=self.support_news.staff_language,
            support_news=self.support_news,
        )
        dispatcher.update.outer_middleware(MemberMiddleware(services.ledger, services.staff))
        MemberLanguageMiddleware(i18n).setup(dispatcher)
        dispatcher.callback_query.outer_middleware(OwnChatCallbackMiddleware())
        dispatcher.include_routers(
            build_admin_router(),
            build_cashier_router(),  # first: a command in the middle of a sale ends the sale
            build_support_router(),
            build_confirmation_router(),
            # Before joining's steps, which take every message while they wait for a consent
            # or a phone: staff who pressed /start still get their help, and anyone their id.
            build_anytime_router(),
            build_staff_help_router(),
            build_onboarding_router(),
            build_member_router(),
            build_fallback_router(),
        )
        dispatcher.errors.register(_on_error)
        return dispatcher

    def _fsm_storage(self) -> BaseStorage:
        if self.settings.redis_url:
            from aiogram.fsm.storage.base import DefaultKeyBuilder
            from aiogram.fsm.storage.redis import RedisStorage

            # Keys carry the bot's id: bots of several shops may share one Redis.
            keys = DefaultKeyBuilder(with_bot_id=True)
            return RedisStorage.from_url(self.settings.redis_url, key_builder=keys)
        return MemoryStorage()

    async def stop(self) -> None:
        if self._api_runner is not None:
            await self._api_runner.cleanup()
        await self._stop_polling()  # before the lock goes: then another process may poll
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.dispatcher is not None:
            await self.dispatcher.storage.close()
        for bot in (self.bot, self.outbox_bot):
            if bot is not None:
                await bot.session.close()
        if self.services is not None:
            await self.services.api_keys.close()
            self.services.ledger.db.close()
        if self.engine is not None:
            await self.engine.dispose()
        if self.scheduler is not None:  # it had started (a failed start says why instead)
            log.info("stopped")


async def _on_error(event: ErrorEvent) -> bool:
    """Log the failure (no personal data) and tell the person something went wrong."""
    from aiogram.utils.i18n import gettext as _

    update = event.update
    log.exception(
        "update %s failed: %s",
        update.update_id,
        type(event.exception).__name__,
        exc_info=event.exception,
    )
    with contextlib.suppress(Exception):
        if update.message is not None:
            await update.message.answer(_("error-generic"))
        elif update.callback_query is not None:
            await update.callback_query.answer(_("error-generic"), show_alert=True)
    return True


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
    collector's full collections, which otherwise walk all of them: one took 170 ms on the
    benchmark machine, a pause for every chat and every till request at once; after this,
    4-5 ms (bench/api.py, PostgreSQL: p99 143-165 ms -> 113-120 ms). For long-running
    processes only: what is frozen is never collected."""
    gc.collect()
    gc.freeze()


async def run_app(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM, then stop cleanly."""
    configure_logging(settings.log_level)
    app = Application(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
    except StartupError as error:
        log.debug("start failed", exc_info=error)
        await app.stop()
        print(f"error: {error}", file=sys.stderr)
        return 1
    freeze_what_start_made()
    try:
        await stop.wait()
    finally:
        await app.stop()
    return 0
