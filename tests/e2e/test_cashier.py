"""Staff roles and cashier mode end to end: QR link -> purchase -> redemption -> receipt.

What the bot says is expected by key (tests/texts.py), so a change of wording breaks no test."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.run import Application
from cards.token import sign_card_token
from emulator import BotAPIEmulator, EmulatedUser
from handlers.keyboards import SaleCb
from ledger.clock import ManualClock
from ledger.invariants import check_ledger
from staff.audit import AuditLog
from tests.e2e.conftest import ADMIN_ID, SECRET, join, make_settings
from tests.texts import count, points, roubles, shape, t

RUB = 100
RECORD = t("cashier-record")
CONFIRM = t("cashier-confirm-button")
YES = t("confirm-yes")
NO = t("confirm-no")


async def _make_cashier(
    emulator: BotAPIEmulator, app: Application, user_id: int, username: str
) -> EmulatedUser:
    cashier = emulator.user(user_id, "Kate", username=username, language_code="en")
    await join(cashier, f"+7999000{user_id:04d}")  # a member too, so @username is known
    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")
    await admin.send_command(f"/staff add @{username} cashier")
    granted = shape("staff-granted", role=t("role-cashier"))
    assert granted.fullmatch((await admin.wait_message()).text or "")
    assert (await cashier.wait_message()).text == t(
        "staff-you-were-granted", role=t("role-cashier")
    )
    return cashier


async def _customer_with_points(
    emulator: BotAPIEmulator, app: Application, telegram_id: int, name: str, extra: int
) -> tuple[EmulatedUser, int]:
    """A member who joined (100 welcome points) and got `extra` more; their member id."""
    customer = emulator.user(telegram_id, name, language_code="en")
    await join(customer, f"+7999000{telegram_id:04d}")
    ledger = app.services.ledger  # type: ignore[union-attr]
    member = await ledger.member_by_telegram(telegram_id)
    assert member is not None
    await ledger.adjust(member_id=member.member_id, points=extra, reason="test", actor="test")
    return customer, member.member_id


async def _qr_start(app: Application, telegram_id: int) -> str:
    member = await app.services.ledger.member_by_telegram(telegram_id)  # type: ignore[union-attr]
    assert member is not None
    return f"/start c_{sign_card_token(member.card_number, SECRET)}"


async def test_admin_grants_lists_and_removes_roles(
    emulator: BotAPIEmulator, app: Application
) -> None:
    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")
    await admin.send_command("/staff add 4242 support")
    support = t("role-support")
    assert (await admin.wait_message()).text == t("staff-granted", who="4242", role=support)
    await admin.send_command("/staff add 4242 support")
    assert (await admin.wait_message()).text == t("staff-already", who="4242", role=support)
    await admin.send_command("/staff add @nobody_known cashier")
    unknown = (await admin.wait_message()).text or ""
    assert unknown == t("staff-unknown-user", who="@nobody_known")
    stranger = emulator.user(4243, "Nobody", language_code="en")
    await stranger.send_command("/id")  # what the admin asks a would-be cashier for
    assert (await stranger.wait_message()).text == t("your-id", id=4243)
    await admin.send_command("/staff add 4242 janitor")
    assert shape("staff-unknown-role", role="janitor").fullmatch(
        (await admin.wait_message()).text or ""
    )
    # What is typed comes back short: a 4,000-character argument made the answer too long
    # for Telegram, and the admin got "something went wrong".
    await admin.send_command("/staff add " + "9" * 4000 + " cashier")
    assert len((await admin.wait_message()).text or "") < 200
    await admin.send_command("/staff add 4242 " + "x" * 4000)
    assert len((await admin.wait_message()).text or "") < 300
    await admin.send_command("/staff add 4242 cashier")
    await admin.wait_message()
    await admin.send_command("/staff list")
    listing = ((await admin.wait_message()).text or "").splitlines()
    both = f"{t('role-cashier')}, {support}"
    assert t("staff-list-line", who="4242", role=both) in listing  # one line a person
    admin_role = f"{t('role-admin')} {t('staff-from-env')}"
    boss = t("staff-list-line", who=f"Boss ({ADMIN_ID})", role=admin_role)
    assert boss in listing  # by name, as seen
    await admin.send_command("/staff remove 4242 cashier")
    await admin.wait_message()
    await admin.send_command(f"/staff remove {ADMIN_ID} admin")
    assert shape("staff-cannot-remove-env-admin").fullmatch((await admin.wait_message()).text or "")

    # Staff see their commands in their chat's menu, from the start (admins from ADMIN_IDS)
    # or from when they are granted a role; without roles, the members' menu again.
    def menu(chat_id: int) -> list[str]:
        scope = {"type": "chat", "chat_id": chat_id}
        return [c["command"] for c in emulator.commands(language_code="en", scope=scope)]

    assert {"sale", "tickets", "member", "staff"} <= set(menu(ADMIN_ID))
    assert {"tickets", "member"} <= set(menu(4242)) and "staff" not in menu(4242)
    await admin.send_command("/staff remove 4242 support")
    assert (await admin.wait_message()).text == t("staff-revoked", who="4242", role=support)
    assert menu(4242) == []
    actions = [(r.action, r.actor, r.target) for r in await AuditLog(app.engine).recent()]  # type: ignore[arg-type]
    assert ("staff.grant", f"tg:{ADMIN_ID}", "tg:4242") in actions
    assert ("staff.revoke", f"tg:{ADMIN_ID}", "tg:4242") in actions


async def test_non_admin_cannot_manage_staff(emulator: BotAPIEmulator, app: Application) -> None:
    user = emulator.user(4300, "Ivan", language_code="en")
    await join(user, "+79990004300")
    await user.send_command("/staff add 4300 admin")
    assert (await user.wait_message()).text == t("unknown-command")
    assert await app.services.staff.roles_of(4300) == frozenset()  # type: ignore[union-attr]


async def test_cashier_scans_qr_records_purchase_with_redemption_and_member_gets_receipt(
    emulator: BotAPIEmulator, app: Application
) -> None:
    customer = emulator.user(4001, "Anna", language_code="en")
    await join(customer, "+79991234567")
    cashier = await _make_cashier(emulator, app, 4100, "kate_till")

    await cashier.send_command(await _qr_start(app, 4001))
    panel = await cashier.wait_message()
    assert panel.text == t(
        "cashier-member",
        name="Anna",
        phone="+7 *** ***-45-67",
        tier=t("tier-base"),
        balance=points(100),
    )
    await cashier.press_button(panel, RECORD)
    assert (await cashier.wait_message()).text == t("cashier-ask-amount")
    await cashier.send_text("abc")
    refusal = t("cashier-bad-amount", why=t("amount-not-number"))
    assert (await cashier.wait_message()).text == refusal
    await cashier.send_text("1000")
    offer = await cashier.wait_message()
    assert offer.text == count("cashier-redeem-offer", 100, amount=roubles(1000 * RUB))
    await cashier.press_button(offer, t("cashier-redeem-max", points=points(100)))
    confirm = await cashier.wait_message()
    assert confirm.text == t(
        "cashier-confirm", amount=roubles(1000 * RUB), redeem=points(100), earn=points(18)
    )
    confirm_data = confirm.button(CONFIRM).callback_data or ""
    await cashier.press(confirm, confirm_data)
    done = await cashier.wait_message()
    assert done.text == t("cashier-done", earn=points(18), redeem=points(100), balance=points(18))
    again = await cashier.press(confirm, confirm_data)  # a double tap records nothing more
    assert (await again.wait_answer()).text == t("button-stale")

    receipt = await customer.wait_message()
    lines = (receipt.text or "").splitlines()
    # No number: the sale's internal id means nothing to the customer (and no Telegram id).
    assert lines[0] == t("receipt-purchase-in-bot", amount=roubles(1000 * RUB))
    assert "B-" not in (receipt.text or "") and "4100" not in (receipt.text or "")
    assert lines[1:4] == [
        t("receipt-redeemed", points=points(100)),
        t("receipt-earned", points=points(18)),
        t("receipt-balance", points=points(18)),
    ]
    ledger = app.services.ledger  # type: ignore[union-attr]
    member = await ledger.member_by_telegram(4001)
    assert member is not None and member.balance == 18
    assert await check_ledger(ledger.engine) == []
    audit = [(r.action, r.actor) for r in await AuditLog(app.engine).recent()]  # type: ignore[arg-type]
    assert ("cashier.purchase", "tg:4100") in audit


async def test_cashier_finds_a_member_by_phone_and_sells_without_points(
    emulator: BotAPIEmulator, app: Application
) -> None:
    customer = emulator.user(4002, "Boris", language_code="ru")
    await join(customer, "+79997654321")
    cashier = await _make_cashier(emulator, app, 4101, "till_two")
    await cashier.send_command("/sale")
    await cashier.wait_message()
    await cashier.send_text("+7 000 000-00-00")
    assert (await cashier.wait_message()).text == t("cashier-not-found")
    await cashier.send_text("8 999 765-43-21")
    panel = await cashier.wait_message()
    assert shape("cashier-member", name="Boris").fullmatch(panel.text or "")
    await cashier.press_button(panel, RECORD)
    await cashier.wait_message()
    await cashier.send_text("500")
    offer = await cashier.wait_message()
    await cashier.press_button(offer, t("cashier-redeem-none"))
    confirm = await cashier.wait_message()
    await cashier.press_button(confirm, CONFIRM)
    done = (await cashier.wait_message()).text
    assert done == t("cashier-done-no-points", earn=points(10), balance=points(110))
    receipt = await customer.wait_message()
    # In the member's own language.
    assert t("receipt-earned", "ru", points=points(10, "ru")) in (receipt.text or "").splitlines()


async def test_someone_without_the_role_opening_a_card_link_learns_nothing(
    emulator: BotAPIEmulator, app: Application
) -> None:
    customer = emulator.user(4003, "Secret", language_code="en")
    await join(customer, "+79990004003")
    link = await _qr_start(app, 4003)
    stranger = emulator.user(4004, "Nosy", language_code="en")
    await stranger.send_command(link)
    greeting = await stranger.wait_message()
    assert "Secret" not in (greeting.text or "") and "+7" not in (greeting.text or "")
    assert shape("start-greeting", name="Nosy").fullmatch(greeting.text or "")
    member_stranger = emulator.user(4005, "Member", language_code="en")
    await join(member_stranger, "+79990004005")
    await member_stranger.send_command(link)
    text = (await member_stranger.wait_message()).text or ""
    assert text == t("welcome-back", name="Member")


async def test_large_redemption_is_confirmed_by_the_member_first(
    emulator: BotAPIEmulator, app: Application
) -> None:
    customer, member_id = await _customer_with_points(emulator, app, 4006, "Rich", 1900)
    ledger = app.services.ledger  # type: ignore[union-attr]
    cashier = await _make_cashier(emulator, app, 4102, "till_three")

    async def sell(amount: str) -> None:
        await cashier.send_command(await _qr_start(app, 4006))
        panel = await cashier.wait_message()
        await cashier.press_button(panel, RECORD)
        await cashier.wait_message()
        await cashier.send_text(amount)
        offer = await cashier.wait_message()
        await cashier.press(offer, offer.inline_buttons[0].callback_data or "")
        confirm = await cashier.wait_message()
        await cashier.press_button(confirm, CONFIRM)
        waiting = await cashier.wait_edit(confirm)
        assert shape("cashier-waiting", n=1500 if amount == "5000" else 1800).fullmatch(
            waiting.text or ""
        )

    # Refused by the member: nothing recorded.
    await sell("5000")
    ask = await customer.wait_message()
    assert ask.text == t("confirm-redeem", points=points(1500), amount=roubles(5000 * RUB))
    yes = ask.button(YES).callback_data or ""
    await customer.press_button(ask, NO)
    assert (await cashier.wait_message()).text == t("cashier-declined")
    # "Yes" right after "No" (a tap that was on its way) does not turn it round; it used to
    # answer "expired".
    answer = await (await customer.press(ask, yes)).wait_answer()
    assert answer.text == t("confirm-already")
    assert (await ledger.balance(member_id)).balance == 2000

    # Not answered in time: nothing recorded, the cashier is told, a late "yes" does nothing.
    await sell("5000")
    late = await customer.wait_message()
    app.clock.advance(timedelta(seconds=3))  # past the 2 s limit (the scheduler's clock)
    assert (await cashier.wait_message(timeout=6)).text == t("cashier-timeout")
    answer = await (await customer.press_button(late, YES)).wait_answer()
    assert answer.text == t("confirm-expired")
    assert (await ledger.balance(member_id)).balance == 2000

    # Withdrawn by the cashier while waiting: the member's "yes" afterwards records nothing.
    await sell("5000")
    withdrawn = await customer.wait_message()
    waiting = cashier.messages[-1]
    await cashier.press_button(waiting, t("cashier-cancel-button"))
    assert (await cashier.wait_edit(waiting)).text == t("cashier-withdrawn")
    answer = await (await customer.press_button(withdrawn, YES)).wait_answer()
    assert answer.text == t("confirm-withdrawn")
    assert (await ledger.balance(member_id)).balance == 2000

    # Confirmed: recorded once, both told.
    await sell("6000")
    ask = await customer.wait_message()
    yes = ask.button(YES).callback_data or ""
    # A quick double tap: the cashier hears once (it was an error in the log before). The
    # updates are handled concurrently, so either tap may be the one that counts.
    taps = [await customer.press(ask, yes), await customer.press(ask, yes)]
    answers = sorted([str((await tap.wait_answer()).text) for tap in taps])
    assert answers == sorted(["None", t("confirm-already")])
    done = await cashier.wait_message()
    assert done.text == t(
        "cashier-done", earn=points(84), redeem=points(1800), balance=points(200 + 84)
    )
    await cashier.assert_no_messages(within=0.5)
    receipt = await customer.wait_message()
    assert t("receipt-redeemed", points=points(1800)) in (receipt.text or "").splitlines()
    assert (await ledger.balance(member_id)).balance == 200 + 84
    assert await check_ledger(ledger.engine) == []


async def test_a_cashier_can_leave_a_sale_with_cancel_a_command_or_a_menu_button(
    emulator: BotAPIEmulator, app: Application
) -> None:
    customer = emulator.user(4007, "Lena", language_code="en")
    await join(customer, "+79990004007")
    cashier = await _make_cashier(emulator, app, 4103, "till_four")
    await cashier.send_command("/sale")
    await cashier.wait_message()
    await cashier.send_command("/cancel")
    assert (await cashier.wait_message()).text == t("cashier-cancelled")
    await cashier.send_text("+7 999 000-40-07")  # no sale open: not read as a lookup
    assert "Lena" not in ((await cashier.wait_message()).text or "")

    await cashier.send_command("/sale +7 999 000-40-07")
    panel = await cashier.wait_message()
    await cashier.press_button(panel, RECORD)
    await cashier.wait_message()
    await cashier.send_text(t("menu-balance"))  # the cashier's own menu works mid-sale
    balance = (await cashier.wait_message()).text or ""
    assert balance.startswith(t("balance-usable", points=points(100)))
    await cashier.send_text("1500")  # and the sale is over: no amount is taken
    after = (await cashier.wait_message()).text or ""
    assert not _sale_screen(after, 100), after

    await cashier.send_command("/sale")
    await cashier.wait_message()
    await cashier.send_command("/help")  # other commands work and close the sale
    assert "/sale" in ((await cashier.wait_message()).text or "")
    ledger = app.services.ledger  # type: ignore[union-attr]
    member = await ledger.member_by_telegram(4007)
    assert member is not None and member.balance == 100


async def test_the_cashier_types_how_many_points_to_pay_with(
    emulator: BotAPIEmulator, app: Application
) -> None:
    _, member_id = await _customer_with_points(emulator, app, 4008, "Olga", 900)
    ledger = app.services.ledger  # type: ignore[union-attr]
    cashier = await _make_cashier(emulator, app, 4104, "till_five")
    await cashier.send_command(await _qr_start(app, 4008))
    await cashier.press_button(await cashier.wait_message(), RECORD)
    await cashier.wait_message()
    await cashier.send_text("2000")
    offer = await cashier.wait_message()
    assert offer.text == count("cashier-redeem-offer", 600, amount=roubles(2000 * RUB))
    await cashier.press_button(offer, t("cashier-redeem-other"))
    assert (await cashier.wait_message()).text == t("cashier-ask-points", most="600")
    for wrong in ("601", "-5", "ten", "²", "1" * 5000):  # "²" was an error message
        await cashier.send_text(wrong)
        assert (await cashier.wait_message()).text == t("cashier-bad-points", most="600"), wrong
    await cashier.send_text("250")
    confirm = await cashier.wait_message()
    assert confirm.text == t(
        "cashier-confirm", amount=roubles(2000 * RUB), redeem=points(250), earn=points(35)
    )
    await cashier.press_button(confirm, CONFIRM)
    done = (await cashier.wait_message()).text or ""
    assert done == t("cashier-done", earn=points(35), redeem=points(250), balance=points(785))
    assert (await ledger.balance(member_id)).balance == 1000 - 250 + 35  # 1,750 ₽ / 50
    assert await check_ledger(ledger.engine) == []


async def test_amounts_are_read_and_refused_in_the_cashiers_language(
    emulator: BotAPIEmulator, app: Application
) -> None:
    customer = emulator.user(4009, "Петр", language_code="ru")
    await join(customer, "+79990004009")
    cashier = emulator.user(4105, "Катя", username="kassa_ru", language_code="ru")
    await join(cashier, "+79990004105")
    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")
    await admin.send_command("/staff add @kassa_ru cashier")
    await admin.wait_message()
    await cashier.wait_message()
    await cashier.send_command("/sale 8 999 000-40-09")
    await cashier.press_button(await cashier.wait_message(), t("cashier-record", "ru"))
    await cashier.wait_message()
    refusals = {
        "-500": "amount-not-positive",
        "0": "amount-not-positive",
        "1500,555": "amount-decimals",
        "1e5": "amount-not-number",
        "999999999999": "amount-too-large",
    }
    for typed, why in refusals.items():
        await cashier.send_text(typed)
        text = (await cashier.wait_message()).text or ""
        assert text == t("cashier-bad-amount", "ru", why=t(why, "ru")), (typed, text)
    await cashier.send_text("1 500,50")  # as amounts are typed in Russian
    offer = (await cashier.wait_message()).text or ""
    assert offer == count("cashier-redeem-offer", 100, "ru", amount=roubles(150050, "ru"))
    assert "1 500,50" in offer.replace("\u00a0", " ").replace("\u202f", " ")


async def test_staff_ids_must_be_telegram_ids_and_staff_who_are_not_members_get_help(
    emulator: BotAPIEmulator, app: Application
) -> None:
    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")
    for bad in ("-5", "0", "99999999999999999999999"):
        await admin.send_command(f"/staff add {bad} cashier")
        assert (await admin.wait_message()).text == t("staff-bad-id", who=bad)
    await admin.send_command("/staff")
    usage = (await admin.wait_message()).text or ""
    assert shape("staff-usage").fullmatch(usage)
    assert "admin (admin)" not in usage and "cashier" in usage
    await admin.send_command("/help")  # the admin from ADMIN_IDS has not joined as a member
    help_text = (await admin.wait_message()).text or ""
    assert "/sale" in help_text and "/staff" in help_text and "/start" in help_text
    assert await app.services.staff.roles_of(0) == frozenset()  # type: ignore[union-attr]


async def test_a_cashier_who_is_not_a_member_hears_the_outcome_in_their_own_language(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """The member's answer reaches the cashier in another chat: it used to come in the
    default language (English) to a cashier whose Telegram speaks Russian."""
    customer, member_id = await _customer_with_points(emulator, app, 4007, "Rich", 1900)
    cashier = emulator.user(4103, "Катя", language_code="ru")  # staff only, not a member
    admin = emulator.user(ADMIN_ID, "Boss", language_code="ru")
    await admin.send_command("/staff add 4103 cashier")
    await admin.wait_message()
    await cashier.wait_message()  # "you now have the role"
    recorded = t(
        "cashier-done",
        "ru",
        earn=points(70, "ru"),
        redeem=points(1500, "ru"),
        balance=points(500 + 70, "ru"),
    )
    for answer, expected in ((NO, t("cashier-declined", "ru")), (YES, recorded)):
        await cashier.send_command(await _qr_start(app, 4007))
        panel = await cashier.wait_message()
        await cashier.press(panel, panel.inline_buttons[0].callback_data or "")
        await cashier.wait_message()
        await cashier.send_text("5000")
        offer = await cashier.wait_message()
        await cashier.press(offer, offer.inline_buttons[0].callback_data or "")
        confirm = await cashier.wait_message()
        await cashier.press(confirm, confirm.inline_buttons[0].callback_data or "")
        await cashier.wait_edit(confirm)
        await customer.press_button(await customer.wait_message(), answer)
        told = await cashier.wait_message()
        assert told.text == expected
    receipt = await customer.wait_message()
    assert t("receipt-redeemed", points=points(1500)) in (receipt.text or "").splitlines()
    assert (await app.services.ledger.balance(member_id)).balance == 500 + 70  # type: ignore[union-attr]


async def test_a_card_that_cannot_be_used_leaves_the_cashier_asking_for_a_number(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """A damaged QR, or the card of someone who deleted their data: the cashier is asked for
    the card number or phone, and what they type next is read as one."""
    await _customer_with_points(emulator, app, 4008, "Ann", 1)
    cashier = await _make_cashier(emulator, app, 4104, "till_five")
    member = await app.services.ledger.member_by_telegram(4008)  # type: ignore[union-attr]
    assert member is not None
    ann = shape("cashier-member", name="Ann")
    await cashier.send_command("/start c_" + "A" * 40)
    assert (await cashier.wait_message()).text == t("cashier-bad-card")
    await cashier.send_text(member.card_number)
    assert ann.fullmatch((await cashier.wait_message()).text or "")
    # The card of someone who deleted their data: the same.
    _, gone_id = await _customer_with_points(emulator, app, 4009, "Gone", 1)
    link = await _qr_start(app, 4009)
    await app.services.ledger.erase_member(gone_id)  # type: ignore[union-attr]
    await cashier.send_command(link)
    assert (await cashier.wait_message()).text == t("cashier-not-found")
    await cashier.send_text(member.card_number)
    assert ann.fullmatch((await cashier.wait_message()).text or "")


async def test_a_cashier_cannot_sell_to_their_own_card(
    emulator: BotAPIEmulator, app: Application
) -> None:
    cashier = await _make_cashier(emulator, app, 4105, "till_six")  # a member too
    await cashier.send_command(await _qr_start(app, 4105))
    assert (await cashier.wait_message()).text == t("cashier-own-card")


# ------------------------------------------------------- forged and stale sale buttons

STALE = t("button-stale")


def _sale_screen(text: str, allowed: int) -> bool:
    """Whether `text` is a sale's offer to pay up to `allowed` points, or its confirmation."""
    offer = shape("cashier-redeem-offer", n=allowed) if allowed else None
    return bool((offer and offer.fullmatch(text)) or shape("cashier-confirm").fullmatch(text))


