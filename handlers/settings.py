"""The member's settings: language, notifications, birthday, and erasing their data.

The menu (handlers.member) opens them; this router answers the settings' buttons and takes the
birthday the member then types.
"""

from __future__ import annotations

import re
from datetime import date

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, ReplyKeyboardRemove
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.common import edit_in_place
from handlers.filters import IsMember
from handlers.keyboards import SettingsCb, button, main_menu
from handlers.states import Asking
from ledger import policy
from ledger.errors import BirthdayAlreadySet, BirthdayInvalid
from ledger.rules import Rules
from ledger.service import LedgerService
from ledger.views import MemberView
from messaging.texts import full_date_text, points_text
from usecases.privacy import Privacy, erase_member

NOTIFY_FIELDS = ("notify_reminders", "notify_tier", "notify_offers")
# A birthday as people type it: 14.05.1990 (or with / or -), 1990-05-14, or 14.05 without the year.
_DAY_MONTH_YEAR = re.compile(r"(?P<day>\d{1,2})[./-](?P<month>\d{1,2})[./-](?P<year>\d{4})")
_YEAR_MONTH_DAY = re.compile(r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})")
_DAY_MONTH = re.compile(r"(?P<day>\d{1,2})[./](?P<month>\d{1,2})\.?")


def build_settings_router() -> Router:
    """The settings' buttons, and the birthday typed after asking for it."""
    router = Router(name="settings")
    router.message.filter(IsMember(), F.chat.type == "private")
    router.callback_query.filter(IsMember())
    # Free text while the birthday is asked for; the menu's buttons (an earlier router) win.
    router.message.register(receive_birthday, Asking.birthday)
    router.callback_query.register(settings_action, SettingsCb.filter())
    return router


async def show_settings(message: Message, member: MemberView, state: FSMContext) -> None:
    await state.clear()
    await message.answer(_("settings-title"), reply_markup=_settings_keyboard(member))


async def settings_action(
    callback: CallbackQuery,
    callback_data: SettingsCb,
    member: MemberView,
    ledger: LedgerService,
    privacy: Privacy,
    rules: Rules,
    i18n: I18n,
    state: FSMContext,
) -> None:
    action, value = callback_data.action, callback_data.value
    message = callback.message if isinstance(callback.message, Message) else None
    if message is None or not _known_setting(action, value, i18n):
        await callback.answer(_("button-stale"), show_alert=True)
        return
    if action == "lang" and value in i18n.available_locales:
        member = await ledger.update_profile(member.member_id, language=value)
        await callback.answer()
        with i18n.use_locale(value):
            await message.answer(_("language-changed"), reply_markup=main_menu())
            await message.answer(_("settings-title"), reply_markup=_settings_keyboard(member))
    elif action == "lang":
        await callback.answer()
        await edit_in_place(message, _("language-choose"), _language_keyboard(i18n))
    elif action == "notify" and value in NOTIFY_FIELDS:
        member = await ledger.update_profile(
            member.member_id, **{value: not getattr(member, value)}
        )
        await callback.answer(_("notify-saved"))
        await edit_in_place(message, _("notifications-title"), _notify_keyboard(member))
    elif action == "notify":
        await callback.answer()
        await edit_in_place(message, _("notifications-title"), _notify_keyboard(member))
    elif action == "birthday":
        await callback.answer()
        if member.birthday is not None:
            await message.answer(_("birthday-already").format(date=full_date_text(member.birthday)))
        else:
            await state.set_state(Asking.birthday)
            await message.answer(
                _("birthday-ask").format(points=points_text(rules.birthday.points))
            )
    elif action == "delete":
        await callback.answer()
        await message.answer(
            _("delete-confirm"),
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        button(_("delete-yes"), SettingsCb(action="delete_yes").pack()),
                        button(_("delete-no"), SettingsCb(action="delete_no").pack()),
                    ]
                ]
            ),
        )
    elif action == "delete_yes":
        await erase_member(privacy, member.member_id)
        await state.clear()
        await callback.answer()
        await message.edit_reply_markup(reply_markup=None)
        await message.answer(_("delete-done"), reply_markup=ReplyKeyboardRemove())
    elif action == "delete_no":
        await callback.answer()
        await edit_in_place(message, _("delete-cancelled"), None)
    elif action == "menu":
        await callback.answer()
        await edit_in_place(message, _("settings-title"), _settings_keyboard(member))
    else:
        await callback.answer(_("button-stale"), show_alert=True)


