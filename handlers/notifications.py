"""Messages the bot starts on its own, rendered in the member's language and handed to the
outbox (scheduler.outbox), the one delivery path. Receipts are transactional: never capped."""

from __future__ import annotations

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.common import points_text, roubles_text, tier_text
from ledger.service import LedgerService
from ledger.views import MemberView, PurchaseResult, RefundResult
from scheduler.outbox import TRANSACTIONAL, Outbox


class Notifier:
    def __init__(self, i18n: I18n, ledger: LedgerService, outbox: Outbox) -> None:
        self.i18n = i18n
        self.ledger = ledger
        self.outbox = outbox

    async def purchase_receipt(self, result: PurchaseResult, amount_kopecks: int) -> bool:
        """Queue the receipt for a purchase; False if the member cannot be messaged."""
        member = await self.ledger.get_member(result.member_id)
        if member.telegram_id is None or not member.is_active:
            return False
        with self.i18n.context(), self.i18n.use_locale(member.language):
            lines = [
                _("receipt-purchase").format(
                    receipt=result.receipt_id, amount=roubles_text(amount_kopecks)
                )
            ]
            if result.redeemed:
                lines.append(_("receipt-redeemed").format(points=points_text(result.redeemed)))
            if result.accrued:
                key = "receipt-earned-pending" if self.ledger.rules.hold_days else "receipt-earned"
                lines.append(_(key).format(points=points_text(result.accrued)))
            lines.append(_("receipt-balance").format(points=points_text(result.balance)))
            lines += await self._tier_lines(member, result.tier, result.previous_tier)
            text = "\n".join(lines)
        return await self.outbox.enqueue(
            dedup_key=f"receipt:purchase:{result.receipt_id}",
            chat_id=member.telegram_id,
            member_id=member.member_id,
            text=text,
            category=TRANSACTIONAL,
        )

    async def refund_receipt(self, result: RefundResult) -> bool:
        member = await self.ledger.get_member(result.member_id)
        if member.telegram_id is None or not member.is_active:
            return False
        with self.i18n.context(), self.i18n.use_locale(member.language):
            lines = [_("receipt-refund").format(refund=result.refund_id, receipt=result.receipt_id)]
            if result.reversed:
                lines.append(_("receipt-reversed").format(points=points_text(result.reversed)))
            if result.returned:
                lines.append(_("receipt-returned").format(points=points_text(result.returned)))
            lines.append(_("receipt-balance").format(points=points_text(result.balance)))
            if result.debt:
                lines.append(_("receipt-debt").format(points=points_text(result.debt)))
            text = "\n".join(lines)
        return await self.outbox.enqueue(
            dedup_key=f"receipt:refund:{result.refund_id}",
            chat_id=member.telegram_id,
            member_id=member.member_id,
            text=text,
            category=TRANSACTIONAL,
        )

    async def _tier_lines(self, member: MemberView, tier: str, previous: str) -> list[str]:
        lines = []
        if tier != previous and _rank(self.ledger, tier) > _rank(self.ledger, previous):
            lines.append(_("receipt-tier-up").format(tier=tier_text(tier)))
        view = await self.ledger.balance(member.member_id)
        if view.next_tier:
            lines.append(
                _("receipt-next-tier").format(
                    amount=roubles_text(view.to_next_tier), tier=tier_text(view.next_tier)
                )
            )
        return lines


def _rank(ledger: LedgerService, tier: str) -> int:
    names = [t.name for t in ledger.rules.tiers]
    return names.index(tier) if tier in names else 0
