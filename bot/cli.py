"""The command line: `python -m bot [command]`.

python -m bot                      run the bot, the HTTP API and the scheduler
python -m bot migrate              bring the database schema up to date
python -m bot ledger check         verify that every balance adds up; non-zero exit if not
python -m bot backup FILE          a consistent copy of the SQLite database, while it runs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection

from api.keys import SCOPES, TILL, ApiKeyService
from bot.failures import StartupError, failing_database, reason
from bot.settings import Settings
from ledger.invariants import ledger_violations
from storage.engine import create_engine, is_sqlite, sqlite_file
from storage.migrate import upgrade_schema
from storage.schema import entries, members

NO_TOKEN_HELP = """\
BOT_TOKEN is not set, so the bot cannot start.

To get a token: open Telegram, talk to @BotFather, send /newbot, choose a name and a username,
and copy the token it gives you (it looks like 123456789:AAH...). Then put it in .env:

    BOT_TOKEN=123456789:AAH...

(copy .env.example to .env for every other setting). To try the bot without a token, run the
offline demo: make demo
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Loyalty program bot")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the bot, the HTTP API and the scheduler (default)")
    commands.add_parser("migrate", help="bring the database schema up to date")
    commands.add_parser("demo", help="the whole story offline, no token needed")
    backup = commands.add_parser(
        "backup", help="copy the SQLite database while the bot runs (PostgreSQL: use pg_dump)"
    )
    backup.add_argument("target", type=Path, help="the file to write, e.g. backup-2026-11-24.db")
    ledger = commands.add_parser("ledger", help="ledger maintenance")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_commands.add_parser("check", help="verify that every balance adds up")
    keys = commands.add_parser("api-key", help="API keys for tills and online shops")
    key_commands = keys.add_subparsers(dest="key_command", required=True)
    create = key_commands.add_parser("create", help="create a key; it is printed once")
    create.add_argument("--name", required=True, help="who uses it, e.g. 'till-1'")
    create.add_argument(
        "--scope",
        choices=SCOPES,
        default=TILL,
        help="till: purchases and refunds (default); marketing: segments, broadcasts, KPIs",
    )
    key_commands.add_parser("list", help="list keys (never the secrets)")
    revoke = key_commands.add_parser("revoke", help="revoke a key: it gets 401 from now on")
    revoke.add_argument("key_id", type=int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # one line for a person; the traceback for a bug report
        if os.environ.get("LOG_LEVEL", "").upper() == "DEBUG":
            traceback.print_exception(error)
        print(f"error: {reason(error)} (LOG_LEVEL=DEBUG shows where)", file=sys.stderr)
        return 1


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors():
            name = str(problem["loc"][0]).upper() if problem["loc"] else "settings"
            message = str(problem["msg"]).removeprefix("Value error, ")
            given = problem.get("input")
            if name.endswith("_URL") and isinstance(given, str):  # no password on a screen
                given = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", given)
            print(f"error: {name}: {message} (got {given!r})", file=sys.stderr)
        return 2
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command in {"ledger", "api-key", "backup"}:
        missing = _missing_database(settings.database_url)
        if missing:
            print(missing, file=sys.stderr)
            return 2
    if args.command == "backup":
        return _backup(settings.database_url, args.target)
    if args.command == "ledger":
        return asyncio.run(_ledger_check(settings))
    if args.command == "api-key":
        return asyncio.run(_api_keys(settings, args))
    if args.command == "demo":
        from bot.demo import run_demo

        return asyncio.run(run_demo())
    return _run(settings)


def _missing_database(url: str) -> str | None:
    """Admin commands work on the program's database; on SQLite a missing file means the
    wrong directory or DATABASE_URL (creating an empty one would hand out keys nobody checks)."""
    path = sqlite_file(url) if is_sqlite(url) else None
    if path is None or Path(path).exists():
        return None
    return (
        f"no database at {Path(path).resolve()} (DATABASE_URL={url}). Run this where the bot "
        "runs, or set DATABASE_URL to its database; `python -m bot migrate` creates a new one."
    )


def _backup(url: str, target: Path) -> int:
    """SQLite's online backup: a consistent copy, pages and WAL together, while the bot writes
    (a plain file copy of a database in WAL mode can miss the latest transactions)."""
    source = sqlite_file(url) if is_sqlite(url) else None
    if source is None:
        hint = "on PostgreSQL use pg_dump, e.g. pg_dump -Fc DBNAME > loyalty.dump"
        print(f"nothing for this command to copy: {hint}", file=sys.stderr)
        return 2
    if not target.parent.is_dir():
        print(f"no directory {target.parent.resolve()} to write the copy in", file=sys.stderr)
        return 2
    try:  # made here, readable by its owner only (it holds the members' personal data)
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        print(f"{target} exists already; give a new file name", file=sys.stderr)
        return 2
    try:
        with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(target)) as copy:
            live.backup(copy)
    except sqlite3.Error as error:
        print(f"the backup failed: {error}", file=sys.stderr)
        target.unlink(missing_ok=True)
        return 1
    print(f"backed up {Path(source).resolve()} to {target.resolve()}")
    return 0


