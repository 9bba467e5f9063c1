"""A marketer's broadcasts: created once per id (a retry gets the first answer), their members
drawn when created (the audience, and a random control group that gets nothing), then sent a
batch at a time through the one delivery path (messaging/): each recipient's message is an
outbox row of category `offer`, so opt-outs, the weekly cap, quiet hours and Telegram's limits
apply to it as to every offer, and the dedup key `broadcast:<id>:<member>` means nobody ever
gets one broadcast twice, across restarts and processes.

Where a broadcast stands is read from the outbox rows it queued (`progress`): recipients =
sent + skipped (by reason) + failed + pending at every moment. Gift points are credited when a
recipient's message is recorded as sent (`credit_gifts`, told by the sender), and by the tick
for any that a crash left between the two.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ledger.clock import Clock
from ledger.gifts import GIFT
from ledger.operations import hash_request
from ledger.rules import Rules
from ledger.service import LedgerService
from marketing.audience import in_segment
from marketing.html import BroadcastTextError, check_text
from marketing.reports import Attribution, attribution
from marketing.segments import SegmentFilter, parse_filter
from messaging.outbox import Outbox, OutboxMessage
from storage.audit import write_audit
from storage.schema import broadcast_members, broadcasts, members, operations, outbox
from storage.transactions import SyncDatabase

KIND = "broadcast"  # the outbox rows' kind: the sender asks marketing.offer to compose them
PREFIX = "broadcast:"  # their dedup keys: broadcast:<id>:<member id>
MATERIALISE_STEP = 20_000  # member ids drawn per transaction when a broadcast is created
FEED_AHEAD = timedelta(seconds=60)  # outbox rows due within this count as queued ahead
WAITING_WINDOWS = 20  # at most this many feed windows of a broadcast wait in the outbox
EXPIRES_AFTER = timedelta(hours=24)  # what cannot go out within this of its turn is skipped
GIFT_SWEEP = timedelta(minutes=1)  # how often gifts a crash left uncredited are looked for
RECENTLY_ENDED = timedelta(minutes=1)  # `tick` lists broadcasts that ended this long ago too
FAILING_AT_START = 20  # a broadcast whose first this many messages all failed is paused
SYSTEM = "system"  # the actor of what the program does on its own (the audit log's)
MAX_ID = 64
# Room a gift line takes under the text (marketing.offer: "🎁 Вам в подарок 10 000 баллов —
# они действуют до 30 сентября.", the longest in either language, with its blank line).
GIFT_LINE_MAX = 80
ACTIVE = ("scheduled", "sending", "paused")

# Outbox statuses -> the report's counts (the rest is pending).
OUTCOMES = {
    "sent": "sent",
    "skipped_optout": "skipped_optout",
    "skipped_cap": "skipped_cap",
    "skipped_unreachable": "skipped_unreachable",
    "failed": "failed",
    "dropped": "failed",  # could not go out within its time (or the member erased their data)
}


class BroadcastError(Exception):
    """A broadcast that cannot be made or changed: a code (the API's), the field, a message."""

    def __init__(self, code: str, field: str | None, message: str, **details: str | int) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message
        self.details = details  # what a translated message needs (marketing.html's details)


@dataclass(frozen=True, slots=True)
class Draft:
    """What a marketer (in the bot) or a program (the HTTP API) asks to send."""

    filter: SegmentFilter
    text: str
    public_id: str | None = None  # None: one is made (bot broadcasts)
    photo: str | None = None  # a Telegram file_id
    button_text: str | None = None
    button_url: str | None = None
    control_percent: int = 10
    gift_points: int = 0
    gift_days: int = 14
    send_at: datetime | None = None  # None: now
    segment_name: str | None = None

    def request(self) -> dict[str, Any]:
        """What the id stands for: the same id with anything else is a conflict."""
        return {
            "filter": self.filter.to_json(),
            "text": self.text,
            "photo": self.photo,
            "button": [self.button_text, self.button_url],
            "control_percent": self.control_percent,
            "gift_points": self.gift_points,
            "gift_days": self.gift_days,
            "send_at": self.send_at.isoformat() if self.send_at else None,
        }


@dataclass(frozen=True, slots=True)
class Broadcast:
    id: int
    public_id: str
    status: str  # preparing | scheduled | sending | paused | cancelled | done
    created_by: str
    created_at: datetime
    filter: SegmentFilter
    segment_name: str | None
    text: str
    photo: str | None
    button_text: str | None
    button_url: str | None
    control_percent: int
    gift_points: int
    gift_days: int
    window_days: int
    send_at: datetime
    audience: int
    control: int
    recipients: int
    started_at: datetime | None
    finished_at: datetime | None
    progress_chat_id: int | None
    progress_message_id: int | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a broadcast's recipients stand: these add up to `recipients` at every moment."""

    recipients: int
    sent: int = 0
    skipped_optout: int = 0
    skipped_cap: int = 0
    skipped_unreachable: int = 0
    failed: int = 0

    @property
    def pending(self) -> int:
        return self.recipients - self.done

    @property
    def done(self) -> int:
        skipped = self.skipped_optout + self.skipped_cap + self.skipped_unreachable
        return self.sent + skipped + self.failed

    def to_json(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "skipped_optout": self.skipped_optout,
            "skipped_cap": self.skipped_cap,
            "skipped_unreachable": self.skipped_unreachable,
            "failed": self.failed,
            "pending": self.pending,
        }


class Broadcasts:
    """Creates broadcasts, moves them along (`tick`, run by the leader every few seconds) and
    says where they stand. `clock`: the ledger's."""

    def __init__(
        self,
        ledger: LedgerService,
        outbox: Outbox,
        *,
        feed_window: int = 500,
    ) -> None:
        self.ledger = ledger
        self.outbox = outbox
        self.db: SyncDatabase = ledger.db
        # Recipients queued ahead of the sender: enough for the next ~20 s at 25/s, few enough
        # that pausing or cancelling touches a few hundred rows, and that the sender's claim
        # ranks a short queue, not 200,000 rows.
        self.feed_window = feed_window
        self._gift_swept: dict[int, datetime] = {}
        self._cache: dict[int, Broadcast] = {}  # what a broadcast says never changes
        self._delivering: set[int] = set()  # broadcasts of which a message went out
        # broadcast -> its failed messages when it was paused for failing (a resume then gets
        # another FAILING_AT_START tries before it is paused again)
        self._failed_at_pause: dict[int, int] = {}

    @property
    def clock(self) -> Clock:
        return self.ledger.clock

    @property
    def rules(self) -> Rules:
        return self.ledger.rules

    def parse_filter(self, raw: Any) -> SegmentFilter:
        return parse_filter(raw, [tier.name for tier in self.rules.tiers])

    # -- creating -------------------------------------------------------------------------

    async def create(self, draft: Draft, *, actor: str) -> tuple[Broadcast, bool]:
        """Create the broadcast and draw its members (in batches), or, for an id created
        before with the same request, return that one: (broadcast, created now). The same id
        with another request: BroadcastError `broadcast_id_conflict`."""
        self.check(draft)
        public_id = draft.public_id or new_public_id(self.clock.now())
        request_hash = hash_request(draft.request())
        now = self.clock.now()
        send_at = max(draft.send_at or now, now)

        def claim(conn: Connection) -> tuple[int, str, bool]:
            row = conn.execute(
                select(broadcasts.c.id, broadcasts.c.request_hash, broadcasts.c.status).where(
                    broadcasts.c.public_id == public_id
                )
            ).first()
            if row is not None:
                if row.request_hash != request_hash:
                    raise BroadcastError(
                        "broadcast_id_conflict",
                        "broadcast_id",
                        f"broadcast {public_id!r} exists already with another request",
                    )
                return row.id, row.status, False
            values = {
                "public_id": public_id,
                "request_hash": request_hash,
                "created_by": actor[:64],
                "created_at": now,
                "filter": json.dumps(draft.filter.to_json(), sort_keys=True),
                "segment_name": draft.segment_name,
                "text": draft.text,
                "photo": draft.photo,
                "button_text": draft.button_text,
                "button_url": draft.button_url,
                "control_percent": draft.control_percent,
                "gift_points": draft.gift_points,
                "gift_days": draft.gift_days,
                "window_days": self.rules.broadcasts.attribution_days,
                "send_at": send_at,
                "status": "preparing",
            }
            insert = postgresql.insert if self._postgres else sqlite.insert
            new_id = conn.execute(
                insert(broadcasts)
                .values(**values)
                .on_conflict_do_nothing(index_elements=[broadcasts.c.public_id])
                .returning(broadcasts.c.id)
            ).scalar_one_or_none()
            if new_id is None:  # the same id, created by a request that committed meanwhile
                return claim(conn)
            return new_id, "preparing", True

        broadcast_id, status, created = await self.db.write(claim)
        if status == "preparing":  # new, or one whose drawing a crash interrupted
            await self._draw_members(broadcast_id, draft.filter, now)
            await self.db.write(lambda conn: self._finish_drawing(conn, broadcast_id, actor))
            self.outbox.wakeup.set()
        found = await self.get(public_id)
        assert found is not None
        return found, created

    def check(self, draft: Draft) -> None:
        """BroadcastError naming what is wrong with a draft; nothing else is checked later."""
        limits = self.rules.broadcasts
        if draft.public_id is not None and not valid_public_id(draft.public_id):
            raise BroadcastError(
                "invalid_broadcast",
                "broadcast_id",
                f"broadcast_id is 1 to {MAX_ID} letters, digits, '-', '_', '.' or ':'",
            )
        try:
            check_text(
                draft.text,
                caption=draft.photo is not None,
                reserve=GIFT_LINE_MAX if draft.gift_points else 0,
            )
        except BroadcastTextError as error:
            raise BroadcastError(error.code, "text", error.message, **error.details) from error
        if not 0 <= draft.control_percent <= 100:
            raise BroadcastError(
                "invalid_broadcast", "control_percent", "control_percent is 0 to 100"
            )
        if not 0 <= draft.gift_points <= limits.max_gift_points:
            raise BroadcastError(
                "invalid_broadcast",
                "gift_points",
                f"gift_points is 0 to {limits.max_gift_points}",
            )
        if not 1 <= draft.gift_days <= 365:
            raise BroadcastError("invalid_broadcast", "gift_days", "gift_days is 1 to 365")
        if (draft.button_text is None) != (draft.button_url is None):
            raise BroadcastError(
                "invalid_broadcast", "button", "a button needs both its text and its URL"
            )
        if draft.button_url is not None and not draft.button_url.startswith(
            ("https://", "http://", "tg://")
        ):
            raise BroadcastError(
                "invalid_broadcast", "button_url", "a button's URL starts with https://"
            )
        if draft.send_at is not None and draft.send_at.tzinfo is None:
            raise BroadcastError(
                "invalid_broadcast", "send_at", "send_at needs its UTC offset (ISO 8601)"
            )

    async def _draw_members(self, broadcast_id: int, segment: SegmentFilter, now: datetime) -> None:
        """Insert the segment's members, MATERIALISE_STEP member ids per transaction: a short
        write lock each time, and nothing held in this process's memory."""
        top = await self.db.read(
            lambda conn: conn.execute(select(func.max(members.c.id))).scalar() or 0, single=True
        )
        condition = in_segment(segment, now)
        insert = postgresql.insert if self._postgres else sqlite.insert
        for low in range(0, top, MATERIALISE_STEP):
            chosen = select(literal(broadcast_id), members.c.id, literal(False)).where(
                condition, members.c.id > low, members.c.id <= low + MATERIALISE_STEP
            )
            statement = (
                insert(broadcast_members)
                .from_select(["broadcast_id", "member_id", "control"], chosen)
                .on_conflict_do_nothing()
            )
            drawing = await self.db.write(
                functools.partial(self._draw_batch, broadcast_id, statement), long=True
            )
            if not drawing:
                return  # another request (the same one, retried) finished drawing: counted

    def _draw_batch(self, broadcast_id: int, statement: Any, conn: Connection) -> bool:
        """One batch, only while the broadcast is still being drawn (its row locked, as
        `_finish_drawing` locks it): a retry of the same request that draws alongside adds
        nobody once the first has counted the audience."""
        status = conn.execute(
            _locked(
                select(broadcasts.c.status).where(broadcasts.c.id == broadcast_id), self._postgres
            )
        ).scalar_one()
        if status != "preparing":
            return False
        conn.execute(statement)
        return True

    def _finish_drawing(self, conn: Connection, broadcast_id: int, actor: str) -> None:
        """Draw the control group once, store the counts, and let the broadcast go."""
        row = conn.execute(
            _locked(select(broadcasts).where(broadcasts.c.id == broadcast_id), self._postgres)
        ).one()
        if row.status != "preparing":
            return  # another request finished it meanwhile
        mine = broadcast_members.c.broadcast_id == broadcast_id
        audience = conn.execute(select(func.count()).where(mine)).scalar_one()
        control = (audience * row.control_percent + 50) // 100  # the nearest whole member
        if control:
            drawn = select(broadcast_members.c.member_id).where(mine).order_by(func.random())
            conn.execute(
                update(broadcast_members)
                .where(mine, broadcast_members.c.member_id.in_(drawn.limit(control)))
                .values(control=True)
            )
        now = self.clock.now()
        sending = row.send_at <= now
        conn.execute(
            update(broadcasts)
            .where(broadcasts.c.id == broadcast_id)
            .values(
                audience=audience,
                control=control,
                recipients=audience - control,
                status="sending" if sending else "scheduled",
                started_at=now if sending else None,
            )
        )
        write_audit(
            conn,
            actor=actor,
            action="broadcast.create",
            target=f"broadcast:{row.public_id}",
            details={
                "filter": json.loads(row.filter),
                "audience": audience,
                "control": control,
                "gift_points": row.gift_points,
                "send_at": row.send_at.isoformat(),
            },
            now=now,
        )

    # -- reading --------------------------------------------------------------------------

    async def get(self, public_id: str) -> Broadcast | None:
        query = select(broadcasts).where(broadcasts.c.public_id == public_id)
        row = await self.db.read(lambda conn: conn.execute(query).first(), single=True)
        return None if row is None or row.status == "preparing" else _broadcast(row)

    async def by_id(self, broadcast_id: int) -> Broadcast | None:
        query = select(broadcasts).where(broadcasts.c.id == broadcast_id)
        row = await self.db.read(lambda conn: conn.execute(query).first(), single=True)
        return None if row is None or row.status == "preparing" else _broadcast(row)

    async def recent(self, limit: int = 20) -> list[Broadcast]:
        """The latest broadcasts, newest first."""
        query = (
            select(broadcasts)
            .where(broadcasts.c.status != "preparing")
            .order_by(broadcasts.c.id.desc())
            .limit(limit)
        )
        rows = await self.db.read(lambda conn: conn.execute(query).all(), single=True)
        return [_broadcast(row) for row in rows]

    async def progress(self, broadcast: Broadcast) -> Progress:
        """How many of its recipients were sent, skipped (by reason) or failed; the rest are
        pending (queued, held while paused, not queued yet, or cancelled)."""
        counts: dict[str, int] = {}
        for status, count in (await self.outbox.counts(broadcast.id)).items():
            outcome = OUTCOMES.get(status)
            if outcome is not None:
                counts[outcome] = counts.get(outcome, 0) + int(count)
        return Progress(recipients=broadcast.recipients, **counts)

    async def attribution(self, broadcast: Broadcast) -> Attribution | None:
        """Recipients vs control over the attribution window after sending started (so far,
        while the window runs); None before it started."""
        start = broadcast.started_at
        if start is None:
            return None
        now = self.clock.now()
        return await self.db.read(
            lambda conn: attribution(conn, broadcast.id, start, broadcast.window_days, now)
        )

    # -- changing -------------------------------------------------------------------------

    async def pause(self, broadcast: Broadcast, *, actor: str) -> Broadcast:
        """Stop sending: what is queued is held (a message already handed to Telegram goes)."""
        return await self._change(broadcast, actor, "pause", ("sending",), "paused")

    async def resume(self, broadcast: Broadcast, *, actor: str) -> Broadcast:
        return await self._change(broadcast, actor, "resume", ("paused",), "sending")

    async def cancel(self, broadcast: Broadcast, *, actor: str) -> Broadcast:
        """Nothing pending is sent afterwards; what was sent stays sent (and its gifts: those
        a crash left uncredited are credited now, since the tick no longer looks at it)."""
        cancelled = await self._change(broadcast, actor, "cancel", ACTIVE, "cancelled")
        await self._sweep_gifts(cancelled, force=True)
        return cancelled

    async def _change(
        self,
        broadcast: Broadcast,
        actor: str,
        action: str,
        from_statuses: Sequence[str],
        to_status: str,
    ) -> Broadcast:
        now = self.clock.now()

        def change(conn: Connection) -> None:
            row = conn.execute(
                _locked(select(broadcasts).where(broadcasts.c.id == broadcast.id), self._postgres)
            ).one()
            if row.status not in from_statuses:
                raise BroadcastError(
                    "invalid_state",
                    "status",
                    f"broadcast {row.public_id!r} is {row.status}: it cannot {action}",
                )
            values: dict[str, Any] = {"status": to_status}
            if to_status == "cancelled":
                values["finished_at"] = now
            if to_status == "sending" and row.started_at is None:
                values["started_at"] = now
            conn.execute(update(broadcasts).where(broadcasts.c.id == row.id).values(**values))
            mine = outbox.c.broadcast_id == row.id
            if to_status == "paused":
                conn.execute(
                    update(outbox).where(mine, outbox.c.status == "queued").values(status="held")
                )
            elif to_status == "sending":
                conn.execute(
                    update(outbox)
                    .where(mine, outbox.c.status == "held")
                    .values(status="queued", not_before=now, expires_at=now + EXPIRES_AFTER)
                )
            else:
                conn.execute(
                    update(outbox)
                    .where(mine, outbox.c.status.in_(("queued", "held")))
                    .values(status="cancelled", reason="the broadcast was cancelled")
                )
            write_audit(
                conn,
                actor=actor,
                action=f"broadcast.{action}",
                target=f"broadcast:{row.public_id}",
                details={"from": row.status},
                now=now,
            )

        await self.db.write(change)
        if to_status == "sending":
            self.outbox.wakeup.set()
        changed = await self.by_id(broadcast.id)
        assert changed is not None
        return changed

    async def show_progress_in(self, broadcast: Broadcast, chat_id: int, message_id: int) -> None:
        """The staff message that shows this broadcast's progress (edited as it sends)."""
        statement = (
            update(broadcasts)
            .where(broadcasts.c.id == broadcast.id)
            .values(progress_chat_id=chat_id, progress_message_id=message_id)
        )
        await self.db.write(lambda conn: conn.execute(statement))

    # -- sending --------------------------------------------------------------------------

    async def tick(self) -> list[Broadcast]:
        """Move every broadcast along: start those whose time has come, queue the next batch
        of recipients of those sending, finish those with nothing left, credit gifts a crash
        left behind. Returns the broadcasts that are active or ended in this tick (for their
        progress messages)."""
        now = self.clock.now()
        # Those that ended lately too (cancelled through the API, say): their progress
        # message still shows them sending.
        listed = or_(
            broadcasts.c.status.in_(ACTIVE), broadcasts.c.finished_at >= now - RECENTLY_ENDED
        )
        rows = await self.db.read(
            lambda conn: conn.execute(select(broadcasts).where(listed)).all(), single=True
        )
        active = [row for row in rows if row.status in ACTIVE]
        if any(row.status == "scheduled" and row.send_at <= now for row in active):
            # (Read first: with nothing due, a tick every 2 s writes nothing.)
            await self.db.write(
                lambda conn: conn.execute(
                    update(broadcasts)
                    .where(broadcasts.c.status == "scheduled", broadcasts.c.send_at <= now)
                    .values(status="sending", started_at=now)
                )
            )
            return await self.tick()
        shown = [_broadcast(row) for row in rows if row.status not in ACTIVE]
        for row in active:
            broadcast = _broadcast(row)
            if broadcast.status == "sending":
                await self._release_held(broadcast)
                broadcast = await self._pause_if_failing(broadcast)
            if broadcast.status == "sending":
                if not row.fed_all:
                    await self._feed(broadcast)
                elif not await self._waiting(broadcast):
                    # Nothing more can be sent: credit what a crash left before saying done
                    # (dying or failing here leaves it sending, and the next tick credits again).
                    await self._sweep_gifts(broadcast, force=True)
                    if await self._finish_if_sent(broadcast):
                        broadcast = await self.by_id(broadcast.id) or broadcast
            if broadcast.status in ("sending", "paused"):  # paused: what went out has its gift
                await self._sweep_gifts(broadcast)
            shown.append(broadcast)
        return shown

    async def _feed(self, broadcast: Broadcast) -> int:
        """Queue the next recipients (member id order) so that about `feed_window` are due
        ahead of the sender; those known to be out of reach are recorded skipped at once."""
        now = self.clock.now()
        due_soon = case((outbox.c.not_before <= now + FEED_AHEAD, 1), else_=0)
        waiting = select(func.count(), func.coalesce(func.sum(due_soon), 0)).where(
            outbox.c.broadcast_id == broadcast.id, outbox.c.status.in_(("queued", "sending"))
        )
        queued, ahead = await self.db.read(
            lambda conn: tuple(conn.execute(waiting).one()), single=True
        )
        wanted = self.feed_window - int(ahead)
        # Messages deferred (quiet hours, the weekly cap) wait in the outbox; past a limit the
        # rest waits here instead, so that at 10:00 the sender does not rank 200,000 rows.
        if wanted < self.feed_window // 2 or queued >= self.feed_window * WAITING_WINDOWS:
            return 0

        def feed(conn: Connection) -> int:
            row = conn.execute(
                _locked(select(broadcasts).where(broadcasts.c.id == broadcast.id), self._postgres)
            ).one()
            if row.status != "sending" or row.fed_all:
                return 0  # paused or cancelled meanwhile
            m = members.c
            chosen = conn.execute(
                select(
                    broadcast_members.c.member_id,
                    m.telegram_id,
                    m.status,
                    m.unreachable,
                    m.notify_offers,
                )
                .join(members, m.id == broadcast_members.c.member_id)
                .where(
                    broadcast_members.c.broadcast_id == row.id,
                    broadcast_members.c.control.is_(False),
                    broadcast_members.c.member_id > row.fed_through,
                )
                .order_by(broadcast_members.c.member_id)
                .limit(wanted)
            ).all()
            messages = [_message(row.id, member, now) for member in chosen]
            self.outbox.queue_in(conn, messages)
            conn.execute(
                update(broadcasts)
                .where(broadcasts.c.id == row.id)
                .values(
                    fed_through=chosen[-1].member_id if chosen else row.fed_through,
                    fed_all=len(chosen) < wanted,
                )
            )
            return len(chosen)

        fed = await self.db.write(feed, long=True)
        if fed:
            self.outbox.wakeup.set()
        return int(fed)

    async def _waiting(self, broadcast: Broadcast) -> bool:
        """Some recipient's message is still queued, being sent, or held."""
        query = _waiting_rows(broadcast.id)
        return await self.db.read(lambda conn: conn.execute(query).first() is not None, single=True)

    async def _pause_if_failing(self, broadcast: Broadcast) -> Broadcast:
        """Paused when its first FAILING_AT_START messages all failed and none went out (a
        photo Telegram no longer knows, say): the marketer sees it, instead of the whole
        audience failing one by one. Once one went out, it is not looked at again."""
        if broadcast.id in self._delivering:
            return broadcast
        progress = await self.progress(broadcast)
        if progress.sent:
            self._delivering.add(broadcast.id)
        elif progress.failed - self._failed_at_pause.get(broadcast.id, 0) >= FAILING_AT_START:
            self._failed_at_pause[broadcast.id] = progress.failed
            with contextlib.suppress(BroadcastError):  # the marketer paused or cancelled it
                return await self.pause(broadcast, actor=SYSTEM)
        return broadcast

    async def _release_held(self, broadcast: Broadcast) -> None:
        """Messages the sender held back because the broadcast was paused as it claimed them,
        recorded after a resume had released the others: queued again."""
        held = and_(outbox.c.broadcast_id == broadcast.id, outbox.c.status == "held")
        found = await self.db.read(
            lambda conn: conn.execute(select(outbox.c.id).where(held).limit(1)).first(),
            single=True,
        )
        if found is None:
            return
        now = self.clock.now()
        await self.db.write(
            lambda conn: conn.execute(
                update(outbox)
                .where(held)
                .values(status="queued", not_before=now, expires_at=now + EXPIRES_AFTER)
            )
        )
        self.outbox.wakeup.set()

    async def _finish_if_sent(self, broadcast: Broadcast) -> bool:
        """Done once every recipient is queued and none is waiting in the outbox."""
        now = self.clock.now()

        def finish(conn: Connection) -> bool:
            if conn.execute(_waiting_rows(broadcast.id)).first() is not None:
                return False
            done = conn.execute(
                update(broadcasts)
                .where(broadcasts.c.id == broadcast.id, broadcasts.c.status == "sending")
                .values(status="done", finished_at=now)
            )
            return bool(done.rowcount)

        return await self.db.write(finish)

    # -- gifts ----------------------------------------------------------------------------

    async def credit_gifts(self, sent: Sequence[OutboxMessage]) -> None:
        """The sender recorded these messages as sent: credit the gift of each broadcast
        message that has one (idempotent per broadcast and member)."""
        for message in sent:
            if message.kind != KIND or message.member_id is None or message.broadcast_id is None:
                continue
            broadcast = await self.content(message.broadcast_id)
            if broadcast.gift_points:
                await self.ledger.credit_gift(
                    message.member_id,
                    broadcast.id,
                    broadcast.gift_points,
                    broadcast.gift_days,
                    actor=f"broadcast:{broadcast.public_id}",
                )

    async def gifted_points(self, broadcast: Broadcast) -> int:
        """The points its gifts have credited so far, in total: the gift operation of each
        message sent, found by its exact key (a member who had erased their data before theirs
        was credited nothing)."""
        if not broadcast.gift_points:
            return 0
        query = (
            select(operations.c.result)
            .select_from(outbox.join(operations, operations.c.key == _gift_key(broadcast.id)))
            .where(outbox.c.broadcast_id == broadcast.id, outbox.c.status == "sent")
        )
        results = await self.db.read(lambda conn: list(conn.execute(query).scalars()))
        return sum(int(json.loads(result)["points"]) for result in results)

    async def _sweep_gifts(self, broadcast: Broadcast, *, force: bool = False) -> int:
        """Credit the gifts of sent messages that have none yet (a crash between the send's
        record and its credit); once a minute while sending, and when it ends."""
        if not broadcast.gift_points:
            return 0
        now = self.clock.now()
        last = self._gift_swept.get(broadcast.id)
        if not force and last is not None and now - last < GIFT_SWEEP:
            return 0
        self._gift_swept[broadcast.id] = now
        credited = select(operations.c.id).where(operations.c.key == _gift_key(broadcast.id))
        query = select(outbox.c.member_id).where(
            outbox.c.broadcast_id == broadcast.id,
            outbox.c.status == "sent",
            outbox.c.member_id.is_not(None),
            ~credited.exists(),
        )
        missing = await self.db.read(lambda conn: list(conn.execute(query).scalars()))
        for member_id in missing:
            await self.ledger.credit_gift(
                member_id,
                broadcast.id,
                broadcast.gift_points,
                broadcast.gift_days,
                actor=f"broadcast:{broadcast.public_id}",
            )
        return len(missing)

    async def status_of(self, broadcast_id: int) -> str | None:
        """Its status now (the sender asks before each of its messages)."""
        query = select(broadcasts.c.status).where(broadcasts.c.id == broadcast_id)
        return await self.db.read(lambda conn: conn.execute(query).scalar(), single=True)

    async def content(self, broadcast_id: int) -> Broadcast:
        """A broadcast by its row id, remembered (what it says never changes)."""
        found = self._cache.get(broadcast_id)
        if found is None:
            found = await self.by_id(broadcast_id)
            if found is None:
                raise LookupError(f"no broadcast {broadcast_id}")
            self._cache[broadcast_id] = found
        return found

    @property
    def _postgres(self) -> bool:
        return self.ledger.engine.dialect.name == "postgresql"


def _message(broadcast_id: int, member: Any, now: datetime) -> dict[str, Any]:
    """The outbox row of one recipient: queued, or skipped at once when already certain."""
    status, reason = "queued", None
    if member.telegram_id is None:
        status, reason = "skipped_unreachable", "no chat"
    elif member.status != "active":
        status, reason = "skipped_unreachable", "left the program"
    elif member.unreachable:
        status, reason = "skipped_unreachable", "blocked the bot"
    elif not member.notify_offers:
        status, reason = "skipped_optout", "offer"
    return {
        "dedup_key": f"{PREFIX}{broadcast_id}:{member.member_id}",
        "chat_id": member.telegram_id or 0,
        "member_id": member.member_id,
        "category": "offer",
        "text": "",
        "kind": KIND,
        "payload": {"broadcast": broadcast_id},
        "broadcast_id": broadcast_id,
        "not_before": now,
        "expires_at": now + EXPIRES_AFTER,
        "status": status,
        "reason": reason,
    }


def _broadcast(row: Any) -> Broadcast:
    return Broadcast(
        id=row.id,
        public_id=row.public_id,
        status=row.status,
        created_by=row.created_by,
        created_at=row.created_at,
        filter=parse_filter(json.loads(row.filter), None),
        segment_name=row.segment_name,
        text=row.text,
        photo=row.photo,
        button_text=row.button_text,
        button_url=row.button_url,
        control_percent=row.control_percent,
        gift_points=row.gift_points,
        gift_days=row.gift_days,
        window_days=row.window_days,
        send_at=row.send_at,
        audience=row.audience,
        control=row.control,
        recipients=row.recipients,
        started_at=row.started_at,
        finished_at=row.finished_at,
        progress_chat_id=row.progress_chat_id,
        progress_message_id=row.progress_message_id,
    )


def _gift_key(broadcast_id: int) -> Any:
    """The key of the gift operation of an outbox row's member (ledger.gifts.gift_key), as SQL:
    an exact match on the unique index, whatever the database's collation."""
    return literal(f"{GIFT}:{broadcast_id}:") + cast(outbox.c.member_id, String)


def _waiting_rows(broadcast_id: int) -> Any:
    """A row of the broadcast still queued, being sent, or held by a pause (one is enough)."""
    return (
        select(outbox.c.id)
        .where(
            outbox.c.broadcast_id == broadcast_id,
            outbox.c.status.in_(("queued", "sending", "held")),
        )
        .limit(1)
    )


def _locked(query: Any, postgres: bool) -> Any:
    """The broadcast's row, locked on PostgreSQL (SQLite's write transaction holds its lock)."""
    return query.with_for_update() if postgres else query


def valid_public_id(value: str) -> bool:
    """1 to MAX_ID letters, digits, "-", "_", "." or ":" (what a broadcast_id may be)."""
    return 0 < len(value) <= MAX_ID and all(
        c.isascii() and (c.isalnum() or c in "-_.:") for c in value
    )


def new_public_id(now: datetime) -> str:
    """An id for a broadcast made in the bot: its day and a random part."""
    return f"B-{now:%Y%m%d}-{secrets.token_hex(3)}"


__all__: Sequence[str] = [
    "ACTIVE",
    "KIND",
    "Broadcast",
    "BroadcastError",
    "Broadcasts",
    "Draft",
    "Progress",
    "valid_public_id",
]
