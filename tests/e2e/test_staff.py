"""Staff in their own chat: help and /cancel in any state, and who the staff are by name."""

from __future__ import annotations

import pytest

from bot.run import Application
from emulator import BotAPIEmulator, EmulatedUser
from tests.e2e.conftest import ADMIN_ID


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # staff are found by @username in SQL on both


async def _grant(emulator: BotAPIEmulator, user_id: int, role: str) -> None:
    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")
    await admin.send_command(f"/staff add {user_id} {role}")
    assert "Done:" in ((await admin.wait_message()).text or "")


async def _press_start(person: EmulatedUser) -> None:
    """/start, as staff who are not members do out of habit: the greeting asks to agree."""
    await person.send_command("/start")
    greeting = await person.wait_message()
    assert greeting.inline_buttons  # the consent button


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", "/staff"),
        ("cashier", "/sale"),
        ("support", "/tickets"),
        ("marketer", "Marketer"),
    ],
)
async def test_staff_who_pressed_start_still_get_their_help_and_can_cancel(
    emulator: BotAPIEmulator, app: Application, role: str, expected: str
) -> None:
    """They used to be told "read the terms above and tap I agree first" for /help, /cancel
    and /id (a marketer for every command), until they joined or the bot restarted."""
    person = emulator.user(ADMIN_ID if role == "admin" else 6100, "Pat", language_code="en")
    if role != "admin":
        await _grant(emulator, 6100, role)
        await person.wait_message()  # "you now have the role"
    await _press_start(person)
    await person.send_command("/help")
    assert expected in ((await person.wait_message()).text or "")
    await person.send_command("/id")
    assert f"Your Telegram id: {person.id}" in ((await person.wait_message()).text or "")
    await person.send_command("/cancel")
    assert ((await person.wait_message()).text or "").startswith("Cancelled.")
    # Left: the next message is not read as a step of joining.
    await person.send_command("/help")
    assert expected in ((await person.wait_message()).text or "")
    # After pressing "I agree" too: the phone is asked for, and help and cancel still work.
    await _press_start(person)
    greeting = person.last_message
    assert greeting is not None
    await person.press_button(greeting, greeting.inline_buttons[0].text)
    await person.wait_message()  # "share your phone"
    await person.send_command("/help")
    assert expected in ((await person.wait_message()).text or "")
    await person.send_command("/cancel")
    assert ((await person.wait_message()).text or "").startswith("Cancelled.")
    await person.send_text("+79990006100")
    assert "button" not in ((await person.wait_message()).text or "")  # not asked again


async def test_a_guest_can_leave_joining_with_cancel(
    emulator: BotAPIEmulator, app: Application
) -> None:
    guest = emulator.user(6101, "Gus", language_code="ru")
    await _press_start(guest)
    await guest.send_command("/cancel")
    answer = await guest.wait_message()
    assert (answer.text or "").startswith("Отменено.") and "/start" in (answer.text or "")
    await guest.send_text("привет")
    assert "/start" in ((await guest.wait_message()).text or "")  # a guest again, not joining


async def test_an_admin_names_staff_by_username_and_the_list_shows_who_they_are(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """@sam_support was unknown after `/staff add 2002 support`, and the list showed ids."""
    admin = emulator.user(ADMIN_ID, "Boss", username="the_boss", language_code="en")
    sam = emulator.user(2002, "Sam", username="sam_support", language_code="en")
    await sam.send_command("/id")  # how the admin learnt the number
    await sam.wait_message()
    await admin.send_command("/staff add 2002 support")
    assert (await admin.wait_message()).text == "Done: 2002 now has the role “support”."
    await sam.wait_message()  # "you now have the role"
    await admin.send_command("/staff add @sam_support cashier")
    assert (await admin.wait_message()).text == "Done: @sam_support now has the role “cashier”."
    await sam.wait_message()
    assert await app.services.staff.roles_of(2002) == {"support", "cashier"}  # type: ignore[union-attr]

    # Someone granted before they ever opened the chat is known once they write.
    emulator.user(2003, "Ola", username="ola_till", language_code="en")
    await admin.send_command("/staff add 2003 cashier")
    await admin.wait_message()
    ola = emulator.user(2003)
    await ola.wait_message()
    emulator.user(2003, username="ola_new")  # they changed it since
    await ola.send_command("/help")
    await ola.wait_message()
    await admin.send_command("/staff add @ola_new marketer")
    assert (await admin.wait_message()).text == "Done: @ola_new now has the role “marketer”."

    await admin.send_command("/staff list")
    listing = (await admin.wait_message()).text or ""
    assert "• @sam_support (2002) — cashier, support" in listing, listing  # as granted
    await sam.send_command("/help")  # now the bot has seen Sam as staff
    await sam.wait_message()
    await admin.send_command("/staff list")
    listing = (await admin.wait_message()).text or ""
    assert "Sam @sam_support (2002) — cashier, support" in listing, listing
    assert "Ola @ola_new (2003) — cashier, marketer" in listing, listing
    assert f"Boss @the_boss ({ADMIN_ID}) — admin (from ADMIN_IDS)" in listing, listing
