"""Support requests and disputes: members write them, support staff answer and close them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.clock import Clock, SystemClock
from storage.engine import readonly
from storage.schema import tickets

MAX_TICKET_TEXT = 2000


@dataclass(frozen=True, slots=True)
class Ticket:
    ticket_id: int
    member_id: int
    kind: str
    entry_id: int | None
    text: str
    status: str
    created_at: datetime


class TicketTooLong(ValueError):
    """The text is longer than MAX_TICKET_TEXT characters."""


class TicketService:
    def __init__(self, engine: AsyncEngine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.reader = readonly(engine)
        self.clock: Clock = clock or SystemClock()

    async def open_ticket(
        self, member_id: int, text: str, *, kind: str = "support", entry_id: int | None = None
    ) -> Ticket:
        """Store a member's request; a dispute names the entry it is about."""
        text = text.strip()
        if len(text) > MAX_TICKET_TEXT:
            raise TicketTooLong(f"at most {MAX_TICKET_TEXT} characters")
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    tickets.insert()
                    .values(
                        member_id=member_id,
                        kind=kind,
                        entry_id=entry_id,
                        text=text,
                        created_at=self.clock.now(),
                    )
                    .returning(*tickets.c)
                )
            ).one()
        return _ticket(row)

    async def tickets_of(self, member_id: int) -> list[Ticket]:
        async with self.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(tickets).where(tickets.c.member_id == member_id).order_by(tickets.c.id)
                )
            ).all()
        return [_ticket(row) for row in rows]


def _ticket(row: Any) -> Ticket:
    return Ticket(
        ticket_id=row.id,
        member_id=row.member_id,
        kind=row.kind,
        entry_id=row.entry_id,
        text=row.text,
        status=row.status,
        created_at=row.created_at,
    )
