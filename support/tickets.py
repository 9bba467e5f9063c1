"""Support requests and disputes: members write them, support staff answer and close them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import policy
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
    status: str  # open | closed
    created_at: datetime
    closed_at: datetime | None = None
    closed_by: int | None = None  # the Telegram id of who closed it
    answer: str | None = None  # what they wrote back to the member


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
        """Store a member's request (without hidden characters: staff read it); a dispute
        names the entry it is about."""
        text = policy.readable_text(text).strip()
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

    async def get(self, ticket_id: int) -> Ticket | None:
        async with self.reader.connect() as conn:
            row = (await conn.execute(select(tickets).where(tickets.c.id == ticket_id))).first()
        return _ticket(row) if row is not None else None

    async def open_tickets(self, limit: int = 20) -> tuple[list[Ticket], int]:
        """The oldest open tickets first, and how many are open in all."""
        async with self.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(tickets)
                    .where(tickets.c.status == "open")
                    .order_by(tickets.c.id)
                    .limit(limit)
                )
            ).all()
            total = (
                await conn.execute(
                    select(func.count()).select_from(tickets).where(tickets.c.status == "open")
                )
            ).scalar_one()
        return [_ticket(row) for row in rows], int(total)

    async def close(
        self, ticket_id: int, *, by: int, answer: str | None = None
    ) -> tuple[Ticket, bool] | None:
        """Close an open ticket (with the answer the member was sent, if any). Returns the
        ticket as it now is and whether this call closed it (two people answering at once:
        one closes it, the other learns it was closed); None if there is no such ticket."""
        if answer is not None and len(answer.strip()) > MAX_TICKET_TEXT:
            raise TicketTooLong(f"at most {MAX_TICKET_TEXT} characters")
        async with self.engine.begin() as conn:
            closed = (
                await conn.execute(
                    update(tickets)
                    .where(tickets.c.id == ticket_id, tickets.c.status == "open")
                    .values(
                        status="closed",
                        closed_at=self.clock.now(),
                        closed_by=by,
                        answer=answer.strip() if answer else None,
                    )
                )
            ).rowcount == 1
            row = (await conn.execute(select(tickets).where(tickets.c.id == ticket_id))).first()
        return (_ticket(row), closed) if row is not None else None

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
        closed_at=row.closed_at,
        closed_by=row.closed_by,
        answer=row.answer,
    )


def erase_member_tickets(conn: Connection, member_id: int) -> list[int]:
    """A member erased their data: what they wrote to support and were answered goes (the
    requests stay, empty). Returns the requests' numbers (messages that quote them go too)."""
    return list(
        conn.execute(
            update(tickets)
            .where(tickets.c.member_id == member_id)
            .values(text="", answer=None)
            .returning(tickets.c.id)
        ).scalars()
    )