def _run(settings: Settings) -> int:
    if not settings.bot_token:
        print(NO_TOKEN_HELP, file=sys.stderr)
        return 2
    from aiogram.utils.token import TokenValidationError, validate_token

    try:
        validate_token(settings.bot_token)
    except TokenValidationError:  # never printed: part of it may be a real token's secret
        print(
            "error: BOT_TOKEN is not a bot token (one looks like 123456789:AAH...): copy it "
            "again from @BotFather",
            file=sys.stderr,
        )
        return 2
    from bot.run import run_app

    return asyncio.run(run_app(settings))


async def _migrate(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        with failing_database(settings.database_url):
            await upgrade_schema(engine)
    finally:
        await engine.dispose()
    print("database schema is up to date")
    return 0


def _has_ledger_tables(connection: Connection) -> bool:
    return {"members", "entries", "lots"} <= set(inspect(connection).get_table_names())


async def _ledger_check(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        with failing_database(settings.database_url):
            async with engine.connect() as conn:
                if not await conn.run_sync(_has_ledger_tables):
                    print(
                        "no ledger in this database yet (run: python -m bot migrate)",
                        file=sys.stderr,
                    )
                    return 2
                count_members = select(func.count()).select_from(members)
                count_entries = select(func.count()).select_from(entries)
                member_count = (await conn.execute(count_members)).scalar()
                entry_count = (await conn.execute(count_entries)).scalar()
        problems = 0
        async for violation in ledger_violations(engine):  # printed as found, none kept
            print(f"FAIL {violation}")
            problems += 1
    finally:
        await engine.dispose()
    if problems:
        print(f"{problems} problem(s) in {member_count} members", file=sys.stderr)
        return 1
    print(
        f"ledger OK: {member_count} members, {entry_count} entries; balances, lots and "
        "journal agree"
    )
    return 0


async def _api_keys(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database_url)
    try:
        with failing_database(settings.database_url):
            await upgrade_schema(engine)
        keys = ApiKeyService(engine)
        if args.key_command == "create":
            try:
                key, secret = await keys.create(args.name, args.scope)
            except ValueError as error:
                print(error, file=sys.stderr)
                return 2
            print(
                f"API key #{key.key_id} '{key.name}' ({key.scope}) created. It is shown only now; "
                "send it as 'Authorization: Bearer <key>':",
                file=sys.stderr,
            )
            print(secret)
            return 0
        if args.key_command == "list":
            for key in await keys.list_keys():
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                print(
                    f"#{key.key_id}\t{key.name}\t{key.scope}\t{key.prefix}...\t"
                    f"created {key.created_at:%Y-%m-%d}\t{state}"
                )
            return 0
        if await keys.revoke(args.key_id):
            print(f"API key #{args.key_id} revoked")
            return 0
        print(f"no active API key #{args.key_id}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
