"""A generated dataset built once and copied for each run: `prepared(backend, members)`.

Building 200,000 members takes two minutes or more; a benchmark that changes the data (a
purchase, a burn, a tier pass) needs a fresh copy for each run. The first call builds a
template (`bench.dataset.build_dataset`) and later calls copy it:

- SQLite: a file under $BENCH_DATA_DIR (default: the system's temporary directory,
  `loyalty-bench/`), copied to a scratch file;
- PostgreSQL: a template database, copied with `CREATE DATABASE ... TEMPLATE ...`.

A template is named by its size, seed and the day its history ends (today, 00:00 UTC), so a
new day builds a new one; each copy is brought to the code's last migration when it is made.

    python -m bench.prepared --members 20000 --backend sqlite   # build (or find) and print
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.common import pg_admin, pg_fetch, pg_urls
from bench.dataset import build_dataset, progress_bar
from storage.engine import create_engine
from storage.migrate import upgrade_schema

BACKENDS = ("sqlite", "postgresql")


def data_dir() -> Path:
    path = Path(os.environ.get("BENCH_DATA_DIR", Path(tempfile.gettempdir()) / "loyalty-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def template_name(members: int, seed: int = 14) -> str:
    day = datetime.now(UTC).strftime("%Y%m%d")
    return f"bench_{members}_s{seed}_{day}"


async def _build(url: str, members: int, seed: int, quiet: bool) -> None:
    engine = create_engine(url)
    try:
        progress = None if quiet else progress_bar(time.perf_counter())
        await build_dataset(engine, members, seed=seed, progress=progress)
    finally:
        await engine.dispose()


async def template(backend: str, members: int, seed: int = 14, quiet: bool = False) -> str:
    """The template's URL, built first if there is none (a half-built one is rebuilt)."""
    name = template_name(members, seed)
    if backend == "sqlite":
        path = data_dir() / f"{name}.db"
        if not path.exists():
            partial = path.with_suffix(".building")
            partial.unlink(missing_ok=True)
            await _build(f"sqlite+aiosqlite:///{partial}", members, seed, quiet)
            partial.rename(path)
        return f"sqlite+aiosqlite:///{path}"
    done = await pg_fetch("SELECT datname FROM pg_database WHERE datname = $1", name)
    if not done:
        building = f"{name}_building"
        await pg_admin(f"DROP DATABASE IF EXISTS {building}")
        await pg_admin(f"CREATE DATABASE {building}")
        await _build(pg_urls(building)[0], members, seed, quiet)
        await pg_admin(f"ALTER DATABASE {building} RENAME TO {name}")
    return pg_urls(name)[0]


async def prepared(backend: str, members: int, seed: int = 14, quiet: bool = False) -> str:
    """A fresh copy of the dataset: its URL. Drop it with `discard(url)` when done."""
    source = await template(backend, members, seed, quiet)
    scratch = f"{template_name(members, seed)}_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        path = Path(source.removeprefix("sqlite+aiosqlite:///"))
        copy = path.with_name(f"{scratch}.db")
        shutil.copyfile(path, copy)
        url = f"sqlite+aiosqlite:///{copy}"
    else:
        await pg_admin(f"CREATE DATABASE {scratch} TEMPLATE {template_name(members, seed)}")
        url = pg_urls(scratch)[0]
    engine = create_engine(url)
    try:
        await upgrade_schema(engine)  # migrations newer than the template's
    finally:
        await engine.dispose()
    return url


async def discard(url: str) -> None:
    if url.startswith("sqlite"):
        _remove_sqlite(url.removeprefix("sqlite+aiosqlite:///"))
        return
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _remove_sqlite(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-leader"):  # -leader: the bot's leader lock file
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    args = parser.parse_args(argv)
    print(asyncio.run(template(args.backend, args.members, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
