"""Cashier mode: find the customer (QR link, card number or phone), record a purchase with an
optional redemption, confirm; the member gets the receipt at once. A redemption above the
threshold is confirmed by the member in their own chat first, within a time limit.

Three taps for the usual sale: open the customer's QR link, "Record a purchase", type the
amount, then "Pay N with points" or "No points", then "Confirm".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from typing import Any

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import (
    Command,
    CommandObject,
    CommandStart,
    StateFilter,
    and_f,
    invert_f,
    or_f,
)
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from cards.service import CardService
from handlers.common import STAFF_ACTOR, HasRole, IsMember, MenuButton, Points, RowId, plain_number
from ledger import policy
from ledger.errors import InvalidAmount, LedgerError, MemberNotFound
from ledger.phones import mask_phone
from ledger.rules import Rules
from ledger.service import LedgerService
from ledger.views import MemberView, PurchaseResult
from messaging.languages import StaffLanguage
from messaging.notifier import Notifier
from messaging.outbox import TRANSACTIONAL, Outbox
from messaging.texts import (
    count_text,
    number_text,
    points_text,
    roubles_text,
    seconds_text,
    tier_text,
)
from staff.audit import AuditLog
from staff.roles import Role
from staff.sales import ConfirmationService, RedemptionRequest

log = logging.getLogger("loyalty.cashier")

CARD_LINK_PREFIX = "c_"


class Selling(StatesGroup):
    finding = State()
    amount = State()
    points = State()  # how many points, when the cashier chose "Other number of points"


class SaleCb(CallbackData, prefix="sale"):
    """A button of a sale. Only `action` picks the step: the member, the amount and the
    points are the server's (the cashier's FSM data); the button's own values must match them,
    or it is an old screen or a forged one."""

    action: str  # record | redeem | other | confirm | cancel
    member_id: RowId
    points: Points = 0
    sale: str = ""  # the sale's token in the FSM data ("" on the customer's panel)


class ConfirmCb(CallbackData, prefix="rr"):
    request_id: RowId
    accept: bool


class WithdrawCb(CallbackData, prefix="rw"):
    """The cashier gives up waiting for the member's confirmation."""

    request_id: RowId


def build_cashier_router() -> Router:
    router = Router(name="cashier")
    router.message.filter(HasRole(Role.CASHIER, Role.ADMIN), F.chat.type == "private")
    router.callback_query.filter(HasRole(Role.CASHIER, Role.ADMIN))
    router.message.register(
        open_from_qr, CommandStart(deep_link=True, magic=F.args.startswith(CARD_LINK_PREFIX))
    )
    # A command or a menu button in the middle of a sale leaves the sale (/cancel says so);
    # the others then go on to whoever handles them, instead of being read as a phone or an
    # amount.
    # (The state the handlers below see is the one before leave_sale, hence their own filter.)
    not_typed = or_f(F.text.startswith("/"), MenuButton())
    router.message.register(
        leave_sale, StateFilter(Selling.finding, Selling.amount, Selling.points), not_typed
    )
    router.message.register(start_sale, Command("sale"))
    typed = and_f(F.text, invert_f(not_typed))
    router.message.register(find_customer, Selling.finding, typed)
    router.message.register(take_amount, Selling.amount, typed)
    router.message.register(take_points, Selling.points, typed)
    router.callback_query.register(open_sale, SaleCb.filter(F.action == "record"))
    router.callback_query.register(choose_points, SaleCb.filter(F.action == "redeem"))
    router.callback_query.register(ask_points, SaleCb.filter(F.action == "other"))
    router.callback_query.register(confirm_sale, SaleCb.filter(F.action == "confirm"))
    router.callback_query.register(cancel_sale, SaleCb.filter(F.action == "cancel"))
    router.callback_query.register(withdraw_request, WithdrawCb.filter())
    return router


def build_confirmation_router() -> Router:
    """The member's side: confirming a large redemption in their own chat."""
    router = Router(name="redemption-confirmation")
    router.callback_query.filter(IsMember())
    router.callback_query.register(member_answers, ConfirmCb.filter())
    return router


# ------------------------------------------------------------ help, leaving a sale


