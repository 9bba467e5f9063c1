"""Segments: the preview count of a filter, and the segments marketers save by name (saving and
deleting one are staff actions, audited in the same transaction)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import policy
from ledger.clock import Clock, SystemClock
from ledger.rules import Rules
from marketing.audience import SegmentCounts, count_segment
from marketing.segments import SegmentError, SegmentFilter, parse_filter
from staff.audit import AuditLog
from storage.engine import readonly
from storage.schema import segments

MAX_NAME = 100
INVALID_NAME = "invalid_name"
NAME_TAKEN = "segment_name_taken"


@dataclass(frozen=True, slots=True)
class SavedSegment:
    segment_id: int
    name: str
    filter: SegmentFilter
    created_by: str
    created_at: datetime


class Segments:
    """Counts segments and keeps the saved ones. `clock`: the ledger's."""

    def __init__(
        self,
        engine: AsyncEngine,
        rules: Rules,
        clock: Clock | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.engine = engine
        self.reader = readonly(engine)
        self.rules = rules
        self.clock: Clock = clock or SystemClock()
        self.audit = audit or AuditLog(engine, self.clock)

    def parse(self, raw: Any) -> SegmentFilter:
        """A filter from its JSON object, against the program's tiers (SegmentError if bad)."""
        return parse_filter(raw, [tier.name for tier in self.rules.tiers])

    async def preview(self, segment: SegmentFilter) -> SegmentCounts:
        """How many members are in the segment now, and how many an offer reaches."""
        now = self.clock.now()
        async with self.reader.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                await plan_for_counting(conn)
            return await conn.run_sync(count_segment, segment, now)

    async def save(self, name: str, segment: SegmentFilter, *, actor: str) -> SavedSegment:
        """Keep the segment under a name no other saved segment has (SegmentError if taken)."""
        name = _name(name)
        now = self.clock.now()
        text = json.dumps(segment.to_json(), sort_keys=True)
        try:
            async with self.engine.begin() as conn:
                segment_id = (
                    await conn.execute(
                        segments.insert()
                        .values(name=name, filter=text, created_by=actor, created_at=now)
                        .returning(segments.c.id)
                    )
                ).scalar_one()
                await self.audit.record(
                    actor,
                    "segment.save",
                    target=f"segment:{segment_id}",
                    conn=conn,
                    name=name,
                    filter=segment.to_json(),
                )
        except IntegrityError as error:
            raise SegmentError(
                NAME_TAKEN, "name", f"a segment named {name!r} exists already"
            ) from error
        return SavedSegment(segment_id, name, segment, actor, now)

    async def saved(self) -> list[SavedSegment]:
        """Every saved segment, by name."""
        async with self.reader.connect() as conn:
            rows = (await conn.execute(select(segments).order_by(segments.c.name))).all()
        return [_saved(row) for row in rows]

    async def get(self, segment_id: int) -> SavedSegment | None:
        async with self.reader.connect() as conn:
            row = (await conn.execute(select(segments).where(segments.c.id == segment_id))).first()
        return None if row is None else _saved(row)

    async def delete(self, segment_id: int, *, actor: str) -> bool:
        """Forget a saved segment; False if there is none with this id."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    delete(segments)
                    .where(segments.c.id == segment_id)
                    .returning(segments.c.name, segments.c.filter)
                )
            ).first()
            if row is not None:
                await self.audit.record(
                    actor,
                    "segment.delete",
                    target=f"segment:{segment_id}",
                    conn=conn,
                    name=row.name,
                    filter=json.loads(row.filter),
                )
        return row is not None


async def plan_for_counting(conn: AsyncConnection) -> None:
    """PostgreSQL settings for this transaction only, from the plans of the benchmark
    (EXPLAIN ANALYZE, docs/BENCHMARKS.md, issue 15): the statement's estimated cost passes
    jit_above_cost, and compiling it took longer than running it; parallel plans built the
    grouped pass over purchases once in every worker instead of sharing it."""
    await conn.exec_driver_sql("SET LOCAL jit = off")
    await conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not policy.is_plain_text(name):
        raise SegmentError(
            INVALID_NAME,
            "name",
            f"a segment's name is 1 to {MAX_NAME} characters of plain text",
        )
    return name


def _saved(row: Any) -> SavedSegment:
    # Read without the program's tiers: a tier renamed since is no error, it matches nobody.
    return SavedSegment(
        segment_id=row.id,
        name=row.name,
        filter=parse_filter(json.loads(row.filter), None),
        created_by=row.created_by,
        created_at=row.created_at,
    )
