"""Bring the schema up to date with Alembic, from inside a running event loop.

A database already at the newest migration is the usual case at every start: it is recognised
by one read of `alembic_version`, without Alembic. Alembic (with Mako and Pygments, which it
imports) is loaded only when there is a migration to run, so a long-running process does not
carry it for nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# A migration's file is named after its revision, `NNNN_what.py`, and revises the one before
# (tests/storage/test_migrations.py holds every file to it).
MIGRATION_FILE = re.compile(r"(\d{4})_\w+\.py")
# Several bot processes may start at once against one PostgreSQL: one migrates, others wait.
_PG_MIGRATION_LOCK = 7_340_001


def head_revision() -> str:
    """The newest migration's revision, from the names of the migration files."""
    found = (MIGRATION_FILE.fullmatch(path.name) for path in (MIGRATIONS / "versions").iterdir())
    return max(match.group(1) for match in found if match)


def current_revisions(connection: Connection) -> list[str]:
    """The revisions the database is at (none for a database Alembic has not touched)."""
    if not inspect(connection).has_table("alembic_version"):
        return []
    return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def alembic_config() -> Config:
    """The Alembic configuration, without an ini file."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def upgrade_schema(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply every migration up to `revision` in one transaction (nothing to do, and Alembic
    not loaded, when the database is at the newest one already)."""
    async with engine.begin() as connection:
        if revision == "head" and await connection.run_sync(current_revisions) == [head_revision()]:
            return
        await connection.run_sync(_upgrade, revision)


async def downgrade_schema(engine: AsyncEngine, revision: str) -> None:
    """Revert migrations down to `revision` (used by the migration tests)."""
    async with engine.begin() as connection:
        await connection.run_sync(_downgrade, revision)
