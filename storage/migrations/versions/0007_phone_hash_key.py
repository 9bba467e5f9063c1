"""phone hashes keyed: a random key kept in the database; the welcome bonus's keys and the
referral rewards' phone hashes, plain SHA-256 until now, rekeyed with it

What was stored is sha256(phone) in hex; what is stored now is HMAC-SHA256(key, that hex)
(storage.phone_hashes), so every row is rekeyed without its phone: also the rows of members
who deleted their data, whose phone nobody knows any more, and those keep recognising the
phone if it joins again. The rekeying cannot be undone: after a downgrade the old code does
not recognise these phones (a second welcome bonus becomes possible).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 10:00:00
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_PLAIN_HASH = re.compile(r"[0-9a-f]{64}")
_WELCOME = "welcome:"


def _rekeyed(key: str, plain_hash: str) -> str:
    # As storage.phone_hashes.rekeyed, frozen here as this revision does it.
    return hmac.new(bytes.fromhex(key), plain_hash.encode(), hashlib.sha256).hexdigest()


def upgrade() -> None:
    op.create_table(
        "phone_hash_key",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_phone_hash_key_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_hash_key")),
    )
    key = secrets.token_hex(32)
    bind = op.get_bind()
    bind.execute(sa.text("INSERT INTO phone_hash_key (id, key) VALUES (1, :key)"), {"key": key})

    welcome = [
        {"id": row.id, "key": _WELCOME + _rekeyed(key, row.key.removeprefix(_WELCOME))}
        for row in bind.execute(
            sa.text("SELECT id, key FROM operations WHERE key LIKE 'welcome:%'")
        )
        if _PLAIN_HASH.fullmatch(row.key.removeprefix(_WELCOME))  # not welcome:<member id>
    ]
    if welcome:
        bind.execute(sa.text("UPDATE operations SET key = :key WHERE id = :id"), welcome)
    referrals = [
        {"old": row.invited_phone_hash, "new": _rekeyed(key, row.invited_phone_hash)}
        for row in bind.execute(sa.text("SELECT invited_phone_hash FROM referral_rewards"))
    ]
    if referrals:
        bind.execute(
            sa.text(
                "UPDATE referral_rewards SET invited_phone_hash = :new "
                "WHERE invited_phone_hash = :old"
            ),
            referrals,
        )


def downgrade() -> None:
    op.drop_table("phone_hash_key")
