"""Database tables: one MetaData for the whole application.

The ledger is an append-only journal (`entries`) plus the lots of points it created (`lots`),
with the running totals kept on `members` so that a balance is one row read. Every operation
that can arrive twice carries a unique `operations.key`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    func,
    text,
)
from sqlalchemy.engine import Dialect

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC without a zone (SQLite has none) and always returns aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL results on SQLite
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


members = Table(
    "members",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_number", String(16), nullable=False, unique=True),
    Column("phone", String(20), nullable=True, unique=True),
    Column("telegram_id", BigInteger, nullable=True, unique=True),
    Column("first_name", String(128), nullable=True),
    Column("last_name", String(128), nullable=True),
    Column("username", String(64), nullable=True),
    Column("language", String(8), nullable=False, server_default="ru"),
    Column("timezone", String(64), nullable=False, server_default="Europe/Moscow"),
    Column("birthday", Date, nullable=True),
    Column("birthday_set_at", UTCDateTime, nullable=True),
    Column("referral_code", String(16), nullable=False, unique=True),
    Column("referred_by", Integer, ForeignKey("members.id"), nullable=True),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("notify_reminders", Boolean, nullable=False, server_default="1"),
    Column("notify_tier", Boolean, nullable=False, server_default="1"),
    Column("notify_offers", Boolean, nullable=False, server_default="1"),
    Column("unreachable", Boolean, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("consent_at", UTCDateTime, nullable=True),
    Column("erased_at", UTCDateTime, nullable=True),
    Column("last_purchase_at", UTCDateTime, nullable=True),
    # Running totals, kept equal to the journal (checked by ledger.invariants).
    Column("balance", Integer, nullable=False, server_default="0"),
    Column("pending", Integer, nullable=False, server_default="0"),
    Column("debt", Integer, nullable=False, server_default="0"),
    # How many journal entries the member has: a history page tells "page X of Y" without
    # counting them (kept with the totals, checked by ledger.invariants).
    Column("entries_count", Integer, nullable=False, server_default="0"),
    Column("tier", String(16), nullable=False, server_default="base"),
    # The highest tier the member has been told about; tier news goes out when tier passes it.
    Column("tier_announced", String(16), nullable=False, server_default="base"),
    CheckConstraint("balance >= 0", name="balance_not_negative"),
    CheckConstraint("pending >= 0", name="pending_not_negative"),
    CheckConstraint("debt >= 0", name="debt_not_negative"),
)
# member_by_username compares lower(username): without this, a scan of every member.
Index("ix_members_username_lower", func.lower(members.c.username))
# Tier news (scheduler.due.tier_news_due) looks every minute for the few members whose tier
# differs from the one they were last told about: a partial index holds only those.
_TIER_NEWS_DUE = members.c.tier != members.c.tier_announced
Index(
    "ix_members_tier_news",
    members.c.id,
    sqlite_where=_TIER_NEWS_DUE,
    postgresql_where=_TIER_NEWS_DUE,
)

operations = Table(
    "operations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # "<kind>:<external id>", e.g. "purchase:R-1"; a retry finds the first result here.
    Column("key", String(200), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("member_id", Integer, ForeignKey("members.id"), nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("result", Text, nullable=False),
    Column("actor", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

lots = Table(
    "lots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("member_id", Integer, ForeignKey("members.id"), nullable=False),
    Column("entry_id", Integer, nullable=False),
    Column("points", Integer, nullable=False),
    Column("remaining", Integer, nullable=False),
    # pending -> active (at available_at) -> closed (spent to zero or burnt)
    Column("status", String(8), nullable=False),
    Column("available_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_in_range"),
    Index("ix_lots_member_open", "member_id", "status", "expires_at"),
    # A member's usable lots, which is what the balance, the nearest burn and spending read:
    # the lots spent or burnt to zero (most of a long history) are not in it. Queries match
    # its condition with the same literals (ledger.journal.USABLE).
    Index(
        "ix_lots_member_usable",
        "member_id",
        "status",  # the same leading columns as ix_lots_member_open, so SQLite prefers this
        "expires_at",
        "remaining",
        sqlite_where=text("status = 'active' AND remaining > 0"),
        postgresql_where=text("status = 'active' AND remaining > 0"),
    ),
    Index("ix_lots_status_expires", "status", "expires_at"),
    Index("ix_lots_status_available", "status", "available_at"),
)

entries = Table(
    "entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("member_id", Integer, ForeignKey("members.id"), nullable=False),
    Column("operation_id", Integer, ForeignKey("operations.id"), nullable=True),
    Column("kind", String(24), nullable=False),
    Column("points", Integer, nullable=False),  # change of the usable balance
    Column("pending", Integer, nullable=False, server_default="0"),  # change of pending points
    Column("debt", Integer, nullable=False, server_default="0"),  # change of the debt
    Column("reference", String(100), nullable=True),  # receipt id, refund id, reversed entry id
    Column("reason", Text, nullable=True),
    Column("actor", String(64), nullable=True),
    Column("reversed_by", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_entries_member_id", "member_id", "id"),
)

# Which lots an outgoing entry took its points from, so a refund or a reversal can put them
# back with their original expiry.
spends = Table(
    "spends",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", Integer, ForeignKey("entries.id"), nullable=False, index=True),
    Column("lot_id", Integer, ForeignKey("lots.id"), nullable=False),
    Column("points", Integer, nullable=False),
    Column("returned", Integer, nullable=False, server_default="0"),
    CheckConstraint("returned >= 0 AND returned <= points", name="returned_in_range"),
)

purchases = Table(
    "purchases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("receipt_id", String(100), nullable=False, unique=True),
    Column("member_id", Integer, ForeignKey("members.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),  # kopecks, whole receipt
    Column("redeemed", Integer, nullable=False),  # points that paid part of it
    Column("accrued", Integer, nullable=False),  # points earned on the money part
    Column("earn_entry_id", Integer, nullable=True),
    Column("redeem_entry_id", Integer, nullable=True),
    Column("refunded_amount", BigInteger, nullable=False, server_default="0"),
    Column("reversed_accrued", Integer, nullable=False, server_default="0"),
    Column("returned_redeemed", Integer, nullable=False, server_default="0"),
    # money paid net of refunds, what tiers count
    Column("qualifying", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("refunded_amount <= amount", name="refund_within_amount"),
    # The tier window's spend is a range of this index alone (qualifying is in it).
    Index("ix_purchases_member_spend", "member_id", "created_at", "qualifying"),
)

# One referral reward per invited phone, even if that phone registers again later (the phone
# as a keyed hash: storage.phone_hashes).
referral_rewards = Table(
    "referral_rewards",
    metadata,
    Column("invited_phone_hash", String(64), primary_key=True),
    Column("inviter_id", Integer, ForeignKey("members.id"), nullable=False),
    Column("invited_id", Integer, ForeignKey("members.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# The key of the phone hashes above and of the welcome bonus's key (storage.phone_hashes): one
# row, a random value made once, so that every process and every host hashes alike.
phone_hash_key = Table(
    "phone_hash_key",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("key", String(64), nullable=False),
    CheckConstraint("id = 1", name="one_row"),
)

# Support requests and disputes written by members; the support side answers them.
tickets = Table(
    "tickets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("member_id", Integer, ForeignKey("members.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # support | dispute
    Column("entry_id", Integer, ForeignKey("entries.id"), nullable=True),
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),  # open | closed
    Column("created_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("answer", Text, nullable=True),  # what support wrote back when closing it
    Column("closed_by", BigInteger, nullable=True),  # their Telegram id
)

# The Telegram file_id of a member's card picture, reused until something on the card changes.
card_images = Table(
    "card_images",
    metadata,
    Column("member_id", Integer, ForeignKey("members.id"), primary_key=True),
    Column("face_hash", String(64), nullable=False),
    Column("file_id", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Keys for tills and online shops; only a hash is kept, the key is shown once.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    # till (purchases, refunds) | marketing (segments, broadcasts, KPIs): api.app refuses a key
    # on the other scope's endpoints
    Column("scope", String(16), nullable=False, server_default="till"),
)

# Staff roles, one row per (person, role). Admins from ADMIN_IDS are not stored here.
staff_roles = Table(
    "staff_roles",
    metadata,
    Column("telegram_id", BigInteger, primary_key=True),
    Column("role", String(16), primary_key=True),  # admin | cashier | support | marketer
    Column("username", String(64), nullable=True),
    Column("granted_by", BigInteger, nullable=True),
    Column("granted_at", UTCDateTime, nullable=False),
)

# The language a staff member's Telegram was last seen speaking: to write first to staff who
# are not members (a new request for support, say), admins from ADMIN_IDS included; and the
# @username and first name it had then, to find and list them by name.
staff_languages = Table(
    "staff_languages",
    metadata,
    Column("telegram_id", BigInteger, primary_key=True, autoincrement=False),
    Column("language", String(8), nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Column("username", String(64), nullable=True),
    Column("first_name", String(128), nullable=True),
)
# staff.roles find_by_username compares lower(username) too.
Index("ix_staff_languages_username_lower", func.lower(staff_languages.c.username))

# Every staff action: who, what, when, why.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("actor", String(64), nullable=False),  # "tg:<id>" or "api:<key name>"
    Column("action", String(48), nullable=False),
    Column("target", String(64), nullable=True),
    Column("details", Text, nullable=True),  # JSON, never phones or names
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_audit_log_created", "created_at"),
)

# A redemption above the threshold waits for the member's own confirmation.
redemption_requests = Table(
    "redemption_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("member_id", Integer, ForeignKey("members.id"), nullable=False),
    Column("cashier_id", BigInteger, nullable=False),
    Column("receipt_id", String(100), nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),
    Column("redeem_points", Integer, nullable=False),
    # pending | confirmed | declined | expired | cancelled (by the cashier)
    Column("status", String(16), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("cashier_language", String(8), nullable=True),  # to tell the cashier the outcome
    # The cashier's "waiting for the customer" message: its [Cancel] goes when the request ends.
    Column("cashier_message_id", BigInteger, nullable=True),
    # Asked for by a till over the HTTP API with this key (cashier_id is then 0): the till
    # polls the answer and repeats the purchase itself.
    Column("api_key_id", Integer, ForeignKey("api_keys.id"), nullable=True),
)

# The one delivery path for messages the bot starts on its own (receipts, reminders, tier
# news, offers). A dedup key per message makes a job that runs twice, or a restart, harmless.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", String(200), nullable=False, unique=True),
    Column("member_id", Integer, ForeignKey("members.id"), nullable=True),
    Column("chat_id", BigInteger, nullable=False),
    # transactional (never capped) | reminder | tier | offer (capped, quiet hours, opt-outs)
    Column("category", String(16), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),  # higher wins the cap
    Column("text", Text, nullable=False),
    Column("reply_markup", Text, nullable=True),  # JSON
    Column("status", String(24), nullable=False, server_default="queued"),
    # queued -> sent | skipped_cap | skipped_optout | skipped_unreachable | dropped | failed;
    # a broadcast's also held (paused) and cancelled (marketing/broadcasts.py)
    Column("reason", String(200), nullable=True),
    Column("not_before", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),  # past it, the message no longer makes sense
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("broadcast_id", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("message_id", BigInteger, nullable=True),
    # A notice (storage/notices.py): its kind and data (JSON), rendered when it is sent; `text`
    # is then empty. Written in the transaction of the change it tells of.
    Column("kind", String(40), nullable=True),
    Column("payload", Text, nullable=True),
    Column("claim_epoch", Integer, nullable=True),  # the epoch of the sender that claimed it
    Index("ix_outbox_due", "status", "not_before"),
    Index("ix_outbox_member_sent", "member_id", "sent_at"),
)

# One row: the last epoch handed to an outbox sender. A sender that starts takes the next one
# and voids every claim of an older epoch (a sender that died, or lost its leadership).
outbox_lease = Table(
    "outbox_lease",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("epoch", Integer, nullable=False),
    Column("holder", String(64), nullable=True),
    Column("taken_at", UTCDateTime, nullable=True),
)

# Each run of a scheduled job: which process ran it and what it did (for operators, and for
# the test that two processes never run the same job).
job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(32), nullable=False),
    Column("runner", String(64), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("result", Text, nullable=True),
)

# Segments a marketer saved by name: the filter as the contract writes it (JSON,
# marketing.segments), counted anew whenever it is used.
segments = Table(
    "segments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("filter", Text, nullable=False),
    Column("created_by", String(64), nullable=False),  # "tg:<id>" or "api:<key name>"
    Column("created_at", UTCDateTime, nullable=False),
)

# A marketer's broadcast (marketing/broadcasts.py): what it says, to whom (its filter, drawn into
# `broadcast_members` when it is created), and where sending stands. Its messages are outbox
# rows (`outbox.broadcast_id`), queued a batch at a time while it sends.
broadcasts = Table(
    "broadcasts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("public_id", String(64), nullable=False, unique=True),  # the API's broadcast_id
    Column("request_hash", String(64), nullable=False),  # a retry with another body: 409
    Column("created_by", String(64), nullable=False),  # "tg:<id>" or "api:<key name>"
    Column("created_at", UTCDateTime, nullable=False),
    Column("filter", Text, nullable=False),  # JSON (marketing.segments)
    Column("segment_name", String(100), nullable=True),  # the saved segment it came from
    Column("text", Text, nullable=False),  # Telegram HTML with {first_name} and {balance}
    Column("photo", String(256), nullable=True),  # a Telegram file_id
    Column("button_text", String(64), nullable=True),
    Column("button_url", String(512), nullable=True),
    Column("control_percent", Integer, nullable=False),
    Column("gift_points", Integer, nullable=False, server_default="0"),
    Column("gift_days", Integer, nullable=False, server_default="14"),
    Column("window_days", Integer, nullable=False),  # attribution window
    Column("send_at", UTCDateTime, nullable=False),
    # preparing (drawing its members) -> scheduled -> sending <-> paused -> done | cancelled
    Column("status", String(16), nullable=False),
    Column("audience", Integer, nullable=False, server_default="0"),
    Column("control", Integer, nullable=False, server_default="0"),
    Column("recipients", Integer, nullable=False, server_default="0"),
    # Recipients are queued in member id order: those up to `fed_through` are in the outbox.
    Column("fed_through", Integer, nullable=False, server_default="0"),
    Column("fed_all", Boolean, nullable=False, server_default="0"),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    # The staff message that shows its progress, edited in place while it sends.
    Column("progress_chat_id", BigInteger, nullable=True),
    Column("progress_message_id", BigInteger, nullable=True),
    Index("ix_broadcasts_status", "status", "send_at"),
)
broadcast_members = Table(
    "broadcast_members",
    metadata,
    Column("broadcast_id", Integer, ForeignKey("broadcasts.id"), primary_key=True),
    Column("member_id", Integer, ForeignKey("members.id"), primary_key=True),
    Column("control", Boolean, nullable=False),  # drawn once: gets nothing, measures the lift
)
Index(
    "ix_outbox_broadcast",
    outbox.c.broadcast_id,
    outbox.c.status,
    sqlite_where=text("broadcast_id IS NOT NULL"),
    postgresql_where=text("broadcast_id IS NOT NULL"),
)
