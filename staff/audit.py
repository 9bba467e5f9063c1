"""The audit log: every staff action with who, what, when and why. No personal data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.clock import Clock, SystemClock
from storage.audit import audit_values
from storage.schema import audit_log

# The actor of what staff do in the bot, in the journal and the audit: "tg:<telegram id>".
STAFF_ACTOR = "tg:"


def staff_actor(telegram_id: int) -> str:
    return f"{STAFF_ACTOR}{telegram_id}"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]
    reason: str | None
    created_at: datetime


class AuditLog:
    def __init__(self, engine: AsyncEngine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()

    async def record(
        self,
        actor: str,
        action: str,
        *,
        target: str | None = None,
        reason: str | None = None,
        conn: AsyncConnection | None = None,
        **details: Any,
    ) -> None:
        """Append one record (inside `conn`'s transaction when given)."""
        values = audit_values(
            actor=actor,
            action=action,
            target=target,
            reason=reason,
            details=details,
            now=self.clock.now(),
        )
        if conn is not None:
            await conn.execute(audit_log.insert().values(**values))
            return
        async with self.engine.begin() as own:
            await own.execute(audit_log.insert().values(**values))

    async def recent(self, limit: int = 50) -> list[AuditRecord]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
            ).all()
        return [
            AuditRecord(
                actor=row.actor,
                action=row.action,
                target=row.target,
                details=json.loads(row.details) if row.details else {},
                reason=row.reason,
                created_at=row.created_at,
            )
            for row in rows
        ]
