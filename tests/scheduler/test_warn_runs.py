"""The burn warnings' job runs every half hour over warnings due for days: a later run that
finds them all queued writes nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger.clock import ManualClock
from ledger.service import LedgerService
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
    enqueue = jobs.notifier.outbox.enqueue
    calls: list[str] = []

    async def counting(**kwargs: Any) -> bool:
        calls.append(kwargs["dedup_key"])
        return await enqueue(**kwargs)

    monkeypatch.setattr(jobs.notifier.outbox, "enqueue", counting)
    clock.advance(timedelta(minutes=30))
    assert await jobs.warn() == {"due": 3, "queued": 0}
    assert calls == []  # not even a write that finds its key taken
    assert len(await queued(ledger)) == 3
    clock.advance(timedelta(days=3))  # 3 days before: the next threshold is queued, once
    assert await jobs.warn() == {"due": 3, "queued": 3}
    assert len(calls) == 3 and all(key.endswith(":3") for key in calls)
