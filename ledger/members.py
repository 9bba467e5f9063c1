"""Members: lookup, registration, profile, erasure of the members row.

Database: only through SyncDatabase (`self.db`), one synchronous function per transaction;
the lookups a purchase also makes are statements compiled once (storage.fast).
"""

from __future__ import annotations

import functools
import secrets
import string
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, String, bindparam, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from ledger import policy
from ledger.errors import BirthdayAlreadySet, BirthdayInvalid, LedgerError, MemberNotFound
from ledger.operations import OPERATION_EXISTS, LedgerBase, hash_request
from ledger.phones import normalize_phone
from ledger.views import MemberView, Registration
from storage.fast import Fast
from storage.schema import members

CARD_NUMBER_LENGTH = 12
REFERRAL_ALPHABET = string.ascii_lowercase + string.digits

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


class Members(LedgerBase):
    """Who the members are: found, registered, changed, erased."""

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
                name: readable(value)
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
            given_before = OPERATION_EXISTS(conn, {"key": f"welcome:{member_id}"}).first()
            if self.rules.welcome_bonus > 0 and given_before is None:
                op_id = self._claim_operation(
                    conn,
                    f"welcome:{self.phone_hash(conn, e164)}",
                    "welcome",
                    member_id,
                    hash_request({}),
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
                member=member_view(member),
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
        return member_view(row)

    async def find_member(self, customer: str) -> MemberView:
        """An active member by card number or phone in any common format."""
        lookup = CustomerLookup(customer)
        row = await self.db.read(functools.partial(member_row_by_lookup, lookup=lookup))
        return member_view(row)

    async def member_by_telegram(self, telegram_id: int) -> MemberView | None:
        """The active member linked to this Telegram account, if any."""
        row = await self.db.read(
            functools.partial(self.member_row_by_telegram, telegram_id=telegram_id)
        )
        return member_view(row) if row is not None else None

    @staticmethod
    def member_row_by_telegram(conn: Connection, telegram_id: int) -> Row[Any] | None:
        """The active member's row for this Telegram account, inside a caller's transaction."""
        return _MEMBER_BY_TELEGRAM(conn, {"telegram_id": telegram_id}).first()

    @staticmethod
    def view(row: Row[Any]) -> MemberView:
        return member_view(row)

    async def member_by_username(self, username: str) -> MemberView | None:
        """The active member with this Telegram @username (case-insensitive), if any."""
        params = {"username": username.lstrip("@").lower()}
        row = await self.db.read(lambda conn: conn.execute(MEMBER_BY_USERNAME, params).first())
        return member_view(row) if row is not None else None

    async def member_by_card(self, card_number: str) -> MemberView:
        """An active member by exact card number."""
        row = await self.db.read(
            lambda conn: _MEMBER_BY_CARD(conn, {"card_number": card_number}).first()
        )
        if row is None or row.status != "active":
            raise MemberNotFound("no member with this card number")
        return member_view(row)

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
            values[name] = readable(values[name])

        def work(conn: Connection) -> MemberView:
            conn.execute(update(members).where(members.c.id == member_id).values(**values))
            return member_view(self.journal.member_row(conn, member_id))

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
            return member_view(self.journal.member_row(conn, member_id))

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


class CustomerLookup:
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


def member_row_by_lookup(conn: Connection, lookup: CustomerLookup) -> Row[Any]:
    """The active member a card number (first) or phone belongs to."""
    row = None
    if lookup.card is not None:
        row = _MEMBER_BY_CARD(conn, {"card_number": lookup.card}).first()
    if row is None and lookup.phone is not None:
        row = _MEMBER_BY_PHONE(conn, {"phone": lookup.phone}).first()
    if row is None or row.status != "active":
        raise MemberNotFound("no member with this card number or phone")
    return row


def member_id_by_lookup(conn: Connection, lookup: CustomerLookup) -> int:
    return int(member_row_by_lookup(conn, lookup).id)


def readable(name: str | None) -> str | None:
    """A name from Telegram as staff will read it (policy.readable_text); None if nothing of it
    is left."""
    return (policy.readable_text(name).strip() or None) if name is not None else None


def _new_card_number() -> str:
    """12 digits: a random non-zero first digit, 10 random digits and a Luhn check digit."""
    body = str(secrets.randbelow(9) + 1) + "".join(
        str(secrets.randbelow(10)) for _ in range(CARD_NUMBER_LENGTH - 2)
    )
    return body + policy.luhn_check_digit(body)


def _new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(10))


def member_view(row: Row[Any]) -> MemberView:
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
