"""The burn warnings' job runs every half hour over warnings due for days: a later run that
finds them all queued writes nothing, and a run that finds thousands new (a catch-up) queues
them a batch to a write transaction. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger.clock import ManualClock
from ledger.service import LedgerService
from messaging import outbox as outbox_module
from tests.conftest import Phones
from tests.scheduler.test_jobs import make_jobs, queued


async def test_a_later_run_of_the_burn_warnings_writes_nothing_for_warnings_already_queued(
    ledger: LedgerService, phones: Phones, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for telegram_id in (601, 602, 603):
        await ledger.register_member(phones.next(), telegram_id=telegram_id, language="en")
    jobs = make_jobs(ledger)
    clock.advance(timedelta(days=174))  # the welcome points burn in 6 days: the 7-day warning
    assert await jobs.warn() == {"due": 3, "queued": 3}
    enqueue_many = jobs.notifier.outbox.enqueue_many
    calls: list[str] = []

    async def counting(messages: list[dict[str, Any]]) -> int:
        calls.extend(message["dedup_key"] for message in messages)
        return await enqueue_many(messages)

    monkeypatch.setattr(jobs.notifier.outbox, "enqueue_many", counting)
    clock.advance(timedelta(minutes=30))
    assert await jobs.warn() == {"due": 3, "queued": 0}
    assert calls == []  # not even a write that finds its key taken
    assert len(await queued(ledger)) == 3
    clock.advance(timedelta(days=3))  # 3 days before: the next threshold is queued, once
    assert await jobs.warn() == {"due": 3, "queued": 3}
    assert len(calls) == 3 and all(key.endswith(":3") for key in calls)


async def test_new_warnings_are_queued_a_batch_to_a_write_transaction(
    ledger: LedgerService, phones: Phones, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for telegram_id in range(611, 616):
        await ledger.register_member(phones.next(), telegram_id=telegram_id, language="ru")
    jobs = make_jobs(ledger)
    outbox = jobs.notifier.outbox
    monkeypatch.setattr(outbox_module, "ENQUEUE_BATCH", 2)
    write = outbox._write
    writes: list[int] = []

    async def counting(work: Any) -> Any:
        writes.append(1)
        return await write(work)

    monkeypatch.setattr(outbox, "_write", counting)
    clock.advance(timedelta(days=174))
    assert await jobs.warn() == {"due": 5, "queued": 5}
    assert len(writes) == 3  # 2 + 2 + 1, not one transaction per warning
    rows = await queued(ledger)
    assert len(rows) == 5 and all(key.endswith(":7") for key, _ in rows)