def _forged(data: str, **fields: object) -> str:
    """A sale button's callback data with some fields changed, as a forger would send it."""
    return SaleCb.unpack(data).model_copy(update=fields).pack()


async def _offer(cashier: EmulatedUser, app: Application, telegram_id: int, amount: str) -> Any:
    """The cashier opens the customer's QR link, records a purchase of `amount`: the offer to
    pay with points (or the confirmation, when there are no points to pay with)."""
    await cashier.send_command(await _qr_start(app, telegram_id))
    panel = await cashier.wait_message()
    await cashier.press_button(panel, RECORD)
    await cashier.wait_message()
    await cashier.send_text(amount)
    return await cashier.wait_message()


async def test_cashier_cannot_record_a_sale_on_own_card_with_a_forged_button(
    emulator: BotAPIEmulator, app: Application
) -> None:
    cashier = await _make_cashier(emulator, app, 4110, "till_own")  # a member too
    ledger = app.services.ledger  # type: ignore[union-attr]
    own = await ledger.member_by_telegram(4110)
    assert own is not None
    await ledger.adjust(member_id=own.member_id, points=900, reason="test", actor="test")
    _, customer_id = await _customer_with_points(emulator, app, 4011, "Vera", 1)
    await cashier.send_command("/sale +7 999 000-40-11")
    panel = await cashier.wait_message()
    record = panel.button(RECORD).callback_data or ""
    # The customer's panel, with the cashier's own member id in the button's data.
    forged = await cashier.press(panel, _forged(record, member_id=own.member_id))
    assert (await forged.wait_answer()).text == STALE
    await cashier.assert_no_messages(within=0.5)
    await cashier.send_text("1000")  # no sale is open: not read as an amount
    after = (await cashier.wait_message()).text or ""
    assert not _sale_screen(after, 300) and not _sale_screen(after, 101), after
    # A sale opened for the customer cannot be turned onto the cashier's card either.
    offer = await _offer(cashier, app, 4011, "1000")
    for button in offer.inline_buttons:
        data = _forged(button.callback_data or "", member_id=own.member_id)
        assert (await (await cashier.press(offer, data)).wait_answer()).text == STALE
    await cashier.assert_no_messages(within=0.5)
    assert (await ledger.balance(own.member_id)).balance == 1000
    assert (await ledger.history(own.member_id)).total == 2  # the welcome bonus, the test's
    assert (await ledger.balance(customer_id)).balance == 101


