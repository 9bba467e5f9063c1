"""API keys for tills and online shops: shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
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

KEY_PREFIX = "lk_"
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
        row = await self.db.read(
            lambda conn: _ACTIVE_KEY(conn, {"hash": key_hash}).first(), single=True
        )
        return _key(row) if row is not None else None

    async def list_keys(self) -> list[ApiKey]:
        async with self.reader.connect() as conn:
            rows = (await conn.execute(select(api_keys).order_by(api_keys.c.id))).all()
        return [_key(row) for row in rows]

    async def revoke(self, key_id: int) -> bool:
        async with self.engine.begin() as conn:
            changed = (
                await conn.execute(
                    update(api_keys)
                    .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=self.clock.now())
                )
            ).rowcount
        return bool(changed)


def _key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
