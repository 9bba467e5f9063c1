"""A real aiogram Dispatcher long-polling the emulator, driven by emulated users."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiogram import Bot, Dispatcher, F
from aiogram.exceptions import TelegramForbiddenError
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import (
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from emulator import BotAPIEmulator, EmulatedUser, running_polling


async def eventually(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll ``predicate`` (for state owned by the bot side, which has no signal)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def menu() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text="Balance", callback_data="balance")],
            [
                InlineKeyboardButton(text="‹ Prev", callback_data="page:0"),
                InlineKeyboardButton(text="Next ›", callback_data="page:2"),
            ],
            [InlineKeyboardButton(text="Site", url="https://example.com/")],
        ]
    )


def build_dispatcher(seen: list[str]) -> Dispatcher:
    """An echo/menu bot recording every update it handles in ``seen``."""
    dp = Dispatcher()

    @dp.message(CommandStart())
    async def start(message: Message, command: CommandObject) -> None:
        seen.append(f"start:{command.args}")
        share = KeyboardButton(text="Share phone", request_contact=True)
        keyboard = ReplyKeyboardMarkup(
            keyboard=[[share], [KeyboardButton(text="Help")]], resize_keyboard=True
        )
        await message.answer("Welcome! Share your phone.", reply_markup=keyboard)

    @dp.message(Command("menu"))
    async def show_menu(message: Message) -> None:
        await message.answer("<b>Menu</b> &amp; more", parse_mode="HTML", reply_markup=menu())

    @dp.message(F.contact)
    async def contact(message: Message) -> None:
        assert message.contact is not None
        seen.append(f"contact:{message.contact.phone_number}:{message.contact.user_id}")
        await message.answer("Thanks", reply_markup=ReplyKeyboardRemove())

    @dp.message(F.photo)
    async def photo(message: Message, bot: Bot) -> None:
        assert message.photo is not None
        downloaded = await bot.download(message.photo[-1].file_id)
        assert downloaded is not None
        seen.append(f"photo:{downloaded.read().decode()}")
        await message.answer("nice photo")

    @dp.message(F.sticker)
    async def sticker(message: Message) -> None:
        seen.append("sticker")
        await message.answer("I can't read stickers")

    @dp.message(F.text)
    async def echo(message: Message) -> None:
        seen.append(f"text:{message.text}")
        try:
            await message.answer(f"echo: {message.text}")
        except TelegramForbiddenError as error:
            seen.append(f"forbidden:{error.message}")

    @dp.callback_query(F.data == "balance")
    async def balance(query: CallbackQuery) -> None:
        seen.append("cb:balance")
        await query.answer("You have 42 points", show_alert=True)

    @dp.callback_query(F.data.startswith("page:"))
    async def page(query: CallbackQuery) -> None:
        assert isinstance(query.message, Message) and query.data is not None
        seen.append(f"cb:{query.data}")
        await query.message.edit_text(f"Page {query.data[5:]}", reply_markup=menu())
        await query.answer()

    @dp.callback_query()
    async def forged(query: CallbackQuery) -> None:
        seen.append(f"cb-unknown:{query.data}")
        await query.answer("Unknown button")

    @dp.my_chat_member()
    async def member(event: ChatMemberUpdated) -> None:
        seen.append(f"member:{event.new_chat_member.status}")

    return dp


async def test_updates_delivered_once_and_in_order(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser, bob: EmulatedUser
) -> None:
    seen: list[str] = []
    async with running_polling(build_dispatcher(seen), bot, handle_as_tasks=False):
        got_alice, got_bob = [], []
        for batch in range(3):
            for i in range(batch * 10, batch * 10 + 10):
                await (alice if i % 2 == 0 else bob).send_text(f"m{i}")
            got_alice += await alice.wait_messages(5)
            got_bob += await bob.wait_messages(5)
        # The next poll confirms the last batch.
        await eventually(lambda: not emu.bot().updates)

    assert seen == [f"text:m{i}" for i in range(30)]
    assert [m.text for m in got_alice] == [f"echo: m{i}" for i in range(0, 30, 2)]
    assert [m.text for m in got_bob] == [f"echo: m{i}" for i in range(1, 30, 2)]
    assert emu.stats.updates_enqueued == 30
    assert emu.stats.updates_delivered == 30
    # Each poll confirmed what the previous one returned (the last one was cancelled: 499).
    polls = emu.calls_to("getUpdates")
    offsets = [int(c.params["offset"]) for c in polls if "offset" in c.params]
    assert offsets == sorted(offsets)
    assert {11, 21, 31} <= set(offsets)
    assert polls[-1].status == 499 and polls[-1].params["offset"] == "31"
    assert sum(len(c.result) for c in polls if c.ok) == 30
    message_ids = [m.message_id for m in alice.messages]
    assert message_ids == sorted(message_ids) and len(set(message_ids)) == 15


async def test_keyboards_contact_and_keyboard_removal(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    seen: list[str] = []
    async with running_polling(build_dispatcher(seen), bot):
        await alice.send_command("/start ref_abc")
        welcome = await alice.wait_message()
        assert welcome.text == "Welcome! Share your phone."
        assert welcome.keyboard_texts == ["Share phone", "Help"]
        assert welcome.keyboard[0][0].request_contact is True
        assert welcome.keyboard[1][0].request_contact is False
        assert alice.reply_keyboard_texts == ["Share phone", "Help"]
        assert welcome.to_api().get("reply_markup") is None  # Telegram hides reply keyboards

        await alice.press_reply_button("Share phone", phone_number="+79991234567")
        thanks = await alice.wait_message()
        assert thanks.text == "Thanks" and thanks.removes_keyboard
        assert alice.reply_keyboard is None

        await alice.send_contact("+70000000000", user_id=2002, first_name="Eve")
        await alice.send_contact("+71111111111", user_id=None)
        await alice.wait_messages(2)

    assert seen == [
        "start:ref_abc",
        "contact:+79991234567:1001",
        "contact:+70000000000:2002",
        "contact:+71111111111:None",
    ]


async def test_inline_buttons_callbacks_and_edits(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    seen: list[str] = []
    async with running_polling(build_dispatcher(seen), bot):
        await alice.send_command("/menu")
        menu_message = await alice.wait_message()
        assert menu_message.text == "Menu & more"
        assert menu_message.html == "<b>Menu</b> &amp; more"
        assert menu_message.entities == [{"type": "bold", "offset": 0, "length": 4}]
        assert menu_message.inline_rows == [
            [("Balance", "balance")],
            [("‹ Prev", "page:0"), ("Next ›", "page:2")],
            [("Site", "https://example.com/")],
        ]

        alert = await alice.press_button(menu_message, "Balance")
        answer = await alert.wait_answer()
        assert (answer.text, answer.show_alert) == ("You have 42 points", True)

        await alice.press_button(menu_message, "Next ›")
        edited = await alice.wait_edit(menu_message)
        assert edited is menu_message
        assert menu_message.text == "Page 2" and menu_message.edited
        assert menu_message.edits[0].method == "editMessageText"
        assert menu_message.button("Next ›").callback_data == "page:2"

        forged = await alice.press(menu_message, "admin:grant:1000000")
        assert (await forged.wait_answer()).text == "Unknown button"
        await alice.assert_no_messages(within=0.05)

    assert seen == ["cb:balance", "cb:page:2", "cb-unknown:admin:grant:1000000"]
    assert alice.callback_answers[0] is not None and alice.callback_answers[0].show_alert


async def test_user_media_reaches_the_bot(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    seen: list[str] = []
    async with running_polling(build_dispatcher(seen), bot):
        await alice.send_photo(b"photo-bytes")
        await alice.send_sticker()
        replies = await alice.wait_messages(2)
    assert sorted(m.text or "" for m in replies) == ["I can't read stickers", "nice photo"]
    assert sorted(seen) == ["photo:photo-bytes", "sticker"]


async def test_blocked_user_gets_forbidden_and_member_updates(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    seen: list[str] = []
    dp = build_dispatcher(seen)
    async with running_polling(dp, bot):
        alice.block_bot()
        await eventually(lambda: "member:kicked" in seen)
        # Writing unblocks the bot (Telegram's "Restart"); blocking again right away makes
        # the bot's reply to this message fail.
        await alice.send_text("ping")
        alice.block_bot()
        await eventually(lambda: any(s.startswith("forbidden") for s in seen))
    assert "member:kicked" in seen
    assert "member:member" in seen
    assert "forbidden:Forbidden: bot was blocked by the user" in seen
    assert alice.messages == []


async def test_wait_messages_timeout_explains_what_arrived(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    await bot.send_message(alice.chat_id, "one")
    try:
        await bot.send_message(alice.chat_id, "<b>broken", parse_mode="HTML")
    except Exception:
        pass
    try:
        await alice.wait_messages(2, timeout=0.1)
    except AssertionError as error:
        text = str(error)
    else:
        raise AssertionError("wait_messages should have timed out")
    assert "expected 2 new bot message(s)" in text
    assert "'one'" in text
    assert "sendMessage -> 400 Bad Request: can't parse entities" in text
    # The cursor did not move: the message is still unread.
    assert [m.text for m in await alice.wait_messages(1, timeout=0.1)] == ["one"]


async def test_throughput_hundreds_of_updates(emu: BotAPIEmulator, bot: Bot) -> None:
    """300 round trips for 30 users through a real dispatcher: all answered, per-user order."""
    seen: list[str] = []
    users = [emu.user(9000 + i) for i in range(30)]
    async with running_polling(build_dispatcher(seen), bot, handle_as_tasks=False):
        loop = asyncio.get_running_loop()
        started = loop.time()
        for round_number in range(10):
            for user in users:
                await user.send_text(f"{user.id}:{round_number}")
        for user in users:
            replies = await user.wait_messages(10, timeout=15)
            assert [m.text for m in replies] == [f"echo: {user.id}:{r}" for r in range(10)]
        elapsed = loop.time() - started
    assert len(seen) == 300
    assert emu.stats.updates_delivered == 300
    assert elapsed < 15