async def leave_sale(message: Message, state: FSMContext) -> None:
    await state.clear()
    if (message.text or "").split("@")[0].strip() == "/cancel":
        await message.answer(_("cashier-cancelled"))
        return
    raise SkipHandler  # the command or button is handled as if no sale had been open


# ----------------------------------------------------------------- finding the customer


async def open_from_qr(
    message: Message,
    command: CommandObject,
    cards: CardService,
    ledger: LedgerService,
    state: FSMContext,
) -> None:
    card_number = cards.card_number_from_token((command.args or "")[len(CARD_LINK_PREFIX) :])
    if card_number is None:
        await state.set_state(Selling.finding)  # "ask for the card number instead"
        await message.answer(_("cashier-bad-card"))
        return
    try:
        member = await ledger.member_by_card(card_number)
    except MemberNotFound:  # the card's member erased their data: a number may still work
        await state.set_state(Selling.finding)
        await message.answer(_("cashier-not-found"))
        return
    await _show_member(message, member, ledger, state)


async def start_sale(
    message: Message, command: CommandObject, ledger: LedgerService, state: FSMContext
) -> None:
    if command.args:
        await _find(message, command.args, ledger, state)
        return
    await state.set_state(Selling.finding)
    await message.answer(_("cashier-find"))


async def find_customer(message: Message, ledger: LedgerService, state: FSMContext) -> None:
    await _find(message, message.text or "", ledger, state)


async def _find(message: Message, text: str, ledger: LedgerService, state: FSMContext) -> None:
    try:
        member = await ledger.find_member(text)
    except (MemberNotFound, LedgerError):
        await state.set_state(Selling.finding)
        await message.answer(_("cashier-not-found"))
        return
    await _show_member(message, member, ledger, state)


async def _show_member(
    message: Message, member: MemberView, ledger: LedgerService, state: FSMContext
) -> None:
    """The customer's panel; its [Record a purchase] opens a sale for this member only (the
    member shown is kept in the FSM data: the last one shown is the one a sale can be for)."""
    await state.clear()
    if member.telegram_id is not None and member.telegram_id == message.chat.id:
        # The cashier's own card (the chat is the cashier's): someone else records that sale.
        await message.answer(_("cashier-own-card"))
        return
    usable = (await ledger.balance(member.member_id)).balance  # as the member's own screen
    text = _("cashier-member").format(
        name=member.first_name or "—",
        phone=mask_phone(member.phone or ""),
        tier=tier_text(member.tier),
        balance=points_text(usable),
    )
    keyboard = _keyboard(
        [[(_("cashier-record"), SaleCb(action="record", member_id=member.member_id))]]
    )
    await state.update_data(shown=member.member_id)
    await message.answer(text, reply_markup=keyboard)


# --------------------------------------------------------------------- the sale itself


async def open_sale(
    callback: CallbackQuery, callback_data: SaleCb, ledger: LedgerService, state: FSMContext
) -> None:
    """[Record a purchase] on the panel of the customer shown last: asks for the amount."""
    member_id = callback_data.member_id
    shown = (await state.get_data()).get("shown")
    if (
        not isinstance(callback.message, Message)
        or shown != member_id
        or await _own_card(ledger, member_id, callback.from_user.id)
    ):
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    await state.set_state(Selling.amount)
    await state.set_data({"shown": shown, "member_id": member_id, "sale": secrets.token_hex(6)})
    await callback.message.answer(_("cashier-ask-amount"))


async def choose_points(
    callback: CallbackQuery,
    callback_data: SaleCb,
    ledger: LedgerService,
    rules: Rules,
    state: FSMContext,
) -> None:
    """[Pay N points] or [No points]: N from 0 to what the ledger allows now."""
    data = await _sale_of(callback, callback_data, ledger, state)
    if data is None or not isinstance(callback.message, Message):
        return
    member_id, amount = int(data["member_id"]), int(data["amount"])
    allowed = await ledger.redeemable_points(member_id, amount)  # as of now, not the button's
    if callback_data.points > allowed:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    await state.update_data(redeem=callback_data.points, allowed=allowed)
    await _ask_confirmation(callback.message, ledger, rules, data, amount, callback_data.points)


