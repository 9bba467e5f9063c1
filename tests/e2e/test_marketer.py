"""The marketer's journey in the bot, end to end against the emulator: /broadcast's composer
(conditions with live counts, a text with placeholders, a gift, a control group, the preview
and a test to oneself, sending now), the progress message edited until the delivery report,
who gets the message and who does not, the member's "Unsubscribe from offers", pause, resume
and cancel, /broadcasts and /segments; and that nobody else can broadcast."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.run import Application
from emulator import BotAPIEmulator, BotMessage, EmulatedUser
from handlers.commands import commands_for
from ledger.clock import ManualClock
from marketing.offer import UNSUBSCRIBE
from staff.roles import Role
from storage.schema import broadcast_members
from tests.e2e.conftest import ADMIN_ID, make_settings

MARKETER = 6200


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the counts and the broadcast are SQL on both


async def _member(
    app: Application,
    emulator: BotAPIEmulator,
    chat: int,
    name: str,
    *,
    language: str = "en",
    extra: int = 0,
    offers: bool = True,
) -> int:
    emulator.user(chat, name, language_code=language)
    ledger = app.services.ledger
    registration = await ledger.register_member(
        f"+7999{chat:07d}", telegram_id=chat, first_name=name, language=language
    )
    member_id = registration.member.member_id
    if extra:
        await ledger.adjust(member_id=member_id, points=extra, reason="test", actor="test")
    if not offers:
        await ledger.update_profile(member_id, notify_offers=False)
    return member_id


async def _shop(app: Application, emulator: BotAPIEmulator) -> dict[str, int]:
    """Six English speakers with 200 points or more (one of them opted out of offers), one
    English speaker with the welcome bonus only, one Russian speaker: chats 7001...7008."""
    members = {}
    for index, name in enumerate(["Ann", "Ben", "Cat", "Dee", "Eve", "Fay"]):
        members[name] = await _member(
            app, emulator, 7001 + index, name, extra=100 + index, offers=name != "Fay"
        )
    members["Gus"] = await _member(app, emulator, 7007, "Gus")
    members["Ivan"] = await _member(app, emulator, 7008, "Иван", language="ru", extra=500)
    await app.services.staff.grant(MARKETER, Role.MARKETER, by=ADMIN_ID)
    return members


async def _press(user: EmulatedUser, message: BotMessage, label: str) -> BotMessage:
    """Press a button whose screen is edited in place; the screen afterwards."""
    await user.press_button(message, label)
    return await user.wait_edit(message)


async def test_a_marketer_composes_sends_and_reads_the_report_of_a_broadcast(
    emulator: BotAPIEmulator, app: Application
) -> None:
    members = await _shop(app, emulator)
    mia = emulator.user(MARKETER, "Mia", language_code="en")
    await mia.send_command("/broadcast")
    screen = await mia.wait_message()
    assert "step 1 of 5" in screen.content
    assert "8 members, 7 reachable: 1 opted out of offers" in screen.content

    # A condition with few values: buttons; the count follows at once.
    choices = await _press(mia, screen, "Language")
    screen = await _press(mia, choices, "English")
    assert "Language: English" in screen.content
    assert "7 members, 6 reachable: 1 opted out of offers" in screen.content

    # A typed one, refused when it is no number, then taken.
    screen = await _press(mia, screen, "Points balance")
    await mia.send_text("lots")
    assert "whole number from 0 to" in (await mia.wait_message()).content
    await mia.send_text("150")
    screen = await mia.wait_message()
    assert "Points balance: at least 150" in screen.content
    assert "6 members, 5 reachable: 1 opted out of offers" in screen.content

    # Saved as a segment for later.
    await _press(mia, screen, "💾 Save as a segment")
    await mia.send_text("English regulars")
    screen = await mia.wait_message()
    assert "Saved as “English regulars”" in screen.content

    # The message: bad HTML is refused saying where; then the text with its placeholders.
    asked = await _press(mia, screen, "Next ➡️")
    assert "{first_name}" in asked.content and "{balance}" in asked.content
    bad = "Hi {first_name}, <b>{balance} points</i> are yours"
    await mia.send_text(bad)
    refused = await mia.wait_message()
    assert f"character {bad.index('</i>') + 1}" in refused.content, refused.content
    assert "<i>" in refused.content
    await mia.send_text("Hi {first_name}, <b>{balance}</b> points are yours!")
    screen = await mia.wait_message()
    assert "Step 2 of 5" in screen.content
    asked = await _press(mia, screen, "🎁 Add gift points")
    await mia.send_text("50 7")
    screen = await mia.wait_message()
    assert "Gift to each: 50 points, valid for 7 days" in screen.content

    # The control group, then the preview as a member sees it and a test to oneself.
    screen = await _press(mia, screen, "Next ➡️")
    assert "control group" in screen.content
    screen = await _press(mia, screen, "✅ 10%")  # the rules' default
    await mia.press_button(screen, "👀 Preview")
    title, preview, controls = await mia.wait_messages(3)
    assert "Members will see it" in title.content
    assert preview.content.startswith("Hi Mia, 50 points are yours!")  # balance 0 + the gift
    assert preview.html is not None and "<b>50</b>" in preview.html
    assert "A gift for you: 50 points" in preview.content
    await mia.press_button(controls, "📨 Send a test to me")
    test, controls = await mia.wait_messages(2)
    assert test.content == preview.content
    assert [b.text for b in test.inline_buttons] == ["Unsubscribe from offers"]

    # Now: the summary says what will happen, and Confirm sends it.
    screen = await _press(mia, controls, "Next ➡️")
    summary = await _press(mia, screen, "🚀 Now")
    assert "Recipients: about 5" in summary.content  # 6 less a control group of 1
    assert "about 250 in all" in summary.content
    assert "Sending takes about" in summary.content
    await mia.press_button(summary, "✅ Confirm")
    await mia.wait_edit(summary)
    assert "created" in summary.content
    progress = await mia.wait_message()
    assert "Broadcast B-" in progress.content

    # The progress message is edited in place until the delivery report.
    await mia.wait_for(lambda: "done" in progress.content, timeout=20, what="the report")
    assert progress.edited
    broadcast = (await app.services.broadcasts.recent(1))[0]
    async with app.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(broadcast_members.c.member_id, broadcast_members.c.control).where(
                    broadcast_members.c.broadcast_id == broadcast.id
                )
            )
        ).all()
    control = {row.member_id for row in rows if row.control}
    assert len(rows) == 6 and len(control) == 1
    opted_out = 0 if members["Fay"] in control else 1  # Fay is a recipient unless held back
    sent = 5 - opted_out
    assert f"Sent: {sent} of 5" in progress.content, progress.content
    assert ("opted out of offers — 1" in progress.content) == bool(opted_out)
    assert f"Gift points credited: {sent * 50}" in progress.content
    assert not progress.inline_buttons  # nothing left to pause or cancel

    for index, name in enumerate(["Ann", "Ben", "Cat", "Dee", "Eve", "Fay", "Gus", "Ivan"]):
        got = emulator.user(7001 + index).messages
        if members[name] in control or name in ("Fay", "Gus", "Ivan"):
            assert got == [], name  # the control group, opted out, outside the filter
        else:
            assert len(got) == 1 and got[0].content.startswith(f"Hi {name}, "), name

    # A member unsubscribes from the message itself.
    reader = next(
        name
        for index, name in enumerate(["Ann", "Ben", "Cat", "Dee", "Eve"])
        if members[name] not in control
    )
    chat = 7001 + ["Ann", "Ben", "Cat", "Dee", "Eve"].index(reader)
    member = emulator.user(chat)
    offer = member.messages[0]
    member.mark_read()
    await member.send_command("/support")  # in the middle of writing to support
    await member.wait_message()
    await member.press(offer, UNSUBSCRIBE)
    assert "no more offers" in (await member.wait_message()).content
    assert not any(b.callback_data == UNSUBSCRIBE for b in offer.inline_buttons)
    view = await app.services.ledger.get_member(members[reader])
    assert view.notify_offers is False

    # /broadcasts lists it; its report opens from there.
    await mia.send_command("/broadcasts")
    listing = await mia.wait_message()
    assert f"{broadcast.public_id} — done" in listing.content
    report = await _press(mia, listing, broadcast.public_id)
    assert f"Sent: {sent} of 5" in report.content
    assert "so far; the window closes" in report.content  # 14 days from the start
    assert "Too few members to tell the lift" in report.content  # 5 against 1

    # /segments counts the saved one now (one more opted out) and deletes it on confirmation.
    await mia.send_command("/segments")
    segments = await mia.wait_message()
    assert "English regulars: 6 members, 4 reachable: 2 opted out of offers" in segments.content
    confirm = await _press(mia, segments, "🗑 Delete “English regulars”")
    done = await _press(mia, confirm, "Yes, delete")
    assert "No saved segments" in done.content
    assert await app.services.segments.saved() == []


async def _compose_to_everyone(mia: EmulatedUser, text: str) -> BotMessage:
    """/broadcast to everyone, without a control group, now: the summary."""
    await mia.send_command("/broadcast")
    screen = await mia.wait_message()
    await _press(mia, screen, "Next ➡️")
    await mia.send_text(text)
    screen = await mia.wait_message()
    screen = await _press(mia, screen, "Next ➡️")
    screen = await _press(mia, screen, "0%")
    assert "lift of this broadcast cannot be measured" in screen.content
    await mia.press_button(screen, "👀 Preview")
    *_, controls = await mia.wait_messages(3)
    screen = await _press(mia, controls, "Next ➡️")
    return await _press(mia, screen, "🚀 Now")


async def test_pause_resume_and_cancel_from_the_progress_message(
    emulator: BotAPIEmulator, app: Application, clock: ManualClock
) -> None:
    """In quiet hours the messages wait, so the broadcast stays in progress for the test."""
    await _shop(app, emulator)
    clock.advance(timedelta(hours=10))  # 22:00 in Moscow
    mia = emulator.user(MARKETER, "Mia", language_code="en")
    summary = await _compose_to_everyone(mia, "Evening, {first_name}!")
    assert "messages will wait until 10:00" in summary.content
    assert "No control group" in summary.content
    await mia.press_button(summary, "✅ Confirm")
    progress = await mia.wait_message()
    await mia.wait_for(lambda: "sending" in progress.content, timeout=10, what="sending")

    await mia.press_button(progress, "⏸ Pause")
    await mia.wait_for(lambda: "paused" in progress.content, what="paused")
    assert [b.text for b in progress.inline_buttons] == ["▶️ Resume", "⏹ Cancel"]
    await mia.press_button(progress, "▶️ Resume")
    await mia.wait_for(lambda: "sending" in progress.content, what="resumed")
    await mia.press_button(progress, "⏹ Cancel")
    await mia.wait_for(lambda: "Nothing more will be sent" in progress.content, what="asked")
    await mia.press_button(progress, "Yes, cancel it")
    await mia.wait_for(lambda: "cancelled" in progress.content, what="cancelled")
    broadcast = (await app.services.broadcasts.recent(1))[0]
    assert broadcast.status == "cancelled"
    await mia.send_command("/broadcasts")
    listing = await mia.wait_message()
    assert f"{broadcast.public_id} — cancelled" in listing.content
    report = await _press(mia, listing, broadcast.public_id)
    assert "No control group: the lift cannot be measured." in report.content
    actions = [record.action for record in await app.services.audit.recent(20)]
    assert {"broadcast.create", "broadcast.pause", "broadcast.resume", "broadcast.cancel"} <= set(
        actions
    )

    clock.advance(timedelta(hours=13))  # the next morning: still nothing goes out
    await app.services.broadcasts.tick()
    await app.sender.drain()
    assert all(emulator.user(7001 + index).messages == [] for index in range(8))


async def test_the_progress_message_goes_on_after_a_restart_and_nobody_gets_two(
    emulator: BotAPIEmulator,
    app: Application,
    clock: ManualClock,
    database_url: str,
    tmp_path: Path,
) -> None:
    """Held by quiet hours when the process stops; the next process sends it in the morning
    and edits the same progress message to its report."""
    await _shop(app, emulator)
    clock.advance(timedelta(hours=10))  # 22:00 in Moscow
    mia = emulator.user(MARKETER, "Mia", language_code="en")
    await mia.press_button(await _compose_to_everyone(mia, "Morning, {first_name}!"), "✅ Confirm")
    progress = await mia.wait_message()
    await mia.wait_for(lambda: progress.edited, timeout=10, what="the first progress edit")
    await app.stop()
    clock.advance(timedelta(hours=12))  # 10:00 the next day
    again = Application(make_settings(emulator, database_url, tmp_path), clock=clock)
    await again.start()
    try:
        await mia.wait_for(lambda: "done" in progress.content, timeout=20, what="the report")
    finally:
        await again.stop()
    assert "Sent: 7 of 8" in progress.content and "opted out of offers — 1" in progress.content
    for index in range(8):
        got = emulator.user(7001 + index).messages
        assert len(got) == (0 if index == 5 else 1), index  # Fay opted out


async def test_a_photo_and_a_link_button_go_with_the_message(
    emulator: BotAPIEmulator, app: Application
) -> None:
    await _shop(app, emulator)
    mia = emulator.user(MARKETER, "Mia", language_code="en")
    await mia.send_command("/broadcast")
    screen = await mia.wait_message()
    await _press(mia, screen, "Next ➡️")
    await mia.send_text("Our new menu, {first_name}")
    screen = await mia.wait_message()
    await _press(mia, screen, "🖼 Add a photo")
    await mia.send_text("here it is")
    assert "Send the photo" in (await mia.wait_message()).content
    await mia.send_photo(b"photo-bytes")
    screen = await mia.wait_message()
    assert "Photo: yes" in screen.content
    await _press(mia, screen, "🔗 Add a button with a link")
    await mia.send_text("Menu")
    assert "Two lines are needed" in (await mia.wait_message()).content
    await mia.send_text("Menu\nhttps://example.com/menu")
    screen = await mia.wait_message()
    assert "Button: Menu → https://example.com/menu" in screen.content
    screen = await _press(mia, screen, "Next ➡️")
    screen = await _press(mia, screen, "✅ 10%")
    await mia.press_button(screen, "👀 Preview")
    _title, preview, controls = await mia.wait_messages(3)
    assert preview.kind == "photo" and preview.caption == "Our new menu, Mia"
    assert [(b.text, b.url) for b in preview.inline_buttons] == [
        ("Menu", "https://example.com/menu"),
        ("Unsubscribe from offers", None),
    ]
    await mia.send_text("looks good")  # typed where buttons are asked for
    assert "Use the buttons" in (await mia.wait_message()).content
    await mia.press_button(controls, "📨 Send a test to me")
    test, _controls = await mia.wait_messages(2)
    assert test.kind == "photo" and test.file_id == preview.file_id


async def test_a_russian_marketer_reads_counts_and_errors_in_russian(
    emulator: BotAPIEmulator, app: Application
) -> None:
    await _shop(app, emulator)
    mia = emulator.user(MARKETER, "Мия", language_code="ru")
    await mia.send_command("/broadcast")
    screen = await mia.wait_message()
    assert "8 участников, из них получат 7: 1 отказался от предложений" in screen.content
    choices = await _press(mia, screen, "Язык")
    screen = await _press(mia, choices, "Русский")
    assert "1 участник, из них получит 1" in screen.content
    await _press(mia, screen, "Дальше ➡️")
    await mia.send_text("Привет, {name}!")
    assert "Неизвестная подстановка {name} на 9-м символе" in (await mia.wait_message()).content
    await mia.send_text("Привет, {first_name}!")
    screen = await mia.wait_message()
    screen = await _press(mia, screen, "Дальше ➡️")
    screen = await _press(mia, screen, "✅ 10%")
    await mia.press_button(screen, "👀 Предпросмотр")
    title, preview, controls = await mia.wait_messages(3)
    assert "Участники увидят это так" in title.content
    assert preview.content.startswith("Привет, Мия!")
    screen = await _press(mia, controls, "Дальше ➡️")
    await _press(mia, screen, "🕒 В другое время…")
    await mia.send_text("завтра")
    assert "ДД.ММ ЧЧ:ММ" in (await mia.wait_message()).content
    await mia.send_text("01.03 10:00")  # it is 2 March, 12:00 in Moscow
    assert "Это время уже прошло (сейчас 2 мар., 12:00)" in (await mia.wait_message()).content
    await mia.send_text("01.02 10:00")  # a month ago: a mistake, not next February
    assert "Это время уже прошло" in (await mia.wait_message()).content
    await mia.send_text("02.03 23:30")
    summary = await mia.wait_message()
    assert "Когда: 2 мар., 23:30 (по времени магазина)" in summary.content, summary.content
    assert "тихие часы: сообщения подождут до 10:00" in summary.content
    await mia.press_button(summary, "✅ Подтвердить")
    progress = await mia.wait_message()
    assert "запланирована" in progress.content and "Начало: 2 мар., 23:30" in progress.content
    assert [b.text for b in progress.inline_buttons] == ["⏹ Отменить"]
    await mia.send_command("/cancel")  # the composer is over: nothing to cancel in it
    assert not (await mia.wait_message()).content.startswith("Отменено: рассылка не создана.")
    await mia.send_command("/broadcast")
    await mia.wait_message()
    await mia.send_command("/cancel")
    assert (await mia.wait_message()).content.startswith("Отменено: рассылка не создана.")


async def test_members_and_cashiers_cannot_broadcast(
    emulator: BotAPIEmulator, app: Application
) -> None:
    await _shop(app, emulator)
    ann = emulator.user(7001)
    for command in ("/broadcast", "/nonsense"):
        await ann.send_command(command)
    answers = await ann.wait_messages(2)
    assert answers[0].content == answers[1].content  # the same "unknown command" as ever
    await app.services.staff.grant(6300, Role.CASHIER, by=ADMIN_ID)
    cashier = emulator.user(6300, "Cy", language_code="en")
    for command in ("/broadcast", "/broadcasts", "/segments", "/nonsense"):
        await cashier.send_command(command)
    answers = await cashier.wait_messages(4)
    assert len({answer.content for answer in answers}) == 1, [a.content for a in answers]
    assert await app.services.broadcasts.recent() == []


async def test_help_and_the_command_menu_show_a_marketer_the_commands(
    emulator: BotAPIEmulator, app: Application
) -> None:
    await _shop(app, emulator)
    mia = emulator.user(MARKETER, "Mia", language_code="en")
    await mia.send_command("/help")
    text = (await mia.wait_message()).content
    assert "/broadcast" in text and "/broadcasts" in text and "/segments" in text
    assert "not in this version" not in text
    i18n = app.services.i18n
    for role in (Role.MARKETER, Role.ADMIN):
        names = [command.command for command in commands_for(frozenset({role}), i18n, "en")]
        assert {"broadcast", "broadcasts", "segments"} <= set(names), role


async def test_a_date_typed_in_december_for_january_is_next_years(
    emulator: BotAPIEmulator, app: Application, clock: ManualClock
) -> None:
    await _shop(app, emulator)
    clock.advance(timedelta(days=278))  # 5 December, 12:00 in Moscow
    mia = emulator.user(MARKETER, "Mia", language_code="en")
    summary = await _compose_to_everyone(mia, "Happy New Year, {first_name}!")
    screen = await _press(mia, summary, "⬅️ Back")
    await _press(mia, screen, "🕒 At a time…")
    await mia.send_text("05.01 10:00")
    summary = await mia.wait_message()
    assert "When: 5 Jan 2027, 10:00 (shop time)" in summary.content, summary.content
    await mia.press_button(summary, "✅ Confirm")
    progress = await mia.wait_message()
    assert "5 Jan 2027, 10:00" in progress.content
    (broadcast,) = await app.services.broadcasts.recent(1)
    assert broadcast.status == "scheduled" and broadcast.send_at.year == 2027


async def test_a_broadcast_cancelled_over_the_api_shows_it_in_its_progress_message(
    emulator: BotAPIEmulator, app: Application, clock: ManualClock
) -> None:
    await _shop(app, emulator)
    clock.advance(timedelta(hours=10))  # 22:00 in Moscow: the messages wait for the morning
    mia = emulator.user(MARKETER, "Mia", language_code="en")
    summary = await _compose_to_everyone(mia, "Evening, {first_name}!")
    await mia.press_button(summary, "✅ Confirm")
    progress = await mia.wait_message()
    await mia.wait_for(lambda: "sending" in progress.content, timeout=10, what="sending")
    (broadcast,) = await app.services.broadcasts.recent(1)
    await app.services.broadcasts.cancel(broadcast, actor="api:crm")  # as the CRM's cancel does
    await mia.wait_for(lambda: "cancelled" in progress.content, timeout=10, what="the report")
    assert not progress.inline_buttons
