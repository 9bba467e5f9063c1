"""Per-update context: who the sender is in the program, and a guard for foreign callbacks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, TelegramObject, User
from aiogram.utils.i18n import gettext as _

from ledger.service import LedgerService
from staff.roles import StaffService


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
        data["member"] = await self.ledger.member_by_telegram(user.id) if user else None
        data["roles"] = await self.staff.roles_of(user.id) if user else frozenset()
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
