"""What the database keeps of a phone after its member deleted their data: a keyed hash.

The welcome bonus and the referral reward are paid once per phone, also to a number that
deleted its data and joined again, so the ledger keeps something that matches the phone:
HMAC-SHA256(key, sha256(phone)). A plain hash would give the phone back to a loop over the
numbering plan in minutes; the keyed one does not without the key. (HMAC over the plain
hash, not over the phone, because that is what databases before revision 0007 stored: the
migration rekeys those values without needing the phone, so also erased members' rows keep
their once-per-phone rule.)

The key is made once, at random, and kept in the database itself (table phone_hash_key),
not beside it like data/secret_key: every process on every host then hashes alike with
nothing to configure (two keys would silently pay a second welcome bonus), and the migration
can rekey the rows it finds. The price: whoever holds a whole dump of the database holds the
key too, as they hold every current member's phone in plain text; keep dumps and backups as
private as the database (python -m bot backup writes them readable by their owner only).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from storage.schema import phone_hash_key

KEY_BYTES = 32
_KEY = select(phone_hash_key.c.key).where(phone_hash_key.c.id == 1)


def new_key() -> str:
    """A fresh random key, as it is stored (hex)."""
    return secrets.token_hex(KEY_BYTES)


def rekeyed(key: str, plain_hash: str) -> str:
    """The keyed hash of a value stored before there was a key (sha256 hex of a phone)."""
    return hmac.new(bytes.fromhex(key), plain_hash.encode(), hashlib.sha256).hexdigest()


def phone_hash(key: str, e164: str) -> str:
    """What is kept of a phone (E.164) to recognise it later."""
    return rekeyed(key, hashlib.sha256(e164.encode()).hexdigest())


def stored_key(conn: Connection) -> str | None:
    """The database's key (None only in a database emptied since it was migrated)."""
    key = conn.execute(_KEY).scalar_one_or_none()
    return None if key is None else str(key)


def make_key(conn: Connection) -> str:
    """Make the key if it is missing, inside the caller's transaction (it stands only once
    that commits), and return the one that stands: concurrent first callers agree on one."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(phone_hash_key).values(id=1, key=new_key()).on_conflict_do_nothing())
    return str(conn.execute(_KEY).scalar_one())