async def receive_birthday(
    message: Message, member: MemberView, ledger: LedgerService, state: FSMContext
) -> None:
    birthday = _parse_date(message.text or "")
    try:
        if birthday is None:
            raise BirthdayInvalid("unreadable date")
        member = await ledger.set_birthday(member.member_id, birthday)
    except BirthdayInvalid:
        await message.answer(_("birthday-invalid"))
        return
    except BirthdayAlreadySet:  # set in another chat session meanwhile
        await state.clear()
        current = await ledger.get_member(member.member_id)
        if current.birthday is not None:
            await message.answer(
                _("birthday-already").format(date=full_date_text(current.birthday))
            )
        return
    await state.clear()
    await message.answer(
        _("birthday-saved").format(date=full_date_text(birthday)), reply_markup=main_menu()
    )


def _parse_date(text: str) -> date | None:
    """The birthday typed, in one of the forms birthday-ask names; a birthday without a year
    has the year policy.BIRTH_YEAR_UNKNOWN. None for anything else."""
    text = text.strip()
    for form in (_DAY_MONTH_YEAR, _YEAR_MONTH_DAY, _DAY_MONTH):
        match = form.fullmatch(text)
        if match:
            year = int(match.groupdict().get("year") or policy.BIRTH_YEAR_UNKNOWN)
            try:
                return date(year, int(match["month"]), int(match["day"]))
            except ValueError:
                return None
    return None


_SETTINGS_VALUES: dict[str, frozenset[str]] = {  # the values the settings buttons carry
    "menu": frozenset({""}),
    "notify": frozenset({"", *NOTIFY_FIELDS}),
    "birthday": frozenset({""}),
    "delete": frozenset({""}),
    "delete_yes": frozenset({""}),
    "delete_no": frozenset({""}),
}


def _known_setting(action: str, value: str, i18n: I18n) -> bool:
    """Whether a settings button's data is one the bot draws (a language: one it speaks)."""
    if action == "lang":
        return value == "" or value in i18n.available_locales
    return value in _SETTINGS_VALUES.get(action, frozenset())


def _settings_keyboard(member: MemberView) -> InlineKeyboardMarkup:
    birthday = full_date_text(member.birthday) if member.birthday else _("birthday-not-set")
    rows = [
        [
            button(
                _("settings-language").format(language=_("language-name")),
                SettingsCb(action="lang").pack(),
            )
        ],
        [button(_("settings-notifications"), SettingsCb(action="notify").pack())],
        [
            button(
                _("settings-birthday").format(value=birthday), SettingsCb(action="birthday").pack()
            )
        ],
        [button(_("settings-delete"), SettingsCb(action="delete").pack())],
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _language_keyboard(i18n: I18n) -> InlineKeyboardMarkup:
    rows = [
        [
            button(
                i18n.gettext("language-name", locale=lang),
                SettingsCb(action="lang", value=lang).pack(),
            )
        ]
        for lang in sorted(i18n.available_locales)
    ]
    rows.append([button(_("settings-back"), SettingsCb(action="menu").pack())])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _notify_keyboard(member: MemberView) -> InlineKeyboardMarkup:
    keys = {
        "notify_reminders": "notify-reminders",
        "notify_tier": "notify-tier",
        "notify_offers": "notify-offers",
    }
    rows = [
        [
            button(
                ("✅ " if getattr(member, field) else "❌ ") + _(keys[field]),
                SettingsCb(action="notify", value=field).pack(),
            )
        ]
        for field in NOTIFY_FIELDS
    ]
    rows.append([button(_("settings-back"), SettingsCb(action="menu").pack())])
    return InlineKeyboardMarkup(inline_keyboard=rows)
