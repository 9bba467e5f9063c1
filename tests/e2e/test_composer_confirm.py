"""A summary's Confirm stands for what that summary showed: after the marketer changed the
draft from an earlier screen, the old summary's Confirm creates nothing."""

from __future__ import annotations

import pytest

from bot.run import Application
from emulator import BotAPIEmulator
from tests.e2e.test_marketer import MARKETER, _compose_to_everyone, _shop


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def test_confirm_on_a_summary_does_not_send_a_draft_changed_after_it(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """The summary's Confirm carries the draft's public_id, made when 'Now' or a time was
    chosen; changing the text (or the audience, the gift) afterwards from an earlier screen
    kept that id, so the old summary's Confirm sent what the marketer never confirmed."""
    await _shop(app, emulator)
    mia = emulator.user(MARKETER, "Mia", language_code="en")
    summary = await _compose_to_everyone(mia, "Summarised text")
    assert "Confirm" in str([b.text for b in summary.inline_buttons])
    # The control step's screen is still in the chat, with its buttons (the preview was sent
    # below it): Back to the message, and change the text.
    control = next(
        m
        for m in mia.messages
        if any(b.text == "⬅️ Back" for b in m.inline_buttons)
        and m is not summary
        and "control group" in m.content
    )
    for _ in range(2):  # Back from "0%" to the control step, then to the message step
        edits = len(control.edits)
        await mia.press_button(control, "⬅️ Back")
        await mia.wait_for(lambda edits=edits: len(control.edits) > edits, what="an edit")
    await mia.wait_for(
        lambda: any(b.text == "✏️ Change the text" for b in control.inline_buttons),
        what="the message step",
    )
    await mia.press_button(control, "✏️ Change the text")
    await mia.wait_for(lambda: "{first_name}" in control.content, what="the text asked")
    await mia.send_text("A text nobody confirmed")
    await mia.wait_message()
    pressed = await mia.press_button(summary, "✅ Confirm")
    answer = await pressed.wait_answer()
    assert answer.show_alert and "no longer active" in (answer.text or "")
    assert await app.services.broadcasts.recent(1) == []  # nothing sent, nothing created