async def ask_points(
    callback: CallbackQuery, callback_data: SaleCb, ledger: LedgerService, state: FSMContext
) -> None:
    """[Other number]: the cashier types how many points."""
    data = await _sale_of(callback, callback_data, ledger, state)
    if data is None or not isinstance(callback.message, Message):
        return
    await callback.answer()
    await state.set_state(Selling.points)
    await callback.message.answer(
        _("cashier-ask-points").format(most=number_text(int(data.get("allowed", 0))))
    )


async def cancel_sale(
    callback: CallbackQuery, callback_data: SaleCb, ledger: LedgerService, state: FSMContext
) -> None:
    data = await _sale_of(callback, callback_data, ledger, state)
    if data is None or not isinstance(callback.message, Message):
        return
    await callback.answer()
    await state.clear()
    await callback.message.edit_text(_("cashier-cancelled"))


async def confirm_sale(
    callback: CallbackQuery,
    callback_data: SaleCb,
    ledger: LedgerService,
    rules: Rules,
    state: FSMContext,
    notifier: Notifier,
    audit: AuditLog,
    confirmations: ConfirmationService,
    outbox: Outbox,
    i18n: I18n,
    bot: Bot,
) -> None:
    """[Confirm]: records the sale the screen shows, or first asks the member to confirm a
    redemption above the threshold."""
    data = await _sale_of(callback, callback_data, ledger, state)
    if data is None or not isinstance(callback.message, Message):
        return
    redeem = int(data.get("redeem", 0))
    if callback_data.points != redeem:  # an older confirmation screen of this sale
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    message, cashier_id = callback.message, callback.from_user.id
    member_id, amount = int(data["member_id"]), int(data["amount"])
    # Shown to the member on the receipt and in the history: no Telegram id in it (the
    # cashier is the operation's actor and in the audit log).
    receipt_id = f"B-{data['sale'].upper()}"
    await state.clear()
    if redeem > rules.member_confirm_above:
        await _ask_member(
            message,
            ledger,
            confirmations,
            outbox,
            i18n,
            bot,
            member_id,
            cashier_id,
            receipt_id,
            amount,
            redeem,
        )
        return
    await message.edit_reply_markup(reply_markup=None)
    await _record(
        message.chat.id,
        bot,
        ledger,
        notifier,
        audit,
        member_id,
        cashier_id,
        receipt_id,
        amount,
        redeem,
    )


async def _sale_of(
    callback: CallbackQuery, callback_data: SaleCb, ledger: LedgerService, state: FSMContext
) -> dict[str, Any] | None:
    """The FSM data of the sale this button belongs to, or None after answering "this button
    is no longer active": a button of another sale (an old screen, a second tap on [Confirm]
    after the sale was recorded) or a forged one (another member, the cashier's own card)."""
    data = await state.get_data()
    if (
        not isinstance(callback.message, Message)
        or "amount" not in data
        or data.get("sale") != callback_data.sale
        or data.get("member_id") != callback_data.member_id
        or await _own_card(ledger, callback_data.member_id, callback.from_user.id)
    ):
        await callback.answer(_("button-stale"), show_alert=True)
        return None
    return data


async def _own_card(ledger: LedgerService, member_id: int, cashier_id: int) -> bool:
    """Whether the member is the cashier themself (or no longer exists)."""
    try:
        member = await ledger.get_member(member_id)
    except MemberNotFound:
        return True
    return member.telegram_id == cashier_id


async def take_amount(
    message: Message, ledger: LedgerService, rules: Rules, state: FSMContext
) -> None:
    data = await state.get_data()
    try:
        amount = policy.parse_amount(_without_spaces(message.text or "").removesuffix("₽"))
    except InvalidAmount as error:
        why = _(_AMOUNT_REFUSALS.get(error.message, "amount-not-number"))
        await message.answer(_("cashier-bad-amount").format(why=why))
        return
    member_id = int(data["member_id"])
    allowed = await ledger.redeemable_points(member_id, amount)
    await state.update_data(amount=amount, redeem=0, allowed=allowed)
    data = await state.get_data()
    if allowed <= 0:
        await _ask_confirmation(message, ledger, rules, data, amount, 0)
        return

    def button(action: str, points: int = 0) -> SaleCb:
        return SaleCb(action=action, member_id=member_id, points=points, sale=data["sale"])

    await message.answer(
        count_text("cashier-redeem-offer", allowed, amount=roubles_text(amount)),
        reply_markup=_keyboard(
            [
                [
                    (
                        _("cashier-redeem-max").format(points=points_text(allowed)),
                        button("redeem", allowed),
                    )
                ],
                [
                    (_("cashier-redeem-other"), button("other")),
                    (_("cashier-redeem-none"), button("redeem")),
                ],
                [(_("cashier-cancel-button"), button("cancel"))],
            ]
        ),
    )


