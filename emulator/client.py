"""The test side: emulated Telegram users who talk to a bot and observe its answers.

An :class:`EmulatedUser` is one user's private chat with one bot. Its ``send_*`` and
``press*`` methods enqueue updates for the bot (delivered through getUpdates); its
``wait_*`` methods wait, without polling, until the bot's API calls changed the chat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from .state import (
    ApiCall,
    BotMessage,
    CallbackAnswer,
    CallbackQuery,
    Chat,
    EmulatedBot,
    JsonDict,
    UserProfile,
    now,
)


class _Own(Enum):
    OWN = "own"


OWN = _Own.OWN
"""Default of ``send_contact(user_id=...)``: the contact is the sender's own."""


class CallbackHandle:
    """A callback query a user sent; lets the test wait for the bot's answer."""

    def __init__(self, chat: Chat, query: CallbackQuery, message: BotMessage) -> None:
        self._chat = chat
        self._query = query
        self.message = message
        """The message whose button was pressed."""

    @property
    def id(self) -> str:
        """The callback query id."""
        return self._query.id

    @property
    def data(self) -> str:
        """The callback data sent."""
        return self._query.data

    @property
    def answer(self) -> CallbackAnswer | None:
        """The bot's ``answerCallbackQuery``, once it arrived."""
        return self._query.answer

    @property
    def answered(self) -> bool:
        """True once the bot answered the query."""
        return self._query.answer is not None

    async def wait_answer(self, timeout: float = 5.0) -> CallbackAnswer:  # noqa: ASYNC109
        """Wait for ``answerCallbackQuery``; AssertionError on timeout."""
        if not await self._chat.changed.wait_for(lambda: self.answered, timeout):
            raise AssertionError(
                f"callback query {self.id} (data={self.data!r}) was not answered within {timeout}s"
            )
        assert self._query.answer is not None
        return self._query.answer


def describe(message: BotMessage) -> str:
    """A one-line description of a bot message for assertion errors."""
    parts = [f"#{message.message_id} {message.kind}"]
    if message.content:
        parts.append(repr(message.content[:120]))
    if message.inline_buttons:
        parts.append(f"inline={[b.text for b in message.inline_buttons]}")
    if message.keyboard_texts:
        parts.append(f"keyboard={message.keyboard_texts}")
    if message.edited:
        parts.append(f"edited x{len(message.edits)}")
    if message.deleted:
        parts.append("deleted")
    return " ".join(parts)


