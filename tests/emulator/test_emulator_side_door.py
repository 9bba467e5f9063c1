"""The /_emu/ HTTP side door, driven by a separate aiohttp client, and the CLI."""

from __future__ import annotations

import asyncio
import base64
import sys
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F
from aiogram.exceptions import TelegramServerError
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from emulator import BotAPIEmulator, running_polling


async def side(http: aiohttp.ClientSession, verb: str, path: str, **body: Any) -> Any:
    async with http.request(verb, path, json=body or None) as response:
        data = await response.json()
    if response.status != 200:
        return response.status, data
    assert data["ok"] is True
    return data["result"]


def greeter() -> Dispatcher:
    dp = Dispatcher()

    @dp.message(F.text)
    async def hello(message: Message) -> None:
        markup = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="Claim", callback_data="claim")]]
        )
        await message.answer(f"Hello, {message.text}!", reply_markup=markup)

    @dp.message(F.photo)
    async def photo(message: Message) -> None:
        await message.answer("got photo")

    @dp.callback_query(F.data == "claim")
    async def claim(query: CallbackQuery) -> None:
        await query.answer("Claimed")
        assert isinstance(query.message, Message)
        await query.message.edit_text("Claimed ✓")

    return dp


async def test_side_door_drives_users(emu: BotAPIEmulator, bot: Bot) -> None:
    async with (
        running_polling(greeter(), bot),
        aiohttp.ClientSession(emu.base_url) as http,
    ):
        assert (await side(http, "GET", "/_emu/health")) == {"bots": 1}
        assert (await side(http, "GET", "/_emu/bots"))[0]["username"] == "loyalty_test_bot"
        created = await side(http, "POST", "/_emu/users", user_id=42, first_name="Dora")
        assert created["chat_id"] == 42 and created["first_name"] == "Dora"

        sent = await side(http, "POST", "/_emu/users/42/send_text", text="Dora")
        assert sent["text"] == "Dora" and sent["from"]["id"] == 42
        [reply] = await side(http, "POST", "/_emu/users/42/wait_messages", n=1, timeout=5)
        assert reply["text"] == "Hello, Dora!"
        assert reply["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "claim"

        pressed = await side(
            http,
            "POST",
            "/_emu/users/42/press_button",
            message_id=reply["message_id"],
            text="Claim",
            wait_answer=5,
        )
        assert pressed["answer"]["text"] == "Claimed"
        edited = await side(
            http, "POST", "/_emu/users/42/wait_edit", message_id=reply["message_id"]
        )
        assert edited["text"] == "Claimed ✓" and edited["edit_count"] == 1

        photo = base64.b64encode(b"raw-photo").decode()
        await side(http, "POST", "/_emu/users/42/send_photo", base64=photo)
        [got] = await side(http, "POST", "/_emu/users/42/wait_messages", timeout=5)
        assert got["text"] == "got photo"

        history = await side(http, "GET", "/_emu/users/42/messages")
        assert [m["text"] for m in history] == ["Claimed ✓", "got photo"]

        status, error = await side(http, "POST", "/_emu/users/42/wait_messages", n=1, timeout=0.05)
        assert status == 422 and "expected 1 new bot message" in error["error"]
        status, error = await side(http, "POST", "/_emu/users/999/send_text", text="x")
        assert status == 404 and "unknown user 999" in error["error"]

        calls = await side(http, "GET", "/_emu/calls?method=sendMessage")
        assert [c["params"]["text"] for c in calls] == ["Hello, Dora!", "got photo"]
        stats = await side(http, "GET", "/_emu/stats")
        assert stats["calls"]["sendMessage"] == 2 and stats["updates_enqueued"] == 3


async def test_side_door_faults_rate_limit_and_commands(emu: BotAPIEmulator, bot: Bot) -> None:
    emu.user(7, first_name="Gus")
    async with aiohttp.ClientSession(emu.base_url) as http:
        rule = await side(
            http, "POST", "/_emu/faults", kind="server_error", method="sendMessage", status=502
        )
        assert rule["id"] == 1 and rule["kind"] == "server_error"
        with pytest.raises(TelegramServerError, match="Bad Gateway"):
            await bot.send_message(7, "x")
        assert len(await side(http, "GET", "/_emu/faults")) == 1
        assert await side(http, "DELETE", f"/_emu/faults/{rule['id']}") is True
        assert await side(http, "GET", "/_emu/faults") == []
        status, error = await side(http, "POST", "/_emu/faults", kind="meteor")
        assert status == 400 and "meteor" in error["error"]

        config = await side(http, "POST", "/_emu/rate_limit", enabled=True, per_chat_burst=2)
        assert config["enabled"] is True and config["per_chat_burst"] == 2
        assert emu.rate_limiter.enabled
        await bot.send_message(7, "1")
        await bot.send_message(7, "2")
        assert (await side(http, "GET", "/_emu/stats"))["rate_limited"] == 0

        await bot.set_my_commands([BotCommand(command="start", description="Go")])
        assert await side(http, "GET", "/_emu/commands") == [
            {"command": "start", "description": "Go"}
        ]
        await side(http, "POST", "/_emu/users/7/block")
        assert emu.user(7).chat.blocked is True


async def test_cli_runs_standalone() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulator",
        "--port",
        "0",
        "--token",
        "4242:CLI",
        "--username",
        "cli_bot",
        "--rate-limit",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 15)
        base_url = line.decode().strip()
        assert base_url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession(base_url) as http:
            async with http.get("/bot4242:CLI/getMe") as response:
                me = (await response.json())["result"]
            assert (me["id"], me["username"]) == (4242, "cli_bot")
            assert (await side(http, "GET", "/_emu/rate_limit"))["enabled"] is True
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
    assert process.returncode == 0