async def take_points(
    message: Message, ledger: LedgerService, rules: Rules, state: FSMContext
) -> None:
    """The number of points to pay with, typed by the cashier: 0 up to the allowed maximum."""
    data = await state.get_data()
    allowed = int(data.get("allowed", 0))
    redeem = plain_number(_without_spaces(message.text or ""), allowed)
    if redeem is None:
        await message.answer(_("cashier-bad-points").format(most=number_text(allowed)))
        return
    amount = int(data["amount"])
    await state.set_state(None)  # the sale's data stays for the confirm button
    await state.update_data(redeem=redeem)
    await _ask_confirmation(message, ledger, rules, data, amount, redeem)


_SPACES = re.compile(r"(?<=\d)[\s\u00a0\u202f\u2009]+(?=\d)")
_AMOUNT_REFUSALS = {  # ledger.policy's reasons -> what the cashier reads
    policy.AMOUNT_NOT_POSITIVE: "amount-not-positive",
    policy.AMOUNT_DECIMALS: "amount-decimals",
    policy.AMOUNT_TOO_LARGE: "amount-too-large",
}


def _without_spaces(text: str) -> str:
    """ "1 500,50" as typed in Russian (spaces between the digits' groups) -> "1500,50"."""
    return _SPACES.sub("", text.strip())


async def _ask_confirmation(
    message: Message,
    ledger: LedgerService,
    rules: Rules,
    sale: dict[str, Any],
    amount: int,
    redeem: int,
) -> None:
    """The sale as it will be recorded; its [Confirm] carries the points it shows."""
    member_id = int(sale["member_id"])
    member = await ledger.get_member(member_id)
    earn = policy.earned_points(policy.money_paid(rules, amount, redeem), rules.tier(member.tier))

    def button(action: str) -> SaleCb:
        return SaleCb(action=action, member_id=member_id, points=redeem, sale=sale["sale"])

    await message.answer(
        _("cashier-confirm").format(
            amount=roubles_text(amount), redeem=points_text(redeem), earn=points_text(earn)
        ),
        reply_markup=_keyboard(
            [
                [
                    (_("cashier-confirm-button"), button("confirm")),
                    (_("cashier-cancel-button"), button("cancel")),
                ]
            ]
        ),
    )


async def _record(
    chat_id: int,
    bot: Bot,
    ledger: LedgerService,
    notifier: Notifier,
    audit: AuditLog,
    member_id: int,
    cashier_id: int,
    receipt_id: str,
    amount: int,
    redeem: int,
) -> PurchaseResult | None:
    """Record the purchase (and the member's receipt with it), tell the cashier."""
    try:
        result = await ledger.purchase(
            receipt_id=receipt_id,
            member_id=member_id,
            amount_kopecks=amount,
            redeem_points=redeem,
            actor=f"{STAFF_ACTOR}{cashier_id}",
            shop_receipt=False,  # its receipt (queued with it) shows no internal id
        )
    except LedgerError as error:
        await bot.send_message(chat_id, _("cashier-failed").format(why=_error_text(error)))
        return None
    await audit.record(
        f"tg:{cashier_id}",
        "cashier.purchase",
        target=f"member:{member_id}",
        receipt_id=receipt_id,
        amount=amount,
        redeemed=redeem,
        accrued=result.accrued,
    )
    key = "cashier-done" if result.redeemed else "cashier-done-no-points"
    await bot.send_message(
        chat_id,
        _(key).format(
            earn=points_text(result.accrued),
            redeem=points_text(result.redeemed),
            balance=points_text(result.balance),
        ),
    )
    return result


