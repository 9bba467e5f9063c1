"""Bring the schema up to date with Alembic, from inside a running event loop."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
# Several bot processes may start at once against one PostgreSQL: one migrates, others wait.
_PG_MIGRATION_LOCK = 7_340_001


def alembic_config() -> Config:
    """The Alembic configuration, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def upgrade_schema(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply every migration up to `revision` in one transaction."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)


async def downgrade_schema(engine: AsyncEngine, revision: str) -> None:
    """Revert migrations down to `revision` (used by the migration tests)."""
    async with engine.begin() as connection:
        await connection.run_sync(_downgrade, revision)
