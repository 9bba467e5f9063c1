"""API keys for tills and online shops: shown once, stored as a SHA-256 hash.

On PostgreSQL a process keeps the keys it has verified in memory while it listens for their
revocation: `revoke` (from this process, another one, or the CLI) sends a NOTIFY in its
transaction, and every listening process drops what it keeps as soon as it arrives. Without
a working listener nothing is kept, and every request reads the key. The read cost about a
tenth of the machine's time per purchase through the API on PostgreSQL (bench/api.py); on
SQLite a read takes microseconds and nothing is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.clock import Clock, SystemClock
from storage.engine import readonly
from storage.fast import Fast
from storage.schema import api_keys
from storage.transactions import SyncDatabase

log = logging.getLogger("loyalty.api")

KEY_PREFIX = "lk_"
REVOKED_CHANNEL = "loyalty_api_key_revoked"
KEEP_SECONDS = 300.0  # a verified key is read again after this, notification or not
RETRY_LISTEN_SECONDS = 5.0
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

    async def create(self, name: str) -> tuple[ApiKey, str]:
        """A new key; the secret is returned here and never again."""
        name = name.strip()
        if not name or len(name) > 100:
            raise ValueError("the key needs a name of 1 to 100 characters")
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
            if self._listener is None and time.monotonic() >= self._next_listen:
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
            if self._listener is not None:
                return
            self._next_listen = time.monotonic() + RETRY_LISTEN_SECONDS
            import asyncpg

            url = self.engine.url.set(drivername="postgresql")
            try:
                listener = await asyncpg.connect(url.render_as_string(hide_password=False))
                await listener.add_listener(REVOKED_CHANNEL, self._revoked)
            except Exception as error:  # keep nothing; the reads go on as before
                log.warning("API keys are read on every request: %s", type(error).__name__)
                return
            listener.add_termination_listener(self._lost)
            self._forget()  # nothing kept from before can be trusted
            self._listener = listener

    def _revoked(self, *_notification: Any) -> None:
        self._forget()

    def _lost(self, *_connection: Any) -> None:
        """The listening connection closed: revocations would go unheard, so keep nothing."""
        self._listener = None
        self._forget()

    def _forget(self) -> None:
        self._generation += 1
        self._kept.clear()

    async def close(self) -> None:
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
            if changed and self._postgres:
                await conn.execute(select(func.pg_notify(REVOKED_CHANNEL, str(key_id))))
        self._forget()
        return bool(changed)


def _key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
