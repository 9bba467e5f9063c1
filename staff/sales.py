"""Purchases recorded by a cashier in the bot, and redemptions the member confirms first (asked
for by a cashier in the bot, or by a till over the HTTP API)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.clock import Clock, SystemClock
from storage.schema import redemption_requests

CONFIRMATION_TTL = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class RedemptionRequest:
    request_id: int
    member_id: int
    cashier_id: int
    receipt_id: str
    amount: int
    redeem_points: int
    status: str  # pending | confirmed | declined | expired | cancelled
    expires_at: datetime
    cashier_language: str | None = None  # the language the cashier was spoken to in
    cashier_message_id: int | None = None  # the cashier's "waiting for the customer" message
    api_key_id: int | None = None  # asked for by a till with this key (no cashier in a chat)

    def status_at(self, now: datetime) -> str:
        """The status, counting a pending request whose time is over as expired."""
        return "expired" if self.status == "pending" and self.expires_at <= now else self.status


class ConfirmationService:
    """A redemption above the threshold waits here until the member answers, or expires."""

    def __init__(
        self, engine: AsyncEngine, clock: Clock | None = None, ttl: timedelta = CONFIRMATION_TTL
    ) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        self.ttl = ttl

    async def open(
        self,
        *,
        member_id: int,
        cashier_id: int,
        receipt_id: str,
        amount: int,
        redeem_points: int,
        cashier_language: str | None = None,
        cashier_message_id: int | None = None,
        api_key_id: int | None = None,
    ) -> RedemptionRequest:
        """Open a request; a receipt_id that has one already raises IntegrityError."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    redemption_requests.insert()
                    .values(
                        member_id=member_id,
                        cashier_id=cashier_id,
                        receipt_id=receipt_id,
                        amount=amount,
                        redeem_points=redeem_points,
                        status="pending",
                        expires_at=now + self.ttl,
                        created_at=now,
                        cashier_language=cashier_language,
                        cashier_message_id=cashier_message_id,
                        api_key_id=api_key_id,
                    )
                    .returning(*redemption_requests.c)
                )
            ).one()
        return _request(row)

    async def get(self, request_id: int) -> RedemptionRequest | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(redemption_requests).where(redemption_requests.c.id == request_id)
                )
            ).first()
        return _request(row) if row is not None else None

    async def by_receipt(self, receipt_id: str) -> RedemptionRequest | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(redemption_requests).where(
                        redemption_requests.c.receipt_id == receipt_id
                    )
                )
            ).first()
        return _request(row) if row is not None else None

    async def due(self, limit: int = 100) -> list[RedemptionRequest]:
        """Pending requests whose time is over, oldest first (the scheduler expires them)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(redemption_requests)
                    .where(
                        redemption_requests.c.status == "pending",
                        redemption_requests.c.expires_at <= self.clock.now(),
                    )
                    .order_by(redemption_requests.c.expires_at)
                    .limit(limit)
                )
            ).all()
        return [_request(row) for row in rows]

    async def settle(self, request_id: int, status: str) -> tuple[RedemptionRequest, bool] | None:
        """Move a pending request to `status`: confirmed, declined (by the member) or cancelled
        (by the cashier) while it is unexpired;
        expired when its time is over or when the timer says so. Returns the request as it
        now is, and whether this call moved it (a second tap, or the other answer after the
        first, finds it settled already); None if unknown."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            expire = update(redemption_requests).where(
                redemption_requests.c.id == request_id, redemption_requests.c.status == "pending"
            )
            if status != "expired":
                expire = expire.where(redemption_requests.c.expires_at <= now)
            moved = (await conn.execute(expire.values(status="expired"))).rowcount == 1
            if status != "expired":
                moved = (
                    await conn.execute(
                        update(redemption_requests)
                        .where(
                            redemption_requests.c.id == request_id,
                            redemption_requests.c.status == "pending",
                        )
                        .values(status=status)
                    )
                ).rowcount == 1
            row = (
                await conn.execute(
                    select(redemption_requests).where(redemption_requests.c.id == request_id)
                )
            ).first()
        return (_request(row), moved and row.status == status) if row is not None else None


def _request(row: Any) -> RedemptionRequest:
    return RedemptionRequest(
        request_id=row.id,
        member_id=row.member_id,
        cashier_id=row.cashier_id,
        receipt_id=row.receipt_id,
        amount=row.amount,
        redeem_points=row.redeem_points,
        status=row.status,
        expires_at=row.expires_at,
        cashier_language=row.cashier_language,
        cashier_message_id=row.cashier_message_id,
        api_key_id=row.api_key_id,
    )
