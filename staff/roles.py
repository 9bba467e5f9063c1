"""Staff roles: admins from ADMIN_IDS, the rest granted in the bot by an admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.clock import Clock, SystemClock
from staff.audit import AuditLog
from storage.engine import readonly
from storage.fast import Fast
from storage.schema import staff_languages, staff_roles

_ROLES_OF = Fast(
    select(staff_roles.c.role).where(staff_roles.c.telegram_id == bindparam("telegram_id"))
)
_SEEN_AS = Fast(
    select(
        staff_languages.c.language, staff_languages.c.username, staff_languages.c.first_name
    ).where(staff_languages.c.telegram_id == bindparam("telegram_id"))
)


class Role(StrEnum):
    ADMIN = "admin"
    CASHIER = "cashier"
    SUPPORT = "support"
    MARKETER = "marketer"


@dataclass(frozen=True, slots=True)
class SeenAs:
    """What a staff member's Telegram said of them when they last wrote to the bot."""

    language: str
    username: str | None = None
    first_name: str | None = None


@dataclass(frozen=True, slots=True)
class StaffMember:
    telegram_id: int
    role: Role
    username: str | None
    granted_by: int | None
    granted_at: datetime | None  # None for admins from ADMIN_IDS


class StaffService:
    def __init__(
        self,
        engine: AsyncEngine,
        admin_ids: tuple[int, ...],
        audit: AuditLog,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        self.reader = readonly(engine)
        self.admin_ids = frozenset(admin_ids)
        self.audit = audit
        self.clock: Clock = clock or SystemClock()

    async def roles_of(self, telegram_id: int) -> frozenset[Role]:
        async with self.reader.connect() as conn:
            return await conn.run_sync(self.roles_in, telegram_id)

    def roles_in(self, conn: Connection, telegram_id: int) -> frozenset[Role]:
        """The roles of this person, read inside a caller's transaction."""
        return self.roles_and_seen_in(conn, telegram_id)[0]

    def roles_and_seen_in(
        self, conn: Connection, telegram_id: int
    ) -> tuple[frozenset[Role], SeenAs | None]:
        """Their roles, and (for staff only) what their Telegram was last seen as (language,
        @username, first name), if the bot has seen it."""
        roles = {Role(role) for role in _ROLES_OF(conn, {"telegram_id": telegram_id}).scalars()}
        if telegram_id in self.admin_ids:
            roles.add(Role.ADMIN)
        if not roles:
            return frozenset(), None  # a member or a guest: nothing more to read
        return frozenset(roles), _seen(_SEEN_AS(conn, {"telegram_id": telegram_id}).first())

    async def remember_seen(self, telegram_id: int, seen: SeenAs) -> None:
        """Keep the language, @username and first name a staff member's Telegram has now."""
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        values = {
            "language": seen.language,
            "username": seen.username,
            "first_name": seen.first_name,
            "seen_at": self.clock.now(),
        }
        statement = insert(staff_languages).values(telegram_id=telegram_id, **values)
        async with self.engine.begin() as conn:
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[staff_languages.c.telegram_id], set_=values
                )
            )

    async def seen_as(self, telegram_id: int) -> SeenAs | None:
        async with self.reader.connect() as conn:
            row = await conn.run_sync(
                lambda sync: _SEEN_AS(sync, {"telegram_id": telegram_id}).first()
            )
        return _seen(row)

    async def language_of(self, telegram_id: int) -> str | None:
        seen = await self.seen_as(telegram_id)
        return seen.language if seen is not None else None

    async def grant(
        self, telegram_id: int, role: Role, *, by: int, username: str | None = None
    ) -> bool:
        """Give a role; False if the person had it already."""
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        async with self.engine.begin() as conn:
            added = (
                await conn.execute(
                    insert(staff_roles)
                    .values(
                        telegram_id=telegram_id,
                        role=role.value,
                        username=username,
                        granted_by=by,
                        granted_at=self.clock.now(),
                    )
                    .on_conflict_do_nothing()
                    .returning(staff_roles.c.role)
                )
            ).scalar_one_or_none()
            if added is not None:
                await self.audit.record(
                    f"tg:{by}",
                    "staff.grant",
                    target=f"tg:{telegram_id}",
                    role=role.value,
                    conn=conn,
                )
        return added is not None

    async def revoke(self, telegram_id: int, role: Role, *, by: int) -> bool:
        """Take a role away; False if the person did not have it."""
        async with self.engine.begin() as conn:
            removed = (
                await conn.execute(
                    delete(staff_roles).where(
                        staff_roles.c.telegram_id == telegram_id, staff_roles.c.role == role.value
                    )
                )
            ).rowcount
            if removed:
                await self.audit.record(
                    f"tg:{by}",
                    "staff.revoke",
                    target=f"tg:{telegram_id}",
                    role=role.value,
                    conn=conn,
                )
        return bool(removed)

    async def find_by_username(self, username: str) -> int | None:
        """A staff member's id by @username: as their Telegram was last seen, else as it was
        when a role was granted."""
        username = username.lstrip("@").lower()
        async with self.reader.connect() as conn:
            seen = (
                await conn.execute(
                    select(staff_languages.c.telegram_id)
                    .where(func.lower(staff_languages.c.username) == username)
                    .order_by(staff_languages.c.seen_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if seen is not None:
                return int(seen)
            return (
                await conn.execute(
                    select(staff_roles.c.telegram_id)
                    .where(staff_roles.c.username == username)
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def list_staff(self) -> list[StaffMember]:
        async with self.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(staff_roles).order_by(staff_roles.c.role, staff_roles.c.telegram_id)
                )
            ).all()
        listed = [
            StaffMember(
                row.telegram_id, Role(row.role), row.username, row.granted_by, row.granted_at
            )
            for row in rows
        ]
        stored_admins = {m.telegram_id for m in listed if m.role is Role.ADMIN}
        listed += [
            StaffMember(admin, Role.ADMIN, None, None, None)
            for admin in sorted(self.admin_ids - stored_admins)
        ]
        return listed

    async def who_answers_members(self) -> list[list[int]]:
        """Whom to tell about a member's new request, in turn: the support staff, then (when
        there are none, or none could be reached) the admins."""
        people = await self.list_staff()
        groups = []
        for role in (Role.SUPPORT, Role.ADMIN):
            ids = sorted({person.telegram_id for person in people if person.role is role})
            if ids:
                groups.append(ids)
        return groups


def _seen(row: Any) -> SeenAs | None:
    if row is None:
        return None
    return SeenAs(row.language, row.username, row.first_name)


def erase_staff_names(conn: Connection, telegram_id: int) -> None:
    """A member who is also staff erased their data: the @username and first name kept of
    them as staff go (their roles stay: access is the shop's decision, by Telegram id; what
    their Telegram says is kept again when they next write as staff)."""
    conn.execute(
        update(staff_languages)
        .where(staff_languages.c.telegram_id == telegram_id)
        .values(username=None, first_name=None)
    )
    conn.execute(
        update(staff_roles).where(staff_roles.c.telegram_id == telegram_id).values(username=None)
    )
