"""API keys for tills and online shops: shown once, stored as a SHA-256 hash.

On PostgreSQL a process keeps the keys it has verified in memory (for at most KEEP_SECONDS)
while it listens for their revocation: a trigger on api_keys sends a NOTIFY with the COMMIT of
whatever revokes or deletes a key (`revoke` from any process, the CLI, psql), and every
listening process drops what it keeps as soon as it arrives. Without
a working listener nothing is kept, and every request reads the key. On PostgreSQL that read
is a noticeable part of a purchase's cost (docs/BENCHMARKS.md, HTTP API); on SQLite it is
cheap, and nothing is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.clock import Clock, SystemClock
from storage.engine import readonly
from storage.fast import Fast
from storage.schema import api_keys
from storage.transactions import SyncDatabase

log = logging.getLogger("loyalty.api")

KEY_PREFIX = "lk_"
REVOKED_CHANNEL = "loyalty_api_key_revoked"
# A verified key is read again after this, notification or not: the bound on how long a key
# stays accepted if a notification never comes (a listener cut off without noticing).
KEEP_SECONDS = 30.0
# What a key may do: a till records purchases and refunds; a marketing key (a CRM) previews
# segments and sends broadcasts. api.app refuses a key on the other scope's endpoints (403).
TILL = "till"
MARKETING = "marketing"
SCOPES = (TILL, MARKETING)
RETRY_LISTEN_SECONDS = 5.0
LISTEN_CONNECT_TIMEOUT_S = 2.0
_ACTIVE_KEY = Fast(
    select(api_keys).where(
        api_keys.c.key_hash == bindparam("hash"), api_keys.c.revoked_at.is_(None)
    )
)


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    scope: str = TILL


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyService:
    def __init__(
        self, engine: AsyncEngine, clock: Clock | None = None, db: SyncDatabase | None = None
    ) -> None:
        self.engine = engine
        self.reader = readonly(engine)
        self.db = db or SyncDatabase(engine)  # verify() runs on every API request
        self.clock: Clock = clock or SystemClock()
        self._postgres = engine.dialect.name == "postgresql"
        self._kept: dict[str, tuple[ApiKey, float]] = {}  # key hash -> key, until (monotonic)
        self._generation = 0  # moves on every revocation heard: a read from before is stale
        self._listener: Any = None  # asyncpg's connection, while it listens
        self._next_listen = 0.0
        self._listening_lock = asyncio.Lock()
        self._closed = False

    async def create(self, name: str, scope: str = TILL) -> tuple[ApiKey, str]:
        """A new key of a scope (SCOPES); the secret is returned here and never again."""
        name = name.strip()
        if not name or len(name) > 100:
            raise ValueError("the key needs a name of 1 to 100 characters")
        if scope not in SCOPES:
            raise ValueError(f"a key's scope is one of: {', '.join(SCOPES)}")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    api_keys.insert()
                    .values(
                        name=name,
                        key_hash=_hash(secret),
                        prefix=secret[:10],
                        created_at=self.clock.now(),
                        scope=scope,
                    )
                    .returning(*api_keys.c)
                )
            ).one()
        return _key(row), secret

    async def verify(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        key_hash = _hash(secret)
        if self._postgres:
            kept = self._kept.get(key_hash)
            if kept is not None and kept[1] > time.monotonic() and self._listener is not None:
                return kept[0]
            if (
                self._listener is None
                and not self._closed
                and not self._listening_lock.locked()  # one request connects; none waits
                and time.monotonic() >= self._next_listen
            ):
                await self._listen()
        generation = self._generation
        row = await self.db.read(
            lambda conn: _ACTIVE_KEY(conn, {"hash": key_hash}).first(), single=True
        )
        if row is None:
            return None
        key = _key(row)
        if self._listener is not None and generation == self._generation:
            # (A revocation heard while this read was on its way: not kept.)
            self._kept[key_hash] = (key, time.monotonic() + KEEP_SECONDS)
        return key

    async def _listen(self) -> None:
        """Start listening for revocations on a connection of its own (not the pool's); on
        failure keep nothing, and try again a few seconds later."""
        async with self._listening_lock:
            if self._listener is not None or self._closed:
                return
            self._next_listen = time.monotonic() + RETRY_LISTEN_SECONDS
            import asyncpg

            # The dialect's own connect arguments, less the ones only SQLAlchemy's adapter
            # takes (prepared_statement_cache_size, ...): not PostgreSQL settings.
            args, found = self.engine.dialect.create_connect_args(self.engine.url)
            accepted = inspect.signature(asyncpg.connect).parameters
            kwargs = {name: value for name, value in found.items() if name in accepted}
            kwargs["timeout"] = LISTEN_CONNECT_TIMEOUT_S
            listener = None
            try:
                listener = await asyncpg.connect(*args, **kwargs)
                await listener.add_listener(REVOKED_CHANNEL, self._revoked)
            except BaseException as error:  # keep nothing; the reads go on as before
                if listener is not None:
                    listener.terminate()
                if not isinstance(error, Exception):
                    raise
                log.warning("API keys are read on every request: %s", type(error).__name__)
                return
            if self._closed:  # closed while this connected
                listener.terminate()
                return
            listener.add_termination_listener(self._lost)
            self._forget()  # nothing kept from before can be trusted
            self._listener = listener

    def _revoked(self, *_notification: Any) -> None:
        self._forget()

    def _lost(self, connection: Any) -> None:
        """The listening connection closed: revocations would go unheard, so keep nothing."""
        if connection is self._listener:  # (not an old one, closing late)
            self._listener = None
        self._forget()

    def _forget(self) -> None:
        self._generation += 1
        self._kept.clear()

    async def close(self) -> None:
        self._closed = True
        async with self._listening_lock:  # a listener being connected: it sees _closed
            listener, self._listener = self._listener, None
        self._forget()
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close()

    async def list_keys(self) -> list[ApiKey]:
        async with self.reader.connect() as conn:
            rows = (await conn.execute(select(api_keys).order_by(api_keys.c.id))).all()
        return [_key(row) for row in rows]

    async def revoke(self, key_id: int) -> bool:
        """Revoke a key. This process forgets it at once; on PostgreSQL the NOTIFY goes out
        with the COMMIT, and other processes forget it as it reaches them (milliseconds)."""
        async with self.engine.begin() as conn:
            changed = (
                await conn.execute(
                    update(api_keys)
                    .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=self.clock.now())
                )
            ).rowcount
            # (On PostgreSQL a trigger on api_keys sends the NOTIFY with the COMMIT, whatever
            # changed the key: this method, psql or a restored backup.)
        self._forget()
        return bool(changed)


def _key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        scope=row.scope,
    )
