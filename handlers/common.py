"""What every router shares: the staff's actor, their help, reading what people type, and
editing a screen in place (the menu and callback data are in handlers.keyboards, the filters in
handlers.filters).

No words live here: every text comes from the locales through gettext. How numbers, points
and dates read is messaging/texts.py.
"""

from __future__ import annotations

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _

from staff.roles import Role


def staff_help(roles: frozenset[Role]) -> list[str]:
    """What each of these roles can do, a paragraph each (admins can do everything)."""
    lines = []
    if roles & {Role.CASHIER, Role.ADMIN}:
        lines.append(_("cashier-help"))
    if roles & {Role.SUPPORT, Role.ADMIN}:
        lines.append(_("support-help"))
    if roles & {Role.MARKETER, Role.ADMIN}:
        lines.append(_("marketer-help"))
    if Role.ADMIN in roles:
        lines.append(_("admin-help"))
    return lines


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


async def edit_in_place(message: Message, text: str, keyboard: InlineKeyboardMarkup | None) -> None:
    """Show `text` in place of the message; a second tap that would change nothing is quiet."""
    try:
        await message.edit_text(text, reply_markup=keyboard)
    except TelegramBadRequest as error:
        if "message is not modified" not in error.message:
            raise
