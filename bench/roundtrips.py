"""What one round trip to PostgreSQL costs on this machine: the same work (insert an entry, add
to a balance) in 4, 3, 2 and 1 round trips, by 16 workers on bare asyncpg.

    .venv/bin/python -m bench.roundtrips [--transactions 8000]

Prints transactions per second and CPU milliseconds per transaction: of this process (the
client) and of the whole machine (client, PostgreSQL and the kernel between them). The
difference between two lines is the price of the round trips one has more than the other;
docs/BENCHMARKS.md uses it to say why the ledger's PostgreSQL x16 figure is what it is.

The variants: "4: BEGIN, insert, update, COMMIT" (the ledger benchmark's floor); "3: BEGIN,
one statement, COMMIT"; "2: read, then one statement" (no transaction around them); "1: one
statement" (it commits on its own). Tables `rt_members_<pid>` and `rt_entries_<pid>` are made in
the admin database (see bench.common.PG_ADMIN_URL) and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable

import asyncpg

from bench.common import PG_ADMIN_URL, machine_busy

WORKERS = 16
MEMBERS = 1_000
Work = Callable[[asyncpg.Connection, int], Awaitable[None]]


async def main(args: argparse.Namespace) -> int:
    members, entries = f"rt_members_{os.getpid()}", f"rt_entries_{os.getpid()}"
    one_statement = (
        f"WITH e AS (INSERT INTO {entries} (member_id, points, created_at) "
        f"VALUES ($1, $2, now()) RETURNING id) "
        f"UPDATE {members} SET balance = balance + $2 WHERE id = $1 RETURNING (SELECT id FROM e)"
    )

    async def four(conn: asyncpg.Connection, member: int) -> None:
        async with conn.transaction():
            await conn.execute(
                f"INSERT INTO {entries} (member_id, points, created_at) VALUES ($1, $2, now())",
                member,
                5,
            )
            await conn.execute(
                f"UPDATE {members} SET balance = balance + $2 WHERE id = $1", member, 5
            )

    async def three(conn: asyncpg.Connection, member: int) -> None:
        async with conn.transaction():
            await conn.fetchval(one_statement, member, 5)

    async def two(conn: asyncpg.Connection, member: int) -> None:
        await conn.fetchval(f"SELECT balance FROM {members} WHERE id = $1", member)
        await conn.fetchval(one_statement, member, 5)

    async def one(conn: asyncpg.Connection, member: int) -> None:
        await conn.fetchval(one_statement, member, 5)

    variants: list[tuple[str, Work]] = [
        ("4: BEGIN, insert, update, COMMIT", four),
        ("3: BEGIN, one statement, COMMIT", three),
        ("2: read, then one statement", two),
        ("1: one statement", one),
    ]
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(
        f"CREATE TABLE {members} (id int PRIMARY KEY, balance int NOT NULL);"
        f"CREATE TABLE {entries} (id bigserial PRIMARY KEY, "
        f"member_id int NOT NULL REFERENCES {members} (id), points int, created_at timestamp);"
        f"INSERT INTO {members} SELECT g, 0 FROM generate_series(1, {MEMBERS}) g"
    )
    connections = [await asyncpg.connect(PG_ADMIN_URL) for _ in range(WORKERS)]
    try:
        print(f"{WORKERS} workers, {args.transactions:,} transactions per variant, twice")
        print(f"{'variant':36} {'tx/s':>8} {'client ms':>10} {'machine ms':>11}")
        for name, work in variants * 2:
            left = args.transactions

            async def worker(
                conn: asyncpg.Connection, work: Callable[..., Awaitable[None]]
            ) -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await work(conn, random.randint(1, MEMBERS))

            client, machine, wall = time.process_time(), machine_busy(), time.perf_counter()
            await asyncio.gather(*(worker(conn, work) for conn in connections))
            wall = time.perf_counter() - wall
            client = (time.process_time() - client) * 1000 / args.transactions
            machine = (machine_busy() - machine) * 1000 / args.transactions
            print(f"{name:36} {args.transactions / wall:8,.0f} {client:10.3f} {machine:11.3f}")
    finally:
        for conn in connections:
            await conn.close()
        await admin.execute(f"DROP TABLE IF EXISTS {entries}, {members}")
        await admin.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--transactions", type=int, default=8_000)
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
