"""A member's whole journey in the chat, through the emulator, against the real application.

What the bot says is expected by key (tests/texts.py), so a change of wording breaks no test;
the Russian plural forms are spelt out where they are what the test is about."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import zxingcpp
from babel.numbers import format_decimal
from PIL import Image
from sqlalchemy import select

from bot.run import Application
from cards.render import format_card_number
from cards.token import verify_card_token
from emulator import BotAPIEmulator
from ledger.clock import ManualClock
from ledger.invariants import check_ledger
from ledger.rules import Rules
from storage.schema import card_images
from support.tickets import MAX_TICKET_TEXT
from tests.conftest import ROOT
from tests.e2e.conftest import BOT_USERNAME, SECRET, join, make_settings
from tests.texts import count, menu, points, roubles, shape, t

RUB = 100


async def test_new_user_registers_with_own_contact_and_gets_welcome_bonus(
    emulator: BotAPIEmulator, app: Application, rules: Rules
) -> None:
    anna = emulator.user(1001, "Анна", language_code="ru")
    await anna.send_command("/start")
    greeting = await anna.wait_message()
    welcome_line = t("start-welcome-line", "ru", points=points(100, "ru"))
    assert shape("start-greeting", "ru", name="Анна", program=rules.program_name).fullmatch(
        greeting.text or ""
    )
    assert welcome_line in (greeting.text or "")

    agree = greeting.button(t("consent-button", "ru")).callback_data or ""
    await anna.press(greeting, agree)
    share = await anna.wait_message()
    assert share.keyboard[0][0].request_contact
    assert not greeting.inline_buttons  # the button is gone; a tap already on its way
    await anna.press(greeting, agree)  # asks for the phone only once
    await anna.assert_no_messages(within=0.3)

    for other in (anna.send_sticker(), anna.send_command("/help")):  # nothing was typed
        await other
        asked = await anna.wait_message()
        assert asked.text == t("contact-needed", "ru")
        assert asked.keyboard[0][0].request_contact

    await anna.send_text("+7 999 123-45-67")  # typed: refused, button again
    typed = await anna.wait_message()
    assert typed.text == t("contact-typed", "ru") and typed.keyboard[0][0].request_contact

    await anna.send_contact("+79991234567", user_id=2002, first_name="Борис")  # someone else's
    foreign = await anna.wait_message()
    assert foreign.text == t("contact-foreign", "ru")
    assert await app.services.ledger.member_by_telegram(1001) is None  # type: ignore[union-attr]

    await anna.send_contact("79991234567")  # own, without "+": normalised
    welcome = await anna.wait_message()
    member = await app.services.ledger.member_by_telegram(1001)  # type: ignore[union-attr]
    assert member is not None and member.phone == "+79991234567" and member.balance == 100
    card = format_card_number(member.card_number)
    assert welcome.text == count("registered", 100, "ru", program=rules.program_name, card=card)
    assert welcome.keyboard_texts == menu("ru")

    await anna.press_reply_button(t("menu-balance", "ru"))
    balance = (await anna.wait_message()).text or ""
    assert t("balance-usable", "ru", points=points(100, "ru")) in balance
    assert shape("balance-tier", "ru", tier=t("tier-base", "ru")).search(balance)
    amount = format_decimal(10_000, locale="ru")
    assert t("balance-next-tier", "ru", tier=t("tier-silver", "ru"), amount=amount) in balance
    assert shape("burn-phrase", "ru", n=100).search(balance)


async def test_every_i_agree_goes_once_the_person_agreed(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """The greeting, a second greeting and the reminder each carry [I agree]; agreeing on one
    takes the button off all of them (the greeting kept a live one)."""
    user = emulator.user(1011, "Ivan", language_code="en")
    await user.send_command("/start")
    greeting = await user.wait_message()
    await user.send_text("hello?")
    reminder = await user.wait_message()
    await user.send_command("/start")
    again = await user.wait_message()
    assert all(m.inline_buttons for m in (greeting, reminder, again))
    await user.press(reminder, reminder.inline_buttons[0].callback_data or "")
    share = await user.wait_message()
    assert share.keyboard[0][0].request_contact
    await user.wait_for(
        lambda: not any(m.inline_buttons for m in (greeting, reminder, again)),
        what="no [I agree] left",
    )


async def test_russian_plurals_read_correctly(emulator: BotAPIEmulator, app: Application) -> None:
    user = emulator.user(1002, "Вера", language_code="ru")
    await join(user, "+79990000002")
    member = await app.services.ledger.member_by_telegram(1002)  # type: ignore[union-attr]
    assert member is not None
    expected = {  # spelt out: the Russian forms are what this test is about
        1: "1 балл",
        2: "2 балла",
        5: "5 баллов",
        11: "11 баллов",
        21: "21 балл",
        22: "22 балла",
    }
    balance = 100
    for target, words in expected.items():
        await app.services.ledger.adjust(  # type: ignore[union-attr]
            member_id=member.member_id, points=target - balance, reason="test", actor="test"
        )
        balance = target
        await user.press_reply_button(t("menu-balance", "ru"))
        text = (await user.wait_message()).text or ""
        assert text.startswith(t("balance-usable", "ru", points=words) + "\n"), text


async def test_history_pages_through_25_entries(emulator: BotAPIEmulator, app: Application) -> None:
    user = emulator.user(1003, "Ivan", language_code="en")
    await join(user, "+79990000003")
    ledger = app.services.ledger  # type: ignore[union-attr]
    member = await ledger.member_by_telegram(1003)
    assert member is not None
    for i in range(24):
        await ledger.purchase(
            receipt_id=f"R-{i:02d}", member_id=member.member_id, amount_kopecks=(100 + i) * RUB
        )
    older, newer, dispute = t("history-next"), t("history-prev"), t("history-dispute")
    await user.press_reply_button(t("menu-history"))
    page = await user.wait_message()
    while (page.text or "").startswith("🧾"):  # the receipts, queued with the purchases
        page = await user.wait_message()
    lines = (page.text or "").splitlines()
    assert lines[0] == t("history-title", page=1, pages=3)
    assert len([line for line in lines if " · " in line]) == 10
    assert lines[2].endswith(f" · {t('kind-earn')} R-23")
    assert [b.text for b in page.inline_buttons] == [older, dispute]

    await user.press_button(page, older)
    await user.wait_edit(page)
    assert (page.text or "").startswith(t("history-title", page=2, pages=3))
    assert [b.text for b in page.inline_buttons] == [newer, older, dispute]
    await user.press_button(page, older)
    await user.wait_edit(page)
    third = (page.text or "").splitlines()
    assert third[0] == t("history-title", page=3, pages=3)
    assert third[-1].endswith(f" · {t('kind-welcome')}")
    assert len([line for line in third if " · " in line]) == 5
    assert older not in [b.text for b in page.inline_buttons]


async def test_member_disputes_an_entry_and_a_ticket_is_stored(
    emulator: BotAPIEmulator, app: Application
) -> None:
    user = emulator.user(1004, "Ivan", language_code="en")
    await join(user, "+79990000004")
    await user.press_reply_button(t("menu-history"))
    page = await user.wait_message()
    await user.press_button(page, t("history-dispute"))
    choose = await user.wait_message()
    assert choose.text == t("dispute-choose")
    assert choose.inline_buttons[0].text.endswith(t("kind-welcome"))
    await user.press(choose, choose.inline_buttons[0].callback_data or "")
    ask = await user.wait_message()
    assert shape("dispute-write").fullmatch(ask.text or "")
    await user.send_text("I expected 200 points")
    done = await user.wait_message()
    assert done.text == t("dispute-received", ticket=1)
    member = await app.services.ledger.member_by_telegram(1004)  # type: ignore[union-attr]
    tickets = await app.services.tickets.tickets_of(member.member_id)  # type: ignore[union-attr]
    assert [(t.kind, t.text) for t in tickets] == [("dispute", "I expected 200 points")]
    assert tickets[0].entry_id is not None


async def test_card_qr_decodes_to_a_deep_link_with_a_valid_token_and_is_reused(
    emulator: BotAPIEmulator, app: Application
) -> None:
    user = emulator.user(1005, "Anna", language_code="en")
    await join(user, "+79990000005")
    member = await app.services.ledger.member_by_telegram(1005)  # type: ignore[union-attr]
    assert member is not None
    await user.press_reply_button(t("menu-card"))
    card = await user.wait_message()
    assert card.photo is not None
    assert member.card_number[:4] in (card.caption or "")
    image = Image.open(io.BytesIO(card.photo))
    assert image.size == (1000, 600)
    decoded = zxingcpp.read_barcodes(image)
    assert len(decoded) == 1
    link = urlparse(decoded[0].text)
    assert (link.scheme, link.netloc, link.path) == ("https", "t.me", f"/{BOT_USERNAME}")
    payload = parse_qs(link.query)["start"][0]
    assert payload.startswith("c_") and len(payload) <= 64
    assert verify_card_token(payload[2:], SECRET) == member.card_number
    assert verify_card_token(payload[2:-1] + ("A" if payload[-1] != "A" else "B"), SECRET) is None

    # The bot stores the file_id right after Telegram answers sendPhoto; wait for that.
    for _ in range(100):
        async with app.engine.connect() as conn:  # type: ignore[union-attr]
            if (await conn.execute(select(card_images.c.file_id))).first() is not None:
                break
        await asyncio.sleep(0.02)
    await user.press_reply_button(t("menu-card"))
    again = await user.wait_message()
    assert again.file_id == card.file_id
    uploads = [c for c in emulator.calls_to("sendPhoto")]
    assert len(uploads) == 2 and uploads[1].params.get("photo") == card.file_id


async def test_switching_language_to_english(emulator: BotAPIEmulator, app: Application) -> None:
    user = emulator.user(1006, "Олег", language_code="ru")
    await join(user, "+79990000006")
    await user.press_reply_button(t("menu-settings", "ru"))
    settings = await user.wait_message()
    russian = t("language-name", "ru")
    await user.press_button(settings, t("settings-language", "ru", language=russian))
    await user.wait_edit(settings)
    await user.press_button(settings, t("language-name", "en"))
    changed = await user.wait_message()
    assert changed.text == t("language-changed", "en")
    assert changed.keyboard_texts == menu("en")
    await user.wait_message()  # the settings menu again, in English
    await user.press_reply_button(t("menu-balance", "en"))
    balance = await user.wait_message()
    assert (balance.text or "").startswith(t("balance-usable", "en", points=points(100)))


async def test_deleting_my_data_removes_me_from_lookups_and_keeps_the_ledger_consistent(
    emulator: BotAPIEmulator, app: Application, rules: Rules
) -> None:
    user = emulator.user(1007, "Ivan", language_code="en")
    await join(user, "+79990000007")
    ledger = app.services.ledger  # type: ignore[union-attr]
    member = await ledger.member_by_telegram(1007)
    assert member is not None
    await ledger.purchase(receipt_id="R-1", member_id=member.member_id, amount_kopecks=900 * RUB)
    receipt = await user.wait_message()  # queued with the purchase, sent on its own time
    assert (receipt.text or "").splitlines()[0] == t(
        "receipt-purchase", receipt="R-1", amount=roubles(900 * RUB)
    )
    await user.press_reply_button(t("menu-settings"))
    settings = await user.wait_message()
    await user.press_button(settings, t("settings-delete"))
    confirm = await user.wait_message()
    assert confirm.text == t("delete-confirm")
    await user.press_button(confirm, t("delete-yes"))
    done = await user.wait_message()
    assert done.text == t("delete-done") and done.removes_keyboard
    assert await ledger.member_by_telegram(1007) is None
    erased = await ledger.get_member(member.member_id)
    assert (erased.phone, erased.first_name, erased.status) == (None, None, "erased")
    assert await check_ledger(ledger.engine) == []
    await user.send_text("hello?")
    assert (await user.wait_message()).text == t("fallback-guest")
    # Joining again with the same number: a new card, and no second joining bonus, said so
    # (it read "0 points are already on your account").
    await join(user, "+79990000007")
    again = user.messages[-1].text or ""
    assert shape("registered-no-welcome", program=rules.program_name).fullmatch(again)
    assert points(0) not in again


async def test_friend_joins_by_invite_link_and_inviter_earns_after_first_purchase(
    emulator: BotAPIEmulator, app: Application
) -> None:
    inviter = emulator.user(1008, "Ivan", language_code="en")
    await join(inviter, "+79990000008")
    await inviter.press_reply_button(t("menu-invite"))
    invite = await inviter.wait_message()
    link = next(word for word in (invite.text or "").split() if word.startswith("https://t.me/"))
    payload = parse_qs(urlparse(link).query)["start"][0]
    assert payload.startswith("ref_")

    stranger = emulator.user(1011, "Olga", language_code="en")
    await stranger.send_command("/start ref_doesnotexist")  # a broken link: a plain welcome
    plain = (await stranger.wait_message()).text or ""
    assert shape("start-greeting", name="Olga").fullmatch(plain)
    assert t("start-invited") not in plain

    friend = emulator.user(1009, "Petr", language_code="en")
    await friend.send_command(f"/start {payload}")
    greeting = await friend.wait_message()
    assert t("start-invited") in (greeting.text or "")
    await friend.press_button(greeting, t("consent-button"))
    await friend.wait_message()
    await friend.send_contact("+79990000009")
    await friend.wait_message()
    ledger = app.services.ledger  # type: ignore[union-attr]
    friend_member = await ledger.member_by_telegram(1009)
    inviter_member = await ledger.member_by_telegram(1008)
    assert friend_member is not None and inviter_member is not None
    assert friend_member.referred_by == inviter_member.member_id
    result = await ledger.purchase(
        receipt_id="R-1", member_id=friend_member.member_id, amount_kopecks=500 * RUB
    )
    assert (await ledger.balance(inviter_member.member_id)).balance == 300
    assert result.rewarded_inviter == inviter_member.member_id
    # The reward's notice was written with the purchase: nothing else queues it.
    assert (await inviter.wait_message()).text == count(
        "referral-rewarded", 200, balance=points(300)
    )
    second = await ledger.purchase(
        receipt_id="R-2", member_id=friend_member.member_id, amount_kopecks=500 * RUB
    )
    assert second.rewarded_inviter is None  # once


async def test_settings_birthday_once_and_notification_toggles(
    emulator: BotAPIEmulator, app: Application
) -> None:
    user = emulator.user(1010, "Ivan", language_code="en")
    await join(user, "+79990000010")
    await user.press_reply_button(t("menu-settings"))
    settings = await user.wait_message()
    not_set = t("settings-birthday", value=t("birthday-not-set"))
    await user.press_button(settings, not_set)
    await user.wait_message()
    await user.send_text("31.02.1990")
    assert (await user.wait_message()).text == t("birthday-invalid")
    await user.send_text("25.04.1990")
    assert (await user.wait_message()).text == t("birthday-saved", date="25.04.1990")
    await user.press_button(settings, not_set)  # the old keyboard
    assert (await user.wait_message()).text == t("birthday-already", date="25.04.1990")

    await user.press_button(settings, t("settings-notifications"))
    await user.wait_edit(settings)
    await user.press_button(settings, "✅ " + t("notify-offers"))
    await user.wait_edit(settings)
    assert "❌ " + t("notify-offers") in [b.text for b in settings.inline_buttons]
    member = await app.services.ledger.member_by_telegram(1010)  # type: ignore[union-attr]
    assert member is not None and member.notify_offers is False and member.notify_tier is True


async def test_a_birthday_is_taken_as_iso_or_without_the_year_and_the_prompt_says_so(
    emulator: BotAPIEmulator, app: Application
) -> None:
    ledger = app.services.ledger  # type: ignore[union-attr]
    for user_id, language, typed, saved in (
        (1012, "en", "1990-05-14", "14.05.1990"),
        (1013, "ru", "14.05", "14.05"),
        (1014, "en", "29.02", "29.02"),
    ):
        user = emulator.user(user_id, "Ivan", language_code=language)
        await join(user, f"+7999000{user_id:04d}")
        await user.press_reply_button(t("menu-settings", language))
        settings = await user.wait_message()
        label = t("settings-birthday", language, value=t("birthday-not-set", language))
        await user.press_button(settings, label)
        prompt = (await user.wait_message()).text or ""
        assert shape("birthday-ask", language).fullmatch(prompt), prompt
        assert "25.04.1990" in prompt and "1990-04-25" in prompt and "25.04" in prompt, prompt
        await user.send_text("14 May")
        refusal = (await user.wait_message()).text or ""
        assert refusal == t("birthday-invalid", language)
        assert "1990-04-25" in refusal and "25.04" in refusal, refusal
        await user.send_text(typed)
        answer = (await user.wait_message()).text or ""
        assert answer == t("birthday-saved", language, date=saved)
        member = await ledger.member_by_telegram(user_id)
        assert member is not None and member.birthday is not None
        assert (member.birthday.day, member.birthday.month) == tuple(
            int(part) for part in saved.split(".")[:2]
        )
        await user.press_button(settings, label)  # the old keyboard: already set, as saved
        assert (await user.wait_message()).text == t("birthday-already", language, date=saved)


async def test_support_message_becomes_a_ticket(emulator: BotAPIEmulator, app: Application) -> None:
    user = emulator.user(1011, "Ivan", language_code="en")
    await join(user, "+79990000011")
    await user.press_reply_button(t("menu-support"))
    assert (await user.wait_message()).text == t("support-ask")
    await user.send_text("x" * 2500)
    assert (await user.wait_message()).text == count("support-too-long", MAX_TICKET_TEXT)
    await user.send_text("Where is my birthday bonus?")
    assert (await user.wait_message()).text == t("support-received", ticket=1)


async def test_a_menu_button_pressed_while_the_bot_waits_for_an_answer_opens_its_screen(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """The menu's router comes before the screens that take free text (settings, requests):
    the button is not taken as the birthday or as a question to support."""
    user = emulator.user(1015, "Ivan", language_code="en")
    await join(user, "+79990000015")
    await user.press_reply_button(t("menu-settings"))
    settings = await user.wait_message()
    await user.press_button(settings, t("settings-birthday", value=t("birthday-not-set")))
    assert shape("birthday-ask").fullmatch((await user.wait_message()).text or "")
    await user.press_reply_button(t("menu-support"))  # while the birthday is asked for
    assert (await user.wait_message()).text == t("support-ask")
    await user.press_reply_button(t("menu-settings"))  # while a question is awaited
    assert (await user.wait_message()).text == t("settings-title")
    tickets = app.services.tickets  # type: ignore[union-attr]
    assert await tickets.open_tickets() == ([], 0)


async def test_commands_menu_is_set_per_language(
    emulator: BotAPIEmulator, app: Application
) -> None:
    ru = emulator.commands(language_code="ru")
    en = emulator.commands(language_code="en")
    assert [c["command"] for c in ru] == [c["command"] for c in en]
    assert {"start", "card", "balance", "history"} <= {c["command"] for c in en}
    assert next(c for c in ru if c["command"] == "card")["description"] == t("cmd-card", "ru")
    assert next(c for c in en if c["command"] == "card")["description"] == t("cmd-card", "en")


async def test_a_new_account_with_the_same_phone_takes_the_card_and_the_old_one_is_told(
    emulator: BotAPIEmulator, app: Application
) -> None:
    old = emulator.user(1021, "Ivan", language_code="en")
    await join(old, "+79990000021")
    new = emulator.user(1022, "Ivan", language_code="en")  # the same person, a new account
    await join(new, "+79990000021")
    assert shape("registered-linked").fullmatch(new.messages[-1].text or "")
    told = await old.wait_message()
    assert shape("account-moved").fullmatch(told.text or "")
    ledger = app.services.ledger  # type: ignore[union-attr]
    assert await ledger.member_by_telegram(1021) is None
    assert await ledger.member_by_telegram(1022) is not None


async def test_a_program_without_a_joining_bonus_promises_none(
    emulator: BotAPIEmulator, database_url: str, clock: ManualClock, tmp_path: Path, rules: Rules
) -> None:
    """welcome_bonus = 0: the greeting listed "0 points for joining" and the welcome said the
    number had had its bonus before."""
    rules_file = tmp_path / "rules.toml"
    text = (ROOT / "rules.toml").read_text(encoding="utf-8")
    rules_file.write_text(text.replace("welcome_bonus = 100", "welcome_bonus = 0", 1))
    settings = make_settings(emulator, database_url, tmp_path).model_copy(
        update={"rules_file": rules_file}
    )
    application = Application(settings, clock=clock)
    await application.start()
    try:
        user = emulator.user(1031, "Ivan", language_code="en")
        await user.send_command("/start")
        greeting = (await user.wait_message()).text or ""
        assert shape("start-greeting", name="Ivan", welcome="").fullmatch(greeting), greeting
        await join(user, "+79990000031")
        welcome = user.messages[-1].text or ""
        assert shape("registered-plain", program=rules.program_name).fullmatch(welcome), welcome
    finally:
        await application.stop()
