"""The command menus Telegram shows beside the text field: the members' everywhere, and for each
staff member, in their own chat, the members' plus those of their roles."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from aiogram.utils.i18n import I18n

from staff.roles import Role, StaffMember

log = logging.getLogger("loyalty.commands")

MEMBER_COMMANDS = ("start", "card", "balance", "history", "invite", "settings", "support", "help")
ROLE_COMMANDS: dict[Role, tuple[str, ...]] = {
    Role.CASHIER: ("sale", "cancel"),
    Role.SUPPORT: ("tickets", "member"),
    Role.MARKETER: ("broadcast", "broadcasts", "segments", "cancel"),
    Role.ADMIN: (
        "sale",
        "cancel",
        "tickets",
        "member",
        "broadcast",
        "broadcasts",
        "segments",
        "staff",
    ),
}


def commands_for(roles: frozenset[Role], i18n: I18n, locale: str) -> list[BotCommand]:
    names = list(MEMBER_COMMANDS)
    for role in Role:  # in a fixed order, each command once
        if role in roles:
            names += [name for name in ROLE_COMMANDS[role] if name not in names]
    return [
        BotCommand(command=name, description=i18n.gettext(f"cmd-{name}", locale=locale))
        for name in names
    ]


async def set_member_commands(bot: Bot, i18n: I18n) -> None:
    """For everyone, per language (and for the languages the bot does not speak)."""
    for language in (None, *sorted(i18n.available_locales)):
        commands = commands_for(frozenset(), i18n, language or i18n.default_locale)
        await bot.set_my_commands(commands, scope=BotCommandScopeDefault(), language_code=language)


async def set_staff_commands(
    bot: Bot, i18n: I18n, telegram_id: int, roles: frozenset[Role]
) -> None:
    """The menu in one staff member's chat; without roles, back to the members' menu. A chat
    Telegram does not know yet (they never opened the bot) is left alone."""
    scope = BotCommandScopeChat(chat_id=telegram_id)
    try:
        for language in (None, *sorted(i18n.available_locales)):
            if roles:
                commands = commands_for(roles, i18n, language or i18n.default_locale)
                await bot.set_my_commands(commands, scope=scope, language_code=language)
            else:
                await bot.delete_my_commands(scope=scope, language_code=language)
    except TelegramAPIError as error:
        log.info("no command menu for a staff chat: %s", type(error).__name__)


async def set_all_staff_commands(bot: Bot, i18n: I18n, staff: list[StaffMember]) -> None:
    """At start: the menu of everyone with a role (admins from ADMIN_IDS included)."""
    roles: dict[int, set[Role]] = {}
    for person in staff:
        roles.setdefault(person.telegram_id, set()).add(person.role)
    for telegram_id, theirs in roles.items():
        await set_staff_commands(bot, i18n, telegram_id, frozenset(theirs))
