"""The queue of every message the bot starts on its own: its table operations.

Producers `enqueue` a rendered message, or write a notice (a kind and its data, rendered in
the member's language when it is sent: messaging/notices.py), with a dedup key; a message
already queued under that key is not queued again, so a job that runs twice or a retried
request never sends twice. The sender (messaging/sender.py) claims what is due and records
each outcome: sent, skipped_optout, skipped_unreachable, dropped or failed, with a reason.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.clock import Clock, SystemClock
from storage.engine import readonly
from storage.notices import PRIORITY, TRANSACTIONAL
from storage.schema import outbox, outbox_lease
from storage.transactions import SyncDatabase

log = logging.getLogger("loyalty.outbox")
T = TypeVar("T")

OPT_OUT_FIELD = {"reminder": "notify_reminders", "tier": "notify_tier", "offer": "notify_offers"}
CAP_WINDOW = timedelta(days=7)
BATCH = 200
KEYS_PER_QUERY = 1000  # dedup keys looked up per statement (`queued`)
# Messages queued per write transaction by `enqueue_many`: a job's thousands of reminders in a
# few short transactions, each holding SQLite's write lock for milliseconds, not seconds.
ENQUEUE_BATCH = 200
# A message claimed by a sender that died before recording the outcome is retried after this,
# or as soon as a sender of a later epoch (one that took over) claims (see `claim_due`).
CLAIM_TIMEOUT = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    message_id: int
    dedup_key: str
    member_id: int | None
    chat_id: int
    category: str
    priority: int
    text: str
    reply_markup: dict[str, Any] | None
    not_before: datetime
    expires_at: datetime | None
    attempts: int
    broadcast_id: int | None
    kind: str | None = None  # a notice: rendered from `payload` when sent (messaging/notices.py)
    payload: dict[str, Any] | None = None


class Superseded(Exception):
    """A sender of a later epoch took over (a new leader): this one is no longer the sender
    and claims nothing more (its scheduler stops it when it notices the lost lock)."""


class Outbox:
    """The queue itself: enqueue, claim what is due, record outcomes."""

    def __init__(
        self, engine: AsyncEngine, clock: Clock | None = None, db: SyncDatabase | None = None
    ) -> None:
        self.engine = engine
        # The ledger's transactions (on SQLite: on the loop's thread when the write lock is
        # free, not through aiosqlite's thread hops), for the sender's outcomes; else the
        # async engine's.
        self.db = db
        self.reader = readonly(engine)
        self.clock: Clock = clock or SystemClock()
        self.wakeup = asyncio.Event()

    async def enqueue(
        self,
        *,
        dedup_key: str,
        chat_id: int,
        text: str,
        category: str = TRANSACTIONAL,
        member_id: int | None = None,
        not_before: datetime | None = None,
        expires_at: datetime | None = None,
        reply_markup: dict[str, Any] | None = None,
        broadcast_id: int | None = None,
        conn: AsyncConnection | None = None,
    ) -> bool:
        """Queue a message; False when one with this dedup key exists already."""
        statement = self._insert(
            **_columns(
                dedup_key=dedup_key,
                chat_id=chat_id,
                text=text,
                category=category,
                member_id=member_id,
                not_before=not_before,
                expires_at=expires_at,
                reply_markup=reply_markup,
                broadcast_id=broadcast_id,
            )
        )
        if conn is not None:
            added = (await conn.execute(statement)).scalar_one_or_none()
        else:
            added = await self._write(lambda own: own.execute(statement).scalar_one_or_none())
        if added is not None:
            self.wakeup.set()
        return added is not None

    async def enqueue_many(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Queue several messages (each given as `enqueue`'s keyword arguments, without
        `conn`), ENQUEUE_BATCH to a write transaction instead of one each; a message whose
        dedup key is queued already is skipped, as by `enqueue`. How many were queued."""
        added = 0
        for start in range(0, len(messages), ENQUEUE_BATCH):
            batch = messages[start : start + ENQUEUE_BATCH]
            added += await self._write(functools.partial(self.queue_in, messages=batch))
        if added:
            self.wakeup.set()
        return added

    def queue_in(self, conn: Connection, messages: Sequence[Mapping[str, Any]]) -> int:
        """Queue these messages in the caller's write transaction, with the writes they go
        with (it may run on the writer thread: the caller sets `wakeup` once it committed).
        How many were queued (a dedup key taken already is skipped)."""
        rows = (
            conn.execute(self._insert(**_columns(**message))).scalar_one_or_none()
            for message in messages
        )
        return sum(row is not None for row in rows)

    async def queued(self, dedup_keys: Sequence[str]) -> set[str]:
        """Those of these keys a message is queued under already: read in a few statements, so
        that a job finding the same things due on every run writes nothing the second time."""
        found: set[str] = set()
        async with self.reader.connect() as conn:
            for start in range(0, len(dedup_keys), KEYS_PER_QUERY):
                part = dedup_keys[start : start + KEYS_PER_QUERY]
                query = select(outbox.c.dedup_key).where(outbox.c.dedup_key.in_(part))
                found.update((await conn.execute(query)).scalars())
        return found

    def _insert(self, *, category: str, not_before: datetime | None = None, **values: Any) -> Any:
        if category not in PRIORITY:
            raise ValueError(f"unknown message category {category!r}")
        now = self.clock.now()
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        return (
            insert(outbox)
            .values(
                category=category,
                priority=PRIORITY[category],
                not_before=not_before or now,
                created_at=now,
                **values,
            )
            .on_conflict_do_nothing(index_elements=[outbox.c.dedup_key])
            .returning(outbox.c.id)
        )

    async def take_epoch(self, holder: str) -> int:
        """The next sender epoch: a sender that starts (a new leader, a restart) takes one,
        and its first claim voids the claims of every older epoch at once."""
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        first = insert(outbox_lease).values(
            id=1, epoch=1, holder=holder[:64], taken_at=self.clock.now()
        )
        statement = first.on_conflict_do_update(
            index_elements=[outbox_lease.c.id],
            set_={
                "epoch": outbox_lease.c.epoch + 1,
                "holder": first.excluded.holder,
                "taken_at": first.excluded.taken_at,
            },
        ).returning(outbox_lease.c.epoch)
        return int(await self._write(lambda conn: conn.execute(statement).scalar_one()))

    async def _write(self, work: Callable[[Connection], T]) -> T:
        """`work` in a write transaction of its own: the ledger's (see `__init__`), or the
        async engine's."""
        if self.db is not None:
            return await self.db.write(work)
        async with self.engine.begin() as conn:
            return await conn.run_sync(work)

    async def claim_due(
        self,
        limit: int = BATCH,
        *,
        epoch: int,
        busy_chats: Collection[int] = (),
    ) -> list[OutboxMessage]:
        """Take up to `limit` due messages, highest priority first, at most one per chat and
        none for `busy_chats` (whose per-chat interval has not passed), marking them `sending`
        under `epoch` so that no other sender takes them too. One busy chat's backlog then
        never holds up another chat's message.

        Claims of a sender that died become due again: at once when this sender's epoch is
        later than theirs, else after CLAIM_TIMEOUT. Raises `Superseded`, claiming nothing,
        when a sender of a later epoch has taken over."""
        now = self.clock.now()
        void = or_(
            outbox.c.not_before <= now - CLAIM_TIMEOUT,
            outbox.c.claim_epoch.is_(None),
            outbox.c.claim_epoch < epoch,
        )
        due = [outbox.c.status == "queued", outbox.c.not_before <= now]
        if busy_chats:
            due.append(outbox.c.chat_id.not_in(list(busy_chats)))
        rank = (
            func.row_number()
            .over(
                partition_by=outbox.c.chat_id,
                order_by=(outbox.c.priority.desc(), outbox.c.not_before, outbox.c.id),
            )
            .label("rank")
        )
        ranked = select(outbox.c.id, outbox.c.priority, outbox.c.not_before, rank)
        firsts = ranked.where(*due).subquery()
        chosen = (
            select(firsts.c.id)
            .where(firsts.c.rank == 1)
            .order_by(firsts.c.priority.desc(), firsts.c.not_before, firsts.c.id)
            .limit(limit)
        )
        postgres = self.engine.dialect.name == "postgresql"

        def void_claims(conn: Connection) -> None:
            # Read under a lock (PostgreSQL): a takeover's `take_epoch` waits for this claim to
            # commit, so no claim of an older epoch is made after a takeover.
            lease = select(outbox_lease.c.epoch).where(outbox_lease.c.id == 1)
            if postgres:
                lease = lease.with_for_update()
            latest = conn.execute(lease).scalar_one_or_none()
            if latest is not None and latest > epoch:
                raise Superseded(f"epoch {epoch} is superseded by epoch {latest}")
            conn.execute(
                update(outbox).where(outbox.c.status == "sending", void).values(status="queued")
            )

        # Which to take: read without the write lock (with a backlog this ranks every queued
        # message); the claim below takes only those still queued, so a message another sender
        # claimed meanwhile is not taken twice. Claims of a sender that died are made queued
        # first (rarely: after a takeover or a crash), so that they are among those read.
        stale = select(outbox.c.id).where(outbox.c.status == "sending", void).limit(1)
        async with self.reader.connect() as conn:
            voided = (await conn.execute(stale)).first() is not None
        if voided:
            await self._write(void_claims)
        async with self.reader.connect() as conn:  # a snapshot that has them queued
            ids = list((await conn.execute(chosen)).scalars().all())

        def claim(conn: Connection) -> list[Any]:
            void_claims(conn)
            if not ids:
                return []
            # Only rows still queued: another sender may have claimed one meanwhile.
            return list(
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(ids), outbox.c.status == "queued")
                    .values(status="sending", not_before=now, claim_epoch=epoch)
                    .returning(*outbox.c)
                ).all()
            )

        rows = await self._write(claim)
        rows.sort(key=lambda row: (-row.priority, row.id))
        return [_message(row) for row in rows]

    async def record(
        self,
        message_id: int,
        status: str,
        *,
        reason: str | None = None,
        telegram_message_id: int | None = None,
        not_before: datetime | None = None,
        attempt: bool = False,
        epoch: int,
    ) -> bool:
        """Record the outcome of a message this sender claimed under `epoch`. False, and
        nothing changed, when it is no longer this sender's: a sender of a later epoch took
        it over (and may have sent it already)."""
        values: dict[str, Any] = {"status": status, "reason": reason}
        if status == "sent":
            values["sent_at"] = self.clock.now()
            values["message_id"] = telegram_message_id
        if not_before is not None:
            values["not_before"] = not_before
        if attempt:
            values["attempts"] = outbox.c.attempts + 1
        mine = (
            outbox.c.id == message_id,
            outbox.c.status == "sending",
            outbox.c.claim_epoch == epoch,
        )
        statement = update(outbox).where(*mine).values(**values)
        return bool(await self._write(lambda conn: conn.execute(statement).rowcount))

    async def record_sent(self, sent: Mapping[int, int], *, epoch: int) -> set[int]:
        """Record messages this sender claimed under `epoch` as sent, all in one transaction
        and one statement: outbox id -> Telegram's message id. Returns the ids recorded; one
        that a sender of a later epoch took over meanwhile is left as that sender has it."""
        if not sent:
            return set()
        statement = (
            update(outbox)
            .where(
                outbox.c.id.in_(list(sent)),
                outbox.c.status == "sending",
                outbox.c.claim_epoch == epoch,
            )
            .values(
                status="sent",
                reason=None,
                sent_at=self.clock.now(),
                message_id=case(dict(sent), value=outbox.c.id),
                attempts=outbox.c.attempts + 1,
            )
            .returning(outbox.c.id)
        )
        return set(await self._write(lambda conn: list(conn.execute(statement).scalars())))

    async def withdraw(self, dedup_key: str, reason: str) -> int | None:
        """A message that no longer makes sense (a request that ended): dropped if still
        queued; if sent already, its Telegram message id (to edit it), else None."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.dedup_key == dedup_key, outbox.c.status == "queued")
                .values(status="dropped", reason=reason)
            )
            sent = await conn.execute(
                select(outbox.c.message_id).where(
                    outbox.c.dedup_key == dedup_key, outbox.c.status == "sent"
                )
            )
            message_id = sent.scalar_one_or_none()
        return int(message_id) if message_id is not None else None

    async def capped_sent_since(
        self, member_id: int, since: datetime
    ) -> list[tuple[int, datetime]]:
        """(id, sent_at) of the capped (non-transactional) messages the member got since
        `since`, oldest first."""
        query = (
            select(outbox.c.id, outbox.c.sent_at)
            .where(
                outbox.c.member_id == member_id,
                outbox.c.status == "sent",
                outbox.c.category != TRANSACTIONAL,
                outbox.c.sent_at > since,
            )
            .order_by(outbox.c.sent_at)
        )
        async with self.reader.connect() as conn:
            return [(row.id, row.sent_at) for row in (await conn.execute(query)).all()]

    async def outcomes(self, dedup_prefix: str) -> dict[str, str]:
        """The status of each message whose dedup key starts with `dedup_prefix`, by key."""
        query = select(outbox.c.dedup_key, outbox.c.status).where(
            outbox.c.dedup_key.startswith(dedup_prefix, autoescape=True)
        )
        async with self.reader.connect() as conn:
            return {row.dedup_key: row.status for row in (await conn.execute(query)).all()}

    async def counts(self, broadcast_id: int | None = None) -> dict[str, int]:
        """How many messages are in each status (for one broadcast, if given)."""
        query = select(outbox.c.status, func.count()).group_by(outbox.c.status)
        if broadcast_id is not None:
            query = query.where(outbox.c.broadcast_id == broadcast_id)
        async with self.reader.connect() as conn:
            return {status: int(n) for status, n in (await conn.execute(query)).all()}


def _message(row: Any) -> OutboxMessage:
    return OutboxMessage(
        message_id=row.id,
        dedup_key=row.dedup_key,
        member_id=row.member_id,
        chat_id=row.chat_id,
        category=row.category,
        priority=row.priority,
        text=row.text,
        reply_markup=json.loads(row.reply_markup) if row.reply_markup else None,
        not_before=row.not_before,
        expires_at=row.expires_at,
        attempts=row.attempts,
        broadcast_id=row.broadcast_id,
        kind=row.kind,
        payload=json.loads(row.payload) if row.payload else None,
    )


__all__: Sequence[str] = [
    "TRANSACTIONAL",
    "Outbox",
    "OutboxMessage",
    "Superseded",
    "erase_member_messages",
]


def erase_member_messages(conn: Connection, member_id: int, *, about: Sequence[str] = ()) -> None:
    """A member erased their data: the messages to them and those about them (keys starting
    with one of `about`, given by whoever made those keys) keep no text, buttons, notice
    payload or chat id; unsent ones are dropped."""
    patterns = [_escaped(prefix) + "%" for prefix in about]
    to_or_about = or_(
        outbox.c.member_id == member_id,
        *(outbox.c.dedup_key.like(pattern, escape="\\") for pattern in patterns),
    )
    conn.execute(
        update(outbox)
        .where(to_or_about, outbox.c.status == "queued")
        .values(status="dropped", reason="the member deleted their data")
    )
    conn.execute(
        update(outbox)
        .where(to_or_about)
        .values(text="", reply_markup=None, payload=None, chat_id=0)
    )


def _escaped(text: str) -> str:
    """`text` matched literally by LIKE ... ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _columns(
    *,
    dedup_key: str,
    chat_id: int,
    text: str,
    category: str = TRANSACTIONAL,
    member_id: int | None = None,
    not_before: datetime | None = None,
    expires_at: datetime | None = None,
    reply_markup: dict[str, Any] | None = None,
    broadcast_id: int | None = None,
    kind: str | None = None,
    payload: Mapping[str, Any] | None = None,
    status: str = "queued",
    reason: str | None = None,
) -> dict[str, Any]:
    """`enqueue`'s arguments as the outbox row's columns (the keyboard and a notice's payload
    as JSON). `status`: a message known at once to be skipped (a broadcast's recipient who
    opted out) is written with its outcome and reason, so that every recipient has one."""
    return {
        "kind": kind,
        "payload": json.dumps(payload, sort_keys=True) if payload is not None else None,
        "status": status,
        "reason": reason,
        "dedup_key": dedup_key,
        "member_id": member_id,
        "chat_id": chat_id,
        "category": category,
        "text": text,
        "reply_markup": json.dumps(reply_markup) if reply_markup else None,
        "not_before": not_before,
        "expires_at": expires_at,
        "broadcast_id": broadcast_id,
    }
