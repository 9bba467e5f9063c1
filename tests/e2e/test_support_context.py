"""What support sees to decide: the disputed purchase, the reasons of past adjustments, and
that the reason of an adjustment reaches the member as written."""

from __future__ import annotations

import pytest

from bot.run import Application
from emulator import BotAPIEmulator, EmulatedUser
from tests.e2e.conftest import ADMIN_ID, join


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _support(emulator: BotAPIEmulator, user_id: int) -> EmulatedUser:
    person = emulator.user(user_id, "Sam", language_code="en")
    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")
    await admin.send_command(f"/staff add {user_id} support")
    await admin.wait_message()
    await person.wait_message()  # "you now have the role"
    return person


async def _dispute_newest_entry(member: EmulatedUser, text: str) -> None:
    await member.press_reply_button("📜 История")
    page = await member.wait_message()
    await member.press(page, page.inline_buttons[-1].callback_data or "")  # dispute an entry
    choose = await member.wait_message()
    await member.press(choose, choose.inline_buttons[0].callback_data or "")  # the newest
    await member.wait_message()
    await member.send_text(text)
    await member.wait_message()


async def test_support_sees_the_disputed_purchase_and_the_reasons_of_adjustments(
    emulator: BotAPIEmulator, app: Application
) -> None:
    ivan = emulator.user(8101, "Иван", username="ivan_c", language_code="ru")
    await join(ivan, "+79998101000")
    ledger = app.services.ledger  # type: ignore[union-attr]
    member = await ledger.member_by_telegram(8101)
    assert member is not None
    await ledger.purchase(receipt_id="R-7731", member_id=member.member_id, amount_kopecks=150_050)
    receipt = await ivan.wait_message()  # queued with the purchase, sent on its own time
    assert (receipt.text or "").startswith("🧾 Покупка R-7731:")
    sam = await _support(emulator, 8201)
    await _dispute_newest_entry(ivan, "Где баллы за покупку?")
    await sam.wait_message()  # the news of the dispute

    await sam.send_command("/ticket 1")
    ticket = (await sam.wait_message()).text or ""
    # It showed the entry's points only: not what was bought, for how much, or when.
    assert "Purchase R-7731: 1,500.50 ₽ on 2 Mar, 12:00" in ticket, ticket

    await sam.send_command("/adjust @ivan_c +50 обещали за отзыв")
    await sam.wait_message()
    assert "обещали за отзыв" in ((await ivan.wait_message()).text or "")
    await sam.send_command("/member @ivan_c")
    profile = (await sam.wait_message()).text or ""
    assert "+50 · Adjustment · “обещали за отзыв”" in profile, profile  # it said "Adjustment"
    assert "Their language: Русский" in profile, profile


async def test_support_is_told_the_member_reads_the_reason_word_for_word(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """An English "goodwill" reached a Russian member: support had no way to know."""
    sam = await _support(emulator, 8202)
    await sam.send_command("/help")
    help_text = (await sam.wait_message()).text or ""
    assert "member reads the REASON word for word" in help_text, help_text
    for usage in ("/adjust", "/reverse"):
        await sam.send_command(usage)
        assert "member reads the REASON word for word" in ((await sam.wait_message()).text or ""), (
            usage
        )
