"""Building the program's parts: settings -> database -> the services (one typed registry,
`Services`) -> the dispatcher that hands them to the handlers. Nothing here runs: bot.run starts
and stops what is built (polling, the HTTP API, the scheduler)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from aiogram import Dispatcher
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import ErrorEvent
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncEngine

from api.keys import ApiKeyService
from bot.failures import StartupError, failing_database
from bot.i18n import MemberLanguageMiddleware, build_i18n
from bot.middlewares import MemberMiddleware, OwnChatCallbackMiddleware
from bot.settings import Settings
from cards.service import CardService
from handlers.admin import build_admin_router, build_staff_help_router
from handlers.broadcasts import build_broadcasts_router, build_offers_router
from handlers.cashier import build_cashier_router
from handlers.composer import build_composer_router
from handlers.fallback import build_anytime_router, build_fallback_router
from handlers.history import build_history_router
from handlers.member import build_member_router
from handlers.onboarding import build_onboarding_router
from handlers.redemptions import build_confirmation_router
from handlers.requests import build_requests_router
from handlers.settings import build_settings_router
from handlers.support import build_support_router
from ledger.clock import Clock
from ledger.rules import Rules, RulesError, load_rules
from ledger.service import LedgerService
from marketing.broadcasts import Broadcasts
from marketing.saved import Segments
from messaging.languages import StaffLanguage
from messaging.notifier import Notifier, SupportNews
from messaging.outbox import Outbox
from staff.audit import AuditLog
from staff.roles import StaffService
from staff.sales import ConfirmationService
from storage.engine import create_engine
from storage.migrate import upgrade_schema
from storage.transactions import SyncDatabase, share_the_gil_quickly
from support.tickets import TicketService
from usecases.desk import Desk
from usecases.privacy import Privacy
from usecases.sales import Sales

log = logging.getLogger("loyalty")


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the handlers, the HTTP API and the jobs may use. Each field reaches a handler
    as the keyword argument of its name (build_dispatcher): this list is the only one."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine
    rules: Rules
    i18n: I18n
    ledger: LedgerService
    tickets: TicketService
    cards: CardService
    outbox: Outbox
    audit: AuditLog
    staff: StaffService
    api_keys: ApiKeyService
    confirmations: ConfirmationService  # large redemptions, asked for by a cashier or a till
    notifier: Notifier
    staff_language: StaffLanguage
    support_news: SupportNews
    segments: Segments  # a marketer's segments: counts, saved ones
    broadcasts: Broadcasts
    # The use cases' contexts (usecases/): one small object each.
    sales: Sales
    desk: Desk
    privacy: Privacy

    def as_kwargs(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


async def build_services(settings: Settings, clock: Clock) -> Services:
    """Load the rules, open and migrate the database, and build every service on it. A
    StartupError says in one line what is wrong (the engine is disposed of then)."""
    try:
        rules = load_rules(settings.rules_file)
    except RulesError as error:
        raise StartupError(str(error)) from error
    with failing_database(settings.database_url):
        engine = create_engine(settings.database_url)
        try:
            await upgrade_schema(engine)
        except BaseException:
            await engine.dispose()
            raise
    audit = AuditLog(engine, clock)
    db = SyncDatabase(engine)  # the ledger's and the cards' sync transactions
    share_the_gil_quickly()  # the writer thread and the event loop share one GIL
    ledger = LedgerService(engine, rules, clock, db)
    tickets = TicketService(engine, clock)
    outbox = Outbox(engine, clock, db)
    staff = StaffService(engine, settings.admin_ids, audit, clock)
    confirmations = ConfirmationService(
        engine, clock, ttl=timedelta(seconds=settings.redemption_confirm_seconds)
    )
    i18n = build_i18n()
    notifier = Notifier(i18n, ledger, outbox)
    staff_language = StaffLanguage(ledger, i18n, staff)
    return Services(
        settings=settings,
        clock=clock,
        engine=engine,
        rules=rules,
        i18n=i18n,
        ledger=ledger,
        tickets=tickets,
        cards=CardService(engine, settings.resolved_secret_key(), clock, db),
        outbox=outbox,
        audit=audit,
        staff=staff,
        api_keys=ApiKeyService(engine, clock, db),
        confirmations=confirmations,
        notifier=notifier,
        staff_language=staff_language,
        support_news=SupportNews(notifier, staff, staff_language, tickets),
        segments=Segments(engine, rules, clock, audit),
        broadcasts=Broadcasts(ledger, outbox),
        sales=Sales(ledger=ledger, confirmations=confirmations, notifier=notifier),
        desk=Desk(ledger=ledger, notifier=notifier),
        privacy=Privacy(ledger=ledger),
    )


async def close_services(services: Services) -> None:
    await services.api_keys.close()
    services.cards.close()
    services.ledger.db.close()
    await services.engine.dispose()


def build_dispatcher(services: Services, *, bot_username: str) -> Dispatcher:
    """The dispatcher with every router; the services (and the bot's @username, known once it
    has reached Telegram) are the handlers' keyword arguments."""
    dispatcher = Dispatcher(storage=fsm_storage(services.settings))
    dispatcher.workflow_data.update(services.as_kwargs(), bot_username=bot_username)
    dispatcher.update.outer_middleware(MemberMiddleware(services.ledger, services.staff))
    MemberLanguageMiddleware(services.i18n).setup(dispatcher)
    dispatcher.callback_query.outer_middleware(OwnChatCallbackMiddleware())
    dispatcher.include_routers(
        build_offers_router(),  # a member's "Unsubscribe from offers", in any state
        build_admin_router(),
        build_cashier_router(),  # first: a command in the middle of a sale ends the sale
        build_support_router(),
        build_composer_router(),  # /broadcast (marketers, admins)
        build_broadcasts_router(),  # /broadcasts, /segments, progress buttons
        build_confirmation_router(),
        # Before joining's steps, which take every message while they wait for a consent
        # or a phone: staff who pressed /start still get their help, and anyone their id.
        build_anytime_router(),
        build_staff_help_router(),
        build_onboarding_router(),
        build_member_router(),  # the menu: before the screens that take free text
        build_history_router(),
        build_settings_router(),
        build_requests_router(),
        build_fallback_router(),
    )
    dispatcher.errors.register(_on_error)
    return dispatcher


def fsm_storage(settings: Settings) -> BaseStorage:
    if settings.redis_url:
        from aiogram.fsm.storage.redis import RedisStorage

        # Keys carry the bot's id: bots of several shops may share one Redis.
        keys = DefaultKeyBuilder(with_bot_id=True)
        return RedisStorage.from_url(settings.redis_url, key_builder=keys)
    return MemoryStorage()


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
