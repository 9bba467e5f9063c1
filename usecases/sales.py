"""A sale: the purchase (or refund) in the ledger, its audit record and the member's receipt,
the same for a cashier in the bot (handlers/cashier.py) and a till over the HTTP API
(api/app.py). A redemption above the threshold waits for the member's yes in their chat first:
the request is kept by staff.sales.ConfirmationService (its table), asked and ended here, and
expired by the scheduler's sweep (`expire_due`), never by a timer in the process.

Where the confirmation lives: the stored request is the staff package's (a domain record);
asking the member, ending the buttons and the sweep are this use case's (one place for the bot
and the till); the till's HTTP protocol around it (409 confirmation_required, polling) is the
API's (api/confirmations.py).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Annotated

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from pydantic import Field

from ledger.errors import LedgerError
from ledger.service import LedgerService
from ledger.views import MemberView, PurchaseResult, RefundResult
from messaging.notifier import Notifier
from messaging.outbox import TRANSACTIONAL
from messaging.texts import points_text, roubles_text
from staff.sales import ConfirmationService, RedemptionRequest

log = logging.getLogger("loyalty.sales")


@dataclass(frozen=True, slots=True)
class Sales:
    """What a sale needs. `notifier` None: nobody to ask for a large redemption (an API on its
    own); receipts and audit records the ledger writes with the sale."""

    ledger: LedgerService
    confirmations: ConfirmationService
    notifier: Notifier | None = None


@dataclass(frozen=True, slots=True)
class Purchase:
    """A purchase as a cashier or a till asks for it. The member is given by id (the bot) or
    as `customer` (a card number or a phone, looked up in the purchase's own transaction).
    `shop_receipt`: the receipt id is the shop's own (a till's), which the member can match with
    the paper receipt; a sale recorded in the bot has only an internal id, not shown."""

    receipt_id: str
    amount: int  # kopecks
    redeem: int = 0
    member_id: int | None = None
    customer: str | None = None
    shop_receipt: bool = True


async def record_purchase(sales: Sales, actor: str, purchase: Purchase) -> PurchaseResult:
    """Record the purchase; the ledger writes the member's receipt and the sale's audit record
    in the purchase's own transaction (a replay writes neither again). The ledger's refusals
    (LedgerError) come through unchanged."""
    result = await sales.ledger.purchase(
        receipt_id=purchase.receipt_id,
        member_id=purchase.member_id,
        customer=purchase.customer,
        amount_kopecks=purchase.amount,
        redeem_points=purchase.redeem,
        actor=actor,
        shop_receipt=purchase.shop_receipt,  # the receipt is written with the purchase
        audit_action="cashier.purchase",  # and so is its audit record
    )
    return result


async def record_refund(
    sales: Sales, actor: str, *, refund_id: str, receipt_id: str, amount: int
) -> RefundResult:
    """Record the refund; its notice to the member and its audit record are written with it."""
    return await sales.ledger.refund(
        refund_id=refund_id,
        receipt_id=receipt_id,
        amount_kopecks=amount,
        actor=actor,
        audit_action="cashier.refund",
    )


# ------------------------------------------------------- the member confirms a redemption

RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]  # a member, entry or request number


class ConfirmCb(CallbackData, prefix="rr"):
    """The member's [Yes] / [No] under the question (handlers/redemptions.py takes the answer)."""

    request_id: RowId
    accept: bool


def question_key(request_id: int) -> str:
    """The outbox's key of the question a request asks the member."""
    return f"confirm:{request_id}"


async def ask_member_to_confirm(
    sales: Sales, member: MemberView, request: RedemptionRequest
) -> None:
    """Ask the member, in their chat and language, to confirm the request's redemption (Yes /
    No). The bot's cashier and a till over the HTTP API ask this way."""
    assert member.telegram_id is not None and sales.notifier is not None
    i18n = sales.notifier.i18n
    with i18n.context(), i18n.use_locale(member.language):
        text = _("confirm-redeem").format(
            points=points_text(request.redeem_points), amount=roubles_text(request.amount)
        )
        markup = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(text=label, callback_data=data.pack())
                    for label, data in (
                        (_("confirm-yes"), ConfirmCb(request_id=request.request_id, accept=True)),
                        (_("confirm-no"), ConfirmCb(request_id=request.request_id, accept=False)),
                    )
                ]
            ]
        )
    await sales.notifier.outbox.enqueue(
        dedup_key=question_key(request.request_id),
        chat_id=member.telegram_id,
        member_id=member.member_id,
        text=text,
        category=TRANSACTIONAL,
        reply_markup=markup.model_dump(exclude_none=True),
    )


async def end_cashier_wait(bot: Bot, request: RedemptionRequest) -> None:
    """The request ended: the cashier's [Cancel] goes (the outcome is a message of its own)."""
    if request.cashier_message_id is None:
        return
    with contextlib.suppress(TelegramAPIError):  # gone already, or the chat is unreachable
        await bot.edit_message_reply_markup(
            chat_id=request.cashier_id, message_id=request.cashier_message_id, reply_markup=None
        )


async def end_member_question(
    sales: Sales, bot: Bot, i18n: I18n, request: RedemptionRequest, key: str
) -> None:
    """The request ended without the member's answer: the question is not sent if it is still
    queued; if it was, its [Yes] [No] give way to why it ended (`key`), in their language."""
    if sales.notifier is None:
        return
    message_id = await sales.notifier.outbox.withdraw(question_key(request.request_id), key)
    if message_id is None:
        return
    with contextlib.suppress(LedgerError, TelegramAPIError):
        member = await sales.ledger.get_member(request.member_id)
        if member.telegram_id is not None:
            await bot.edit_message_text(
                i18n.gettext(key, locale=member.language),
                chat_id=member.telegram_id,
                message_id=message_id,
                reply_markup=None,
            )


async def expire_due(sales: Sales, bot: Bot, i18n: I18n) -> int:
    """The scheduler's sweep: every pending request whose time is over becomes expired; the
    cashier (if one waits in a chat) is told and their [Cancel] goes, the member's [Yes] [No]
    give way to "expired". Returns how many it expired. (Whoever settles a request first wins:
    an answer that came in time stands.)"""
    expired = 0
    for request in await sales.confirmations.due():
        settled = await sales.confirmations.settle(request.request_id, "expired")
        if settled is None or not settled[1]:
            continue
        expired += 1
        if request.api_key_id is None:  # a cashier in the bot waits for it
            language = request.cashier_language or i18n.default_locale
            with contextlib.suppress(Exception):  # the outcome stands; this is the notice
                await bot.send_message(
                    request.cashier_id, i18n.gettext("cashier-timeout", locale=language)
                )
            await end_cashier_wait(bot, request)
        await end_member_question(sales, bot, i18n, request, "confirm-expired")
    return expired
