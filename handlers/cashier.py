"""Cashier mode: find the customer (QR link, card number or phone), record a purchase with an
optional redemption, confirm; the member gets the receipt at once. A redemption above the
threshold is confirmed by the member in their own chat first, within a time limit.

Three taps for the usual sale: open the customer's QR link, "Record a purchase", type the
amount, then "Pay N with points" or "No points", then "Confirm".
"""

from __future__ import annotations

import re
import secrets

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import (
    Command,
    CommandObject,
    CommandStart,
    StateFilter,
    and_f,
    invert_f,
    or_f,
)
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from cards.service import CardService
from handlers.common import plain_number
from handlers.drafts import Draft, draft_of, keep
from handlers.filters import HasRole, MenuButton
from handlers.keyboards import SaleCb, WithdrawCb, inline_keyboard
from handlers.redemptions import CashierSale, ask_member, record_sale, withdraw_request
from ledger import policy
from ledger.errors import InvalidAmount, LedgerError, MemberNotFound
from ledger.phones import mask_phone
from ledger.rules import Rules
from ledger.service import LedgerService
from ledger.views import MemberView
from messaging.texts import (
    count_text,
    number_text,
    points_text,
    roubles_text,
    tier_text,
)
from staff.roles import Role
from usecases.sales import (
    Sales,
)

CARD_LINK_PREFIX = "c_"


class Selling(StatesGroup):
    finding = State()
    amount = State()
    points = State()  # how many points, when the cashier chose "Other number of points"


class Sale(Draft):
    """A sale opened from a customer's panel. Its member and token are on each of its buttons
    and must match; `amount` is 0 until the cashier has typed one (an amount is positive),
    `allowed` the most points the ledger allowed on it, `redeem` the points chosen."""

    member_id: int
    token: str
    amount: int = 0
    allowed: int = 0
    redeem: int = 0


class SaleDraft(Draft):
    """The cashier's FSM data: the member whose panel was shown last (the only one a sale
    can be opened for) and the sale opened from that panel."""

    shown: int | None = None
    sale: Sale | None = None


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
    keyboard = inline_keyboard(
        [[(_("cashier-record"), SaleCb(action="record", member_id=member.member_id))]]
    )
    await keep(state, SaleDraft(shown=member.member_id))
    await message.answer(text, reply_markup=keyboard)


# --------------------------------------------------------------------- the sale itself


async def open_sale(
    callback: CallbackQuery, callback_data: SaleCb, ledger: LedgerService, state: FSMContext
) -> None:
    """[Record a purchase] on the panel of the customer shown last: asks for the amount."""
    member_id = callback_data.member_id
    shown = (await draft_of(state, SaleDraft)).shown
    if (
        not isinstance(callback.message, Message)
        or shown != member_id
        or await _own_card(ledger, member_id, callback.from_user.id)
    ):
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    await state.set_state(Selling.amount)
    sale = Sale(member_id=member_id, token=secrets.token_hex(6))
    await keep(state, SaleDraft(shown=shown, sale=sale))
    await callback.message.answer(_("cashier-ask-amount"))


async def choose_points(
    callback: CallbackQuery,
    callback_data: SaleCb,
    ledger: LedgerService,
    rules: Rules,
    state: FSMContext,
) -> None:
    """[Pay N points] or [No points]: N from 0 to what the ledger allows now."""
    sale = await _sale_of(callback, callback_data, ledger, state)
    if sale is None or not isinstance(callback.message, Message):
        return
    # (Allowed as of now, not as of the button.)
    allowed = await ledger.redeemable_points(sale.member_id, sale.amount)
    if callback_data.points > allowed:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    sale = sale.model_copy(update={"redeem": callback_data.points, "allowed": allowed})
    await _keep_sale(state, sale)
    await _ask_confirmation(callback.message, ledger, rules, sale)


async def ask_points(
    callback: CallbackQuery, callback_data: SaleCb, ledger: LedgerService, state: FSMContext
) -> None:
    """[Other number]: the cashier types how many points."""
    sale = await _sale_of(callback, callback_data, ledger, state)
    if sale is None or not isinstance(callback.message, Message):
        return
    await callback.answer()
    await state.set_state(Selling.points)
    await callback.message.answer(_("cashier-ask-points").format(most=number_text(sale.allowed)))


async def cancel_sale(
    callback: CallbackQuery, callback_data: SaleCb, ledger: LedgerService, state: FSMContext
) -> None:
    sale = await _sale_of(callback, callback_data, ledger, state)
    if sale is None or not isinstance(callback.message, Message):
        return
    await callback.answer()
    await state.clear()
    await callback.message.edit_text(_("cashier-cancelled"))


