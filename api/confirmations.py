"""Large redemptions at a till: the member says yes in Telegram first.

A till that names the member by card number or phone may spend at most `member_confirm_above`
points on a purchase. Above that, the first request is answered 409 `confirmation_required`
with a `confirmation_id`, and the member is asked in their chat exactly as a cashier in the bot
asks (usecases.sales.ask_member_to_confirm; the bot's member_answers takes the answer). The
scheduler's sweep (usecases.sales.expire_due) ends the question's buttons when time is up.
The till polls GET /api/v1/confirmations/{id} and, once it
says `accepted`, sends the same purchase again (same receipt_id and body), which is recorded.
`declined` and `expired` are final for that receipt: the same purchase again gets 409
`confirmation_declined` / `confirmation_expired`, and nothing is spent. The member's QR token,
presented at the till, is the member's consent: no question then.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from api.errors import ApiError
from ledger.errors import RedeemAboveLimit
from ledger.operations import MAX_POINTS
from ledger.views import MemberView
from staff.sales import RedemptionRequest
from usecases.sales import Sales, ask_member_to_confirm

# What a till reads, for what the bot's confirmation service stores.
_STATUS = {
    "pending": "pending",
    "confirmed": "accepted",
    "declined": "declined",
    "cancelled": "declined",  # (by a cashier in the bot; never a till's request)
    "expired": "expired",
}


class TillConfirmations:
    def __init__(self, sales: Sales) -> None:
        self.sales = sales
        self.ledger = sales.ledger
        self.confirmations = sales.confirmations

    def needed(self, redeem_points: int, *, by_qr_token: bool) -> bool:
        return not by_qr_token and redeem_points > self.ledger.rules.member_confirm_above

    async def check(
        self, *, key_id: int, receipt_id: str, customer: str, amount: int, redeem_points: int
    ) -> None:
        """Return if this purchase, which needs the member's yes, may be recorded now; else
        raise the ApiError that says why not (asking the member first if nobody has)."""
        if redeem_points > MAX_POINTS or await self.ledger.purchase_recorded(receipt_id):
            # The ledger refuses it (more points than any purchase takes), or gives its own
            # answer again, or says it is a conflict.
            return
        member = await self.ledger.find_member(customer)  # unknown: 404
        allowed = await self.ledger.redeemable_points(member.member_id, amount)
        if redeem_points > allowed:  # never ask for what could not be spent
            raise RedeemAboveLimit(
                f"at most {allowed} points can be redeemed on this purchase", allowed=allowed
            )
        request = await self.confirmations.by_receipt(receipt_id)
        if request is None:
            request = await self._ask(key_id, receipt_id, member, amount, redeem_points)
        if (request.api_key_id, request.member_id, request.amount, request.redeem_points) != (
            key_id,
            member.member_id,
            amount,
            redeem_points,
        ):
            raise ApiError(
                409,
                "idempotency_conflict",
                "this receipt_id was used for a different request",
                key=f"purchase:{receipt_id}",
            )
        status = _STATUS[request.status_at(self.confirmations.clock.now())]
        if status == "accepted":
            return
        extra: dict[str, Any] = {
            "confirmation_id": request.request_id,
            "expires_at": _iso(request.expires_at),
        }
        if status == "pending":
            raise ApiError(
                409,
                "confirmation_required",
                f"more than {self.ledger.rules.member_confirm_above} points need the member's "
                "yes: they were asked in Telegram; poll GET /api/v1/confirmations/"
                f"{request.request_id} and send this purchase again once it is accepted, or "
                "scan their QR card",
                **extra,
            )
        raise ApiError(
            409,
            f"confirmation_{status}",
            f"the member's confirmation was {status}; nothing was spent. Pay at most "
            f"{self.ledger.rules.member_confirm_above} points, or scan their QR card",
            **extra,
        )

    async def _ask(
        self, key_id: int, receipt_id: str, member: MemberView, amount: int, redeem_points: int
    ) -> RedemptionRequest:
        if member.telegram_id is None or member.unreachable or self.sales.notifier is None:
            raise ApiError(
                409,
                "confirmation_unavailable",
                "the member cannot be asked in Telegram: pay at most "
                f"{self.ledger.rules.member_confirm_above} points, or scan their QR card",
            )
        try:
            request = await self.confirmations.open(
                member_id=member.member_id,
                cashier_id=0,  # nobody in a chat: the till reads the answer itself
                receipt_id=receipt_id,
                amount=amount,
                redeem_points=redeem_points,
                api_key_id=key_id,
            )
        except IntegrityError:  # the same receipt asked for at the same moment
            existing = await self.confirmations.by_receipt(receipt_id)
            if existing is None:
                raise
            return existing
        await ask_member_to_confirm(self.sales, member, request)
        return request

    async def status(self, key_id: int, confirmation_id: int) -> dict[str, Any] | None:
        """The till's view of a confirmation it asked for; None for any other."""
        request = await self.confirmations.get(confirmation_id)
        if request is None or request.api_key_id != key_id:
            return None
        return {
            "confirmation_id": request.request_id,
            "receipt_id": request.receipt_id,
            "status": _STATUS[request.status_at(self.confirmations.clock.now())],
            "expires_at": _iso(request.expires_at),
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