async def test_a_sale_button_works_only_for_the_customer_the_cashier_opened(
    emulator: BotAPIEmulator, app: Application
) -> None:
    cashier = await _make_cashier(emulator, app, 4111, "till_other")
    _, first_id = await _customer_with_points(emulator, app, 4012, "Ira", 1)
    _, second_id = await _customer_with_points(emulator, app, 4013, "Yana", 900)
    await cashier.send_command("/sale +7 999 000-40-12")
    panel = await cashier.wait_message()
    record = panel.button(RECORD).callback_data or ""
    # Another member's id on the panel shown for the first: nobody's sale was opened for them.
    forged = await cashier.press(panel, _forged(record, member_id=second_id))
    assert (await forged.wait_answer()).text == STALE
    await cashier.assert_no_messages(within=0.5)
    ledger = app.services.ledger  # type: ignore[union-attr]
    assert (await ledger.balance(first_id)).balance == 101
    assert (await ledger.balance(second_id)).balance == 1000


async def test_forged_points_on_a_sale_button_are_refused(
    emulator: BotAPIEmulator, app: Application
) -> None:
    customer, member_id = await _customer_with_points(emulator, app, 4014, "Zoya", 1900)
    cashier = await _make_cashier(emulator, app, 4112, "till_points")
    offer = await _offer(cashier, app, 4014, "5000")
    assert offer.text == count("cashier-redeem-offer", 1500, amount=roubles(5000 * RUB))
    none = offer.button(t("cashier-redeem-none")).callback_data or ""
    for forged in (-500, 1501, 99_999_999_999):
        handle = await cashier.press(offer, _forged(none, points=forged))
        assert (await handle.wait_answer()).text == STALE, forged
    await cashier.assert_no_messages(within=0.5)
    # The confirmation screen says what is recorded: its button cannot carry other points.
    await cashier.press_button(offer, t("cashier-redeem-none"))
    confirm = await cashier.wait_message()
    assert confirm.text == t(
        "cashier-confirm", amount=roubles(5000 * RUB), redeem=points(0), earn=points(100)
    )
    yes = confirm.button(CONFIRM).callback_data or ""
    handle = await cashier.press(confirm, _forged(yes, points=1500))
    assert (await handle.wait_answer()).text == STALE
    await customer.assert_no_messages(within=0.5)  # nobody asks the member to pay 1,500
    await cashier.press(confirm, yes)
    done = (await cashier.wait_message()).text
    assert done == t("cashier-done-no-points", earn=points(100), balance=points(2000 + 100))
    ledger = app.services.ledger  # type: ignore[union-attr]
    assert (await ledger.balance(member_id)).balance == 2000 + 100


