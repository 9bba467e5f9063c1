"""The filters the routers share: who may use a router (a member, a staff role) and whether a
message is a press of the main menu."""

from __future__ import annotations

from typing import Any

from aiogram.filters import BaseFilter
from aiogram.types import Message
from aiogram.utils.i18n import I18n

from handlers.keyboards import MENU_ROWS
from ledger.views import MemberView
from staff.roles import Role


class IsMember(BaseFilter):
    """Passes when the sender is a registered member (see bot.middlewares.MemberMiddleware)."""

    def __init__(self, registered: bool = True) -> None:
        self.registered = registered

    async def __call__(self, event: Any, member: MemberView | None = None) -> bool:
        return (member is not None) == self.registered


class HasRole(BaseFilter):
    """Passes when the sender has one of the staff roles (see bot.middlewares)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    async def __call__(self, event: Any, roles: frozenset[Role] = frozenset()) -> bool:
        return bool(self.roles & roles)


class MenuButton(BaseFilter):
    """A press of one of these main-menu buttons (any of them if none is named), in whichever
    language the keyboard was drawn."""

    def __init__(self, *keys: str) -> None:
        self.keys = keys or tuple(key for row in MENU_ROWS for key in row)

    async def __call__(self, message: Message, i18n: I18n) -> bool:
        if not message.text:
            return False
        labels = {i18n.gettext(key, locale=lang) for key in self.keys for lang in i18n.locales}
        return message.text in labels
