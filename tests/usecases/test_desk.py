"""Support's adjust and reverse as one use case each: the ledger, the audit, the member told."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.i18n import build_i18n
from ledger.service import LedgerService
from messaging.notifier import Notifier
from messaging.outbox import Outbox
from staff.audit import AuditLog
from storage.schema import outbox
from tests.conftest import Phones
from usecases.desk import Desk, OwnAccount, adjust, reverse


def _desk(ledger: LedgerService) -> Desk:
    notifier = Notifier(build_i18n(), ledger, Outbox(ledger.engine, ledger.clock))
    return Desk(ledger=ledger, notifier=notifier)


def _audit(ledger: LedgerService) -> AuditLog:
    return AuditLog(ledger.engine, ledger.clock)


async def _told(ledger: LedgerService) -> list[str]:
    async with ledger.engine.connect() as conn:
        rows = await conn.execute(select(outbox.c.dedup_key).order_by(outbox.c.id))
        return [key for key in rows.scalars() if key.startswith("support:points:")]


async def test_support_adjusts_then_reverses_and_each_is_audited_and_told_once(
    ledger: LedgerService, phones: Phones
) -> None:
    desk = _desk(ledger)
    member = (await ledger.register_member(phones.next(), telegram_id=777)).member
    added = await adjust(
        desk, staff_id=5200, member_id=member.member_id, points=50, reason="sorry", operation_id="x"
    )
    assert (added.change, added.balance, added.told) == (50, 150, True)
    undone = await reverse(desk, staff_id=5200, entry_id=added.entry.entry_id, reason="mistake")
    assert (undone.member_id, undone.change, undone.balance) == (member.member_id, -50, 100)
    audit = [(r.action, r.actor, r.target) for r in reversed(await _audit(ledger).recent())]
    assert audit == [
        ("support.adjust", "tg:5200", f"member:{member.member_id}"),
        ("support.reverse", "tg:5200", f"entry:{added.entry.entry_id}"),
    ]
    assert await _told(ledger) == [
        f"support:points:{added.entry.entry_id}",
        f"support:points:{undone.entry.entry_id}",
    ]


async def test_support_cannot_change_their_own_points_and_nothing_is_recorded(
    ledger: LedgerService, phones: Phones
) -> None:
    desk = _desk(ledger)
    own = (await ledger.register_member(phones.next(), telegram_id=5201)).member
    with pytest.raises(OwnAccount):
        await adjust(desk, staff_id=5201, member_id=own.member_id, points=500, reason="me")
    assert (await ledger.balance(own.member_id)).balance == 100
    assert await _audit(ledger).recent() == [] and await _told(ledger) == []


async def test_an_adjustment_redelivered_is_audited_once_and_its_record_commits_with_it(
    ledger: LedgerService, phones: Phones
) -> None:
    """The same update twice (Telegram redelivers) adjusts once and leaves one audit record;
    the record is written in the adjustment's own transaction, so neither stands alone."""
    desk = _desk(ledger)
    member = (await ledger.register_member(phones.next(), telegram_id=778)).member
    for _ in range(2):
        again = await adjust(
            desk,
            staff_id=5202,
            member_id=member.member_id,
            points=20,
            reason="r",
            operation_id="u1",
        )
    assert again.balance == 120
    records = [(r.action, r.reason, r.details) for r in await _audit(ledger).recent()]
    assert records == [("support.adjust", "r", {"points": 20, "entry": again.entry.entry_id})]
