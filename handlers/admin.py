"""Admins manage staff roles: /staff add|remove|list. Every change is audited."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.common import HasRole
from ledger.service import LedgerService
from staff.roles import Role, StaffService

TELEGRAM_ID_LIMIT = 2**52  # Telegram's user ids are positive and have at most 52 bits


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
) -> None:
    args = (command.args or "").split()
    admin_id = message.from_user.id if message.from_user else 0
    if args[:1] == ["list"]:
        await message.answer(await _staff_list(staff))
        return
    if len(args) != 3 or args[0] not in {"add", "remove"}:
        await message.answer(_("staff-usage").format(roles=_roles_text()))
        return
    action, who, role_name = args
    try:
        role = Role(role_name.lower())
    except ValueError:
        await message.answer(_("staff-unknown-role").format(role=role_name, roles=_roles_text()))
        return
    if who.lstrip("-").isdigit() and not 0 < int(who) < TELEGRAM_ID_LIMIT:
        await message.answer(_("staff-bad-id").format(who=who))
        return
    target_id, username = await _resolve_person(who, staff, ledger)
    if target_id is None:
        await message.answer(_("staff-unknown-user").format(who=who))
        return
    role_label = _(f"role-{role.value}")
    if action == "add":
        if await staff.grant(target_id, role, by=admin_id, username=username):
            await message.answer(_("staff-granted").format(who=who, role=role_label))
            await _tell_new_staff(bot, ledger, i18n, target_id, role)
        else:
            await message.answer(_("staff-already").format(who=who, role=role_label))
        return
    if role is Role.ADMIN and target_id in staff.admin_ids:
        await message.answer(_("staff-cannot-remove-env-admin").format(who=who))
    elif await staff.revoke(target_id, role, by=admin_id):
        await message.answer(_("staff-revoked").format(who=who, role=role_label))
    else:
        await message.answer(_("staff-not-had").format(who=who, role=role_label))


async def _resolve_person(
    who: str, staff: StaffService, ledger: LedgerService
) -> tuple[int | None, str | None]:
    """A numeric id as is; an @username among members (who opened the bot) or staff."""
    if who.lstrip("-").isdigit():
        return int(who), None
    username = who.lstrip("@").lower()
    if not username:
        return None, None
    member = await ledger.member_by_username(username)
    if member is not None and member.telegram_id is not None:
        return member.telegram_id, username
    return await staff.find_by_username(username), username


async def _staff_list(staff: StaffService) -> str:
    people = await staff.list_staff()
    if not people:
        return _("staff-list-empty")
    lines = [_("staff-list-title")]
    for person in people:
        who = f"@{person.username}" if person.username else str(person.telegram_id)
        line = _("staff-list-line").format(who=who, role=_(f"role-{person.role.value}"))
        if person.granted_at is None:
            line += " " + _("staff-from-env")
        lines.append(line)
    return "\n".join(lines)


async def _tell_new_staff(
    bot: Bot, ledger: LedgerService, i18n: I18n, telegram_id: int, role: Role
) -> None:
    """A courtesy note to the person; failing to deliver it changes nothing."""
    member = await ledger.member_by_telegram(telegram_id)
    language = member.language if member else i18n.default_locale
    text = i18n.gettext("staff-you-were-granted", locale=language).format(
        role=i18n.gettext(f"role-{role.value}", locale=language)
    )
    try:
        await bot.send_message(telegram_id, text)
    except Exception:
        return
