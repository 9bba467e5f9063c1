"""A CRM creates a broadcast over real HTTP on the running application: the leader's tick and
the sender deliver it to the members in their chats, and GET reports it done."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from bot.run import Application
from emulator import BotAPIEmulator
from tests.e2e.conftest import join


async def _call(
    app: Application, method: str, path: str, key: str, body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, f"{app.api_url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        return response.status, await response.json()


async def test_a_crm_broadcast_reaches_the_members_chats_and_reports_done(
    emulator: BotAPIEmulator, app: Application
) -> None:
    anna = emulator.user(8101, "Anna", language_code="en")
    boris = emulator.user(8102, "Boris", language_code="en")
    await join(anna, "+79990008101")
    await join(boris, "+79990008102")
    _, key = await app.services.api_keys.create("crm", "marketing")  # type: ignore[union-attr]
    _, till_key = await app.services.api_keys.create("till")  # type: ignore[union-attr]
    request = {
        "broadcast_id": "CRM-1",
        "filter": {"language": "en"},
        "text": "<b>{first_name}</b>, coffee -20% today",
        "control_percent": 0,
        "gift_points": 30,
    }
    status, created = await _call(app, "POST", "/api/v1/broadcasts", till_key, request)
    assert (status, created["error"]["code"]) == (403, "forbidden")
    status, created = await _call(app, "POST", "/api/v1/broadcasts", key, request)
    assert (status, created["recipients"]) == (201, 2)

    for user, name in ((anna, "Anna"), (boris, "Boris")):
        offer = await user.wait_message(timeout=15)
        assert (offer.text or "").startswith(f"{name}, coffee -20% today")
    report: dict[str, Any] = {}
    for _ in range(150):
        _, report = await _call(app, "GET", "/api/v1/broadcasts/CRM-1", key)
        if report["status"] == "done" and report["gift_points"] == 60:
            break
        await asyncio.sleep(0.1)
    assert (report["status"], report["sent"], report["pending"], report["gift_points"]) == (
        "done",
        2,
        0,
        60,
    )
