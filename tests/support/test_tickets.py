"""Support tickets on both backends: two people answering one request at once."""

from __future__ import annotations

import asyncio

from ledger.service import LedgerService
from support.tickets import TicketService
from tests.conftest import Phones


async def test_of_five_people_closing_one_ticket_at_once_exactly_one_does(
    ledger: LedgerService, phones: Phones
) -> None:
    member = (await ledger.register_member(phones.next())).member
    tickets = TicketService(ledger.engine, ledger.clock)
    ticket = await tickets.open_ticket(member.member_id, "Where are my points?")
    outcomes = await asyncio.gather(
        *(tickets.close(ticket.ticket_id, by=100 + n, answer=f"answer {n}") for n in range(5))
    )
    closed = [outcome for outcome in outcomes if outcome is not None and outcome[1]]
    assert len(closed) == 1
    stored = await tickets.get(ticket.ticket_id)
    assert stored is not None and stored.status == "closed"
    winner = closed[0][0]
    assert (stored.closed_by, stored.answer) == (winner.closed_by, winner.answer)
    assert await tickets.close(10**9, by=1) is None  # no such ticket
