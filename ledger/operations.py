"""What every room of the ledger shares, and the one way an operation runs.

Every operation is one database transaction. It locks the member's row first (PostgreSQL:
SELECT ... FOR UPDATE; SQLite: the BEGIN IMMEDIATE of storage.engine already serialises
writers), then records its idempotency key, then changes lots, journal and running totals
together. Running totals are written once per member per operation, and CHECK constraints refuse
a negative balance, pending or debt, so a bug that slipped past the rules fails the transaction
instead of corrupting the ledger.

`LedgerBase._run_operation` is that runner, used by every operation the same way: look up the
key, compare the request's hash with the stored one, run the operation's body in the
transaction, store its result; a retry gets the stored result back.

The ledger's rooms (each a mixin on `LedgerBase`, gathered in ledger/service.py):
    members.py      lookup, registration, profile, erasure of the members row
    purchases.py    purchases, refunds, what may be redeemed, the referral reward
    adjustments.py  staff's adjustments and reversals
    calendar.py     scheduled runs: burning, activating held points, tiers, birthdays
    gifts.py        a broadcast's gift points, once per (broadcast, member)
    queries.py      balance, history pages, entries, receipts

Database: only through SyncDatabase (`self.db`), one synchronous function per transaction,
with statements compiled once (storage.fast).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    String,
    bindparam,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import policy
from ledger.clock import Clock, SystemClock
from ledger.errors import (
    IdempotencyConflict,
    InvalidReference,
    LedgerError,
    MemberNotFound,
    PurchaseNotFound,
)
from ledger.journal import SPEND_SINCE, USABLE, Journal, Totals, totals_of
from ledger.rules import Rules
from storage import phone_hashes
from storage.engine import readonly
from storage.fast import Fast, later
from storage.schema import UTCDateTime, lots, members, operations
from storage.transactions import SyncDatabase

MAX_POINTS = 10_000_000
MAX_REFERENCE_LENGTH = 100

# Points whose expiry has come are gone even before the burn job writes them off: nobody
# can spend them (Journal.burn_own_due) and nobody is shown them.
OVERDUE = func.coalesce(func.sum(lots.c.remaining).filter(lots.c.expires_at <= bindparam("now")), 0)
# A range of the member's usable lots (ix_lots_member_usable), not a sum over all of them.
OVERDUE_SELECT = select(func.coalesce(func.sum(lots.c.remaining), 0)).where(
    USABLE, lots.c.expires_at <= bindparam("now")
)
_CLAIM_POSTGRES = Fast(
    postgresql.insert(operations)
    .on_conflict_do_nothing(index_elements=[operations.c.key])
    .returning(operations.c.id)
)
_CLAIM_SQLITE = Fast(
    sqlite.insert(operations)
    .on_conflict_do_nothing(index_elements=[operations.c.key])
    .returning(operations.c.id)
)
# PostgreSQL: one statement locks the member, claims the operation's key and reads the member
# back (op_id is NULL when the key exists already; no row at all when there is no such member).
# FOR UPDATE returns the row as the transaction it waited for committed it. Everything else in
# a statement reads the snapshot taken before that wait, so the tier window's spend read here
# can miss a purchase that was committed while this one waited; `fresh` tells: the row's
# version (xmin) as locked equals the one in the snapshot only if nobody changed the member
# in between, and every purchase changes its member's row. When it is false, the spend is read
# again in a statement of its own.
_LOCKED = (
    select(members, literal_column("members.xmin").label("row_version"))
    .where(members.c.id == bindparam("member_id", type_=Integer))
    .with_for_update()
    .cte("locked")
)
_CLAIMED = (
    postgresql.insert(operations)
    .from_select(
        ["key", "kind", "member_id", "request_hash", "result", "actor", "created_at"],
        select(
            bindparam("key", type_=String),
            bindparam("kind", type_=String),
            _LOCKED.c.id,
            bindparam("request_hash", type_=String),
            bindparam("result", type_=String),
            bindparam("actor", type_=String),
            bindparam("created_at", type_=UTCDateTime()),
        ),
    )
    .on_conflict_do_nothing(index_elements=[operations.c.key])
    .returning(operations.c.id)
    .cte("claimed")
)
_SNAPSHOT = members.alias("snapshot")


def _lock_claim_read(*extra: Any) -> Fast:
    """The member's columns from `_LOCKED`, then `extra`, then the claimed operation's id and
    the points whose expiry has come (`overdue`, as of the statement's snapshot)."""
    return Fast(
        select(
            *(_LOCKED.c[column.name] for column in members.c),
            *extra,
            select(_CLAIMED.c.id).scalar_subquery().label("op_id"),
            OVERDUE_SELECT.scalar_subquery().label("overdue"),
        ).select_from(_LOCKED)
    )


_LOCK_CLAIM = _lock_claim_read()
_LOCK_CLAIM_SPEND = _lock_claim_read(
    SPEND_SINCE.scalar_subquery().label("window_spend"),
    (
        _LOCKED.c.row_version
        == select(literal_column("snapshot.xmin"))
        .select_from(_SNAPSHOT)
        .where(_SNAPSHOT.c.id == bindparam("member_id", type_=Integer))
        .scalar_subquery()
    ).label("fresh"),
)
OPERATION_EXISTS = Fast(
    select(operations.c.id, operations.c.member_id, members.c.status)
    .select_from(operations.outerjoin(members, members.c.id == operations.c.member_id))
    .where(operations.c.key == bindparam("key"))
)
_FINISH = Fast(
    update(operations)
    .where(operations.c.id == bindparam("op_id"))
    .values(result=bindparam("result"))
)


class LedgerBase:
    """The ledger's state (engine, rules, clock, journal) and the operation runner."""

    def __init__(
        self,
        engine: AsyncEngine,
        rules: Rules,
        clock: Clock | None = None,
        db: SyncDatabase | None = None,
    ) -> None:
        self.engine = engine
        self.reader = readonly(engine)  # lookups that never write
        self.rules = rules
        self.clock: Clock = clock or SystemClock()
        self._is_postgres = engine.dialect.name == "postgresql"
        self.journal = Journal(rules, self._is_postgres)
        # Each operation: one transaction, one sync function (see storage.transactions).
        self._owns_db = db is None
        self.db = db or SyncDatabase(engine)
        self._phone_hash_key: str | None = None  # the database's; it never changes
        # Called after an operation that wrote notices (storage/notices.py) committed: the
        # sender's wakeup, so that they go out at once.
        self.on_notice: Callable[[], None] | None = None

    def close(self) -> None:
        """Release the SQLite connections and threads (the engine is the caller's)."""
        if self._owns_db:
            self.db.close()

    async def _run_operation(
        self,
        key: str,
        kind: str,
        member: int | Callable[[Connection], int],
        request: Mapping[str, Any] | Callable[[int], Mapping[str, Any]],
        actor: str | None,
        body: Callable[[Connection, int, Totals, Row[Any]], dict[str, Any]],
        *,
        with_window_spend: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Run `body` once per key in one transaction; a retry gets the first result back.

        member: the member's id, or a lookup run first inside the transaction; request: what
        the idempotency key stands for (or how to make it from the member's id).
        with_window_spend: the locked row also carries `window_spend`, the qualifying spend of
        the tier window as of now (read with the member, once the lock is held)."""
        request_hash = ""

        def work(conn: Connection) -> tuple[dict[str, Any], bool]:
            nonlocal request_hash
            try:
                member_id = member if isinstance(member, int) else member(conn)
            except (MemberNotFound, PurchaseNotFound):
                # A key already used answers for itself, even if what this request names
                # cannot be found: a different request under it is a conflict (as the same
                # receipt_id with a different body is); only an unused key gets the 404.
                used = OPERATION_EXISTS(conn, {"key": key}).first()
                if used is not None:
                    if callable(request):
                        # Its member erased their data, so nobody can be found by what named
                        # them: the same request again is a replay. Anyone else unknown is not
                        # (-1 is nobody's id: a conflict).
                        erased = used.status is not None and used.status != "active"
                        fields = request(used.member_id if erased else -1)
                    else:
                        fields = request
                    stored = self._stored_result(conn, key, hash_request(fields))
                    if stored is not None:
                        return stored, True
                raise
            fields = request(member_id) if callable(request) else request
            request_hash = hash_request(fields)
            since = None
            if with_window_spend:
                since = self.clock.now() - timedelta(days=self.rules.tier_window_days)
            now = self.clock.now()
            overdue = None  # not known: look
            if self._is_postgres:
                # One round trip locks the member, claims the key and reads the member (see
                # _LOCKED); the spend again only if the member changed while this one waited.
                params = self._claim_params(key, kind, member_id, request_hash, actor)
                params["now"] = now
                if since is None:
                    locked = _LOCK_CLAIM(conn, params).first()
                else:
                    locked = _LOCK_CLAIM_SPEND(conn, {**params, "since": since}).first()
                if locked is None:
                    raise MemberNotFound("no such member")
                op_id, overdue = locked.op_id, locked.overdue
                if since is not None and not locked.fresh:
                    locked = self.journal.read_locked(conn, member_id, spend_since=since)
            else:  # BEGIN IMMEDIATE holds the lock already: one writer at a time
                locked = self.journal.read_locked(conn, member_id, spend_since=since)
                op_id = self._claim_operation(conn, key, kind, member_id, request_hash, actor)
            totals = totals_of(locked)
            if op_id is None:
                return self._replay(conn, key, request_hash), True
            if overdue is None or overdue > 0:
                # Points whose expiry has come are gone, burn job or not: written off here,
                # so that nothing below spends them or counts them (a refused operation rolls
                # this back with the rest).
                self.journal.burn_own_due(conn, member_id, totals, now)
            result = body(conn, op_id, totals, locked)
            self._finish_operation(conn, op_id, result)
            return result, False

        try:
            return await self.db.write(work)
        except IntegrityError:
            # The same key committed by a transaction that locked another member first; any
            # other constraint (no such operation stored) is the error it is.
            replayed = await self.db.read(lambda conn: self._stored_result(conn, key, request_hash))
            if replayed is None:
                raise
            return replayed, True

    def _claim_operation(
        self,
        conn: Connection,
        key: str,
        kind: str,
        member_id: int | None,
        request_hash: str,
        actor: str | None,
    ) -> int | None:
        """Insert the operation's key; None if it exists already."""
        statement = _CLAIM_POSTGRES if self._is_postgres else _CLAIM_SQLITE
        params = self._claim_params(key, kind, member_id, request_hash, actor)
        return statement(conn, params).scalar_one_or_none()

    def _claim_params(
        self, key: str, kind: str, member_id: int | None, request_hash: str, actor: str | None
    ) -> dict[str, Any]:
        return {
            "key": key,
            "kind": kind,
            "member_id": member_id,
            "request_hash": request_hash,
            "result": "",
            "actor": actor,
            "created_at": self.clock.now(),
        }

    def _finish_operation(self, conn: Connection, op_id: int, result: Mapping[str, Any]) -> None:
        later(conn, _FINISH, {"op_id": op_id, "result": json.dumps(result, sort_keys=True)})

    def _replay(self, conn: Connection, key: str, request_hash: str) -> dict[str, Any]:
        result = self._stored_result(conn, key, request_hash)
        if result is None:
            raise LedgerError("the operation's stored result is missing")
        return result

    def _stored_result(
        self, conn: Connection, key: str, request_hash: str
    ) -> dict[str, Any] | None:
        """The result stored for the operation with this key, if there is one; a different
        request under the same key is a conflict."""
        row = (
            conn.execute(
                select(operations.c.request_hash, operations.c.result).where(
                    operations.c.key == key
                )
            )
        ).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflict(
                "this id was already used for a different request", key=key.split(":", 1)[-1]
            )
        result: dict[str, Any] = json.loads(row.result)
        return result

    def phone_hash(self, conn: Connection, e164: str) -> str:
        """What the ledger keeps of a phone once its member's data is erased (once-per-phone
        bonuses): a keyed hash (storage.phone_hashes)."""
        if self._phone_hash_key is None:
            key = phone_hashes.stored_key(conn)
            if key is None:  # kept only once this transaction commits: not cached
                return phone_hashes.phone_hash(phone_hashes.make_key(conn), e164)
            self._phone_hash_key = key
        return phone_hashes.phone_hash(self._phone_hash_key, e164)

    def _noticed(self, replayed: bool) -> None:
        """An operation that wrote notices committed: tell the sender."""
        if not replayed and self.on_notice is not None:
            self.on_notice()


def check_reference(value: str, name: str) -> None:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_REFERENCE_LENGTH
        or not policy.is_plain_text(value)
    ):
        raise InvalidReference(
            f"{name} must be a non-empty string of at most {MAX_REFERENCE_LENGTH} characters, "
            "without control or invisible formatting characters",
            field=name,
        )


def hash_request(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
