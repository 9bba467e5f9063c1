"""Alembic environment: migrates the connection it is given, or DATABASE_URL from settings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from storage.schema import metadata

config = context.config


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    from bot.settings import Settings
    from storage.engine import create_engine

    engine = create_engine(Settings().database_url)  # type: ignore[call-arg]
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_configure_and_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")

shared = config.attributes.get("connection")
if shared is not None:
    _configure_and_run(shared)
else:
    asyncio.run(_run_with_own_engine())
