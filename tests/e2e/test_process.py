"""`python -m bot` as a real process: starts, serves a member, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from emulator import BotAPIEmulator
from tests.conftest import ROOT
from tests.e2e.conftest import TOKEN, join

pytestmark = pytest.mark.slow  # real bot processes, started and stopped


async def _spawn(env: dict[str, str], cwd: Path, *args: str) -> asyncio.subprocess.Process:
    """`python -m bot [args]`, its stderr and stdout together."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"BOT_TOKEN", "DATABASE_URL", "TELEGRAM_API_URL", "SECRET_KEY"}
    }
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


async def test_without_a_token_it_says_how_to_get_one(tmp_path: Path) -> None:
    process = await _spawn(_clean_env(), tmp_path)
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert b"@BotFather" in output and b"BOT_TOKEN" in output


async def test_the_real_process_serves_a_member_and_stops_on_sigterm(
    emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    env = _clean_env(
        BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=emulator.base_url,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        RULES_FILE=str(ROOT / "rules.toml"),
        API_PORT="0",
    )
    process = await _spawn(env, tmp_path)
    try:
        for _ in range(300):  # start-up: imports, migrations, getMe, setMyCommands
            if emulator.calls_to("getUpdates"):
                break
            await asyncio.sleep(0.1)
        assert emulator.calls_to("getUpdates"), "the bot never started polling"
        user = emulator.user(3001, "Ivan", language_code="en")
        await join(user, "+79990003001")
        await user.press_reply_button("💰 Balance")
        balance = await user.wait_message(timeout=20)
        assert (balance.text or "").startswith("💰 Balance: 100 points")
        assert (tmp_path / "data" / "secret_key").exists()  # generated once, kept for restarts
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    log = output.decode()
    assert "stopped" in log
    assert "79990003001" not in log and "Ivan" not in log  # no personal data in logs


async def test_what_cannot_start_is_said_in_one_line_and_nothing_runs_on(
    emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    good = {
        "BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": emulator.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",  # the usual spelling is understood
        "RULES_FILE": str(ROOT / "rules.toml"),
        "API_PORT": "0",
    }
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    busy = str(listener.sockets[0].getsockname()[1])
    cases = {
        "API_PORT=abc": ({"API_PORT": "abc"}, 2, "error: API_PORT: "),
        "mysql": ({"DATABASE_URL": "mysql://u@h/db"}, 2, "mysql:// is not supported"),
        "database down": (
            {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"},
            1,
            "error: cannot open the database postgresql+asyncpg://postgres@127.0.0.1:1/x: ",
        ),
        "wrong token": ({"BOT_TOKEN": "999:WRONG"}, 1, "refused BOT_TOKEN"),
        "port in use": ({"API_PORT": busy}, 1, f"cannot serve the HTTP API on 127.0.0.1:{busy}"),
        "no Redis": ({"REDIS_URL": "redis://127.0.0.1:1/0"}, 1, "cannot reach Redis at "),
    }
    try:
        for name, (change, code, says) in cases.items():
            process = await _spawn(_clean_env(**{**good, **change}), tmp_path)
            output, _ = await asyncio.wait_for(process.communicate(), 60)
            text = output.decode()
            assert process.returncode == code, (name, text)
            assert says in text and "Traceback" not in text, (name, text)
    finally:
        listener.close()
    assert not emulator.calls_to("getUpdates")  # none of them began to poll
