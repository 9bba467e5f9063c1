"""A cashier's sale recorded, and a large redemption confirmed by the member first: the cashier
waits ([Cancel] withdraws), the member answers [Yes] / [No] in their own chat (a till's
requests are answered here too: the till reads the answer), the scheduler's sweep
(usecases.sales.expire_due) ends what nobody answered in time."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember
from handlers.keyboards import ConfirmCb, WithdrawCb, inline_keyboard
from ledger.errors import LedgerError
from ledger.views import MemberView, PurchaseResult
from messaging.languages import StaffLanguage
from messaging.texts import count_text, points_text, seconds_text
from staff.audit import staff_actor
from usecases.sales import (
    Purchase,
    Sales,
    ask_member_to_confirm,
    end_cashier_wait,
    end_member_question,
    record_purchase,
)

log = logging.getLogger("loyalty.cashier")


def build_confirmation_router() -> Router:
    """The member's side: confirming a large redemption in their own chat."""
    router = Router(name="redemption-confirmation")
    router.callback_query.filter(IsMember())
    router.callback_query.register(member_answers, ConfirmCb.filter())
    return router


@dataclass(frozen=True, slots=True)
class CashierSale:
    """A sale as the cashier confirmed it."""

    cashier_id: int
    member_id: int
    receipt_id: str
    amount: int
    redeem: int


async def record_sale(
    bot: Bot, sales: Sales, chat_id: int, sale: CashierSale
) -> PurchaseResult | None:
    """Record the purchase (usecases.sales: the ledger, the audit, the receipt) and tell the
    cashier in `chat_id`."""
    try:
        result = await record_purchase(
            sales,
            staff_actor(sale.cashier_id),
            Purchase(
                receipt_id=sale.receipt_id,
                member_id=sale.member_id,
                amount=sale.amount,
                redeem=sale.redeem,
                shop_receipt=False,
            ),
        )
    except LedgerError as error:
        await bot.send_message(chat_id, _("cashier-failed").format(why=_error_text(error)))
        return None
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


async def ask_member(message: Message, sales: Sales, i18n: I18n, sale: CashierSale) -> None:
    member = await sales.ledger.get_member(sale.member_id)
    if member.telegram_id is None:
        await message.answer(_("cashier-failed").format(why=_("error-member_not_found")))
        return
    request = await sales.confirmations.open(
        member_id=sale.member_id,
        cashier_id=sale.cashier_id,
        receipt_id=sale.receipt_id,
        amount=sale.amount,
        redeem_points=sale.redeem,
        cashier_language=i18n.current_locale,
        cashier_message_id=message.message_id,  # the screen that becomes "waiting…"
    )
    await ask_member_to_confirm(sales, member, request)
    # No timer here: the scheduler's sweep (usecases.sales.expire_due) ends it in time.
    seconds = int(sales.confirmations.ttl.total_seconds())
    await message.edit_text(
        count_text("cashier-waiting", sale.redeem, seconds=seconds_text(seconds)),
        reply_markup=inline_keyboard(
            [[(_("cashier-cancel-button"), WithdrawCb(request_id=request.request_id))]]
        ),
    )


async def withdraw_request(
    callback: CallbackQuery, callback_data: WithdrawCb, sales: Sales, i18n: I18n, bot: Bot
) -> None:
    """The cashier cancels a sale that waits for the member: a later "yes" records nothing."""
    request = await sales.confirmations.get(callback_data.request_id)
    if request is None or request.cashier_id != callback.from_user.id:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    outcome = await sales.confirmations.settle(request.request_id, "cancelled")
    assert outcome is not None
    if not outcome[1]:  # the member answered, or the time ran out, first: that stands
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.edit_text(_("cashier-withdrawn"))
    await end_member_question(sales, bot, i18n, outcome[0], "confirm-withdrawn")


async def member_answers(
    callback: CallbackQuery,
    callback_data: ConfirmCb,
    member: MemberView,
    sales: Sales,
    staff_language: StaffLanguage,
    bot: Bot,
) -> None:
    confirmations = sales.confirmations
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
            await end_cashier_wait(bot, settled)
        return
    await callback.answer()
    if message is not None:
        await message.edit_text(
            _("confirm-done") if callback_data.accept else _("confirm-declined")
        )
    if settled.api_key_id is not None:
        return  # a till asked over the HTTP API: it reads the answer and records the sale
    await end_cashier_wait(bot, settled)
    cashier_language = settled.cashier_language or await staff_language(settled.cashier_id)
    if not callback_data.accept:
        await bot.send_message(
            settled.cashier_id,
            staff_language.i18n.gettext("cashier-declined", locale=cashier_language),
        )
        return
    with staff_language.i18n.use_locale(cashier_language):
        sale = CashierSale(
            cashier_id=settled.cashier_id,
            member_id=settled.member_id,
            receipt_id=settled.receipt_id,
            amount=settled.amount,
            redeem=settled.redeem_points,
        )
        await record_sale(bot, sales, settled.cashier_id, sale)