def _error_text(error: LedgerError) -> str:
    if error.code == "redeem_above_limit":
        return count_text("error-redeem_above_limit", int(error.details.get("allowed", 0)))
    if error.code in {"insufficient_points", "member_not_found"}:
        return _(f"error-{error.code}")
    if error.code == "member_erased":
        return _("error-member_not_found")
    log.warning("cashier sale refused: %s", error.code)
    return _("error-other")


# ------------------------------------------------------- the member confirms a redemption


async def _ask_member(
    message: Message,
    ledger: LedgerService,
    confirmations: ConfirmationService,
    outbox: Outbox,
    i18n: I18n,
    bot: Bot,
    member_id: int,
    cashier_id: int,
    receipt_id: str,
    amount: int,
    redeem: int,
) -> None:
    member = await ledger.get_member(member_id)
    if member.telegram_id is None:
        await message.answer(_("cashier-failed").format(why=_("error-member_not_found")))
        return
    request = await confirmations.open(
        member_id=member_id,
        cashier_id=cashier_id,
        receipt_id=receipt_id,
        amount=amount,
        redeem_points=redeem,
        cashier_language=i18n.current_locale,
        cashier_message_id=message.message_id,  # the screen that becomes "waiting…"
    )
    await ask_member_to_confirm(outbox, i18n, member, request)
    seconds = int(confirmations.ttl.total_seconds())
    await message.edit_text(
        count_text("cashier-waiting", redeem, seconds=seconds_text(seconds)),
        reply_markup=_keyboard(
            [[(_("cashier-cancel-button"), WithdrawCb(request_id=request.request_id))]]
        ),
    )
    language = i18n.current_locale
    task = asyncio.create_task(
        _expire_later(confirmations, bot, i18n, ledger, outbox, language, request, seconds)
    )
    _PENDING_TIMERS.add(task)
    task.add_done_callback(_PENDING_TIMERS.discard)


_PENDING_TIMERS: set[asyncio.Task[None]] = set()


async def ask_member_to_confirm(
    outbox: Outbox, i18n: I18n, member: MemberView, request: RedemptionRequest
) -> None:
    """Ask the member, in their chat and language, to confirm the request's redemption (Yes /
    No; member_answers takes the answer). The bot's cashier and a till over the HTTP API ask
    this way."""
    assert member.telegram_id is not None
    with i18n.context(), i18n.use_locale(member.language):
        text = _("confirm-redeem").format(
            points=points_text(request.redeem_points), amount=roubles_text(request.amount)
        )
        markup = _keyboard(
            [
                [
                    (_("confirm-yes"), ConfirmCb(request_id=request.request_id, accept=True)),
                    (_("confirm-no"), ConfirmCb(request_id=request.request_id, accept=False)),
                ]
            ]
        )
    await outbox.enqueue(
        dedup_key=_question_key(request.request_id),
        chat_id=member.telegram_id,
        member_id=member.member_id,
        text=text,
        category=TRANSACTIONAL,
        reply_markup=markup.model_dump(exclude_none=True),
    )


async def withdraw_request(
    callback: CallbackQuery,
    callback_data: WithdrawCb,
    confirmations: ConfirmationService,
    ledger: LedgerService,
    outbox: Outbox,
    i18n: I18n,
    bot: Bot,
) -> None:
    """The cashier cancels a sale that waits for the member: a later "yes" records nothing."""
    request = await confirmations.get(callback_data.request_id)
    if request is None or request.cashier_id != callback.from_user.id:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    outcome = await confirmations.settle(request.request_id, "cancelled")
    assert outcome is not None
    if not outcome[1]:  # the member answered, or the time ran out, first: that stands
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.edit_text(_("cashier-withdrawn"))
    await _end_member_question(outbox, bot, i18n, ledger, outcome[0], "confirm-withdrawn")