async def confirm_sale(
    callback: CallbackQuery,
    callback_data: SaleCb,
    state: FSMContext,
    sales: Sales,
    rules: Rules,
    i18n: I18n,
    bot: Bot,
) -> None:
    """[Confirm]: records the sale the screen shows, or first asks the member to confirm a
    redemption above the threshold."""
    sale = await _sale_of(callback, callback_data, sales.ledger, state)
    if sale is None or not isinstance(callback.message, Message):
        return
    if callback_data.points != sale.redeem:  # an older confirmation screen of this sale
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    message = callback.message
    # Shown to the member on the receipt and in the history: no Telegram id in it (the
    # cashier is the operation's actor and in the audit log).
    confirmed = CashierSale(
        cashier_id=callback.from_user.id,
        member_id=sale.member_id,
        receipt_id=f"B-{sale.token.upper()}",
        amount=sale.amount,
        redeem=sale.redeem,
    )
    await state.clear()
    if sale.redeem > rules.member_confirm_above:
        await ask_member(message, sales, i18n, confirmed)
        return
    await message.edit_reply_markup(reply_markup=None)
    await record_sale(bot, sales, message.chat.id, confirmed)


async def _sale_of(
    callback: CallbackQuery, callback_data: SaleCb, ledger: LedgerService, state: FSMContext
) -> Sale | None:
    """The sale this button belongs to, its amount typed, or None after answering "this
    button is no longer active": a button of another sale (an old screen, a second tap on
    [Confirm] after the sale was recorded) or a forged one (another member, the cashier's own
    card)."""
    sale = (await draft_of(state, SaleDraft)).sale
    if (
        not isinstance(callback.message, Message)
        or sale is None
        or sale.amount <= 0
        or sale.token != callback_data.sale
        or sale.member_id != callback_data.member_id
        or await _own_card(ledger, callback_data.member_id, callback.from_user.id)
    ):
        await callback.answer(_("button-stale"), show_alert=True)
        return None
    return sale


async def _keep_sale(state: FSMContext, sale: Sale) -> None:
    """Keep the open sale's next step (the panel it was opened from stays the one shown)."""
    await keep(state, (await draft_of(state, SaleDraft)).model_copy(update={"sale": sale}))


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
    sale = (await draft_of(state, SaleDraft)).sale
    if sale is None:  # no sale after all (its data lost): the text is not an amount
        await state.clear()
        raise SkipHandler
    try:
        amount = policy.parse_amount(_without_spaces(message.text or "").removesuffix("₽"))
    except InvalidAmount as error:
        why = _(_AMOUNT_REFUSALS.get(error.message, "amount-not-number"))
        await message.answer(_("cashier-bad-amount").format(why=why))
        return
    allowed = await ledger.redeemable_points(sale.member_id, amount)
    sale = sale.model_copy(update={"amount": amount, "redeem": 0, "allowed": allowed})
    await _keep_sale(state, sale)
    if allowed <= 0:
        await _ask_confirmation(message, ledger, rules, sale)
        return

    def button(action: str, points: int = 0) -> SaleCb:
        return SaleCb(action=action, member_id=sale.member_id, points=points, sale=sale.token)

    await message.answer(
        count_text("cashier-redeem-offer", allowed, amount=roubles_text(amount)),
        reply_markup=inline_keyboard(
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
    sale = (await draft_of(state, SaleDraft)).sale
    if sale is None or sale.amount <= 0:  # no sale after all (its data lost)
        await state.clear()
        raise SkipHandler
    redeem = plain_number(_without_spaces(message.text or ""), sale.allowed)
    if redeem is None:
        await message.answer(_("cashier-bad-points").format(most=number_text(sale.allowed)))
        return
    sale = sale.model_copy(update={"redeem": redeem})
    await state.set_state(None)  # the sale's data stays for the confirm button
    await _keep_sale(state, sale)
    await _ask_confirmation(message, ledger, rules, sale)


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
    sale: Sale,
) -> None:
    """The sale as it will be recorded; its [Confirm] carries the points it shows."""
    member = await ledger.get_member(sale.member_id)
    paid = policy.money_paid(rules, sale.amount, sale.redeem)
    earn = policy.earned_points(paid, rules.tier(member.tier))

    def button(action: str) -> SaleCb:
        return SaleCb(action=action, member_id=sale.member_id, points=sale.redeem, sale=sale.token)

    await message.answer(
        _("cashier-confirm").format(
            amount=roubles_text(sale.amount),
            redeem=points_text(sale.redeem),
            earn=points_text(earn),
        ),
        reply_markup=inline_keyboard(
            [
                [
                    (_("cashier-confirm-button"), button("confirm")),
                    (_("cashier-cancel-button"), button("cancel")),
                ]
            ]
        ),
    )
