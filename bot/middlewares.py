"""Per-update context: who the sender is in the program, and a guard for foreign callbacks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, TelegramObject, User
from aiogram.utils.i18n import gettext as _
from sqlalchemy import Connection, Row

from ledger.service import LedgerService
from messaging.languages import language_for
from staff.roles import Role, SeenAs, StaffService


class MemberMiddleware(BaseMiddleware):
    """Puts `member` (MemberView or None) and `roles` (the sender's staff roles) into the
    handler data for every update."""

    def __init__(self, ledger: LedgerService, staff: StaffService) -> None:
        self.ledger = ledger
        self.staff = staff

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None:
            data["member"], data["roles"] = None, frozenset()
        else:
            telegram_id = user.id

            def who(
                conn: Connection,
            ) -> tuple[Row[Any] | None, tuple[frozenset[Role], SeenAs | None]]:
                row = self.ledger.member_row_by_telegram(conn, telegram_id)
                return row, self.staff.roles_and_seen_in(conn, telegram_id)

            row, (roles, known) = await self.ledger.db.read(who)  # one read per update
            data["member"] = self.ledger.view(row) if row is not None else None
            data["roles"] = roles
            seen = SeenAs(language_for(user.language_code), user.username, user.first_name)
            if roles and row is None and known != seen:
                # Staff who are not members: the bot learns their language and name only from
                # their own updates, and needs them to write to them first (a new request,
                # say) and for admins to find and list them.
                await self.staff.remember_seen(telegram_id, seen)
        return await handler(event, data)


class OwnChatCallbackMiddleware(BaseMiddleware):
    """A button press counts only from the chat the button was sent to: in a private chat
    that is the presser's own. Anything else (a forged or relayed callback) is refused."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if isinstance(event, CallbackQuery):
            message = event.message
            if message is None or message.chat.id != event.from_user.id:
                await event.answer(_("button-stale"), show_alert=True)
                return None
        return await handler(event, data)
