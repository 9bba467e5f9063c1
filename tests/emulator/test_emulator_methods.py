"""Every emulated Bot API method called through aiogram's Bot, plus raw HTTP edge cases."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramNotFound,
    TelegramUnauthorizedError,
)
from aiogram.methods import TelegramMethod
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    BufferedInputFile,
    ChatFullInfo,
    File,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    MenuButtonWebApp,
    Message,
    ReplyParameters,
    User,
    WebAppInfo,
)

from emulator import BotAPIEmulator, EmulatedUser, UploadedFile

from .conftest import TOKEN


def kb(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d)] for t, d in pairs]
    )


async def test_get_me_and_session_methods(emu: BotAPIEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert isinstance(me, User)
    assert (me.id, me.is_bot, me.username, me.first_name) == (
        123456,
        True,
        "loyalty_test_bot",
        "Loyalty",
    )
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    assert await bot.log_out() is True
    assert await bot.close() is True
    assert [c.method for c in emu.calls] == ["getMe", "deleteWebhook", "logOut", "close"]


async def test_get_updates_offsets_limit_and_negative_offset(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    for i in range(5):
        await alice.send_text(f"t{i}")
    first = await bot.get_updates(limit=2)
    assert [u.message.text for u in first if u.message] == ["t0", "t1"]
    again = await bot.get_updates(limit=2)  # not confirmed yet: same updates
    assert [u.update_id for u in again] == [u.update_id for u in first]
    rest = await bot.get_updates(offset=first[-1].update_id + 1)
    assert [u.message.text for u in rest if u.message] == ["t2", "t3", "t4"]
    last = await bot.get_updates(offset=-1)
    assert [u.message.text for u in last if u.message] == ["t4"]
    assert len(emu.bot().updates) == 1


async def test_get_updates_long_poll_wakes_on_update(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    async def send_later() -> None:
        await asyncio.sleep(0.1)
        await alice.send_text("wake up")

    sender = asyncio.create_task(send_later())
    started = time.monotonic()
    updates = await bot.get_updates(timeout=10)
    elapsed = time.monotonic() - started
    await sender
    assert [u.message.text for u in updates if u.message] == ["wake up"]
    assert 0.08 < elapsed < 1.0


async def test_get_updates_allowed_updates_and_empty_timeout(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    await alice.send_text("a text")
    sent = await bot.send_message(alice.chat_id, "pick", reply_markup=kb(("x", "x")))
    await alice.press(sent.message_id, "x")
    only_callbacks = await bot.get_updates(allowed_updates=["callback_query"])
    assert [u.event_type for u in only_callbacks] == ["callback_query"]
    assert only_callbacks[0].callback_query is not None
    assert only_callbacks[0].callback_query.data == "x"
    # The setting persists; the message update was dropped, not queued for later.
    assert await bot.get_updates(offset=only_callbacks[0].update_id + 1, timeout=0) == []
    started = time.monotonic()
    assert await bot.get_updates(timeout=1, allowed_updates=[]) == []
    assert time.monotonic() - started >= 0.95


async def test_webhook_blocks_get_updates(emu: BotAPIEmulator, bot: Bot) -> None:
    assert await bot.set_webhook("https://example.com/hook") is True
    info = await bot.get_webhook_info()
    assert info.url == "https://example.com/hook" and info.pending_update_count == 0
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook() is True
    assert (await bot.get_webhook_info()).url == ""


async def test_second_get_updates_terminates_the_first(emu: BotAPIEmulator, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(bot.get_updates(timeout=0))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await first
    assert await second == []


async def test_send_message_html_and_options(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    user_message = await alice.send_text("hello bot")
    sent = await bot.send_message(
        alice.chat_id,
        "Hi <b>Alice</b> &lt;3 <a href='https://example.com'>site</a>",
        parse_mode="HTML",
        link_preview_options=LinkPreviewOptions(is_disabled=True),
        disable_notification=True,
        reply_parameters=ReplyParameters(message_id=user_message["message_id"]),
    )
    assert isinstance(sent, Message)
    assert sent.text == "Hi Alice <3 site"
    assert sent.from_user is not None and sent.from_user.id == 123456
    assert sent.chat.id == 1001 and sent.chat.type == "private"
    assert sent.entities is not None
    assert [(e.type, e.offset, e.length, e.url) for e in sent.entities] == [
        ("bold", 3, 5, None),
        ("text_link", 12, 4, "https://example.com"),
    ]
    assert sent.reply_to_message is not None and sent.reply_to_message.text == "hello bot"
    assert sent.message_id == user_message["message_id"] + 1

    stored = alice.last_message
    assert stored is not None and stored.message_id == sent.message_id
    assert stored.text == "Hi Alice <3 site"
    assert stored.raw_text == stored.html
    assert stored.parse_mode == "HTML"
    assert stored.disable_notification is True
    assert stored.link_preview_options == {"is_disabled": True}
    assert stored.reply_to_message_id == user_message["message_id"]


async def test_send_message_markdown_force_reply_and_errors(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    sent = await bot.send_message(
        alice.chat_id,
        "*Bold* and _italic_ 5\\.0",
        parse_mode="MarkdownV2",
        reply_markup=ForceReply(input_field_placeholder="Your name"),
    )
    assert sent.text == "Bold and italic 5.0"
    assert alice.messages[-1].reply_markup == {
        "force_reply": True,
        "input_field_placeholder": "Your name",
    }
    assert alice.messages[-1].html == "<b>Bold</b> and <i>italic</i> 5.0"

    with pytest.raises(TelegramBadRequest, match=r"Character '\.' is reserved"):
        await bot.send_message(alice.chat_id, "5.0", parse_mode="MarkdownV2")
    with pytest.raises(TelegramBadRequest, match=r'Unsupported start tag "" at byte offset 2'):
        await bot.send_message(alice.chat_id, "a < b", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999, "who?")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(alice.chat_id, "   ")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(alice.chat_id, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(alice.chat_id, "re", reply_parameters=ReplyParameters(message_id=99))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(alice.chat_id, "kb", reply_markup=kb(("long", "x" * 65)))
    assert len(alice.messages) == 1


async def test_photo_upload_reuse_and_download(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    upload = BufferedInputFile(b"\x89PNG not really", filename="card.png")
    first = await bot.send_photo(
        alice.chat_id, upload, caption="Your <b>card</b>", parse_mode="HTML", reply_markup=kb()
    )
    assert first.photo is not None and first.caption == "Your card"
    file_id = first.photo[-1].file_id
    second = await bot.send_photo(alice.chat_id, file_id)
    assert second.photo is not None and second.photo[-1].file_unique_id == (
        first.photo[-1].file_unique_id
    )

    one, two = alice.messages
    assert one.photo == two.photo == b"\x89PNG not really"
    assert one.caption == "Your card" and one.html == "Your <b>card</b>"
    calls = emu.calls_to("sendPhoto")
    assert isinstance(calls[0].params["photo"], UploadedFile)
    assert calls[0].params["photo"].filename == "card.png"
    assert calls[1].params["photo"] == file_id

    file = await bot.get_file(file_id)
    assert isinstance(file, File) and file.file_size == len(b"\x89PNG not really")
    assert file.file_path is not None
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == b"\x89PNG not really"

    with pytest.raises(TelegramBadRequest, match="wrong file identifier/HTTP URL specified"):
        await bot.send_photo(alice.chat_id, "AgACunknown")
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await bot.get_file("nope")


async def test_real_image_dimensions_and_strict_mode(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), "red").save(buffer, format="PNG")
    sent = await bot.send_photo(alice.chat_id, BufferedInputFile(buffer.getvalue(), "x.png"))
    assert sent.photo is not None and (sent.photo[0].width, sent.photo[0].height) == (64, 32)
    emu.options.strict_images = True
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(alice.chat_id, BufferedInputFile(b"garbage", "x.png"))


async def test_send_document_csv(emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser) -> None:
    csv_bytes = b"id;points\n1;42\n"
    sent = await bot.send_document(
        alice.chat_id, BufferedInputFile(csv_bytes, "export.csv"), caption="Export"
    )
    assert sent.document is not None
    assert sent.document.file_name == "export.csv"
    assert sent.document.mime_type == "text/csv"
    assert sent.document.file_size == len(csv_bytes)
    message = alice.messages[-1]
    assert message.document == csv_bytes and message.document_name == "export.csv"
    assert message.caption == "Export"
    with pytest.raises(TelegramBadRequest, match="can't use file of type Document as Photo"):
        await bot.send_photo(alice.chat_id, sent.document.file_id)
    resent = await bot.send_document(alice.chat_id, sent.document.file_id)
    assert resent.document is not None and resent.document.file_name == "export.csv"


async def test_edit_message_text_markup_caption(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    sent = await bot.send_message(alice.chat_id, "Page 1", reply_markup=kb(("Next", "p2")))
    edited = await bot.edit_message_text(
        text="Page <i>2</i>",
        chat_id=alice.chat_id,
        message_id=sent.message_id,
        parse_mode="HTML",
        reply_markup=kb(("Prev", "p1")),
    )
    assert isinstance(edited, Message)
    assert edited.text == "Page 2" and edited.edit_date is not None
    assert edited.reply_markup is not None
    assert edited.reply_markup.inline_keyboard[0][0].text == "Prev"
    message = alice.messages[0]
    assert message.text == "Page 2" and message.inline_rows == [[("Prev", "p1")]]

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            text="Page <i>2</i>",
            chat_id=alice.chat_id,
            message_id=sent.message_id,
            parse_mode="HTML",
            reply_markup=kb(("Prev", "p1")),
        )
    # Omitting reply_markup in editMessageText removes the inline keyboard.
    await bot.edit_message_text(text="Page 2", chat_id=alice.chat_id, message_id=sent.message_id)
    assert message.inline_buttons == [] and message.entities == []

    marked = await bot.edit_message_reply_markup(
        chat_id=alice.chat_id, message_id=sent.message_id, reply_markup=kb(("Again", "a"))
    )
    assert isinstance(marked, Message) and message.inline_rows == [[("Again", "a")]]
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=alice.chat_id, message_id=sent.message_id, reply_markup=kb(("Again", "a"))
        )
    assert [e.method for e in message.edits] == [
        "editMessageText",
        "editMessageText",
        "editMessageReplyMarkup",
    ]
    assert message.edits[0].text == "Page 2"

    with pytest.raises(TelegramBadRequest, match="there is no caption in the message to edit"):
        await bot.edit_message_caption(
            chat_id=alice.chat_id, message_id=sent.message_id, caption="c"
        )
    photo = await bot.send_photo(alice.chat_id, BufferedInputFile(b"img", "i.jpg"), caption="a")
    captioned = await bot.edit_message_caption(
        chat_id=alice.chat_id, message_id=photo.message_id, caption="b"
    )
    assert isinstance(captioned, Message) and captioned.caption == "b"
    assert alice.messages[-1].caption == "b"
    with pytest.raises(TelegramBadRequest, match="there is no text in the message to edit"):
        await bot.edit_message_text(text="t", chat_id=alice.chat_id, message_id=photo.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(text="t", chat_id=alice.chat_id, message_id=777)


async def test_delete_message(emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser) -> None:
    sent = await bot.send_message(alice.chat_id, "temporary")
    assert await bot.delete_message(alice.chat_id, sent.message_id) is True
    message = alice.messages[0]
    assert message.deleted is True
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(alice.chat_id, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(text="x", chat_id=alice.chat_id, message_id=sent.message_id)
    user_message = await alice.send_text("delete me")
    assert await bot.delete_message(alice.chat_id, user_message["message_id"]) is True
    with pytest.raises(AssertionError, match="was deleted"):
        await alice.press(message, "x")


async def test_answer_callback_query(emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser) -> None:
    sent = await bot.send_message(alice.chat_id, "choose", reply_markup=kb(("A", "a")))
    handle = await alice.press_button(sent.message_id, "A")
    assert handle.data == "a" and not handle.answered
    assert await bot.answer_callback_query(handle.id, text="Done", show_alert=True) is True
    answer = await handle.wait_answer(timeout=0.1)
    assert (answer.text, answer.show_alert, answer.url) == ("Done", True, None)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(handle.id)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query("12345")
    with pytest.raises(AssertionError, match="no inline button 'B'"):
        await alice.press_button(sent.message_id, "B")


async def test_commands_per_scope_and_language(emu: BotAPIEmulator, bot: Bot) -> None:
    default = [
        BotCommand(command="start", description="Start"),
        BotCommand(command="balance", description="Points"),
    ]
    russian = [BotCommand(command="start", description="Начать")]
    admin = [BotCommand(command="stats", description="Stats")]
    assert await bot.set_my_commands(default) is True
    assert await bot.set_my_commands(russian, language_code="ru") is True
    assert await bot.set_my_commands(admin, scope=BotCommandScopeChat(chat_id=1001)) is True

    assert [c.command for c in await bot.get_my_commands()] == ["start", "balance"]
    ru = await bot.get_my_commands(language_code="ru")
    assert [(c.command, c.description) for c in ru] == [("start", "Начать")]
    chat_scope = await bot.get_my_commands(scope=BotCommandScopeChat(chat_id=1001))
    assert [c.command for c in chat_scope] == ["stats"]

    assert emu.commands() == [
        {"command": "start", "description": "Start"},
        {"command": "balance", "description": "Points"},
    ]
    assert emu.commands(language_code="ru") == [{"command": "start", "description": "Начать"}]
    assert emu.commands(scope={"type": "chat", "chat_id": 1001})[0]["command"] == "stats"

    assert await bot.delete_my_commands(scope=BotCommandScopeDefault()) is True
    assert await bot.get_my_commands() == []
    assert emu.commands() == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Start", description="x")])


async def test_menu_button_chat_action_and_get_chat(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    button = MenuButtonWebApp(text="Card", web_app=WebAppInfo(url="https://example.com/app"))
    assert await bot.set_chat_menu_button(chat_id=alice.chat_id, menu_button=button) is True
    fetched = await bot.get_chat_menu_button(chat_id=alice.chat_id)
    assert isinstance(fetched, MenuButtonWebApp) and fetched.text == "Card"
    assert await bot.send_chat_action(alice.chat_id, "typing") is True
    assert alice.chat_actions == ["typing"]
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(alice.chat_id, "dancing")

    chat = await bot.get_chat(alice.chat_id)
    assert isinstance(chat, ChatFullInfo)
    assert (chat.id, chat.type, chat.first_name, chat.username) == (
        1001,
        "private",
        "Alice",
        "alice",
    )
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.get_chat(4242)


async def test_raw_http_json_get_404_and_401(emu: BotAPIEmulator, alice: EmulatedUser) -> None:
    async with aiohttp.ClientSession(emu.base_url) as http:
        async with http.post(
            f"/bot{TOKEN}/sendMessage",
            json={"chat_id": 1001, "text": "json body", "reply_markup": {"remove_keyboard": True}},
        ) as response:
            body = await response.json()
        assert response.status == 200 and body["ok"] is True
        assert body["result"]["text"] == "json body"

        async with http.get(f"/bot{TOKEN}/getMe") as response:
            assert (await response.json())["result"]["username"] == "loyalty_test_bot"
        async with http.get(f"/bot{TOKEN}/sendMessage?chat_id=1001&text=query") as response:
            assert (await response.json())["result"]["text"] == "query"

        async with http.post(f"/bot{TOKEN}/sendCarrierPigeon") as response:
            assert response.status == 404
            assert await response.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found",
            }
        async with http.post("/bot999:WRONG/getMe") as response:
            assert response.status == 401
            assert await response.json() == {
                "ok": False,
                "error_code": 401,
                "description": "Unauthorized",
            }
        async with http.get(f"/file/bot{TOKEN}/photos/missing.jpg") as response:
            assert response.status == 404
    assert [m.text for m in alice.messages] == ["json body", "query"]


async def test_aiogram_maps_404_and_401(emu: BotAPIEmulator, bot: Bot) -> None:
    class SendCarrierPigeon(TelegramMethod[bool]):
        __returning__ = bool
        __api_method__ = "sendCarrierPigeon"

    with pytest.raises(TelegramNotFound, match="Not Found"):
        await bot(SendCarrierPigeon())
    wrong = Bot("999:WRONG", session=emu.aiogram_session())
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await wrong.get_me()
    finally:
        await wrong.session.close()


async def test_two_bots_are_separate(emu: BotAPIEmulator, bot: Bot) -> None:
    other_state = emu.add_bot("777:OTHER", username="other_bot", first_name="Other")
    other = emu.aiogram_bot(other_state)
    try:
        carol_main = emu.user(3003, first_name="Carol")
        carol_other = emu.user(3003, first_name="Carol", bot="other_bot")
        await bot.send_message(3003, "from main")
        sent = await other.send_message(3003, "from other")
        assert sent.from_user is not None and sent.from_user.username == "other_bot"
        assert [m.text for m in carol_main.messages] == ["from main"]
        assert [m.text for m in carol_other.messages] == ["from other"]
        photo = await bot.send_photo(3003, BufferedInputFile(b"p", "p.jpg"))
        assert photo.photo is not None
        with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
            await other.send_photo(3003, photo.photo[0].file_id)  # file_ids are per bot
        assert emu.bot(777) is other_state and emu.bot("@other_bot") is other_state
    finally:
        await other.session.close()


async def test_call_log_json_is_serialisable(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    await bot.send_document(alice.chat_id, BufferedInputFile(b"abc", "a.txt"))
    [call] = emu.calls_to("sendDocument")
    data = call.to_json()
    json.dumps(data)
    assert data["params"]["document"] == {
        "upload": "a.txt",
        "size": 3,
        "content_type": "application/octet-stream",
    }
    assert call.ok and call.status == 200 and call.duration >= 0
