"""Admins manage staff roles: /staff add|remove|list (every change is audited); /help for
staff who are not members."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.commands import set_staff_commands
from handlers.common import plain_number, staff_help
from handlers.filters import HasRole, IsMember
from ledger.service import LedgerService
from messaging.languages import StaffLanguage
from messaging.texts import shorten
from staff.roles import Role, StaffMember, StaffService

TELEGRAM_ID_LIMIT = 2**52  # Telegram's user ids are positive and have at most 52 bits
MAX_WHO = 40  # an @username has at most 32 characters, an id 16 digits


def _clip(text: str, limit: int = MAX_WHO) -> str:
    """What the admin typed, shortened for echoing back."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_staff_help_router() -> Router:
    """/help for staff who have not joined the program themselves (members get theirs)."""
    router = Router(name="staff-help")
    router.message.filter(HasRole(*Role), IsMember(registered=False), F.chat.type == "private")
    router.message.register(staff_help_command, Command("help"))
    return router


async def staff_help_command(message: Message, roles: frozenset[Role] = frozenset()) -> None:
    await message.answer("\n\n".join([*staff_help(roles), _("staff-help-join")]))


def build_admin_router() -> Router:
    router = Router(name="admin")
    router.message.filter(HasRole(Role.ADMIN), F.chat.type == "private")
    router.message.register(staff_command, Command("staff"))
    return router


def _roles_text() -> str:
    """The roles as typed in the command, with the reader's word where it differs."""
    parts = []
    for role in Role:
        label = _(f"role-{role.value}")
        parts.append(role.value if label == role.value else f"{role.value} ({label})")
    return ", ".join(parts)


async def staff_command(
    message: Message,
    command: CommandObject,
    staff: StaffService,
    ledger: LedgerService,
    bot: Bot,
    i18n: I18n,
    staff_language: StaffLanguage,
) -> None:
    args = (command.args or "").split()
    admin_id = message.from_user.id if message.from_user else 0
    if args[:1] == ["list"]:
        await message.answer(await _staff_list(staff, ledger))
        return
    if len(args) != 3 or args[0] not in {"add", "remove"}:
        await message.answer(_("staff-usage").format(roles=_roles_text()))
        return
    action, who, role_name = args
    try:
        role = Role(role_name.lower())
    except ValueError:
        await message.answer(
            _("staff-unknown-role").format(role=_clip(role_name), roles=_roles_text())
        )
        return
    numeric = who.lstrip("-").isdigit()  # "-5" and "²" too: refused here, never looked up
    if len(who) > MAX_WHO or (numeric and not plain_number(who, TELEGRAM_ID_LIMIT - 1)):
        await message.answer(_("staff-bad-id").format(who=_clip(who)))
        return
    target_id, username = await _resolve_person(who, staff, ledger, bot)
    if target_id is None:
        await message.answer(_("staff-unknown-user").format(who=who))
        return
    role_label = _(f"role-{role.value}")
    if action == "add":
        if await staff.grant(target_id, role, by=admin_id, username=username):
            await set_staff_commands(bot, i18n, target_id, await staff.roles_of(target_id))
            await message.answer(_("staff-granted").format(who=who, role=role_label))
            await _tell_new_staff(bot, staff_language, i18n, target_id, role)
        else:
            await message.answer(_("staff-already").format(who=who, role=role_label))
        return
    if role is Role.ADMIN and target_id in staff.admin_ids:
        await message.answer(_("staff-cannot-remove-env-admin").format(who=who))
    elif await staff.revoke(target_id, role, by=admin_id):
        await set_staff_commands(bot, i18n, target_id, await staff.roles_of(target_id))
        await message.answer(_("staff-revoked").format(who=who, role=role_label))
    else:
        await message.answer(_("staff-not-had").format(who=who, role=role_label))


async def _resolve_person(
    who: str, staff: StaffService, ledger: LedgerService, bot: Bot
) -> tuple[int | None, str | None]:
    """A numeric id as is (with their @username: the member's if they joined, else the one
    Telegram gives for a chat they opened); an @username among members or staff."""
    if who.lstrip("-").isdigit():
        telegram_id = int(who)
        member = await ledger.member_by_telegram(telegram_id)
        if member is not None and member.username:
            return telegram_id, member.username.lower()
        return telegram_id, await _telegram_username(bot, telegram_id)
    username = who.lstrip("@").lower()
    if not username:
        return None, None
    member = await ledger.member_by_username(username)
    if member is not None and member.telegram_id is not None:
        return member.telegram_id, username
    return await staff.find_by_username(username), username


async def _telegram_username(bot: Bot, telegram_id: int) -> str | None:
    """The @username of someone who opened a chat with the bot (None for anyone else)."""
    try:
        chat = await bot.get_chat(telegram_id)
    except TelegramAPIError:
        return None
    return chat.username.lower() if chat.username else None


async def _who(
    telegram_id: int, granted_as: str | None, staff: StaffService, ledger: LedgerService
) -> str:
    """ "Kate @kate (4100)": the name and @username as a member, else as their Telegram was
    last seen, else the @username they were granted a role under; the bare id if none."""
    member = await ledger.member_by_telegram(telegram_id)
    if member is not None:
        name, username = member.first_name, member.username
    else:
        seen = await staff.seen_as(telegram_id)
        name, username = (seen.first_name, seen.username) if seen else (None, None)
    username = username or granted_as
    parts = [shorten(name, 40) if name else "", f"@{username}" if username else ""]
    known = " ".join(part for part in parts if part)
    return f"{known} ({telegram_id})" if known else str(telegram_id)


async def _staff_list(staff: StaffService, ledger: LedgerService) -> str:
    """One line a person: "Kate @kate (4100) — cashier, support"."""
    people = await staff.list_staff()
    if not people:
        return _("staff-list-empty")
    by_person: dict[int, list[StaffMember]] = {}
    for person in people:
        by_person.setdefault(person.telegram_id, []).append(person)
    lines = [_("staff-list-title")]
    for telegram_id, grants in by_person.items():
        granted_as = next((grant.username for grant in grants if grant.username), None)
        who = await _who(telegram_id, granted_as, staff, ledger)
        roles = []
        for grant in grants:
            role = _(f"role-{grant.role.value}")
            roles.append(f"{role} {_('staff-from-env')}" if grant.granted_at is None else role)
        lines.append(_("staff-list-line").format(who=who, role=", ".join(roles)))
    return "\n".join(lines)


async def _tell_new_staff(
    bot: Bot, staff_language: StaffLanguage, i18n: I18n, telegram_id: int, role: Role
) -> None:
    """A courtesy note to the person, in their language if the bot knows it, else in the
    admin's; failing to deliver it changes nothing."""
    language = await staff_language(telegram_id, fallback=i18n.current_locale)
    text = i18n.gettext("staff-you-were-granted", locale=language).format(
        role=i18n.gettext(f"role-{role.value}", locale=language)
    )
    try:
        await bot.send_message(telegram_id, text)
    except Exception:
        return
