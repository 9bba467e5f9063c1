"""The database, its directory and its backups are readable by their owner only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from storage.engine import create_engine
from storage.migrate import upgrade_schema
from tests.conftest import ROOT, sqlite_url


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_bot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        umask=0o022,  # the usual one: files 0644 and directories 0755 unless asked otherwise
    )


@pytest.mark.slow  # runs the command line in a real process
def test_migrate_and_backup_make_files_only_their_owner_can_read(tmp_path: Path) -> None:
    migrated = run_bot("migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    data = tmp_path / "data"
    assert mode(data) == 0o700
    assert mode(data / "loyalty.db") == 0o600
    backed_up = run_bot("backup", "copy.db", cwd=tmp_path)
    assert backed_up.returncode == 0, backed_up.stderr
    assert mode(tmp_path / "copy.db") == 0o600


async def test_the_write_ahead_log_and_its_index_are_private_too(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        engine = create_engine(sqlite_url(tmp_path / "data" / "loyalty.db"))
        try:
            await upgrade_schema(engine)
            async with engine.connect() as conn:  # the WAL and its index exist while open
                await conn.exec_driver_sql("SELECT 1")
                files = ["loyalty.db", "loyalty.db-wal", "loyalty.db-shm"]
                modes = {name: mode(tmp_path / "data" / name) for name in files}
        finally:
            await engine.dispose()
    finally:
        os.umask(old_umask)
    assert mode(tmp_path / "data") == 0o700
    assert modes == dict.fromkeys(files, 0o600)


async def test_a_database_made_readable_before_is_made_private(tmp_path: Path) -> None:
    database = tmp_path / "loyalty.db"
    database.touch(mode=0o644)
    database.chmod(0o644)
    engine = create_engine(sqlite_url(database))
    try:
        await upgrade_schema(engine)
    finally:
        await engine.dispose()
    assert mode(database) == 0o600
