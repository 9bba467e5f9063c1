"""Notices: what a change tells a member, written as an outbox row in the change's own
transaction, so that a change is never without its notice (a receipt cannot be lost between
the purchase's commit and the queueing of its receipt). A notice holds a kind and its data, no
text: messaging renders it in the member's language when it sends it (messaging/notices.py).

The categories of the outbox live here too: a notice's row carries its category and priority.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from storage.fast import Fast, later
from storage.schema import outbox

TRANSACTIONAL = "transactional"  # receipts, confirmations, support's replies: never capped
# The capped categories: the higher wins the weekly cap.
PRIORITY = {TRANSACTIONAL: 100, "birthday": 40, "reminder": 30, "tier": 20, "offer": 10}

_WRITE = {
    "postgresql": Fast(
        postgresql.insert(outbox).on_conflict_do_nothing(index_elements=[outbox.c.dedup_key])
    ),
    "sqlite": Fast(
        sqlite.insert(outbox).on_conflict_do_nothing(index_elements=[outbox.c.dedup_key])
    ),
}


def write_notice(
    conn: Connection,
    *,
    kind: str,
    payload: Mapping[str, Any],
    dedup_key: str,
    member_id: int,
    chat_id: int,
    now: datetime,
    category: str = TRANSACTIONAL,
    expires_at: datetime | None = None,
) -> None:
    """Queue a notice in the caller's transaction (nothing reads the row back, so the insert
    may go with the transaction's last writes: storage.fast.later); one already queued under
    `dedup_key` (a retried operation) stays as it is."""
    if category not in PRIORITY:
        raise ValueError(f"unknown message category {category!r}")
    later(
        conn,
        _WRITE[conn.dialect.name],
        {
            "dedup_key": dedup_key,
            "member_id": member_id,
            "chat_id": chat_id,
            "category": category,
            "priority": PRIORITY[category],
            "text": "",
            "kind": kind,
            "payload": json.dumps(payload, sort_keys=True),
            "status": "queued",
            "not_before": now,
            "expires_at": expires_at,
            "attempts": 0,
            "created_at": now,
        },
    )
