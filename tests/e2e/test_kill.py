"""`kill -9` under load: a purchase that returned 201 always has its receipt queued (it is
written in the purchase's own transaction), and a process that takes over sends what the
killed one had claimed within seconds (its sender's epoch voids the dead one's claims)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.keys import ApiKeyService
from emulator import BotAPIEmulator, FaultKind
from ledger.rules import Rules
from ledger.service import LedgerService
from storage.schema import outbox
from tests.conftest import ROOT
from tests.e2e.conftest import TOKEN
from tests.e2e.test_process import _clean_env, _spawn

MEMBERS = 12
FIRST_CHAT = 7100


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _start(
    env: dict[str, str], cwd: Path, emulator: BotAPIEmulator
) -> tuple[asyncio.subprocess.Process, str]:
    cwd.mkdir()  # noqa: ASYNC240 (once, before the process starts)
    port = _free_port()
    polls = len(emulator.calls_to("getUpdates"))
    process = await _spawn({**env, "API_PORT": str(port)}, cwd)
    for _ in range(600):  # imports, migrations, getMe, then it leads and polls
        if len(emulator.calls_to("getUpdates")) > polls:
            break
        await asyncio.sleep(0.05)
    assert len(emulator.calls_to("getUpdates")) > polls, "the process never took the lead"
    return process, f"http://127.0.0.1:{port}"


async def _buy(session: aiohttp.ClientSession, url: str, key: str, card: str, receipt: str) -> int:
    body = {"receipt_id": receipt, "customer": card, "amount": "100.00"}
    async with session.post(
        f"{url}/api/v1/purchases", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        await response.read()
        return response.status


async def test_kill_9_loses_no_receipt_and_the_next_process_sends_the_dead_ones_claims(
    emulator: BotAPIEmulator, database_url: str, engine: AsyncEngine, rules: Rules, tmp_path: Path
) -> None:
    ledger = LedgerService(engine, rules)  # the real clock, as the processes have
    keys = ApiKeyService(engine)
    try:
        _, key = await keys.create("till-1")
        cards = []
        for i in range(MEMBERS):
            emulator.user(FIRST_CHAT + i, "Member", language_code="en")
            registration = await ledger.register_member(
                f"+7999710{i:04d}", telegram_id=FIRST_CHAT + i, language="en"
            )
            cards.append(registration.member.card_number)
    finally:
        await keys.close()
        ledger.close()
    env = _clean_env(
        BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=emulator.base_url,
        DATABASE_URL=database_url,
        RULES_FILE=str(ROOT / "rules.toml"),
    )
    # Slow sends: the killed process dies with receipts claimed and on their way.
    emulator.add_fault(FaultKind.LATENCY, method="sendMessage", latency_ms=3000)
    first, url = await _start(env, tmp_path / "first", emulator)
    created: list[str] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

            async def till(worker: int) -> None:
                for n in range(1000):
                    receipt = f"K-{worker}-{n}"
                    try:
                        status = await _buy(session, url, key, cards[worker], receipt)
                    except (aiohttp.ClientError, TimeoutError):
                        return  # the process is gone
                    if status == 201:
                        created.append(receipt)

            tills = [asyncio.create_task(till(worker)) for worker in range(MEMBERS)]
            await asyncio.sleep(2.0)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            await asyncio.gather(*tills)
    finally:
        with contextlib.suppress(ProcessLookupError):
            first.kill()
        await first.wait()
    assert len(created) > MEMBERS, "too little load to mean anything"
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.dedup_key, outbox.c.status))).all()
    queued = {row.dedup_key: row.status for row in rows}
    missing = [r for r in created if f"receipt:purchase:{r}" not in queued]
    assert missing == [], f"{len(missing)} of {len(created)} purchases have no receipt"
    claimed = [k for k, status in queued.items() if status == "sending"]
    assert claimed, "the killed process held no claims: nothing to take over"

    emulator.clear_faults()
    second, _ = await _start(env, tmp_path / "second", emulator)
    try:
        led_at = time.monotonic()
        while time.monotonic() - led_at < 10:
            async with engine.connect() as conn:
                statuses = dict(
                    (
                        await conn.execute(
                            select(outbox.c.dedup_key, outbox.c.status).where(
                                outbox.c.dedup_key.in_(claimed)
                            )
                        )
                    ).all()
                )
            if set(statuses.values()) == {"sent"}:
                break
            await asyncio.sleep(0.2)
        assert set(statuses.values()) == {"sent"}, statuses  # all within the loop's 10 s
    finally:
        second.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, output.decode()[-2000:]
    assert any(emulator.user(FIRST_CHAT + i).messages for i in range(MEMBERS))
