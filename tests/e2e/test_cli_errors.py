"""Every command that cannot do its work says why in one line, with what to do, and exits 1
(2 for a bad setting): no traceback, no password."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from emulator import BotAPIEmulator
from tests.conftest import PG_ADMIN_URL, ROOT
from tests.e2e.conftest import TOKEN
from tests.e2e.test_process import _clean_env, _spawn

pytestmark = pytest.mark.slow  # a real process for every command

PASSWORD = "hunter2-not-to-be-shown"
_SERVER = PG_ADMIN_URL.split("://", 1)[1].split("@", 1)[1].rsplit("/", 1)[0]  # host:port
UNREACHABLE = {
    "closed port": f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/loyalty",
    "no such database": f"postgresql://postgres:{PASSWORD}@{_SERVER}/loyalty_none_{os.getpid()}",
}
COMMANDS = [
    ["migrate"],
    ["ledger", "check"],
    ["api-key", "list"],
    ["api-key", "create", "--name", "till-1"],
    ["api-key", "revoke", "1"],
    [],  # run
]


async def run(args: list[str], cwd: Path, **env: str) -> tuple[int | None, list[str]]:
    """The exit code and the lines of what it printed."""
    process = await _spawn(_clean_env(RULES_FILE=str(ROOT / "rules.toml"), **env), cwd, *args)
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, output.decode().splitlines()


@pytest.mark.parametrize("where", sorted(UNREACHABLE))
async def test_a_database_that_cannot_be_opened_is_one_line_for_every_command(
    where: str, tmp_path: Path
) -> None:
    url = UNREACHABLE[where]
    for args in COMMANDS:
        code, lines = await run(args, tmp_path, DATABASE_URL=url, BOT_TOKEN=TOKEN)
        said = "\n".join(lines)
        assert (code, len(lines)) == (1, 1), (args, said)
        assert said.startswith("error: cannot open the database ") and "DATABASE_URL" in said
        assert PASSWORD not in said, (args, said)


async def test_a_token_that_is_no_token_is_one_line_and_a_bad_setting(
    emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    code, lines = await run(
        [],
        tmp_path,
        BOT_TOKEN="garbage",
        TELEGRAM_API_URL=emulator.base_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
        API_PORT="0",
    )
    assert (code, len(lines)) == (2, 1), lines
    assert "BOT_TOKEN" in lines[0] and "@BotFather" in lines[0]
    assert "garbage" not in lines[0]  # a token is never printed, right or wrong


async def test_a_token_the_bot_api_refuses_is_one_line(
    emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    code, lines = await run(
        [],
        tmp_path,
        BOT_TOKEN="999:WRONG",
        TELEGRAM_API_URL=emulator.base_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
        API_PORT="0",
    )
    assert (code, len(lines)) == (1, 1), lines
    assert "refused BOT_TOKEN" in lines[0]
