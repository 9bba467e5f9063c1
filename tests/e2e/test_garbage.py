"""Garbage gets a polite answer and never a crash."""

from __future__ import annotations

import logging

import pytest

from bot.run import Application
from emulator import BotAPIEmulator
from tests.e2e.conftest import join


async def test_stickers_long_text_and_unknown_commands_get_polite_answers(
    emulator: BotAPIEmulator, app: Application
) -> None:
    guest = emulator.user(2001, "Guest", language_code="en")
    await guest.send_sticker()
    assert "tap /start" in ((await guest.wait_message()).text or "")

    member = emulator.user(2002, "Ivan", language_code="en")
    await join(member, "+79990002002")
    await member.send_sticker()
    assert "use the menu buttons" in ((await member.wait_message()).text or "")
    await member.send_text("я" * 4096)
    assert "use the menu buttons" in ((await member.wait_message()).text or "")
    await member.send_command("/definitely_not_a_command")
    unknown = await member.wait_message()
    assert "don't know this command" in (unknown.text or "") and unknown.keyboard_texts
    await member.send_photo(b"\x89PNG\r\n\x1a\nnot-really")
    assert "use the menu buttons" in ((await member.wait_message()).text or "")
    await member.send_location(55.75, 37.61)
    assert "use the menu buttons" in ((await member.wait_message()).text or "")
    failed = [call for call in emulator.calls_to("sendMessage") if not call.ok]
    assert failed == []


async def test_stale_and_forged_callback_data_is_refused_politely(
    emulator: BotAPIEmulator, app: Application
) -> None:
    user = emulator.user(2003, "Ivan", language_code="en")
    await join(user, "+79990002003")
    await user.press_reply_button("📜 History")
    page = await user.wait_message()
    for forged in [
        "hist:not-a-number",
        "disp:999999",
        "set:hack:notify_offers",
        "rm -rf",
        "",
        "x" * 64,
        "hist:-5",
    ]:
        handle = await user.press(page, forged)
        answer = await handle.wait_answer()
        assert answer.text == "This button is no longer active.", forged
    await user.send_text("still alive?")
    assert "use the menu buttons" in ((await user.wait_message()).text or "")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
async def test_a_forged_value_on_a_members_button_gets_no_longer_active_and_changes_nothing(
    emulator: BotAPIEmulator, app: Application, caplog: pytest.LogCaptureFixture
) -> None:
    """Every value of a button is checked against what the server knows: a page that does not
    exist, a language the bot does not speak, a number too large for the database. They used
    to show the last page, edit a History message into the language menu (the second time:
    an unhandled "message is not modified"), or fail in PostgreSQL."""
    user = emulator.user(2008, "Ivan", language_code="en")
    await join(user, "+79990002008")
    await user.press_reply_button("📜 History")
    page = await user.wait_message()
    forged = [
        "set:lang:xx",
        "set:lang:xx",
        "set:notify:balance",
        "set:menu:zz",
        "set:delete_no:zz",
        "hist:1",  # one page only
        "hist:99999999999",
        "dlist:7",
        "disp:99999999999",
        "rr:99999999999:1",
        "rw:99999999999",
        "sale:confirm:99999999999:0:",
    ]
    for data in forged:
        answer = await (await user.press(page, data)).wait_answer()
        assert answer.text == "This button is no longer active.", data
    await user.assert_no_messages(within=0.3)
    assert not page.edited
    # A button pressed twice where the screen would not change answers quietly, no error.
    await user.press_reply_button("⚙️ Settings")
    settings = await user.wait_message()
    for _ in range(2):
        answer = await (await user.press(settings, "set:notify:")).wait_answer()
        assert answer.text is None
    await user.assert_no_messages(within=0.3)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_someone_elses_entry_cannot_be_disputed(
    emulator: BotAPIEmulator, app: Application
) -> None:
    owner = emulator.user(2004, "Owner", language_code="en")
    await join(owner, "+79990002004")
    other = emulator.user(2005, "Other", language_code="en")
    await join(other, "+79990002005")
    ledger = app.services.ledger  # type: ignore[union-attr]
    owner_member = await ledger.member_by_telegram(2004)
    assert owner_member is not None
    owners_entry = (await ledger.history(owner_member.member_id)).entries[0].entry_id
    await other.press_reply_button("📜 History")
    page = await other.wait_message()
    answer = await (await other.press(page, f"disp:{owners_entry}")).wait_answer()
    assert answer.text == "This button is no longer active." and answer.show_alert
    tickets = await app.services.tickets.tickets_of(owner_member.member_id)  # type: ignore[union-attr]
    assert tickets == []


async def test_a_callback_relayed_from_another_users_message_is_refused(
    emulator: BotAPIEmulator, app: Application
) -> None:
    victim = emulator.user(2006, "Victim", language_code="en")
    await join(victim, "+79990002006")
    attacker = emulator.user(2007, "Attacker", language_code="en")
    await join(attacker, "+79990002007")
    await victim.press_reply_button("⚙️ Settings")
    settings = await victim.wait_message()
    bot = emulator.bot()
    bot.push_update(
        "callback_query",
        {
            "id": "forged-1",
            "from": attacker.profile.to_json(),
            "message": settings.to_api(),
            "chat_instance": "x",
            "data": "set:delete_yes:",
        },
    )
    await victim.assert_no_messages(within=0.5)
    ledger = app.services.ledger  # type: ignore[union-attr]
    assert await ledger.member_by_telegram(2006) is not None
    assert await ledger.member_by_telegram(2007) is not None
    answered = [
        c
        for c in emulator.calls_to("answerCallbackQuery")
        if c.params.get("callback_query_id") == "forged-1"
    ]
    assert answered and answered[0].params.get("text") == "This button is no longer active."