async def _expire_later(
    confirmations: ConfirmationService,
    bot: Bot,
    i18n: I18n,
    ledger: LedgerService,
    outbox: Outbox,
    language: str,
    request: RedemptionRequest,
    seconds: int,
) -> None:
    """Tell the cashier when the member did not answer in time, and take the request's
    buttons away (the request's state in the database is what counts; this is the notice)."""
    await asyncio.sleep(seconds)
    settled = await confirmations.settle(request.request_id, "expired")
    if settled is not None and settled[1]:
        with contextlib.suppress(Exception):
            await bot.send_message(
                request.cashier_id, i18n.gettext("cashier-timeout", locale=language)
            )
        await _end_cashier_wait(bot, request)
        await _end_member_question(outbox, bot, i18n, ledger, request, "confirm-expired")


def _question_key(request_id: int) -> str:
    """The outbox's key of the question a request asks the member."""
    return f"confirm:{request_id}"


async def _end_cashier_wait(bot: Bot, request: RedemptionRequest) -> None:
    """The request ended: the cashier's [Cancel] goes (the outcome is a message of its own)."""
    if request.cashier_message_id is None:
        return
    with contextlib.suppress(TelegramAPIError):  # gone already, or the chat is unreachable
        await bot.edit_message_reply_markup(
            chat_id=request.cashier_id, message_id=request.cashier_message_id, reply_markup=None
        )


async def _end_member_question(
    outbox: Outbox,
    bot: Bot,
    i18n: I18n,
    ledger: LedgerService,
    request: RedemptionRequest,
    key: str,
) -> None:
    """The request ended without the member's answer: the question is not sent if it is still
    queued; if it was, its [Yes] [No] give way to why it ended (`key`), in their language."""
    message_id = await outbox.withdraw(_question_key(request.request_id), key)
    if message_id is None:
        return
    with contextlib.suppress(LedgerError, TelegramAPIError):
        member = await ledger.get_member(request.member_id)
        if member.telegram_id is not None:
            await bot.edit_message_text(
                i18n.gettext(key, locale=member.language),
                chat_id=member.telegram_id,
                message_id=message_id,
                reply_markup=None,
            )


async def member_answers(
    callback: CallbackQuery,
    callback_data: ConfirmCb,
    member: MemberView,
    confirmations: ConfirmationService,
    ledger: LedgerService,
    notifier: Notifier,
    audit: AuditLog,
    staff_language: StaffLanguage,
    bot: Bot,
) -> None:
    request = await confirmations.get(callback_data.request_id)
    if request is None or request.member_id != member.member_id:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    answer = "confirmed" if callback_data.accept else "declined"
    outcome = await confirmations.settle(request.request_id, answer)
    assert outcome is not None
    settled, moved = outcome
    message = callback.message if isinstance(callback.message, Message) else None
    if not moved:
        # A second tap, or the other button after the first: the first answer stands and
        # was acted on already (the ledger would not charge twice, but the cashier would
        # hear twice).
        why = {"expired": "confirm-expired", "cancelled": "confirm-withdrawn"}.get(
            settled.status, "confirm-already"
        )
        await callback.answer(_(why), show_alert=True)
        if message is not None and settled.status == "expired":
            with contextlib.suppress(TelegramBadRequest):  # its buttons may be gone already
                await message.edit_reply_markup(reply_markup=None)
            await _end_cashier_wait(bot, settled)
        return
    await callback.answer()
    if message is not None:
        await message.edit_text(
            _("confirm-done") if callback_data.accept else _("confirm-declined")
        )
    if settled.api_key_id is not None:
        return  # a till asked over the HTTP API: it reads the answer and records the sale
    await _end_cashier_wait(bot, settled)
    cashier_language = settled.cashier_language or await staff_language(settled.cashier_id)
    if not callback_data.accept:
        await bot.send_message(
            settled.cashier_id,
            staff_language.i18n.gettext("cashier-declined", locale=cashier_language),
        )
        return
    with staff_language.i18n.use_locale(cashier_language):
        await _record(
            settled.cashier_id,
            bot,
            ledger,
            notifier,
            audit,
            settled.member_id,
            settled.cashier_id,
            settled.receipt_id,
            settled.amount,
            settled.redeem_points,
        )


def _keyboard(rows: list[list[tuple[str, CallbackData]]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=data.pack()) for text, data in row]
            for row in rows
        ]
    )