class EmulatedUser:
    """A user in a private chat with a bot.

    Created by :meth:`emulator.BotAPIEmulator.user`; one handle per (bot, user) pair.

    The handle keeps a read cursor: :meth:`wait_messages` returns only messages that arrived
    after the previous wait (or :meth:`mark_read`), and :meth:`wait_edit` likewise waits for
    edits not seen yet.
    """

    def __init__(self, chat: Chat, call_log: Iterable[ApiCall]) -> None:
        self.chat = chat
        self._call_log = call_log
        self._read = 0
        self._seen_edits: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"EmulatedUser(id={self.id}, bot=@{self.bot.username})"

    # -- identity ---------------------------------------------------------------------

    @property
    def profile(self) -> UserProfile:
        """The user's profile (id, names, language)."""
        return self.chat.user

    @property
    def id(self) -> int:
        """The user id."""
        return self.chat.user.id

    @property
    def chat_id(self) -> int:
        """The private chat id (equals the user id)."""
        return self.chat.id

    @property
    def bot(self) -> EmulatedBot:
        """The bot this chat is with."""
        return self.chat.bot

    # -- sending ----------------------------------------------------------------------

    def _enqueue_message(self, content: JsonDict) -> JsonDict:
        if self.chat.blocked:
            # Writing to a blocked bot means pressing "Restart" / "Unblock" first.
            self.unblock_bot()
        message: JsonDict = {
            "message_id": self.chat.take_message_id(),
            "from": self.profile.to_json(),
            "chat": self.profile.chat_json(),
            "date": now(),
            **content,
        }
        self.chat.user_messages[message["message_id"]] = message
        self.bot.push_update("message", message)
        return message

    def _reply_part(self, reply_to: BotMessage | int | None) -> JsonDict:
        if reply_to is None:
            return {}
        message_id = reply_to if isinstance(reply_to, int) else reply_to.message_id
        replied = self.chat.message_json(message_id)
        if replied is None:
            raise AssertionError(f"message {message_id} does not exist in chat {self.chat_id}")
        replied = dict(replied)
        replied.pop("reply_to_message", None)
        return {"reply_to_message": replied}

    async def send_text(
        self,
        text: str,
        *,
        reply_to: BotMessage | int | None = None,
        entities: list[JsonDict] | None = None,
    ) -> JsonDict:
        """Send a text message to the bot; returns the ``Message`` dict the bot will get."""
        content: JsonDict = {"text": text, **self._reply_part(reply_to)}
        if entities:
            content["entities"] = entities
        return self._enqueue_message(content)

    async def send_command(self, command: str) -> JsonDict:
        """Send ``/command [args]`` with its ``bot_command`` entity (e.g. ``"/start ref_1"``)."""
        if not command.startswith("/"):
            command = "/" + command
        name = command.split(maxsplit=1)[0] if command.strip() else command
        entity = {"type": "bot_command", "offset": 0, "length": len(name)}
        return self._enqueue_message({"text": command, "entities": [entity]})

    async def send_contact(
        self,
        phone_number: str,
        *,
        user_id: int | _Own | None = OWN,
        first_name: str | None = None,
        last_name: str | None = None,
    ) -> JsonDict:
        """Share a contact: the user's own (default), another user's, or one without user_id."""
        own = user_id is OWN or user_id == self.id
        contact: JsonDict = {
            "phone_number": phone_number,
            "first_name": first_name or (self.profile.first_name if own else "Contact"),
        }
        last = last_name if last_name is not None else (self.profile.last_name if own else None)
        if last:
            contact["last_name"] = last
        if user_id is OWN:
            contact["user_id"] = self.id
        elif user_id is not None:
            contact["user_id"] = user_id
        return self._enqueue_message({"contact": contact})

    async def send_sticker(self, emoji: str = "👍") -> JsonDict:
        """Send a (regular, static) sticker."""
        stored = self.bot.store_file(
            "sticker", b"RIFF\x00\x00\x00\x00WEBPVP8 ", width=512, height=512
        )
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": stored.size,
        }
        return self._enqueue_message({"sticker": sticker})

    async def send_photo(self, data: bytes, *, caption: str | None = None) -> JsonDict:
        """Send a photo; the bot can fetch ``data`` back with getFile and download."""
        from .methods import image_size

        width, height = image_size(data) or (0, 0)
        stored = self.bot.store_file("photo", data, width=width, height=height)
        content: JsonDict = {"photo": stored.photo_sizes()}
        if caption:
            content["caption"] = caption
        return self._enqueue_message(content)

    async def send_document(
        self,
        data: bytes,
        file_name: str,
        *,
        mime_type: str | None = None,
        caption: str | None = None,
    ) -> JsonDict:
        """Send a document."""
        stored = self.bot.store_file("document", data, file_name=file_name, mime_type=mime_type)
        content: JsonDict = {"document": stored.document_json()}
        if caption:
            content["caption"] = caption
        return self._enqueue_message(content)

    async def send_location(self, latitude: float, longitude: float) -> JsonDict:
        """Send a location."""
        return self._enqueue_message({"location": {"latitude": latitude, "longitude": longitude}})

    async def send_raw(self, **content: Any) -> JsonDict:
        """Send a message with arbitrary content fields, e.g. ``send_raw(dice={...})``."""
        return self._enqueue_message(content)

    # -- buttons ----------------------------------------------------------------------

    def _message(self, message: BotMessage | int) -> BotMessage:
        if isinstance(message, int):
            found = self.chat.messages_by_id.get(message)
            if found is None:
                raise AssertionError(f"no bot message {message} in chat {self.chat_id}")
            return found
        if message.chat_id != self.chat_id:
            raise ValueError(f"message {message.message_id} belongs to chat {message.chat_id}")
        return message

    async def press(self, message: BotMessage | int, data: str) -> CallbackHandle:
        """Send a callback query from ``message`` with ``data``.

        The data need not be on the keyboard (to test forged callbacks); the message must
        still exist, as a user cannot press buttons of a deleted message.
        """
        target = self._message(message)
        if target.deleted:
            raise AssertionError(f"message {target.message_id} was deleted; nothing to press")
        query = CallbackQuery(self.bot.new_callback_id(), self.chat_id, target.message_id, data)
        self.bot.callbacks[query.id] = query
        self.chat.callbacks.append(query)
        self.bot.push_update(
            "callback_query",
            {
                "id": query.id,
                "from": self.profile.to_json(),
                "message": target.to_api(),
                "chat_instance": f"{self.bot.id}{self.id}",
                "data": data,
            },
        )
        return CallbackHandle(self.chat, query, target)

    async def press_button(self, message: BotMessage | int, text: str) -> CallbackHandle:
        """Press the inline button labelled ``text`` (its current callback_data)."""
        target = self._message(message)
        button = target.button(text)
        if button.callback_data is None:
            raise AssertionError(f"button {text!r} has no callback_data (url={button.url!r})")
        return await self.press(target, button.callback_data)

    @property
    def reply_keyboard(self) -> JsonDict | None:
        """The reply keyboard currently shown to the user, if any."""
        return self.chat.reply_keyboard

    @property
    def reply_keyboard_texts(self) -> list[str]:
        """Texts of the buttons of the current reply keyboard."""
        rows = (self.chat.reply_keyboard or {}).get("keyboard", [])
        return [b["text"] for row in rows for b in row]

    async def press_reply_button(self, text: str, *, phone_number: str | None = None) -> JsonDict:
        """Tap a button of the current reply keyboard.

        A plain button sends its text; a ``request_contact`` button shares the user's own
        contact with ``phone_number`` (required then).
        """
        for row in (self.chat.reply_keyboard or {}).get("keyboard", []):
            for button in row:
                if button.get("text") != text:
                    continue
                if button.get("request_contact"):
                    if phone_number is None:
                        raise AssertionError(
                            f"button {text!r} requests a contact: pass phone_number="
                        )
                    return await self.send_contact(phone_number)
                return await self.send_text(text)
        raise AssertionError(
            f"no reply keyboard button {text!r}; current: {self.reply_keyboard_texts}"
        )

    # -- observing --------------------------------------------------------------------

    @property
    def messages(self) -> list[BotMessage]:
        """Every message the bot sent into this chat (deleted ones flagged), oldest first."""
        return list(self.chat.bot_messages)

    @property
    def last_message(self) -> BotMessage | None:
        """The most recent message the bot sent (possibly deleted/edited since)."""
        return self.chat.bot_messages[-1] if self.chat.bot_messages else None

    @property
    def unread(self) -> list[BotMessage]:
        """Bot messages not yet returned by :meth:`wait_messages`."""
        return self.chat.bot_messages[self._read :]

    def mark_read(self) -> None:
        """Move the read cursor past every message received so far."""
        self._read = len(self.chat.bot_messages)

    @property
    def chat_actions(self) -> list[str]:
        """Chat actions (``typing``...) the bot sent, in order."""
        return list(self.chat.chat_actions)

    @property
    def callback_answers(self) -> list[CallbackAnswer | None]:
        """Answers to this user's callback queries, in pressing order (None = unanswered)."""
        return [query.answer for query in self.chat.callbacks]

    async def wait_messages(self, n: int = 1, timeout: float = 5.0) -> list[BotMessage]:  # noqa: ASYNC109
        """Wait for ``n`` new bot messages and return them in order (advancing the cursor).

        Raises AssertionError describing what did arrive (and recent failed API calls for
        this chat) if fewer than ``n`` arrive within ``timeout`` seconds.
        """
        start = self._read
        messages = self.chat.bot_messages
        if not await self.chat.changed.wait_for(lambda: len(messages) - start >= n, timeout):
            got = messages[start:]
            lines = [f"  {describe(m)}" for m in got] or ["  (nothing)"]
            raise AssertionError(
                f"expected {n} new bot message(s) in chat {self.chat_id} within {timeout}s, "
                f"got {len(got)}:\n" + "\n".join(lines) + self._failed_calls_note()
            )
        self._read = start + n
        return messages[start : start + n]

    async def wait_message(self, timeout: float = 5.0) -> BotMessage:  # noqa: ASYNC109
        """Wait for the next new bot message."""
        return (await self.wait_messages(1, timeout))[0]

    async def assert_no_messages(self, within: float = 0.2) -> None:
        """Assert that no new bot message arrives within ``within`` seconds."""
        start = self._read
        messages = self.chat.bot_messages
        if await self.chat.changed.wait_for(lambda: len(messages) > start, within):
            got = "\n".join(f"  {describe(m)}" for m in messages[start:])
            raise AssertionError(
                f"expected no new bot messages in chat {self.chat_id}, got:\n{got}"
            )

    async def wait_edit(self, message: BotMessage | int, timeout: float = 5.0) -> BotMessage:  # noqa: ASYNC109
        """Wait until ``message`` gets an edit this handle has not seen yet; returns it."""
        target = self._message(message)
        seen = self._seen_edits.get(target.message_id, 0)
        if not await self.chat.changed.wait_for(lambda: len(target.edits) > seen, timeout):
            raise AssertionError(
                f"message {describe(target)} was not edited within {timeout}s"
                + self._failed_calls_note()
            )
        self._seen_edits[target.message_id] = len(target.edits)
        return target

    async def wait_deleted(self, message: BotMessage | int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until the bot deletes ``message``."""
        target = self._message(message)
        if not await self.chat.changed.wait_for(lambda: target.deleted, timeout):
            raise AssertionError(f"message {describe(target)} was not deleted within {timeout}s")

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
        what: str = "condition",
    ) -> None:
        """Wait until ``predicate()`` holds, re-checked whenever this chat changes."""
        if not await self.chat.changed.wait_for(predicate, timeout):
            raise AssertionError(f"{what} not met in chat {self.chat_id} within {timeout}s")

    def _failed_calls_note(self) -> str:
        failed = [
            call
            for call in self._call_log
            if not call.ok
            and call.bot_id == self.bot.id
            and str(call.params.get("chat_id")) == str(self.chat_id)
        ][-5:]
        if not failed:
            return ""
        lines = [f"  {c.method} -> {c.status} {c.description}" for c in failed]
        return "\nrecent failed API calls for this chat:\n" + "\n".join(lines)

    # -- blocking ---------------------------------------------------------------------

    def block_bot(self) -> None:
        """Block the bot: its sends/edits to this chat get 403 ``bot was blocked by the user``."""
        if not self.chat.blocked:
            self.chat.blocked = True
            self._member_update("member", "kicked")

    def unblock_bot(self) -> None:
        """Unblock the bot."""
        if self.chat.blocked:
            self.chat.blocked = False
            self._member_update("kicked", "member")

    def _member_update(self, old: str, new: str) -> None:
        bot_user = self.bot.user_json()

        def member(status: str) -> JsonDict:
            data: JsonDict = {"status": status, "user": bot_user}
            if status == "kicked":
                data["until_date"] = 0
            return data

        self.bot.push_update(
            "my_chat_member",
            {
                "chat": self.profile.chat_json(),
                "from": self.profile.to_json(),
                "date": now(),
                "old_chat_member": member(old),
                "new_chat_member": member(new),
            },
        )
