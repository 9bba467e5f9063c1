"""Audit records written inside another operation's transaction: a sale and its audit record
commit together, so neither stands without the other (staff.audit reads them and records the
staff actions that are not ledger operations)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from storage.fast import Fast, later
from storage.schema import audit_log

_WRITE = Fast(audit_log.insert())


def audit_values(
    *,
    actor: str,
    action: str,
    target: str | None,
    reason: str | None,
    details: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """One audit_log row: who, what, to whom, why, the details (JSON, never phones or names)."""
    return {
        "actor": actor,
        "action": action,
        "target": target,
        "reason": reason,
        "details": json.dumps(details, sort_keys=True, default=str) if details else None,
        "created_at": now,
    }


def write_audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str | None,
    details: Mapping[str, Any],
    now: datetime,
    reason: str | None = None,
) -> None:
    """Append an audit record in the caller's transaction (nothing reads it back, so it may go
    with the transaction's last writes: storage.fast.later)."""
    values = audit_values(
        actor=actor, action=action, target=target, reason=reason, details=details, now=now
    )
    later(conn, _WRITE, values)
