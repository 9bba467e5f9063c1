"""What every router shares: the menu, filters, callback data, what people type.

No words live here: every text comes from the locales through gettext. How numbers, points
and dates read is messaging/texts.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiogram.filters import BaseFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.types import KeyboardButton, Message, ReplyKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from pydantic import Field

from ledger.views import MemberView
from staff.roles import Role

# The actor of what staff do in the bot, in the journal and the audit: "tg:<telegram id>".
STAFF_ACTOR = "tg:"

MENU_ROWS = (
    ("menu-card", "menu-balance"),
    ("menu-history", "menu-invite"),
    ("menu-settings", "menu-support"),
)


# ------------------------------------------------------------------ callback data
# A button's data comes from the person's client and can be anything: out-of-range numbers
# do not unpack (the fallback answers "this button is no longer active"), and every value
# that does is checked again against what the server knows.

RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]  # a member, entry or request number
Points = Annotated[int, Field(ge=0, le=2**31 - 1)]
Page = Annotated[int, Field(ge=0, le=2**31 - 1)]


class HistoryPageCb(CallbackData, prefix="hist"):
    page: Page


class DisputeListCb(CallbackData, prefix="dlist"):
    page: Page


class DisputeEntryCb(CallbackData, prefix="disp"):
    entry_id: RowId


class ConsentCb(CallbackData, prefix="consent"):
    pass


class SettingsCb(CallbackData, prefix="set"):
    action: str  # menu | lang | notify | birthday | delete | delete_yes | delete_no
    value: str = ""


# ------------------------------------------------------------------------ filters


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


# ---------------------------------------------------------------------- keyboards


def staff_help(roles: frozenset[Role]) -> list[str]:
    """What each of these roles can do, a paragraph each (admins can do everything)."""
    lines = []
    if roles & {Role.CASHIER, Role.ADMIN}:
        lines.append(_("cashier-help"))
    if roles & {Role.SUPPORT, Role.ADMIN}:
        lines.append(_("support-help"))
    if Role.MARKETER in roles:
        lines.append(_("marketer-help"))
    if Role.ADMIN in roles:
        lines.append(_("admin-help"))
    return lines


def main_menu() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=_(key)) for key in row] for row in MENU_ROWS],
        resize_keyboard=True,
        is_persistent=True,
        input_field_placeholder=_("menu-placeholder"),
    )


# ----------------------------------------------------------------- what people type


def plain_number(text: str, limit: int) -> int | None:
    """A whole number typed in ASCII digits, from 0 to `limit`; None for anything else
    ("²" and "٣" are digits to str.isdigit, but not numbers anyone meant)."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(limit)):
        return None
    number = int(text)
    return number if number <= limit else None


def utf16_length(text: str) -> int:
    """The length Telegram counts a message's text in."""
    return len(text.encode("utf-16-le")) // 2
