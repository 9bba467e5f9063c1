"""The ledger service: every operation is one database transaction.

Each operation locks the member's row first (PostgreSQL: SELECT ... FOR UPDATE; SQLite: the
BEGIN IMMEDIATE of storage.engine already serialises writers), then records its idempotency key,
then changes lots, journal and running totals together. Running totals are written once per
member per operation, and CHECK constraints refuse a negative balance, pending or debt, so a bug
that slipped past the rules fails the transaction instead of corrupting the ledger.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    Integer,
    String,
    and_,
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
    BirthdayAlreadySet,
    BirthdayInvalid,
    EntryNotFound,
    EntryNotReversible,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidAmount,
    InvalidPoints,
    InvalidReference,
    LedgerError,
    MemberNotFound,
    PurchaseNotFound,
    ReasonRequired,
    RedeemAboveLimit,
    RefundExceedsPurchase,
)
from ledger.journal import SPEND_SINCE, Journal, Totals
from ledger.phones import normalize_phone
from ledger.rules import Rules
from ledger.views import (
    BalanceView,
    Burn,
    Burnt,
    EntryView,
    HistoryPage,
    MemberView,
    PurchaseResult,
    PurchaseView,
    RefundResult,
    Registration,
    TierChange,
)
from storage import phone_hashes
from storage.engine import readonly
from storage.fast import Fast, later
from storage.notices import write_notice
from storage.schema import (
    UTCDateTime,
    entries,
    lots,
    members,
    operations,
    purchases,
    referral_rewards,
    spends,
)
from storage.transactions import SyncDatabase

# Entries that support may reverse; purchase entries are undone by a refund instead.
REVERSIBLE_KINDS = frozenset({"welcome", "referral", "birthday", "adjustment"})
CARD_NUMBER_LENGTH = 12
REFERRAL_ALPHABET = string.ascii_lowercase + string.digits
MAX_POINTS = 10_000_000
MAX_REFERENCE_LENGTH = 100
BATCH_MEMBERS = 500
BATCH_DUE_MEMBERS = 1000  # members per transaction when burning or activating

_SPEND_SINCE = Fast(SPEND_SINCE)
_OPEN_ACTIVE = and_(
    lots.c.member_id == bindparam("member_id"), lots.c.status == "active", lots.c.remaining > 0
)
# Points whose expiry has come are gone even before the burn job writes them off: nobody
# can spend them (Journal.burn_own_due) and nobody is shown them.
_OVERDUE = func.coalesce(
    func.sum(lots.c.remaining).filter(lots.c.expires_at <= bindparam("now")), 0
)
_BURNS = Fast(  # the next burn to come, and what should have burnt already
    select(
        func.min(lots.c.expires_at).filter(lots.c.expires_at > bindparam("now")),
        _OVERDUE.label("overdue"),
    ).where(_OPEN_ACTIVE)
)
_BURNT_OF_ENTRY = Fast(  # points of an entry's own lot that an expiry took
    select(func.coalesce(func.sum(spends.c.points - spends.c.returned), 0))
    .select_from(spends.join(lots, lots.c.id == spends.c.lot_id))
    .join(entries, entries.c.id == spends.c.entry_id)
    .where(lots.c.entry_id == bindparam("entry_id"), entries.c.kind == "expiry")
)
_OVERDUE_SELECT = select(_OVERDUE).where(_OPEN_ACTIVE)
_USABLE = Fast(  # the balance without what should have burnt already: one read
    select(members.c.balance - _OVERDUE_SELECT.scalar_subquery()).where(
        members.c.id == bindparam("member_id", type_=Integer)
    )
)
_BURNING_BEFORE = Fast(
    select(func.coalesce(func.sum(lots.c.remaining), 0)).where(
        _OPEN_ACTIVE, lots.c.expires_at > bindparam("now"), lots.c.expires_at < bindparam("day_end")
    )
)
_MEMBER_BY_CARD = Fast(select(members).where(members.c.card_number == bindparam("card_number")))
_MEMBER_BY_PHONE = Fast(select(members).where(members.c.phone == bindparam("phone")))
# An index range (ix_members_username_lower, migration 0010), not a scan of every member.
MEMBER_BY_USERNAME = select(members).where(
    func.lower(members.c.username) == bindparam("username", type_=String),
    members.c.status == "active",
)
_MEMBER_BY_TELEGRAM = Fast(
    select(members).where(
        members.c.telegram_id == bindparam("telegram_id"), members.c.status == "active"
    )
)
_COUNT_ENTRIES = Fast(
    select(func.count()).select_from(entries).where(entries.c.member_id == bindparam("member_id"))
)
_ENTRIES_PAGE = Fast(
    select(entries)
    .where(entries.c.member_id == bindparam("member_id"))
    .order_by(entries.c.id.desc())
    .offset(bindparam("offset"))
    .limit(bindparam("limit"))
)
_ENTRY = Fast(select(entries).where(entries.c.id == bindparam("entry_id")))
_INSERT_PURCHASE = Fast(purchases.insert())
_PURCHASE = Fast(select(purchases).where(purchases.c.receipt_id == bindparam("receipt_id")))
_PURCHASE_MEMBER = Fast(
    select(purchases.c.member_id).where(purchases.c.receipt_id == bindparam("receipt_id"))
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
            _OVERDUE_SELECT.scalar_subquery().label("overdue"),
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
_OPERATION_EXISTS = Fast(
    select(operations.c.id, operations.c.member_id, members.c.status)
    .select_from(operations.outerjoin(members, members.c.id == operations.c.member_id))
    .where(operations.c.key == bindparam("key"))
)
_FINISH = Fast(
    update(operations)
    .where(operations.c.id == bindparam("op_id"))
    .values(result=bindparam("result"))
)


class LedgerService:
    """Owns every change to members' points."""

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

    # ------------------------------------------------------------------ members

    async def register_member(
        self,
        phone: str,
        *,
        telegram_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language: str = "ru",
        referral_code: str | None = None,
    ) -> Registration:
        """Create a member for this phone, or link a known phone to this Telegram account.

        The welcome bonus is credited once per member, whichever call gets there first.
        """
        e164 = normalize_phone(phone)
        now = self.clock.now()
        for _attempt in range(5):
            try:
                return await self._register_once(
                    e164, now, telegram_id, first_name, last_name, username, language, referral_code
                )
            except IntegrityError:
                # A concurrent registration of the same phone, or a card number collision:
                # the next attempt sees the winner's row or draws a new number.
                continue
        raise LedgerError("could not register the member, try again")

    async def _register_once(
        self,
        e164: str,
        now: datetime,
        telegram_id: int | None,
        first_name: str | None,
        last_name: str | None,
        username: str | None,
        language: str,
        referral_code: str | None,
    ) -> Registration:
        def work(conn: Connection) -> Registration:
            existing = (
                conn.execute(select(members.c.id).where(members.c.phone == e164))
            ).scalar_one_or_none()
            profile = {
                name: _readable(value)
                for name, value in (
                    ("first_name", first_name),
                    ("last_name", last_name),
                    ("username", username),
                )
            }
            # Before the account moves: inviting yourself from your own other number pays nothing.
            inviter = None if existing is not None else self._inviter_id(conn, referral_code)
            if inviter is not None and telegram_id is not None:
                inviter_account = self.journal.member_row(conn, inviter).telegram_id
                if inviter_account == telegram_id:
                    inviter = None
            if telegram_id is not None:
                # One Telegram account belongs to one member: a new number moves the account.
                conn.execute(
                    update(members)
                    .where(members.c.telegram_id == telegram_id, members.c.phone != e164)
                    .values(telegram_id=None)
                )
            previous_account = None
            if existing is not None:
                member_id = existing
                previous_account = self.journal.member_row(conn, member_id).telegram_id
                values: dict[str, Any] = {k: v for k, v in profile.items() if v is not None}
                if telegram_id is not None:
                    values["telegram_id"] = telegram_id
                if values:
                    conn.execute(update(members).where(members.c.id == member_id).values(**values))
                created = False
            else:
                member_id = (
                    conn.execute(
                        members.insert()
                        .values(
                            card_number=_new_card_number(),
                            referral_code=_new_referral_code(),
                            phone=e164,
                            telegram_id=telegram_id,
                            language=language,
                            timezone=self.rules.messages.default_timezone,
                            referred_by=inviter,
                            created_at=now,
                            consent_at=now,
                            **profile,
                        )
                        .returning(members.c.id)
                    )
                ).scalar_one()
                created = True
            self.journal.lock_member(conn, member_id)
            welcome = 0
            # Once per phone, as the referral reward: deleting your data and joining again with
            # the same number gives no second bonus. (Keyed by the member before: those count.)
            given_before = _OPERATION_EXISTS(conn, {"key": f"welcome:{member_id}"}).first()
            if self.rules.welcome_bonus > 0 and given_before is None:
                op_id = self._claim_operation(
                    conn,
                    f"welcome:{self.phone_hash(conn, e164)}",
                    "welcome",
                    member_id,
                    _hash_request({}),
                    None,
                )
                if op_id is not None:
                    totals = self.journal.lock_totals(conn, member_id)
                    self.journal.credit(
                        conn,
                        member_id,
                        totals,
                        self.rules.welcome_bonus,
                        "welcome",
                        now,
                        operation_id=op_id,
                    )
                    self.journal.store_totals(conn, member_id, totals)
                    self._finish_operation(conn, op_id, {"points": self.rules.welcome_bonus})
                    welcome = self.rules.welcome_bonus
            member = self.journal.member_row(conn, member_id)
            moved_from = previous_account if previous_account != telegram_id else None
            return Registration(
                member=_member_view(member),
                created=created,
                welcome_points=welcome,
                moved_from=moved_from if telegram_id is not None else None,
            )

        return await self.db.write(work)

    async def invites(self, referral_code: str) -> bool:
        """Whether this invite code belongs to a member (who can be rewarded)."""
        return await self.db.read(lambda conn: self._inviter_id(conn, referral_code) is not None)

    def _inviter_id(self, conn: Connection, referral_code: str | None) -> int | None:
        if not referral_code:
            return None
        return (
            conn.execute(
                select(members.c.id).where(
                    members.c.referral_code == referral_code.lower(), members.c.status == "active"
                )
            )
        ).scalar_one_or_none()

    async def get_member(self, member_id: int) -> MemberView:
        """The member with this id (also erased ones, anonymised)."""
        row = await self.db.read(functools.partial(self.journal.member_row, member_id=member_id))
        return _member_view(row)

    async def find_member(self, customer: str) -> MemberView:
        """An active member by card number or phone in any common format."""
        lookup = _CustomerLookup(customer)
        row = await self.db.read(functools.partial(_member_row_by_lookup, lookup=lookup))
        return _member_view(row)

    async def member_by_telegram(self, telegram_id: int) -> MemberView | None:
        """The active member linked to this Telegram account, if any."""
        row = await self.db.read(
            functools.partial(self.member_row_by_telegram, telegram_id=telegram_id)
        )
        return _member_view(row) if row is not None else None

    @staticmethod
    def member_row_by_telegram(conn: Connection, telegram_id: int) -> Row[Any] | None:
        """The active member's row for this Telegram account, inside a caller's transaction."""
        return _MEMBER_BY_TELEGRAM(conn, {"telegram_id": telegram_id}).first()

    @staticmethod
    def view(row: Row[Any]) -> MemberView:
        return _member_view(row)

    async def member_by_username(self, username: str) -> MemberView | None:
        """The active member with this Telegram @username (case-insensitive), if any."""
        async with self.reader.connect() as conn:
            params = {"username": username.lstrip("@").lower()}
            row = (await conn.execute(MEMBER_BY_USERNAME, params)).first()
        return _member_view(row) if row is not None else None

    async def member_by_card(self, card_number: str) -> MemberView:
        """An active member by exact card number."""
        row = await self.db.read(
            lambda conn: _MEMBER_BY_CARD(conn, {"card_number": card_number}).first()
        )
        if row is None or row.status != "active":
            raise MemberNotFound("no member with this card number")
        return _member_view(row)

    async def update_profile(self, member_id: int, **values: Any) -> MemberView:
        """Change settings: language, timezone, notify_* flags, names, unreachable."""
        allowed = {
            "language",
            "timezone",
            "notify_reminders",
            "notify_tier",
            "notify_offers",
            "first_name",
            "last_name",
            "username",
            "unreachable",
        }
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"not a profile field: {sorted(unknown)}")

        for name in {"first_name", "last_name", "username"} & set(values):
            values[name] = _readable(values[name])

        def work(conn: Connection) -> MemberView:
            conn.execute(update(members).where(members.c.id == member_id).values(**values))
            return _member_view(self.journal.member_row(conn, member_id))

        return await self.db.write(work)

    async def set_birthday(self, member_id: int, birthday: date) -> MemberView:
        """Set the birthday once; a second attempt is refused. A birthday without its year
        has the year policy.BIRTH_YEAR_UNKNOWN."""
        now = self.clock.now()
        known = birthday.year != policy.BIRTH_YEAR_UNKNOWN
        if known and (birthday > now.date() or birthday.year < 1900):
            raise BirthdayInvalid("birthday out of range")

        def work(conn: Connection) -> MemberView:
            changed = conn.execute(
                update(members)
                .where(members.c.id == member_id, members.c.birthday.is_(None))
                .values(birthday=birthday, birthday_set_at=now)
            ).rowcount
            if changed != 1:
                raise BirthdayAlreadySet("the birthday is already set")
            return _member_view(self.journal.member_row(conn, member_id))

        return await self.db.write(work)

    async def erase_member(
        self, member_id: int, *, also: Callable[[Connection], None] | None = None
    ) -> None:
        """Erase the member's personal data in the ledger (the entries stay, tied to an
        anonymous member id). `also` runs in the same transaction first: the other packages
        erase their own tables there (usecases.privacy)."""

        def work(conn: Connection) -> None:
            self.journal.lock_member(conn, member_id)
            if also is not None:
                also(conn)
            conn.execute(
                update(members)
                .where(members.c.id == member_id)
                .values(
                    phone=None,
                    telegram_id=None,
                    first_name=None,
                    last_name=None,
                    username=None,
                    birthday=None,
                    birthday_set_at=None,
                    status="erased",
                    erased_at=self.clock.now(),
                    notify_reminders=False,
                    notify_tier=False,
                    notify_offers=False,
                )
            )

        # Long: what `also` erases may need scans (messages found by their key's prefix):
        # never on the event loop's thread.
        await self.db.write(work, long=True)
        # SQLite's WAL still holds the pages as they were before: empty it.
        await self.db.checkpoint()

    # ---------------------------------------------------------------- purchases

    async def redeemable_points(self, member_id: int, amount_kopecks: int) -> int:
        """The most points this member may spend on a purchase of this amount, right now."""
        params = {"member_id": member_id, "now": self.clock.now()}
        usable = await self.db.read(
            lambda conn: _USABLE(conn, params).scalar_one_or_none(), single=True
        )
        if usable is None:
            raise MemberNotFound("no such member")
        return policy.redeemable_points(self.rules, amount_kopecks, int(usable))

    async def purchase_recorded(self, receipt_id: str) -> bool:
        """Whether a purchase was recorded under this receipt_id (the same request again gets
        its answer; another one, a conflict)."""
        params = {"key": f"purchase:{receipt_id}"}
        row = await self.db.read(lambda conn: _OPERATION_EXISTS(conn, params).first(), single=True)
        return row is not None

    async def purchase(
        self,
        *,
        receipt_id: str,
        member_id: int | None = None,
        customer: str | None = None,
        amount_kopecks: int,
        redeem_points: int = 0,
        actor: str | None = None,
        shop_receipt: bool = True,
    ) -> PurchaseResult:
        """Record a purchase: redeem, then earn on the money part. Idempotent on receipt_id.

        The member is given by id, or as `customer`: a card number or a phone in any common
        format, looked up inside the purchase's own transaction (as `find_member` does).
        The member's receipt is queued in the same transaction (a notice); `shop_receipt`: the
        receipt id is the shop's own (a till's), which the member can match with the paper
        receipt; a sale recorded in the bot has only an internal id, not shown."""
        _check_reference(receipt_id, "receipt_id")
        if amount_kopecks <= 0 or amount_kopecks > policy.MAX_AMOUNT_KOPECKS:
            raise InvalidAmount("amount must be positive", value=amount_kopecks)
        if redeem_points < 0 or redeem_points > MAX_POINTS:
            raise InvalidPoints(
                f"points to redeem must be a whole number from 0 to {MAX_POINTS}",
                field="redeem_points",
            )
        if (member_id is None) == (customer is None):
            raise ValueError("give either member_id or customer")
        member: int | Callable[[Connection], int]
        if member_id is not None:
            member = member_id
        else:
            lookup = _CustomerLookup(customer or "")
            member = functools.partial(_member_id_by_lookup, lookup=lookup)

        def request(member_id: int) -> dict[str, Any]:
            return {"member_id": member_id, "amount": amount_kopecks, "redeem": redeem_points}

        def body(conn: Connection, op_id: int, totals: Totals, row: Row[Any]) -> dict[str, Any]:
            member_id = row.id
            if row.status != "active":
                raise MemberNotFound("no such member")
            allowed = policy.redeemable_points(self.rules, amount_kopecks, totals.balance)
            if redeem_points > allowed:
                raise RedeemAboveLimit(
                    f"at most {allowed} points can be redeemed on this purchase", allowed=allowed
                )
            now = self.clock.now()
            redeem_entry = None
            if redeem_points:
                redeem_entry = self.journal.debit(
                    conn,
                    member_id,
                    totals,
                    redeem_points,
                    "redeem",
                    now,
                    operation_id=op_id,
                    reference=receipt_id,
                    actor=actor,
                    strict=True,
                )
            money = policy.money_paid(self.rules, amount_kopecks, redeem_points)
            # The tier of the window as it is now, even if the tier job has not caught up.
            spend_before = int(row.window_spend)
            earning_tier = policy.tier_for_spend(self.rules, spend_before)
            accrued = policy.earned_points(money, earning_tier)
            earn_entry = None
            if accrued:
                earn_entry = self.journal.credit(
                    conn,
                    member_id,
                    totals,
                    accrued,
                    "earn",
                    now,
                    operation_id=op_id,
                    reference=receipt_id,
                    actor=actor,
                    hold=True,
                )
            later(
                conn,
                _INSERT_PURCHASE,
                {
                    "receipt_id": receipt_id,
                    "member_id": member_id,
                    "amount": amount_kopecks,
                    "redeemed": redeem_points,
                    "accrued": accrued,
                    "earn_entry_id": earn_entry,
                    "redeem_entry_id": redeem_entry,
                    "qualifying": money,
                    "created_at": now,
                },
            )
            inviter = None
            if row.last_purchase_at is None and row.referred_by is not None:
                inviter = self._reward_referral(conn, row, now, op_id)
            new_tier = policy.tier_for_spend(self.rules, spend_before + money).name
            self.journal.store_totals(
                conn, member_id, totals, tier=new_tier, last_purchase_at=now
            )
            if row.telegram_id is not None:
                write_notice(
                    conn,
                    kind="purchase",
                    dedup_key=f"receipt:purchase:{receipt_id}",
                    member_id=member_id,
                    chat_id=row.telegram_id,
                    now=now,
                    payload={
                        "receipt_id": receipt_id,
                        "shop_receipt": shop_receipt,
                        "amount": amount_kopecks,
                        "redeemed": redeem_points,
                        "accrued": accrued,
                        "balance": totals.balance,
                        "tier": new_tier,
                        "spend": spend_before + money,
                    },
                )
            return {
                "receipt_id": receipt_id,
                "member_id": member_id,
                "card_number": row.card_number,
                "accrued": accrued,
                "redeemed": redeem_points,
                "balance": totals.balance,
                "pending": totals.pending,
                "tier": new_tier,
                "previous_tier": row.tier,
                "rewarded_inviter": inviter,
            }

        result, replayed = await self._run_operation(
            f"purchase:{receipt_id}",
            "purchase",
            member,
            request,
            actor,
            body,
            with_window_spend=True,
        )
        self._noticed(replayed)
        return PurchaseResult(**result, replayed=replayed)

    async def refund(
        self, *, refund_id: str, receipt_id: str, amount_kopecks: int, actor: str | None = None
    ) -> RefundResult:
        """Refund part or all of a purchase: take back earned points pro rata and give back
        the points that paid for the refunded part. Idempotent on refund_id."""
        _check_reference(refund_id, "refund_id")
        _check_reference(receipt_id, "receipt_id")
        if amount_kopecks <= 0 or amount_kopecks > policy.MAX_AMOUNT_KOPECKS:
            raise InvalidAmount("amount must be positive", value=amount_kopecks)
        request = {"receipt_id": receipt_id, "amount": amount_kopecks}

        def member_of_purchase(conn: Connection) -> int:
            """Looked up inside the refund's own transaction (one trip to the database)."""
            member_id = _PURCHASE_MEMBER(conn, {"receipt_id": receipt_id}).scalar_one_or_none()
            if member_id is None:
                raise PurchaseNotFound("no purchase with this receipt_id")
            return int(member_id)

        def body(conn: Connection, op_id: int, totals: Totals, locked: Row[Any]) -> dict[str, Any]:
            member_id = locked.id
            purchase = _PURCHASE(conn, {"receipt_id": receipt_id}).one()
            refundable = purchase.amount - purchase.refunded_amount
            if amount_kopecks > refundable:
                raise RefundExceedsPurchase(
                    f"at most {policy.format_amount(refundable)} can still be refunded",
                    refundable=policy.format_amount(refundable),
                )
            now = self.clock.now()
            before = purchase.refunded_amount
            reverse = policy.pro_rata(purchase.accrued, before, amount_kopecks, purchase.amount)
            give_back = policy.pro_rata(purchase.redeemed, before, amount_kopecks, purchase.amount)
            money = policy.money_paid(self.rules, purchase.amount, purchase.redeemed)
            qualifying_cut = policy.pro_rata(money, before, amount_kopecks, purchase.amount)
            if give_back:
                self.journal.give_back(
                    conn,
                    member_id,
                    totals,
                    purchase.redeem_entry_id,
                    give_back,
                    "refund_return",
                    now,
                    operation_id=op_id,
                    reference=refund_id,
                    actor=actor,
                )
            if reverse:
                self.journal.debit(
                    conn,
                    member_id,
                    totals,
                    reverse,
                    "refund_reverse",
                    now,
                    operation_id=op_id,
                    reference=refund_id,
                    actor=actor,
                    strict=False,
                    first_lot_entry=purchase.earn_entry_id,
                )
            conn.execute(
                update(purchases)
                .where(purchases.c.id == purchase.id)
                .values(
                    refunded_amount=purchases.c.refunded_amount + amount_kopecks,
                    reversed_accrued=purchases.c.reversed_accrued + reverse,
                    returned_redeemed=purchases.c.returned_redeemed + give_back,
                    qualifying=purchases.c.qualifying - qualifying_cut,
                )
            )
            tier = self._recompute_tier(conn, member_id, locked.tier, now)
            self.journal.store_totals(
                conn, member_id, totals, tier=tier.new_tier if tier else None
            )
            if locked.telegram_id is not None:
                write_notice(
                    conn,
                    kind="refund",
                    dedup_key=f"receipt:refund:{refund_id}",
                    member_id=member_id,
                    chat_id=locked.telegram_id,
                    now=now,
                    payload={
                        "refund_id": refund_id,
                        "receipt_id": receipt_id,
                        "reversed": reverse,
                        "returned": give_back,
                        "balance": totals.balance,
                        "debt": totals.debt,
                    },
                )
            return {
                "refund_id": refund_id,
                "receipt_id": receipt_id,
                "member_id": member_id,
                "card_number": locked.card_number,
                "reversed": reverse,
                "returned": give_back,
                "debt": totals.debt,
                "balance": totals.balance,
                "pending": totals.pending,
                "tier": tier.new_tier if tier else locked.tier,
            }

        result, replayed = await self._run_operation(
            f"refund:{refund_id}", "refund", member_of_purchase, request, actor, body
        )
        self._noticed(replayed)
        return RefundResult(**result, replayed=replayed)

    # ------------------------------------------------------------- staff actions

    async def adjust(
        self,
        *,
        member_id: int,
        points: int,
        reason: str,
        actor: str,
        operation_id: str | None = None,
    ) -> EntryView:
        """Add (positive) or remove (negative) points by hand, with a reason."""
        if points == 0 or abs(points) > MAX_POINTS:
            raise InvalidPoints(
                f"an adjustment must be a non-zero number of points, at most {MAX_POINTS} "
                "either way"
            )
        if not reason.strip():
            raise ReasonRequired("a reason is required")
        key = f"adjust:{operation_id or secrets.token_hex(12)}"
        request = {"member_id": member_id, "points": points, "reason": reason}

        def body(conn: Connection, op_id: int, totals: Totals, _: Row[Any]) -> dict[str, Any]:
            now = self.clock.now()
            if points > 0:
                entry_id = self.journal.credit(
                    conn,
                    member_id,
                    totals,
                    points,
                    "adjustment",
                    now,
                    operation_id=op_id,
                    reason=reason,
                    actor=actor,
                )
            else:
                if totals.balance < -points:
                    raise InsufficientPoints(
                        f"the member has only {totals.balance} points", balance=totals.balance
                    )
                entry_id = self.journal.debit(
                    conn,
                    member_id,
                    totals,
                    -points,
                    "adjustment",
                    now,
                    operation_id=op_id,
                    reason=reason,
                    actor=actor,
                    strict=True,
                )
            self.journal.store_totals(conn, member_id, totals)
            return {"entry_id": entry_id}

        result, _ = await self._run_operation(key, "adjust", member_id, request, actor, body)
        return await self.entry(result["entry_id"])

    async def reverse_entry(self, *, entry_id: int, reason: str, actor: str) -> EntryView:
        """Undo one bonus or adjustment entry; a purchase is undone by a refund."""
        if not reason.strip():
            raise ReasonRequired("a reason is required")
        async with self.reader.connect() as conn:
            target = (await conn.execute(select(entries).where(entries.c.id == entry_id))).first()
        if target is None:
            raise EntryNotFound("no such entry")
        if target.kind not in REVERSIBLE_KINDS:
            raise EntryNotReversible(f"a {target.kind} entry cannot be reversed", kind=target.kind)
        request = {"entry_id": entry_id}

        def body(conn: Connection, op_id: int, totals: Totals, _: Row[Any]) -> dict[str, Any]:
            current = (conn.execute(select(entries).where(entries.c.id == entry_id))).one()
            if current.reversed_by is not None:
                raise EntryNotReversible("this entry is already reversed", kind=current.kind)
            now = self.clock.now()
            amount = current.points + current.pending
            if amount > 0:
                # What burnt of the entry's own lot is gone already: not taken a second time.
                amount -= int(_BURNT_OF_ENTRY(conn, {"entry_id": entry_id}).scalar_one())
            if amount >= 0:  # 0: it all burnt; the reversal is on record all the same
                new_id = self.journal.debit(
                    conn,
                    current.member_id,
                    totals,
                    amount,
                    "reversal",
                    now,
                    operation_id=op_id,
                    reference=str(entry_id),
                    reason=reason,
                    actor=actor,
                    strict=False,
                    first_lot_entry=entry_id,
                )
            else:
                new_id = self.journal.give_back(
                    conn,
                    current.member_id,
                    totals,
                    entry_id,
                    -amount,
                    "reversal",
                    now,
                    operation_id=op_id,
                    reference=str(entry_id),
                    reason=reason,
                    actor=actor,
                )
            conn.execute(update(entries).where(entries.c.id == entry_id).values(reversed_by=new_id))
            self.journal.store_totals(conn, current.member_id, totals)
            return {"entry_id": new_id}

        result, _ = await self._run_operation(
            f"reverse:{entry_id}", "reverse", target.member_id, request, actor, body
        )
        return await self.entry(result["entry_id"])

    # ------------------------------------------------------------ time passing

    async def expire_due(
        self, on_burnt: Callable[[Connection, list[Burnt]], None] | None = None
    ) -> int:
        """Burn every active lot whose expiry has come; returns the points burnt. `on_burnt`
        writes what follows from a batch (the members' notices) in the batch's transaction."""
        now = self.clock.now()
        condition = and_(lots.c.status == "active", lots.c.remaining > 0, lots.c.expires_at <= now)

        def work(conn: Connection, ids: Sequence[int]) -> int:
            burnt = self.journal.burn_due(conn, ids, now)
            if on_burnt is not None and burnt:
                on_burnt(conn, burnt)
            return sum(item.points for item in burnt)

        return await self._for_due_members(condition, work)

    async def activate_due(self) -> int:
        """Make held points usable once their hold is over; returns the points activated."""
        now = self.clock.now()
        condition = and_(lots.c.status == "pending", lots.c.available_at <= now)
        return await self._for_due_members(
            condition, lambda conn, ids: self.journal.activate_due(conn, ids, now)
        )

    async def _for_due_members(
        self, condition: Any, work: Callable[[Connection, Sequence[int]], int]
    ) -> int:
        """Run `work` over the members with due lots, a batch of members per transaction."""
        done = 0
        after = 0
        while True:
            async with self.reader.connect() as conn:
                ids = (
                    (
                        await conn.execute(
                            select(lots.c.member_id)
                            .where(condition, lots.c.member_id > after)
                            .group_by(lots.c.member_id)
                            .order_by(lots.c.member_id)
                            .limit(BATCH_DUE_MEMBERS)
                        )
                    )
                    .scalars()
                    .all()
                )
            if not ids:
                return done
            # A batch of a job: long, so never on the event loop's thread.
            done += await self.db.write(functools.partial(_flip, work, ids), long=True)
            after = ids[-1]

    async def credit_birthday(self, member_id: int) -> int:
        """Credit this year's birthday bonus if today is the member's birthday in their time
        zone and the birthday was set early enough; returns the points credited (0 if not due
        or already credited)."""
        now = self.clock.now()
        member = await self.get_member(member_id)
        if not member.is_active or member.birthday is None or member.birthday_set_at is None:
            return 0
        local_today = now.astimezone(ZoneInfo(member.timezone)).date()
        if not _is_birthday(member.birthday, local_today):
            return 0
        min_set = timedelta(days=self.rules.birthday.min_days_set_before)
        if now - member.birthday_set_at < min_set or self.rules.birthday.points <= 0:
            return 0
        points = self.rules.birthday.points
        valid = timedelta(days=self.rules.birthday.valid_days)

        def body(conn: Connection, op_id: int, totals: Totals, row: Row[Any]) -> dict[str, Any]:
            if row.status != "active":  # erased since it was read above: nothing is due
                return {"points": 0}
            self.journal.credit(
                conn,
                member_id,
                totals,
                points,
                "birthday",
                now,
                operation_id=op_id,
                expires_at=now + valid,
            )
            self.journal.store_totals(conn, member_id, totals)
            return {"points": points}

        try:
            result, replayed = await self._run_operation(
                f"birthday:{member_id}:{local_today.year}", "birthday", member_id, {}, None, body
            )
        except IdempotencyConflict:
            return 0
        return 0 if replayed else int(result["points"])

    def birthday_year(self, member: MemberView) -> int | None:
        """The year whose birthday it is today in the member's time zone, if it is today."""
        if member.birthday is None:
            return None
        local_today = self.clock.now().astimezone(ZoneInfo(member.timezone)).date()
        return local_today.year if _is_birthday(member.birthday, local_today) else None

    async def has_birthday_bonus(self, member_id: int, year: int) -> bool:
        async with self.reader.connect() as conn:
            found = (
                await conn.execute(
                    select(operations.c.id).where(
                        operations.c.key == f"birthday:{member_id}:{year}"
                    )
                )
            ).first()
        return found is not None

    async def birthday_candidates(self) -> list[int]:
        """Active members whose birthday is today or tomorrow in UTC (time zones differ)."""
        today = self.clock.now().date()
        days = {(d.month, d.day) for d in (today - timedelta(days=1), today, today + timedelta(1))}
        async with self.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(members.c.id, members.c.birthday).where(
                        members.c.status == "active", members.c.birthday.is_not(None)
                    )
                )
            ).all()
        return [
            row.id
            for row in rows
            if (row.birthday.month, row.birthday.day) in days
            or (row.birthday.month, row.birthday.day) == (2, 29)
        ]

    async def recompute_tiers(self) -> list[TierChange]:
        """Recompute every member's tier as old purchases leave the window."""
        now = self.clock.now()
        changes: list[TierChange] = []
        async with self.reader.connect() as conn:
            ids = (
                (
                    await conn.execute(
                        select(members.c.id).where(
                            members.c.status == "active", members.c.last_purchase_at.is_not(None)
                        )
                    )
                )
                .scalars()
                .all()
            )
        for start in range(0, len(ids), BATCH_MEMBERS):
            batch = ids[start : start + BATCH_MEMBERS]
            changes.extend(
                await self.db.write(
                    functools.partial(self._recompute_batch, member_ids=batch, now=now),
                    long=True,
                )
            )
        return changes

    def _recompute_batch(
        self, conn: Connection, member_ids: Sequence[int], now: datetime
    ) -> list[TierChange]:
        changes = []
        for member_id in sorted(member_ids):  # in id order, as every batch locks
            locked = self.journal.lock_member(conn, member_id)
            change = self._recompute_tier(conn, member_id, locked.tier, now)
            if change:
                conn.execute(
                    update(members).where(members.c.id == member_id).values(tier=change.new_tier)
                )
                changes.append(change)
        return changes

    # ------------------------------------------------------------------ queries

    async def balance(self, member_id: int) -> BalanceView:
        """Usable and pending points, debt, tier progress and the nearest burn."""
        return await self.db.read(functools.partial(self._balance, member_id=member_id))

    def _balance(self, conn: Connection, member_id: int) -> BalanceView:
        now = self.clock.now()
        row = self.journal.member_row(conn, member_id)
        spend = self._qualifying_spend(conn, member_id, now)
        first_burn, overdue = _BURNS(conn, {"member_id": member_id, "now": now}).one()
        burn = None
        if first_burn is not None:
            day_end = _end_of_local_day(first_burn, row.timezone)
            points = _BURNING_BEFORE(
                conn, {"member_id": member_id, "now": now, "day_end": day_end}
            ).scalar_one()
            burn = Burn(points=int(points), burns_at=first_burn)
        tier = self.rules.tier(row.tier)
        upper = policy.next_tier(self.rules, tier)
        return BalanceView(
            member_id=member_id,
            balance=row.balance - int(overdue),
            pending=row.pending,
            debt=row.debt,
            tier=row.tier,
            qualifying_spend=spend,
            next_tier=upper.name if upper else None,
            to_next_tier=max(0, upper.threshold_kopecks - spend) if upper else 0,
            nearest_burn=burn,
        )

    async def history(self, member_id: int, page: int = 0, page_size: int = 10) -> HistoryPage:
        """One page of the member's journal, newest first."""
        page_size = max(1, min(page_size, 50))

        def query(conn: Connection) -> tuple[int, int, Sequence[Row[Any]]]:
            total = int(_COUNT_ENTRIES(conn, {"member_id": member_id}).scalar_one())
            pages = max(1, -(-total // page_size))
            at = max(0, min(page, pages - 1))
            params = {"member_id": member_id, "offset": at * page_size, "limit": page_size}
            return total, at, _ENTRIES_PAGE(conn, params).all()

        total, page, rows = await self.db.read(query)
        pages = max(1, -(-total // page_size))
        return HistoryPage(
            entries=tuple(_entry_view(row) for row in rows), page=page, pages=pages, total=total
        )

    async def entry(self, entry_id: int) -> EntryView:
        row = await self.db.read(lambda conn: _ENTRY(conn, {"entry_id": entry_id}).first())
        if row is None:
            raise EntryNotFound("no such entry")
        return _entry_view(row)

    async def entry_owner(self, entry_id: int) -> int:
        """The member an entry belongs to."""
        row = await self.db.read(lambda conn: _ENTRY(conn, {"entry_id": entry_id}).first())
        owner = row.member_id if row is not None else None
        if owner is None:
            raise EntryNotFound("no such entry")
        return int(owner)

    async def receipt(self, receipt_id: str) -> PurchaseView | None:
        """The purchase recorded under this receipt id, if any."""
        row = await self.db.read(lambda conn: _PURCHASE(conn, {"receipt_id": receipt_id}).first())
        if row is None:
            return None
        return PurchaseView(row.receipt_id, row.amount, row.refunded_amount, row.created_at)

    # ------------------------------------------------------ transaction plumbing

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
                used = _OPERATION_EXISTS(conn, {"key": key}).first()
                if used is not None:
                    if callable(request):
                        # Its member erased their data, so nobody can be found by what named
                        # them: the same request again is a replay. Anyone else unknown is not
                        # (-1 is nobody's id: a conflict).
                        erased = used.status is not None and used.status != "active"
                        fields = request(used.member_id if erased else -1)
                    else:
                        fields = request
                    stored = self._stored_result(conn, key, _hash_request(fields))
                    if stored is not None:
                        return stored, True
                raise
            fields = request(member_id) if callable(request) else request
            request_hash = _hash_request(fields)
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
            totals = Totals(balance=locked.balance, pending=locked.pending, debt=locked.debt)
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

    # ------------------------------------------------------------ tiers, referral

    def _qualifying_spend(self, conn: Connection, member_id: int, now: datetime) -> int:
        since = now - timedelta(days=self.rules.tier_window_days)
        spend = _SPEND_SINCE(conn, {"member_id": member_id, "since": since}).scalar_one()
        return int(spend)

    def _recompute_tier(
        self, conn: Connection, member_id: int, current: str, now: datetime
    ) -> TierChange | None:
        spend = self._qualifying_spend(conn, member_id, now)
        reached = policy.tier_for_spend(self.rules, spend).name
        if reached == current:
            return None
        return TierChange(member_id=member_id, old_tier=current, new_tier=reached)

    def _reward_referral(
        self, conn: Connection, invited: Row[Any], now: datetime, op_id: int
    ) -> int | None:
        """Credit the inviter on the invited member's first purchase; the inviter's id if
        they were credited."""
        points = self.rules.referral.inviter_points
        if points <= 0 or invited.phone is None:
            return None
        inviter_id = invited.referred_by
        phone_hash = self.phone_hash(conn, invited.phone)
        insert = postgresql.insert if self._is_postgres else sqlite.insert
        claimed = (
            conn.execute(
                insert(referral_rewards)
                .values(
                    invited_phone_hash=phone_hash,
                    inviter_id=inviter_id,
                    invited_id=invited.id,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=[referral_rewards.c.invited_phone_hash])
                .returning(referral_rewards.c.inviter_id)
            )
        ).scalar_one_or_none()
        if claimed is None:
            return None
        totals = self.journal.lock_totals(conn, inviter_id)
        inviter = self.journal.member_row(conn, inviter_id)
        if inviter.status != "active":  # read once locked
            return None
        self.journal.credit(
            conn,
            inviter_id,
            totals,
            points,
            "referral",
            now,
            operation_id=op_id,
            reference=invited.card_number,
        )
        self.journal.store_totals(conn, inviter_id, totals)
        if inviter.telegram_id is not None:
            write_notice(
                conn,
                kind="referral",
                dedup_key=f"referral:{invited.id}",  # one reward per invited member
                member_id=inviter_id,
                chat_id=inviter.telegram_id,
                now=now,
                payload={"points": points, "balance": totals.balance},
            )
        return int(inviter_id)

    def _noticed(self, replayed: bool) -> None:
        """An operation that wrote notices committed: tell the sender."""
        if not replayed and self.on_notice is not None:
            self.on_notice()


# ---------------------------------------------------------------------- helpers


def _flip(
    work: Callable[[Connection, Sequence[int]], int], ids: Sequence[int], conn: Connection
) -> int:
    return work(conn, ids)


class _CustomerLookup:
    """What a customer reference can mean: a card number (tried first) or a phone in any common
    format. The phone is parsed only when the card number finds nobody: tills send card
    numbers, and parsing one as a phone costs more than all the rest."""

    def __init__(self, customer: str) -> None:
        self.text = customer.strip()
        compact = self.text.replace(" ", "").replace("-", "")
        self.card = compact if compact.isdigit() and policy.is_valid_card_number(compact) else None

    @functools.cached_property
    def phone(self) -> str | None:
        try:
            return normalize_phone(self.text)
        except LedgerError:
            return None


def _member_row_by_lookup(conn: Connection, lookup: _CustomerLookup) -> Row[Any]:
    """The active member a card number (first) or phone belongs to."""
    row = None
    if lookup.card is not None:
        row = _MEMBER_BY_CARD(conn, {"card_number": lookup.card}).first()
    if row is None and lookup.phone is not None:
        row = _MEMBER_BY_PHONE(conn, {"phone": lookup.phone}).first()
    if row is None or row.status != "active":
        raise MemberNotFound("no member with this card number or phone")
    return row


def _member_id_by_lookup(conn: Connection, lookup: _CustomerLookup) -> int:
    return int(_member_row_by_lookup(conn, lookup).id)


def _readable(name: str | None) -> str | None:
    """A name from Telegram as staff will read it (policy.readable_text); None if nothing of it
    is left."""
    return (policy.readable_text(name).strip() or None) if name is not None else None


def _check_reference(value: str, name: str) -> None:
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


def _hash_request(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def _new_card_number() -> str:
    """12 digits: a random non-zero first digit, 10 random digits and a Luhn check digit."""
    body = str(secrets.randbelow(9) + 1) + "".join(
        str(secrets.randbelow(10)) for _ in range(CARD_NUMBER_LENGTH - 2)
    )
    return body + policy.luhn_check_digit(body)


def _new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(10))


def _is_birthday(birthday: date, today: date) -> bool:
    if (birthday.month, birthday.day) == (2, 29) and not _is_leap(today.year):
        return (today.month, today.day) == (2, 28)
    return (birthday.month, birthday.day) == (today.month, today.day)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _end_of_local_day(moment: datetime, timezone: str) -> datetime:
    local = moment.astimezone(ZoneInfo(timezone))
    next_midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time())
    return next_midnight.replace(tzinfo=ZoneInfo(timezone))


def _member_view(row: Row[Any]) -> MemberView:
    return MemberView(
        member_id=row.id,
        card_number=row.card_number,
        phone=row.phone,
        telegram_id=row.telegram_id,
        first_name=row.first_name,
        last_name=row.last_name,
        username=row.username,
        language=row.language,
        timezone=row.timezone,
        birthday=row.birthday,
        birthday_set_at=row.birthday_set_at,
        referral_code=row.referral_code,
        referred_by=row.referred_by,
        status=row.status,
        notify_reminders=row.notify_reminders,
        notify_tier=row.notify_tier,
        notify_offers=row.notify_offers,
        unreachable=row.unreachable,
        created_at=row.created_at,
        balance=row.balance,
        pending=row.pending,
        debt=row.debt,
        tier=row.tier,
    )


def _entry_view(row: Row[Any]) -> EntryView:
    return EntryView(
        entry_id=row.id,
        kind=row.kind,
        points=row.points,
        pending=row.pending,
        debt=row.debt,
        reference=row.reference,
        reason=row.reason,
        created_at=row.created_at,
        reversible=row.kind in REVERSIBLE_KINDS and row.reversed_by is None,
        reversed=row.reversed_by is not None,
        actor=row.actor,
    )
