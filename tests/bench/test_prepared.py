"""bench.prepared: a dataset is built once and each run gets its own copy."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bench import prepared
from storage.engine import create_engine
from storage.schema import members


async def _count_and_spoil(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            count = (await conn.execute(select(func.count()).select_from(members))).scalar_one()
            spoilt = (await conn.execute(update(members).values(balance=0))).rowcount
        return int(count), int(spoilt)
    finally:
        await engine.dispose()


async def _balances(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            total = await conn.execute(select(func.sum(members.c.balance)))
            return int(total.scalar_one() or 0)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_each_copy_starts_from_the_template_and_changes_only_itself(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        request.getfixturevalue("postgres_url")  # skips (or fails under CI) without a server
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    members_count = 40 + (hash(str(tmp_path)) % 1000)  # a template no other run has made
    template = await prepared.template(backend, members_count, seed=5, quiet=True)
    first = await prepared.prepared(backend, members_count, seed=5, quiet=True)
    second = await prepared.prepared(backend, members_count, seed=5, quiet=True)
    try:
        assert len({template, first, second}) == 3
        before = await _balances(template)
        assert before > 0
        assert await _count_and_spoil(first) == (members_count, members_count)
        assert await _balances(first) == 0
        assert await _balances(second) == before  # the other copy and the template are as built
        assert await _balances(template) == before
    finally:
        for url in (first, second):
            await prepared.discard(url)
        if backend == "postgresql":
            await prepared.discard(template)
