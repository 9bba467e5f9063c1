"""The member's menu: card, balance, history (with disputes), invite, settings, support."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import date

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import (
    KICKED,
    MEMBER,
    ChatMemberUpdatedFilter,
    Command,
    CommandObject,
    CommandStart,
    StateFilter,
)
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardRemove,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from cards.render import format_card_number
from cards.service import CardPrint, CardService
from handlers.common import (
    STAFF_ACTOR,
    staff_help,
)
from handlers.filters import IsMember, MenuButton
from handlers.keyboards import DisputeEntryCb, DisputeListCb, HistoryPageCb, SettingsCb, main_menu
from ledger import policy
from ledger.errors import BirthdayAlreadySet, BirthdayInvalid, EntryNotFound
from ledger.rules import Rules
from ledger.service import LedgerService
from ledger.views import EntryView, HistoryPage, MemberView
from messaging.notifier import SupportNews
from messaging.texts import (
    burn_text,
    count_text,
    display_name,
    full_date_text,
    moment_text,
    points_text,
    roubles_text,
    signed_text,
    tier_text,
)
from staff.roles import Role
from support.tickets import MAX_TICKET_TEXT, TicketService
from usecases.privacy import Privacy, erase_member

log = logging.getLogger("loyalty.member")

HISTORY_PAGE_SIZE = 10
NOTIFY_FIELDS = ("notify_reminders", "notify_tier", "notify_offers")
# A birthday as people type it: 14.05.1990 (or with / or -), 1990-05-14, or 14.05 without the year.
_DAY_MONTH_YEAR = re.compile(r"(?P<day>\d{1,2})[./-](?P<month>\d{1,2})[./-](?P<year>\d{4})")
_YEAR_MONTH_DAY = re.compile(r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})")
_DAY_MONTH = re.compile(r"(?P<day>\d{1,2})[./](?P<month>\d{1,2})\.?")


class Asking(StatesGroup):
    support = State()
    dispute = State()
    birthday = State()


def build_member_router() -> Router:
    router = Router(name="member")
    router.message.filter(IsMember(), F.chat.type == "private")
    router.callback_query.filter(IsMember())

    router.message.register(start_again, CommandStart())
    router.message.register(show_help, Command("help"))
    router.message.register(cancel, Command("cancel"))
    router.message.register(show_card, Command("card"))
    router.message.register(show_card, MenuButton("menu-card"))
    router.message.register(show_balance, Command("balance"))
    router.message.register(show_balance, MenuButton("menu-balance"))
    router.message.register(show_history, Command("history"))
    router.message.register(show_history, MenuButton("menu-history"))
    router.message.register(show_invite, Command("invite"))
    router.message.register(show_invite, MenuButton("menu-invite"))
    router.message.register(show_settings, Command("settings"))
    router.message.register(show_settings, MenuButton("menu-settings"))
    router.message.register(ask_support, Command("support"))
    router.message.register(ask_support, MenuButton("menu-support"))
    # Free text while a question is pending; menu buttons above win over it.
    router.message.register(receive_request, StateFilter(Asking.support, Asking.dispute))
    router.message.register(receive_birthday, Asking.birthday)

    router.callback_query.register(turn_history_page, HistoryPageCb.filter())
    router.callback_query.register(list_disputable, DisputeListCb.filter())
    router.callback_query.register(ask_dispute, DisputeEntryCb.filter())
    router.callback_query.register(settings_action, SettingsCb.filter())
    router.my_chat_member.register(blocked_the_bot, ChatMemberUpdatedFilter(KICKED))
    router.my_chat_member.register(unblocked_the_bot, ChatMemberUpdatedFilter(MEMBER))
    return router


# ------------------------------------------------------------- blocking and unblocking


async def blocked_the_bot(
    event: ChatMemberUpdated, ledger: LedgerService, member: MemberView | None = None
) -> None:
    """Stop writing to someone who blocked the bot (the outbox skips unreachable members)."""
    if member is not None:
        await ledger.update_profile(member.member_id, unreachable=True)


async def unblocked_the_bot(
    event: ChatMemberUpdated, ledger: LedgerService, member: MemberView | None = None
) -> None:
    if member is not None and member.unreachable:
        await ledger.update_profile(member.member_id, unreachable=False)


# -------------------------------------------------------------------- start, help


async def start_again(
    message: Message, command: CommandObject, member: MemberView, state: FSMContext
) -> None:
    await state.clear()
    if (command.args or "").startswith("ref_"):
        await message.answer(_("already-member-invite"), reply_markup=main_menu())
        return
    name = display_name(member, message.from_user.first_name if message.from_user else None)
    await message.answer(_("welcome-back").format(name=name), reply_markup=main_menu())


async def show_help(message: Message, rules: Rules, roles: frozenset[Role] = frozenset()) -> None:
    lines = [
        _("help-text").format(
            program=rules.program_name, referral=points_text(rules.referral.inviter_points)
        )
    ]
    lines += staff_help(roles)
    await message.answer("\n\n".join(lines), reply_markup=main_menu())


async def cancel(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(_("cancelled"), reply_markup=main_menu())


# --------------------------------------------------------------------------- card


async def show_card(
    message: Message,
    member: MemberView,
    rules: Rules,
    cards: CardService,
    bot_username: str,
    state: FSMContext,
) -> None:
    await state.clear()
    tier_label = tier_text(member.tier)
    card = CardPrint(
        program_name=rules.program_name,
        first_name=member.first_name or "",
        card_number=member.card_number,
        tier=member.tier,
        tier_label=tier_label,
        caption_label=_("card-number-label"),
    )
    caption = _("card-caption").format(card=format_card_number(member.card_number), tier=tier_label)
    file_id = await cards.cached_file_id(member.member_id, card)
    if file_id is not None:
        try:
            await message.answer_photo(file_id, caption=caption, reply_markup=main_menu())
            return
        except TelegramBadRequest:
            await cards.forget(member.member_id)  # Telegram lost it: upload again
    png = await asyncio.to_thread(cards.render, card, bot_username)
    sent = await message.answer_photo(
        BufferedInputFile(png, filename="card.png"), caption=caption, reply_markup=main_menu()
    )
    if sent.photo:
        await cards.remember(member.member_id, card, sent.photo[-1].file_id)


# ------------------------------------------------------------------------ balance


async def show_balance(
    message: Message, member: MemberView, ledger: LedgerService, rules: Rules, state: FSMContext
) -> None:
    await state.clear()
    view = await ledger.balance(member.member_id)
    lines = [_("balance-usable").format(points=points_text(view.balance))]
    if view.pending:
        lines.append(_("balance-pending").format(points=points_text(view.pending)))
    if view.debt:
        lines.append(_("balance-debt").format(points=points_text(view.debt)))
    tier = rules.tier(view.tier)
    lines.append(_("balance-tier").format(tier=tier_text(view.tier), rate=tier.rub_per_point))
    if view.next_tier:
        lines.append(
            _("balance-next-tier").format(
                amount=roubles_text(view.to_next_tier), tier=tier_text(view.next_tier)
            )
        )
    else:
        lines.append(_("balance-top-tier"))
    if view.nearest_burn:
        burn = view.nearest_burn
        lines.append(
            _("balance-burn").format(burn=burn_text(burn.points, burn.burns_at, member.timezone))
        )
    elif view.balance:
        lines.append(_("balance-no-burn"))
    await message.answer("\n".join(lines), reply_markup=main_menu())


# ------------------------------------------------------------------------ history


async def show_history(
    message: Message, member: MemberView, ledger: LedgerService, state: FSMContext
) -> None:
    await state.clear()
    history = await ledger.history(member.member_id, 0, HISTORY_PAGE_SIZE)
    text, keyboard = _history_page(history, member)
    await message.answer(text, reply_markup=keyboard)


async def turn_history_page(
    callback: CallbackQuery,
    callback_data: HistoryPageCb,
    member: MemberView,
    ledger: LedgerService,
) -> None:
    history = await ledger.history(member.member_id, callback_data.page, HISTORY_PAGE_SIZE)
    if history.page != callback_data.page:  # no such page (any more)
        await callback.answer(_("button-stale"), show_alert=True)
        return
    text, keyboard = _history_page(history, member)
    await callback.answer()
    if isinstance(callback.message, Message):
        await _edit(callback.message, text, keyboard)


def _history_page(
    history: HistoryPage, member: MemberView
) -> tuple[str, InlineKeyboardMarkup | None]:
    if not history.entries:
        return _("history-empty"), None
    lines = [_("history-title").format(page=history.page + 1, pages=history.pages), ""]
    lines += [entry_line(entry, member.timezone) for entry in history.entries]
    nav = []
    if history.page > 0:
        nav.append(_button(_("history-prev"), HistoryPageCb(page=history.page - 1).pack()))
    if history.page + 1 < history.pages:
        nav.append(_button(_("history-next"), HistoryPageCb(page=history.page + 1).pack()))
    rows = [nav] if nav else []
    rows.append([_button(_("history-dispute"), DisputeListCb(page=history.page).pack())])
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


async def _edit(message: Message, text: str, keyboard: InlineKeyboardMarkup | None) -> None:
    """Show `text` in place of the message; a second tap that would change nothing is quiet."""
    try:
        await message.edit_text(text, reply_markup=keyboard)
    except TelegramBadRequest as error:
        if "message is not modified" not in error.message:
            raise


def entry_line(entry: EntryView, timezone: str) -> str:
    """ "12 Dec, 14:05 · +29 · Purchase R-1"; "· held" while points wait for their hold, and
    what a take-back left as debt counted in the change."""
    when = moment_text(entry.created_at, timezone)
    if entry.kind == "activation":  # held points moved to usable: no change in the total
        return " · ".join([when, _("kind-activation"), points_text(entry.points)])
    change = entry.points + entry.pending - max(entry.debt, 0)
    parts = [when, signed_text(change), _(f"kind-{entry.kind}")]
    if entry.reference and entry.kind in {"earn", "redeem", "refund_reverse", "refund_return"}:
        # The shop's receipt or refund number; a sale a cashier recorded in the bot has only
        # an internal id ("B-48B377C139FC"), which means nothing to the member: none.
        if not (entry.actor or "").startswith(STAFF_ACTOR):
            parts[-1] += f" {entry.reference}"
    if entry.pending > 0:
        parts.append(_("history-pending-mark"))
    if entry.debt > 0:
        parts.append(_("history-debt-mark").format(points=points_text(entry.debt)))
    return " · ".join(parts)


async def list_disputable(
    callback: CallbackQuery,
    callback_data: DisputeListCb,
    member: MemberView,
    ledger: LedgerService,
) -> None:
    history = await ledger.history(member.member_id, callback_data.page, HISTORY_PAGE_SIZE)
    if history.page != callback_data.page or not history.entries:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    rows = [
        [
            _button(
                entry_line(entry, member.timezone)[:60],
                DisputeEntryCb(entry_id=entry.entry_id).pack(),
            )
        ]
        for entry in history.entries
    ]
    if callback.message is not None and rows:
        await callback.message.answer(
            _("dispute-choose"), reply_markup=InlineKeyboardMarkup(inline_keyboard=rows)
        )


async def ask_dispute(
    callback: CallbackQuery,
    callback_data: DisputeEntryCb,
    member: MemberView,
    ledger: LedgerService,
    state: FSMContext,
) -> None:
    try:
        owner = await ledger.entry_owner(callback_data.entry_id)
        entry = await ledger.entry(callback_data.entry_id)
    except EntryNotFound:
        owner = None
    if owner != member.member_id:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await state.set_state(Asking.dispute)
    await state.update_data(entry_id=callback_data.entry_id)
    await callback.answer()
    if callback.message is not None:
        await callback.message.answer(
            _("dispute-write").format(line=entry_line(entry, member.timezone))
        )


# ------------------------------------------------------------------------- invite


async def show_invite(
    message: Message, member: MemberView, rules: Rules, bot_username: str, state: FSMContext
) -> None:
    await state.clear()
    link = f"https://t.me/{bot_username}?start=ref_{member.referral_code}"
    await message.answer(
        _("invite-text").format(points=points_text(rules.referral.inviter_points), link=link),
        reply_markup=main_menu(),
    )


# ----------------------------------------------------------------------- settings


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
        await _edit(message, _("language-choose"), _language_keyboard(i18n))
    elif action == "notify" and value in NOTIFY_FIELDS:
        member = await ledger.update_profile(
            member.member_id, **{value: not getattr(member, value)}
        )
        await callback.answer(_("notify-saved"))
        await _edit(message, _("notifications-title"), _notify_keyboard(member))
    elif action == "notify":
        await callback.answer()
        await _edit(message, _("notifications-title"), _notify_keyboard(member))
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
                        _button(_("delete-yes"), SettingsCb(action="delete_yes").pack()),
                        _button(_("delete-no"), SettingsCb(action="delete_no").pack()),
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
        await _edit(message, _("delete-cancelled"), None)
    elif action == "menu":
        await callback.answer()
        await _edit(message, _("settings-title"), _settings_keyboard(member))
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
            _button(
                _("settings-language").format(language=_("language-name")),
                SettingsCb(action="lang").pack(),
            )
        ],
        [_button(_("settings-notifications"), SettingsCb(action="notify").pack())],
        [
            _button(
                _("settings-birthday").format(value=birthday), SettingsCb(action="birthday").pack()
            )
        ],
        [_button(_("settings-delete"), SettingsCb(action="delete").pack())],
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _language_keyboard(i18n: I18n) -> InlineKeyboardMarkup:
    rows = [
        [
            _button(
                i18n.gettext("language-name", locale=lang),
                SettingsCb(action="lang", value=lang).pack(),
            )
        ]
        for lang in sorted(i18n.available_locales)
    ]
    rows.append([_button(_("settings-back"), SettingsCb(action="menu").pack())])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _notify_keyboard(member: MemberView) -> InlineKeyboardMarkup:
    keys = {
        "notify_reminders": "notify-reminders",
        "notify_tier": "notify-tier",
        "notify_offers": "notify-offers",
    }
    rows = [
        [
            _button(
                ("✅ " if getattr(member, field) else "❌ ") + _(keys[field]),
                SettingsCb(action="notify", value=field).pack(),
            )
        ]
        for field in NOTIFY_FIELDS
    ]
    rows.append([_button(_("settings-back"), SettingsCb(action="menu").pack())])
    return InlineKeyboardMarkup(inline_keyboard=rows)


# ------------------------------------------------------------------------ support


async def ask_support(message: Message, state: FSMContext) -> None:
    await state.set_state(Asking.support)
    await message.answer(_("support-ask"), reply_markup=main_menu())


async def receive_request(
    message: Message,
    member: MemberView,
    tickets: TicketService,
    state: FSMContext,
    support_news: SupportNews,
) -> None:
    """A question to support, or a dispute of the entry chosen before: stored as a ticket,
    confirmed to the member, and support is told (the ticket stands either way)."""
    text = await _ticket_text(message)
    if text is None:
        return
    if await state.get_state() == Asking.dispute.state:
        entry_id = (await state.get_data()).get("entry_id")
        ticket = await tickets.open_ticket(
            member.member_id, text, kind="dispute", entry_id=entry_id
        )
        key = "dispute-received"
    else:
        ticket = await tickets.open_ticket(member.member_id, text)
        key = "support-received"
    await state.clear()
    text = _(key).format(ticket=ticket.ticket_id)
    if message.photo or message.document or message.video:
        text += "\n" + _("support-text-kept")  # the caption is; the file is not
    await message.answer(text, reply_markup=main_menu())
    try:
        await support_news.announce(ticket, member)
    except Exception:
        log.exception("could not tell support about ticket %s", ticket.ticket_id)


async def _ticket_text(message: Message) -> str | None:
    """The text of a support or dispute message, or None after telling the member why not."""
    text = (message.text or message.caption or "").strip()
    if not text:
        await message.answer(_("support-text-only"))
        return None
    if len(text) > MAX_TICKET_TEXT:
        await message.answer(count_text("support-too-long", MAX_TICKET_TEXT))
        return None
    return text


def _button(text: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data)
