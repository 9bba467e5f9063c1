"""Purchases and refunds: what may be redeemed, a purchase (redeem, then earn on the money
part), a refund (earned points taken back pro rata, redeemed points given back), and the
inviter's reward on an invited member's first purchase.

The purchase is the hot path: its statements are compiled once (storage.fast), and the writes
nothing later in the transaction reads are deferred to its end (`later()`).

Database: only through SyncDatabase (`self.db`): each operation runs in LedgerBase's runner;
the two reads are single compiled statements.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from ledger import policy
from ledger.calendar import tier_change
from ledger.errors import (
    InvalidAmount,
    InvalidPoints,
    MemberNotFound,
    PurchaseNotFound,
    RedeemAboveLimit,
    RefundExceedsPurchase,
)
from ledger.journal import Totals
from ledger.members import CustomerLookup, member_id_by_lookup
from ledger.operations import (
    MAX_POINTS,
    OPERATION_EXISTS,
    OVERDUE_SELECT,
    LedgerBase,
    check_reference,
)
from ledger.views import PurchaseResult, RefundResult
from storage.audit import write_audit
from storage.fast import Fast, later
from storage.notices import write_notice
from storage.schema import members, purchases, referral_rewards

_USABLE = Fast(  # the balance without what should have burnt already: one read
    select(members.c.balance - OVERDUE_SELECT.scalar_subquery()).where(
        members.c.id == bindparam("member_id", type_=Integer)
    )
)
_INSERT_PURCHASE = Fast(purchases.insert())
PURCHASE = Fast(select(purchases).where(purchases.c.receipt_id == bindparam("receipt_id")))
_PURCHASE_MEMBER = Fast(
    select(purchases.c.member_id).where(purchases.c.receipt_id == bindparam("receipt_id"))
)


class Purchases(LedgerBase):
    """Purchases, refunds and the referral reward they may pay."""

    async def redeemable_points(self, member_id: int, amount_kopecks: int) -> int:
        """The most points this member may spend on a purchase of this amount, right now."""
        params = {"member_id": member_id, "now": self.clock.now()}
        usable = await self.db.read(
            lambda conn: _USABLE(conn, params).scalar_one_or_none(), single=True
        )
        if usable is None:
            raise MemberNotFound("no such member")
        return policy.redeemable_points(self.rules, amount_kopecks, int(usable))

    async def purchase_recorded(self, receipt_id: str) -> bool:
        """Whether a purchase was recorded under this receipt_id (the same request again gets
        its answer; another one, a conflict)."""
        params = {"key": f"purchase:{receipt_id}"}
        row = await self.db.read(lambda conn: OPERATION_EXISTS(conn, params).first(), single=True)
        return row is not None

    async def purchase(
        self,
        *,
        receipt_id: str,
        member_id: int | None = None,
        customer: str | None = None,
        amount_kopecks: int,
        redeem_points: int = 0,
        actor: str | None = None,
        shop_receipt: bool = True,
        audit_action: str | None = None,
    ) -> PurchaseResult:
        """Record a purchase: redeem, then earn on the money part. Idempotent on receipt_id.

        The member is given by id, or as `customer`: a card number or a phone in any common
        format, looked up inside the purchase's own transaction (as `find_member` does).
        The member's receipt is queued in the same transaction (a notice); `shop_receipt`: the
        receipt id is the shop's own (a till's), which the member can match with the paper
        receipt; a sale recorded in the bot has only an internal id, not shown. With
        `audit_action`, the sale's audit record (by `actor`) is written in the same transaction
        too (a retry, which changes nothing, writes none)."""
        check_reference(receipt_id, "receipt_id")
        if amount_kopecks <= 0 or amount_kopecks > policy.MAX_AMOUNT_KOPECKS:
            raise InvalidAmount("amount must be positive", value=amount_kopecks)
        if redeem_points < 0 or redeem_points > MAX_POINTS:
            raise InvalidPoints(
                f"points to redeem must be a whole number from 0 to {MAX_POINTS}",
                field="redeem_points",
            )
        if (member_id is None) == (customer is None):
            raise ValueError("give either member_id or customer")
        member: int | Callable[[Connection], int]
        if member_id is not None:
            member = member_id
        else:
            lookup = CustomerLookup(customer or "")
            member = functools.partial(member_id_by_lookup, lookup=lookup)

        def request(member_id: int) -> dict[str, Any]:
            return {"member_id": member_id, "amount": amount_kopecks, "redeem": redeem_points}

        def body(conn: Connection, op_id: int, totals: Totals, row: Row[Any]) -> dict[str, Any]:
            member_id = row.id
            if row.status != "active":
                raise MemberNotFound("no such member")
            allowed = policy.redeemable_points(self.rules, amount_kopecks, totals.balance)
            if redeem_points > allowed:
                raise RedeemAboveLimit(
                    f"at most {allowed} points can be redeemed on this purchase", allowed=allowed
                )
            now = self.clock.now()
            redeem_entry = None
            if redeem_points:
                redeem_entry = self.journal.debit(
                    conn,
                    member_id,
                    totals,
                    redeem_points,
                    "redeem",
                    now,
                    operation_id=op_id,
                    reference=receipt_id,
                    actor=actor,
                    strict=True,
                )
            money = policy.money_paid(self.rules, amount_kopecks, redeem_points)
            # The tier of the window as it is now, even if the tier job has not caught up.
            spend_before = int(row.window_spend)
            earning_tier = policy.tier_for_spend(self.rules, spend_before)
            accrued = policy.earned_points(money, earning_tier)
            earn_entry = None
            if accrued:
                earn_entry = self.journal.credit(
                    conn,
                    member_id,
                    totals,
                    accrued,
                    "earn",
                    now,
                    operation_id=op_id,
                    reference=receipt_id,
                    actor=actor,
                    hold=True,
                )
            later(
                conn,
                _INSERT_PURCHASE,
                {
                    "receipt_id": receipt_id,
                    "member_id": member_id,
                    "amount": amount_kopecks,
                    "redeemed": redeem_points,
                    "accrued": accrued,
                    "earn_entry_id": earn_entry,
                    "redeem_entry_id": redeem_entry,
                    "qualifying": money,
                    "created_at": now,
                },
            )
            inviter = None
            if row.last_purchase_at is None and row.referred_by is not None:
                inviter = self._reward_referral(conn, row, now, op_id)
            new_tier = policy.tier_for_spend(self.rules, spend_before + money).name
            self.journal.store_totals(
                conn, member_id, totals, tier=new_tier, last_purchase_at=now
            )
            if row.telegram_id is not None:
                write_notice(
                    conn,
                    kind="purchase",
                    dedup_key=f"receipt:purchase:{receipt_id}",
                    member_id=member_id,
                    chat_id=row.telegram_id,
                    now=now,
                    payload={
                        "receipt_id": receipt_id,
                        "shop_receipt": shop_receipt,
                        "amount": amount_kopecks,
                        "redeemed": redeem_points,
                        "accrued": accrued,
                        "balance": totals.balance,
                        "tier": new_tier,
                        "spend": spend_before + money,
                    },
                )
            if audit_action is not None:
                write_audit(
                    conn,
                    actor=actor or "",
                    action=audit_action,
                    target=f"member:{member_id}",
                    details={
                        "receipt_id": receipt_id,
                        "amount": amount_kopecks,
                        "redeemed": redeem_points,
                        "accrued": accrued,
                    },
                    now=now,
                )
            return {
                "receipt_id": receipt_id,
                "member_id": member_id,
                "card_number": row.card_number,
                "accrued": accrued,
                "redeemed": redeem_points,
                "balance": totals.balance,
                "pending": totals.pending,
                "tier": new_tier,
                "previous_tier": row.tier,
                "rewarded_inviter": inviter,
            }

        result, replayed = await self._run_operation(
            f"purchase:{receipt_id}",
            "purchase",
            member,
            request,
            actor,
            body,
            with_window_spend=True,
        )
        self._noticed(replayed)
        return PurchaseResult(**result, replayed=replayed)

    async def refund(
        self,
        *,
        refund_id: str,
        receipt_id: str,
        amount_kopecks: int,
        actor: str | None = None,
        audit_action: str | None = None,
    ) -> RefundResult:
        """Refund part or all of a purchase: take back earned points pro rata and give back
        the points that paid for the refunded part. Idempotent on refund_id. The member's
        notice, and with `audit_action` the audit record, are written in the same transaction."""
        check_reference(refund_id, "refund_id")
        check_reference(receipt_id, "receipt_id")
        if amount_kopecks <= 0 or amount_kopecks > policy.MAX_AMOUNT_KOPECKS:
            raise InvalidAmount("amount must be positive", value=amount_kopecks)
        request = {"receipt_id": receipt_id, "amount": amount_kopecks}

        def member_of_purchase(conn: Connection) -> int:
            """Looked up inside the refund's own transaction (one trip to the database)."""
            member_id = _PURCHASE_MEMBER(conn, {"receipt_id": receipt_id}).scalar_one_or_none()
            if member_id is None:
                raise PurchaseNotFound("no purchase with this receipt_id")
            return int(member_id)

        def body(conn: Connection, op_id: int, totals: Totals, locked: Row[Any]) -> dict[str, Any]:
            member_id = locked.id
            purchase = PURCHASE(conn, {"receipt_id": receipt_id}).one()
            refundable = purchase.amount - purchase.refunded_amount
            if amount_kopecks > refundable:
                raise RefundExceedsPurchase(
                    f"at most {policy.format_amount(refundable)} can still be refunded",
                    refundable=policy.format_amount(refundable),
                )
            now = self.clock.now()
            before = purchase.refunded_amount
            reverse = policy.pro_rata(purchase.accrued, before, amount_kopecks, purchase.amount)
            give_back = policy.pro_rata(purchase.redeemed, before, amount_kopecks, purchase.amount)
            money = policy.money_paid(self.rules, purchase.amount, purchase.redeemed)
            qualifying_cut = policy.pro_rata(money, before, amount_kopecks, purchase.amount)
            if give_back:
                self.journal.give_back(
                    conn,
                    member_id,
                    totals,
                    purchase.redeem_entry_id,
                    give_back,
                    "refund_return",
                    now,
                    operation_id=op_id,
                    reference=refund_id,
                    actor=actor,
                )
            if reverse:
                self.journal.debit(
                    conn,
                    member_id,
                    totals,
                    reverse,
                    "refund_reverse",
                    now,
                    operation_id=op_id,
                    reference=refund_id,
                    actor=actor,
                    strict=False,
                    first_lot_entry=purchase.earn_entry_id,
                )
            conn.execute(
                update(purchases)
                .where(purchases.c.id == purchase.id)
                .values(
                    refunded_amount=purchases.c.refunded_amount + amount_kopecks,
                    reversed_accrued=purchases.c.reversed_accrued + reverse,
                    returned_redeemed=purchases.c.returned_redeemed + give_back,
                    qualifying=purchases.c.qualifying - qualifying_cut,
                )
            )
            tier = tier_change(conn, self.rules, member_id, locked.tier, now)
            self.journal.store_totals(
                conn, member_id, totals, tier=tier.new_tier if tier else None
            )
            if locked.telegram_id is not None:
                write_notice(
                    conn,
                    kind="refund",
                    dedup_key=f"receipt:refund:{refund_id}",
                    member_id=member_id,
                    chat_id=locked.telegram_id,
                    now=now,
                    payload={
                        "refund_id": refund_id,
                        "receipt_id": receipt_id,
                        "reversed": reverse,
                        "returned": give_back,
                        "balance": totals.balance,
                        "debt": totals.debt,
                    },
                )
            if audit_action is not None:
                write_audit(
                    conn,
                    actor=actor or "",
                    action=audit_action,
                    target=f"member:{member_id}",
                    details={
                        "refund_id": refund_id,
                        "receipt_id": receipt_id,
                        "amount": amount_kopecks,
                        "reversed": reverse,
                        "returned": give_back,
                    },
                    now=now,
                )
            return {
                "refund_id": refund_id,
                "receipt_id": receipt_id,
                "member_id": member_id,
                "card_number": locked.card_number,
                "reversed": reverse,
                "returned": give_back,
                "debt": totals.debt,
                "balance": totals.balance,
                "pending": totals.pending,
                "tier": tier.new_tier if tier else locked.tier,
            }

        result, replayed = await self._run_operation(
            f"refund:{refund_id}", "refund", member_of_purchase, request, actor, body
        )
        self._noticed(replayed)
        return RefundResult(**result, replayed=replayed)

    def _reward_referral(
        self, conn: Connection, invited: Row[Any], now: datetime, op_id: int
    ) -> int | None:
        """Credit the inviter on the invited member's first purchase; the inviter's id if
        they were credited."""
        points = self.rules.referral.inviter_points
        if points <= 0 or invited.phone is None:
            return None
        inviter_id = invited.referred_by
        phone_hash = self.phone_hash(conn, invited.phone)
        insert = postgresql.insert if self._is_postgres else sqlite.insert
        claimed = (
            conn.execute(
                insert(referral_rewards)
                .values(
                    invited_phone_hash=phone_hash,
                    inviter_id=inviter_id,
                    invited_id=invited.id,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=[referral_rewards.c.invited_phone_hash])
                .returning(referral_rewards.c.inviter_id)
            )
        ).scalar_one_or_none()
        if claimed is None:
            return None
        totals = self.journal.lock_totals(conn, inviter_id)
        inviter = self.journal.member_row(conn, inviter_id)
        if inviter.status != "active":  # read once locked
            return None
        self.journal.credit(
            conn,
            inviter_id,
            totals,
            points,
            "referral",
            now,
            operation_id=op_id,
            reference=invited.card_number,
        )
        self.journal.store_totals(conn, inviter_id, totals)
        if inviter.telegram_id is not None:
            write_notice(
                conn,
                kind="referral",
                dedup_key=f"referral:{invited.id}",  # one reward per invited member
                member_id=inviter_id,
                chat_id=inviter.telegram_id,
                now=now,
                payload={"points": points, "balance": totals.balance},
            )
        return int(inviter_id)
