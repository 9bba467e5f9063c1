"""The support desk end to end: a member's request reaches support, who answer it, look the
member up, adjust and reverse points; the member hears each in their own language."""

from __future__ import annotations

import re

import pytest

from bot.run import Application
from emulator import BotAPIEmulator, EmulatedUser
from ledger.invariants import check_ledger
from staff.audit import AuditLog
from support.tickets import TicketService
from tests.e2e.conftest import ADMIN_ID, ask_support, join


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # ids past 32 bits broke only PostgreSQL


async def _support(emulator: BotAPIEmulator, user_id: int, language: str) -> EmulatedUser:
    """A support person who has not joined the program, granted the role by the admin."""
    person = emulator.user(user_id, "Sam", language_code=language)
    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")
    await admin.send_command(f"/staff add {user_id} support")
    await admin.wait_message()
    await person.wait_message()  # "you now have the role"
    return person



async def test_a_request_with_direction_and_null_characters_reaches_support_without_them(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """"\u202egnp.exe" displays as "exe.png"; a NUL and a zero-width space hide in a name."""
    eve = emulator.user(5111, "E\u200bve\u202e", language_code="en")
    await join(eve, "+79995111000")
    sam = await _support(emulator, 5211, "en")
    text = "Look at \u202egnp.exe\x00 please\u2066"
    assert "Request #1 is registered" in await ask_support(eve, text)
    news = (await sam.wait_message()).text or ""
    assert news.startswith("🆕 Request #1 from Eve (card ")
    assert "“Look at gnp.exe please”" in news, repr(news)
    await sam.send_command("/tickets")
    assert "#1 · question · Eve · " in ((await sam.wait_message()).text or "")
    await sam.send_command("/ticket 1")
    ticket = (await sam.wait_message()).text or ""
    assert "“Look at gnp.exe please”" in ticket and "From Eve, card" in ticket, repr(ticket)
    for seen in (news, ticket):
        assert not {"\u202e", "\u200b", "\u2066", "\x00"} & set(seen), repr(seen)


async def test_support_answers_a_request_and_the_member_gets_the_answer(
    emulator: BotAPIEmulator, app: Application
) -> None:
    anna = emulator.user(5101, "Anna", username="anna_k", language_code="en")
    await join(anna, "+79995101000")
    sam = await _support(emulator, 5201, "en")
    await sam.send_command("/help")
    assert "/tickets — open requests and disputes" in ((await sam.wait_message()).text or "")

    assert "Request #1 is registered" in await ask_support(anna, "Where are my points?")
    news = await sam.wait_message()  # support hears at once, through the outbox
    assert (news.text or "").startswith("🆕 Request #1 from Anna (card ")
    assert "“Where are my points?”" in (news.text or "") and "/ticket 1" in (news.text or "")

    await sam.send_command("/tickets")
    listing = (await sam.wait_message()).text or ""
    assert "Open requests: 1" in listing and "#1 · question · Anna · " in listing

    await sam.send_command("/ticket 1")
    ticket = (await sam.wait_message()).text or ""
    assert "Request #1 · question · open" in ticket and "“Where are my points?”" in ticket
    assert "/reply 1 TEXT" in ticket

    await sam.send_command("/reply 1\nThey arrive 14 days after a purchase.\nThank you!")
    assert (await sam.wait_message()).text == (
        "Request #1 is answered and closed.\nThe member is told in their chat."
    )
    answer = await anna.wait_message()
    assert answer.text == (
        "💬 Support answered your request #1:\n\nThey arrive 14 days after a purchase.\nThank you!"
    )
    # A second answer (say, a colleague at the same time) sends nothing more.
    await sam.send_command("/reply 1 Hello?")
    assert "was closed already" in ((await sam.wait_message()).text or "")
    await anna.assert_no_messages(within=0.5)
    await sam.send_command("/tickets")
    assert (await sam.wait_message()).text == "No open requests. 🎉"

    audit = [(r.action, r.actor) for r in await AuditLog(app.engine).recent()]  # type: ignore[arg-type]
    assert ("support.reply", "tg:5201") in audit


async def test_a_dispute_is_settled_with_an_adjustment_and_a_reversal(
    emulator: BotAPIEmulator, app: Application
) -> None:
    ivan = emulator.user(5102, "Иван", username="ivan_p", language_code="ru")
    await join(ivan, "+79995102000")
    sam = await _support(emulator, 5202, "ru")
    await sam.send_command("/help")  # the bot learns the language of Sam's Telegram
    assert "Поддержка: /tickets" in ((await sam.wait_message()).text or "")

    await ivan.press_reply_button("📜 История")
    page = await ivan.wait_message()
    await ivan.press(page, page.inline_buttons[-1].callback_data or "")  # dispute an entry
    choose = await ivan.wait_message()
    await ivan.press(choose, choose.inline_buttons[0].callback_data or "")
    await ivan.wait_message()
    await ivan.send_text("Мне обещали 150 баллов")
    assert "№1" in ((await ivan.wait_message()).text or "")
    assert (await sam.wait_message()).text.startswith("🆕 Спор №1 от Иван")  # type: ignore[union-attr]

    await sam.send_command("/ticket 1")
    ticket = (await sam.wait_message()).text or ""
    assert "Обращение №1 · спор · открыто" in ticket and "Приветственный бонус" in ticket

    await sam.send_command("/member @ivan_p")
    profile = (await sam.wait_message()).text or ""
    assert "👤 Иван (@ivan_p) · участник #1 · активен" in profile
    assert "+7 *** ***-20-00" in profile and "баланс 100 баллов" in profile
    assert "Открытые обращения: #1" in profile

    await sam.send_command("/adjust @ivan_p +50 обещали при регистрации")
    done = (await sam.wait_message()).text or ""
    assert done.startswith("Готово: +50 (запись #") and "Баланс: 150 баллов" in done
    told = (await ivan.wait_message()).text
    assert told == (
        "💬 Поддержка изменила ваши баллы: +50. Причина: обещали при регистрации. "
        "Баланс: 150 баллов."
    )
    entry = int(re.findall(r"запись #(\d+)", done)[0])

    # Refusals say why, in the reader's language, and change nothing.
    await sam.send_command("/adjust @ivan_p -1000 ошибка")
    assert "нет столько баллов" in ((await sam.wait_message()).text or "")
    await sam.send_command("/adjust @nobody_here +5 x")
    assert "не найден" in ((await sam.wait_message()).text or "")
    await sam.send_command("/adjust @ivan_p 5")
    assert ((await sam.wait_message()).text or "").startswith("Как писать: /adjust КТО +50")
    await sam.send_command("/adjust @ivan_p +5 " + "x" * 501)  # the member would read it all
    assert "слишком длинная" in ((await sam.wait_message()).text or "")
    # Numbers nobody means, or past 32 bits (a crash on PostgreSQL before): plain answers.
    for command in ("/ticket 3000000000", "/ticket ²", "/reverse 99999999999999999999 x"):
        await sam.send_command(command)
        assert ((await sam.wait_message()).text or "").startswith("Как писать:"), command
    await sam.send_command("/member #3000000000")
    assert "не найден" in ((await sam.wait_message()).text or "")

    await sam.send_command(f"/reverse {entry} начислено по ошибке")
    reversed_ = (await sam.wait_message()).text or ""
    assert f"Запись #{entry} отменена записью #" in reversed_ and "-50" in reversed_
    assert "-50" in ((await ivan.wait_message()).text or "")
    await sam.send_command(f"/reverse {entry} ещё раз")  # it said "reversed" again before
    assert "только один раз" in ((await sam.wait_message()).text or "")
    ledger = app.services.ledger  # type: ignore[union-attr]
    member = await ledger.member_by_telegram(5102)
    assert member is not None and (await ledger.balance(member.member_id)).balance == 100

    await sam.send_command("/close 1")
    assert (await sam.wait_message()).text == (
        "Обращение №1 закрыто.\nУчастник получит сообщение в своём чате."
    )
    assert "обращение №1 закрыто" in ((await ivan.wait_message()).text or "")
    assert await check_ledger(ledger.engine) == []
    actions = {r.action for r in await AuditLog(app.engine).recent()}  # type: ignore[arg-type]
    assert {"support.adjust", "support.reverse", "support.close"} <= actions


async def test_members_and_cashiers_have_no_desk_and_admins_hear_when_there_is_no_support(
    emulator: BotAPIEmulator, app: Application
) -> None:
    olga = emulator.user(5103, "Olga", language_code="en")
    await join(olga, "+79995103000")
    admin = emulator.user(ADMIN_ID, "Boss", language_code="ru")  # from ADMIN_IDS, no member
    await admin.send_command("/help")  # the bot learns the language of the admin's Telegram
    await admin.wait_message()
    assert "Request #1 is registered" in await ask_support(olga, "Hello")
    # Nobody has the support role yet: the admins are told instead, in their language.
    assert ((await admin.wait_message()).text or "").startswith("🆕 Обращение №1 от Olga")
    kate = emulator.user(5105, "Kate", language_code="en")  # a cashier, and not a member
    await admin.send_command("/staff add 5105 cashier")
    await admin.wait_message()
    await kate.wait_message()
    commands = ("/tickets", "/ticket 1", "/reply 1 hi", "/close 1", "/member #1", "/reverse 1 x")
    for person in (olga, kate):
        for command in (*commands, "/adjust @olga +5 x"):
            await person.send_command(command)
            answer = (await person.wait_message()).text or ""
            assert "Olga" not in answer and "Hello" not in answer, (person, command)
    await admin.send_command("/tickets")
    assert "№1 · вопрос · Olga" in ((await admin.wait_message()).text or "")


async def test_support_cannot_change_their_own_points(
    emulator: BotAPIEmulator, app: Application
) -> None:
    sam = emulator.user(5204, "Sam", username="sam_s", language_code="en")
    await join(sam, "+79995204000")  # a member too
    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")
    await admin.send_command("/staff add @sam_s support")
    await admin.wait_message()
    await sam.wait_message()
    await sam.send_command("/adjust @sam_s +500 bonus")
    assert "your own points" in ((await sam.wait_message()).text or "")
    ledger = app.services.ledger  # type: ignore[union-attr]
    member = await ledger.member_by_telegram(5204)
    assert member is not None and (await ledger.balance(member.member_id)).balance == 100
    welcome = (await ledger.history(member.member_id)).entries[0]
    await sam.send_command(f"/reverse {welcome.entry_id} test")
    assert "your own points" in ((await sam.wait_message()).text or "")


async def test_a_long_list_of_requests_fits_in_one_message(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """Twenty requests from members with long names and long texts made the list longer than
    Telegram takes (4,096), and the desk answered "something went wrong"."""
    ledger = app.services.ledger  # type: ignore[union-attr]
    tickets = TicketService(ledger.engine, ledger.clock)
    for n in range(25):
        registration = await ledger.register_member(
            f"+7999520{n:04d}", telegram_id=5300 + n, first_name="Ж" * 64, last_name="😀" * 60
        )
        await tickets.open_ticket(registration.member.member_id, "😀" * 2000)
    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")
    await admin.send_command("/tickets")
    listing = (await admin.wait_message()).text or ""
    assert len(listing.encode("utf-16-le")) // 2 <= 4096
    assert listing.startswith("Open requests: 25") and "more: answer these first" in listing
    await admin.send_command("/ticket 1")
    assert "Request #1" in ((await admin.wait_message()).text or "")
