"""Support's hand on the points: an adjustment or a reversal is the ledger's operation with its
audit record (one transaction), then the member's message (in their language, through the
outbox), in one place (the desk's commands in handlers/support.py only read and answer)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ledger.errors import EntryNotReversible, LedgerError
from ledger.service import LedgerService
from ledger.views import EntryView
from messaging.notifier import Notifier
from staff.audit import staff_actor

log = logging.getLogger("loyalty.desk")


class OwnAccount(LedgerError):
    """Support staff do not change their own points: another person decides."""

    code = "own_account"


@dataclass(frozen=True, slots=True)
class Desk:
    ledger: LedgerService
    notifier: Notifier


@dataclass(frozen=True, slots=True)
class Changed:
    """What an adjustment or a reversal did: its entry, the member's change as they see it,
    their balance after it, and whether they were told (None: nothing to tell)."""

    member_id: int
    entry: EntryView
    change: int
    balance: int
    told: bool | None


async def adjust(
    desk: Desk,
    *,
    staff_id: int,
    member_id: int,
    points: int,
    reason: str,
    operation_id: str | None = None,
) -> Changed:
    """Add (positive) or take (negative) points by hand; refusals are LedgerErrors. The same
    `operation_id` again (a redelivered update) adjusts once."""
    member = await desk.ledger.get_member(member_id)
    if member.telegram_id == staff_id:  # their own points: another person decides
        raise OwnAccount("support cannot adjust their own points")
    entry = await desk.ledger.adjust(
        member_id=member_id,
        points=points,
        reason=reason,
        actor=staff_actor(staff_id),
        operation_id=operation_id,
        audit_action="support.adjust",
    )
    return await _tell(desk, member_id, entry, reason)


async def reverse(desk: Desk, *, staff_id: int, entry_id: int, reason: str) -> Changed:
    """Undo one bonus or adjustment entry; refusals are LedgerErrors."""
    ledger = desk.ledger
    if (await ledger.entry(entry_id)).reversed:  # the ledger would answer with the first
        raise EntryNotReversible("this entry is already reversed")
    member_id = await ledger.entry_owner(entry_id)  # a reversal is the same member's entry
    own = await ledger.member_by_telegram(staff_id)
    if own is not None and member_id == own.member_id:
        raise OwnAccount("support cannot reverse their own entries")
    entry = await ledger.reverse_entry(
        entry_id=entry_id,
        reason=reason,
        actor=staff_actor(staff_id),
        audit_action="support.reverse",
    )
    return await _tell(desk, member_id, entry, reason)


async def _tell(desk: Desk, member_id: int, entry: EntryView, reason: str) -> Changed:
    change = entry.points + entry.pending - max(entry.debt, 0)
    told = None  # nothing changed (a bonus that had burnt): nothing to tell
    if change:
        try:
            told = await desk.notifier.points_changed(
                member_id, change, reason, str(entry.entry_id)
            )
        except Exception:  # what was done stands; the message is a courtesy
            log.exception("could not queue a support message to a member")
            told = False
    balance = (await desk.ledger.balance(member_id)).balance
    return Changed(member_id=member_id, entry=entry, change=change, balance=balance, told=told)