async def test_a_redemption_requests_buttons_go_once_it_is_answered_cancelled_or_expired(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """The cashier's [Cancel] while waiting and the member's [Yes] [No] stay only while the
    request is open: after an answer, a cancellation or the time limit, both screens say how
    it ended, without buttons."""
    customer, _ = await _customer_with_points(emulator, app, 4015, "Nina", 9900)
    cashier = await _make_cashier(emulator, app, 4113, "till_stale")

    async def ask() -> tuple[Any, Any]:
        offer = await _offer(cashier, app, 4015, "5000")
        await cashier.press_button(offer, t("cashier-redeem-max", points=points(1500)))
        waiting = await cashier.wait_message()
        await cashier.press_button(waiting, CONFIRM)
        await cashier.wait_edit(waiting)
        assert [b.text for b in waiting.inline_buttons] == [t("cashier-cancel-button")]
        request = await customer.wait_message()
        return waiting, request

    def buttons_gone(message: Any) -> Any:
        return lambda: not message.inline_buttons

    # The member confirms: the cashier's [Cancel] goes.
    waiting, request = await ask()
    await customer.press_button(request, YES)
    recorded = t("cashier-done", earn=points(70), redeem=points(1500), balance=points(8570))
    assert (await cashier.wait_message()).text == recorded
    await cashier.wait_for(buttons_gone(waiting), what="the cashier's [Cancel] removed")
    await customer.wait_message()  # the receipt
    # The member declines: the same.
    waiting, request = await ask()
    await customer.press_button(request, NO)
    assert (await cashier.wait_message()).text == t("cashier-declined")
    await cashier.wait_for(buttons_gone(waiting), what="the cashier's [Cancel] removed")
    # The cashier cancels: the member's [Yes] [No] go, and the message says so.
    waiting, request = await ask()
    await cashier.press_button(waiting, t("cashier-cancel-button"))
    await customer.wait_for(buttons_gone(request), what="the member's buttons removed")
    assert request.text == t("confirm-withdrawn")
    # Nobody answers in time: both lose their buttons.
    waiting, request = await ask()
    app.clock.advance(timedelta(seconds=3))  # past the 2 s limit (the scheduler's clock)
    assert (await cashier.wait_message(timeout=6)).text == t("cashier-timeout")
    await cashier.wait_for(buttons_gone(waiting), what="the cashier's [Cancel] removed")
    await customer.wait_for(buttons_gone(request), what="the member's buttons removed")
    assert request.text == t("confirm-expired")


async def test_a_request_left_by_a_stopped_bot_still_expires_and_the_cashier_hears_it(
    emulator: BotAPIEmulator, database_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    """The time limit is kept by the scheduler over the stored request and the clock, not by a
    timer in the process that asked: after a restart, once the limit has passed, the cashier
    hears that the member did not answer, and both screens lose their buttons."""
    settings = make_settings(emulator, database_url, tmp_path).model_copy(
        update={"redemption_confirm_seconds": 60}
    )
    first = Application(settings, clock=clock)
    await first.start()
    try:
        customer, _ = await _customer_with_points(emulator, first, 4017, "Vera", 9900)
        cashier = await _make_cashier(emulator, first, 4115, "till_restart")
        offer = await _offer(cashier, first, 4017, "5000")
        await cashier.press_button(offer, t("cashier-redeem-max", points=points(1500)))
        waiting = await cashier.wait_message()
        await cashier.press_button(waiting, CONFIRM)
        await cashier.wait_edit(waiting)
        request = await customer.wait_message()
    finally:
        await first.stop()  # the process that asked goes away before the time is up
    again = Application(settings, clock=clock)
    await again.start()
    try:
        clock.advance(timedelta(seconds=61))
        assert (await cashier.wait_message(timeout=6)).text == t("cashier-timeout")
        await cashier.wait_for(lambda: not waiting.inline_buttons, what="[Cancel] removed")
        await customer.wait_for(lambda: not request.inline_buttons, what="[Yes] [No] removed")
        assert request.text == t("confirm-expired")
    finally:
        await again.stop()


async def test_a_sale_in_the_bot_reads_without_a_number_and_a_till_sale_with_the_shops_receipt(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """The customer knows a till purchase by the number on the shop's paper receipt; a sale
    recorded in the bot has none, and its internal id ("B-48B377C139FC") is not shown."""
    customer, member_id = await _customer_with_points(emulator, app, 4016, "Lida", 1)
    cashier = await _make_cashier(emulator, app, 4114, "till_numbers")
    offer = await _offer(cashier, app, 4016, "1500")
    await cashier.press_button(offer, t("cashier-redeem-none"))
    await cashier.press_button(await cashier.wait_message(), CONFIRM)
    done = (await cashier.wait_message()).text or ""
    assert done == t("cashier-done-no-points", earn=points(30), balance=points(131))
    receipt = (await customer.wait_message()).text or ""
    in_bot = t("receipt-purchase-in-bot", amount=roubles(1500 * RUB))
    assert receipt.splitlines()[0] == in_bot and "B-" not in receipt
    ledger = app.services.ledger  # type: ignore[union-attr]
    await ledger.purchase(receipt_id="R-77", member_id=member_id, amount_kopecks=500 * RUB)
    till = t("receipt-purchase", receipt="R-77", amount=roubles(500 * RUB))
    assert ((await customer.wait_message()).text or "").splitlines()[0] == till
    await customer.press_reply_button(t("menu-history"))
    lines = ((await customer.wait_message()).text or "").splitlines()
    assert lines[2].endswith(f" · +10 · {t('kind-earn')} R-77")
    assert lines[3].endswith(f" · +30 · {t('kind-earn')}")
