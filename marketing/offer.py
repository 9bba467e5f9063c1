"""A broadcast's message as one member sees it: the marketer's text with `{first_name}` and
`{balance}` filled in, the gift line (how many points and until when), the marketer's URL
button and the member's own "Unsubscribe from offers" button. The sender composes it when it
sends (`OfferComposer`); the composer's preview and "Send a test to me" use the same function,
so the marketer sees exactly what members get."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from marketing.broadcasts import Broadcast, Broadcasts
from marketing.html import fill
from messaging.composing import Composed, Recipient, Withdrawn
from messaging.outbox import OutboxMessage
from messaging.texts import count_text, date_text, number_text

UNSUBSCRIBE = "offers:off"  # the callback data of the member's "Unsubscribe from offers"


def compose_offer(
    broadcast: Broadcast,
    *,
    first_name: str,
    balance: int,
    timezone: str,
    now: datetime,
    language: str,
    i18n: I18n,
) -> Composed:
    """The message of `broadcast` for one member in their language; `balance` before the gift
    (the text shows it with the gift, which is credited as the message goes out)."""
    with i18n.context(), i18n.use_locale(language):
        gift = broadcast.gift_points
        text = fill(broadcast.text, first_name=first_name, balance=number_text(balance + gift))
        if gift:
            until = now + timedelta(days=broadcast.gift_days)
            text += "\n\n" + count_text("offer-gift", gift, date=date_text(until, timezone))
        rows: list[list[dict[str, Any]]] = []
        if broadcast.button_text and broadcast.button_url:
            rows.append([{"text": broadcast.button_text, "url": broadcast.button_url}])
        rows.append([{"text": _("offer-unsubscribe-button"), "callback_data": UNSUBSCRIBE}])
    return Composed(text=text, reply_markup={"inline_keyboard": rows}, photo=broadcast.photo)


class OfferComposer:
    """The sender's composer of broadcast messages (messaging.sender.Composer)."""

    def __init__(self, broadcasts: Broadcasts, i18n: I18n) -> None:
        self.broadcasts = broadcasts
        self.i18n = i18n

    async def __call__(self, message: OutboxMessage, recipient: Recipient) -> Composed | None:
        if message.broadcast_id is None:
            return None
        # Paused or cancelled after the sender claimed it: not sent (only what is in flight
        # already goes).
        status = await self.broadcasts.status_of(message.broadcast_id)
        if status == "paused":
            raise Withdrawn("held", "the broadcast is paused")
        if status == "cancelled":
            raise Withdrawn("cancelled", "the broadcast was cancelled")
        broadcast = await self.broadcasts.content(message.broadcast_id)
        return compose_offer(
            broadcast,
            first_name=recipient.first_name,
            balance=recipient.balance,
            timezone=recipient.timezone,
            now=self.broadcasts.clock.now(),
            language=recipient.language,
            i18n=self.i18n,
        )


__all__: Sequence[str] = ["UNSUBSCRIBE", "OfferComposer", "compose_offer"]
