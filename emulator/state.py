"""The emulator's world: bots, private chats, messages, files, updates and the call log.

Everything here is plain in-memory data owned by one event loop. The HTTP layer
(:mod:`emulator.methods`, :mod:`emulator.server`) mutates it on behalf of the bot; the test
side (:mod:`emulator.client`) mutates it on behalf of users and reads it for assertions.
Waiting is done with :class:`Signal`, a tiny "something changed" broadcast, so long polls and
test waits wake immediately instead of sleeping in loops.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .formatting import Entity, to_html

JsonDict = dict[str, Any]

#: Update types Telegram delivers when ``allowed_updates`` is empty or was never set.
DEFAULT_UPDATE_TYPES = frozenset(
    {
        "message", "edited_message", "channel_post", "edited_channel_post", "business_connection",
        "business_message", "edited_business_message", "deleted_business_messages",
        "inline_query", "chosen_inline_result", "callback_query", "shipping_query",
        "pre_checkout_query", "purchased_paid_media", "poll", "poll_answer", "my_chat_member",
        "chat_join_request", "chat_boost", "removed_chat_boost",
    }
)  # fmt: skip


class Signal:
    """A broadcast "state changed" notification that many coroutines can wait on."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake every current waiter."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float | None,  # noqa: ASYNC109 - the deadline is part of the predicate loop
    ) -> bool:
        """Wait until ``predicate()`` is true; returns its final value (False on timeout)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not predicate():
            event = self._event
            if deadline is None:
                await event.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return predicate()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True


# ------------------------------------------------------------------------- identities


@dataclass
class UserProfile:
    """A Telegram user talking to the bot."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    is_premium: bool = False

    def to_json(self) -> JsonDict:
        """The Bot API ``User`` object."""
        data: JsonDict = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        if self.is_premium:
            data["is_premium"] = True
        return data

    def chat_json(self) -> JsonDict:
        """The Bot API ``Chat`` object of the private chat with this user."""
        data: JsonDict = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        return data


# ------------------------------------------------------------------------------ files


@dataclass
class StoredFile:
    """A file known to one bot: uploaded by it, or sent to it by a user."""

    file_id: str
    file_unique_id: str
    kind: str  # "photo", "document" or "sticker"
    data: bytes
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None
    width: int = 0
    height: int = 0

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)

    def photo_sizes(self) -> list[JsonDict]:
        """The ``PhotoSize`` array of a photo message (one size: the original)."""
        return [
            {
                "file_id": self.file_id,
                "file_unique_id": self.file_unique_id,
                "width": self.width,
                "height": self.height,
                "file_size": self.size,
            }
        ]

    def document_json(self) -> JsonDict:
        """The ``Document`` object of a document message."""
        data: JsonDict = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
        }
        if self.file_name:
            data["file_name"] = self.file_name
        if self.mime_type:
            data["mime_type"] = self.mime_type
        return data

    def file_json(self) -> JsonDict:
        """The ``File`` object answered by ``getFile``."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
            "file_path": self.file_path,
        }


# --------------------------------------------------------------------------- messages


class InlineButton(NamedTuple):
    """One inline keyboard button."""

    text: str
    callback_data: str | None
    url: str | None


class KeyboardButton(NamedTuple):
    """One reply keyboard button."""

    text: str
    request_contact: bool
    request_location: bool


@dataclass
class MessageEdit:
    """One successful edit of a bot message: the method and the state right after it."""

    method: str
    date: int
    text: str | None
    caption: str | None
    reply_markup: JsonDict | None


@dataclass(eq=False)
class BotMessage:
    """A message the bot sent into a private chat, always showing its current state.

    The emulator updates the object in place on edits and deletion, so a reference kept by a
    test sees later changes. Treat it as read-only.
    """

    message_id: int
    chat_id: int
    date: int
    kind: str  # "text", "photo" or "document"
    bot_user: JsonDict
    chat: JsonDict
    text: str | None = None
    """Plain text (formatting removed, HTML entities decoded); ``None`` for media."""
    raw_text: str | None = None
    """The text exactly as the bot sent it (e.g. with HTML tags)."""
    parse_mode: str | None = None
    entities: list[Entity] = field(default_factory=list)
    caption: str | None = None
    """Plain caption of a media message."""
    raw_caption: str | None = None
    caption_parse_mode: str | None = None
    caption_entities: list[Entity] = field(default_factory=list)
    file: StoredFile | None = None
    reply_markup: JsonDict | None = None
    reply_to_message_id: int | None = None
    reply_to_message: JsonDict | None = None
    link_preview_options: JsonDict | None = None
    disable_notification: bool = False
    protect_content: bool = False
    edit_date: int | None = None
    edits: list[MessageEdit] = field(default_factory=list)
    deleted: bool = False

    # -- content views --------------------------------------------------------------

    @property
    def html(self) -> str | None:
        """The text (or caption) as HTML: the raw text if sent as HTML, else rendered."""
        if self.kind == "text":
            raw, mode, plain, entities = self.raw_text, self.parse_mode, self.text, self.entities
        else:
            raw, mode = self.raw_caption, self.caption_parse_mode
            plain, entities = self.caption, self.caption_entities
        if plain is None:
            return None
        if (mode or "").lower() == "html":
            return raw
        return to_html(plain, entities)

    @property
    def content(self) -> str:
        """Text or caption (plain), ``""`` if none: handy for substring assertions."""
        return self.text if self.text is not None else (self.caption or "")

    @property
    def edited(self) -> bool:
        """True once the message was edited at least once."""
        return bool(self.edits)

    @property
    def photo(self) -> bytes | None:
        """The bytes of the photo, for photo messages."""
        return self.file.data if self.file is not None and self.kind == "photo" else None

    @property
    def document(self) -> bytes | None:
        """The bytes of the document, for document messages."""
        return self.file.data if self.file is not None and self.kind == "document" else None

    @property
    def document_name(self) -> str | None:
        """The file name of a document message."""
        return self.file.file_name if self.file is not None and self.kind == "document" else None

    @property
    def file_id(self) -> str | None:
        """The file_id of the photo/document."""
        return self.file.file_id if self.file is not None else None

    # -- keyboards ------------------------------------------------------------------

    @property
    def inline_keyboard(self) -> list[list[InlineButton]]:
        """Rows of inline buttons (empty if the message has no inline keyboard)."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [
            [InlineButton(b.get("text", ""), b.get("callback_data"), b.get("url")) for b in row]
            for row in rows
        ]

    @property
    def inline_rows(self) -> list[list[tuple[str, str | None]]]:
        """Rows of ``(text, callback_data or url)``."""
        return [[(b.text, b.callback_data or b.url) for b in row] for row in self.inline_keyboard]

    @property
    def inline_buttons(self) -> list[InlineButton]:
        """All inline buttons, row by row."""
        return [button for row in self.inline_keyboard for button in row]

    def button(self, text: str) -> InlineButton:
        """The inline button with exactly this text; AssertionError listing them if absent."""
        for candidate in self.inline_buttons:
            if candidate.text == text:
                return candidate
        texts = [b.text for b in self.inline_buttons]
        raise AssertionError(f"no inline button {text!r} in message {self.message_id}: {texts}")

    @property
    def keyboard(self) -> list[list[KeyboardButton]]:
        """Rows of reply keyboard buttons (empty unless ``reply_markup`` is a reply keyboard)."""
        rows = (self.reply_markup or {}).get("keyboard") or []
        return [[_keyboard_button(b) for b in row] for row in rows]

    @property
    def keyboard_texts(self) -> list[str]:
        """Texts of all reply keyboard buttons, row by row."""
        return [b.text for row in self.keyboard for b in row]

    @property
    def removes_keyboard(self) -> bool:
        """True if the message carried ``ReplyKeyboardRemove``."""
        return bool((self.reply_markup or {}).get("remove_keyboard"))

    # -- serialisation --------------------------------------------------------------

    def to_api(self) -> JsonDict:
        """The Bot API ``Message`` object, as the bot receives it."""
        data: JsonDict = {
            "message_id": self.message_id,
            "from": self.bot_user,
            "chat": self.chat,
            "date": self.date,
        }
        if self.kind == "text":
            data["text"] = self.text
            if self.entities:
                data["entities"] = self.entities
            if self.link_preview_options:
                data["link_preview_options"] = self.link_preview_options
        else:
            assert self.file is not None
            if self.kind == "photo":
                data["photo"] = self.file.photo_sizes()
            else:
                data["document"] = self.file.document_json()
            if self.caption:
                data["caption"] = self.caption
                if self.caption_entities:
                    data["caption_entities"] = self.caption_entities
        if self.reply_to_message is not None:
            data["reply_to_message"] = self.reply_to_message
        if self.edit_date is not None:
            data["edit_date"] = self.edit_date
        if self.protect_content:
            data["has_protected_content"] = True
        # Telegram only echoes inline keyboards in Message objects.
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            data["reply_markup"] = self.reply_markup
        return data

    def to_json(self, include_files: bool = False) -> JsonDict:
        """A test-side JSON view (used by the HTTP side door)."""
        data: JsonDict = {
            "message_id": self.message_id,
            "chat_id": self.chat_id,
            "date": self.date,
            "kind": self.kind,
            "text": self.text,
            "raw_text": self.raw_text,
            "parse_mode": self.parse_mode,
            "html": self.html,
            "caption": self.caption,
            "entities": self.entities,
            "reply_markup": self.reply_markup,
            "reply_to_message_id": self.reply_to_message_id,
            "edited": self.edited,
            "edit_count": len(self.edits),
            "deleted": self.deleted,
        }
        if self.file is not None:
            file_data: JsonDict = {
                "file_id": self.file.file_id,
                "file_name": self.file.file_name,
                "size": self.file.size,
            }
            if include_files:
                file_data["base64"] = base64.b64encode(self.file.data).decode()
            data[self.kind] = file_data
        return data


def _keyboard_button(raw: Any) -> KeyboardButton:
    if isinstance(raw, str):
        return KeyboardButton(raw, False, False)
    return KeyboardButton(
        str(raw.get("text", "")),
        bool(raw.get("request_contact")),
        bool(raw.get("request_location")),
    )


# ------------------------------------------------------------------------- callbacks


@dataclass
class CallbackAnswer:
    """What the bot answered to a callback query (``answerCallbackQuery``)."""

    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int


@dataclass(eq=False)
class CallbackQuery:
    """A callback query a user sent, and the bot's answer once it arrives."""

    id: str
    chat_id: int
    message_id: int
    data: str
    answer: CallbackAnswer | None = None


# ------------------------------------------------------------------------------ chats


@dataclass(eq=False)
class Chat:
    """The private chat between one bot and one user."""

    bot: EmulatedBot
    user: UserProfile
    blocked: bool = False
    next_message_id: int = 1
    bot_messages: list[BotMessage] = field(default_factory=list)
    user_messages: dict[int, JsonDict] = field(default_factory=dict)
    messages_by_id: dict[int, BotMessage] = field(default_factory=dict)
    deleted_user_message_ids: set[int] = field(default_factory=set)
    reply_keyboard: JsonDict | None = None
    """The reply keyboard currently shown to the user (``None`` when removed/never sent)."""
    chat_actions: list[str] = field(default_factory=list)
    callbacks: list[CallbackQuery] = field(default_factory=list)
    changed: Signal = field(default_factory=Signal)

    @property
    def id(self) -> int:
        """The chat id (equal to the user id for private chats)."""
        return self.user.id

    def take_message_id(self) -> int:
        """Reserve the next message id of this chat."""
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id

    def add_bot_message(self, message: BotMessage) -> None:
        """Record a message the bot sent."""
        self.bot_messages.append(message)
        self.messages_by_id[message.message_id] = message
        if message.reply_markup is not None:
            if "keyboard" in message.reply_markup:
                self.reply_keyboard = message.reply_markup
            elif message.reply_markup.get("remove_keyboard"):
                self.reply_keyboard = None
        self.changed.notify()

    def message_json(self, message_id: int) -> JsonDict | None:
        """The API view of any live message in the chat (bot's or user's), if it exists."""
        bot_message = self.messages_by_id.get(message_id)
        if bot_message is not None:
            return None if bot_message.deleted else bot_message.to_api()
        if message_id in self.deleted_user_message_ids:
            return None
        return self.user_messages.get(message_id)


# ------------------------------------------------------------------------------- bots


@dataclass
class PendingUpdate:
    """An update waiting in a bot's getUpdates queue."""

    update_id: int
    kind: str
    payload: JsonDict

    def to_json(self) -> JsonDict:
        """The Bot API ``Update`` object."""
        return {"update_id": self.update_id, self.kind: self.payload}


class EmulatedBot:
    """One bot account registered in the emulator (identity plus all its server-side state).

    Attributes:
        id: The bot's user id (the numeric part of the token).
        token: The bot token.
        username: The bot's username, without ``@``.
        first_name: The bot's display name.
        chats: Private chats by user id.
        commands: ``setMyCommands`` results keyed by ``(scope_key, language_code)``.
        webhook_url: The URL set by ``setWebhook`` (``""`` when none).
    """

    def __init__(
        self,
        token: str,
        username: str,
        first_name: str,
        *,
        stats: Stats | None = None,
        first_update_id: int = 1,
    ) -> None:
        prefix = token.split(":", 1)[0]
        if ":" not in token or not prefix.isdigit():
            raise ValueError(f"bot token must look like '123456:SECRET', got {token!r}")
        self.id = int(prefix)
        self.token = token
        self.username = username.lstrip("@")
        self.first_name = first_name
        self.stats = stats if stats is not None else Stats()
        self.chats: dict[int, Chat] = {}
        self.files: dict[str, StoredFile] = {}
        self.files_by_path: dict[str, StoredFile] = {}
        self.commands: dict[tuple[str, str], list[JsonDict]] = {}
        self.menu_buttons: dict[int | None, JsonDict] = {}
        self.settings: dict[str, JsonDict] = {}
        self.webhook_url = ""
        self.allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self.callbacks: dict[str, CallbackQuery] = {}
        self.updates: deque[PendingUpdate] = deque()
        self.updates_changed = Signal()
        self.next_update_id = first_update_id
        self.highest_delivered = first_update_id - 1
        self.poll_generation = 0
        self.closed = False
        self._file_counter = itertools.count(1)
        self._callback_counter = itertools.count(1)

    def __repr__(self) -> str:
        return f"EmulatedBot(id={self.id}, username={self.username!r})"

    def user_json(self) -> JsonDict:
        """The bot as a Bot API ``User`` (as in ``from`` of its messages)."""
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    def get_me_json(self) -> JsonDict:
        """The ``User`` answered by ``getMe`` (with the bot-only capability flags)."""
        return {
            **self.user_json(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    # -- updates --------------------------------------------------------------------

    def push_update(self, kind: str, payload: JsonDict) -> PendingUpdate:
        """Append an update to the getUpdates queue and wake long polls."""
        update = PendingUpdate(self.next_update_id, kind, payload)
        self.next_update_id += 1
        self.updates.append(update)
        self.stats.updates_enqueued += 1
        self.updates_changed.notify()
        return update

    def confirm_updates(self, offset: int | None) -> None:
        """Forget updates confirmed by ``offset`` (getUpdates semantics, incl. negatives)."""
        if not offset:
            return
        if offset < 0:
            self.pending_updates(1)  # drop disallowed updates at the head first
            while len(self.updates) > -offset:
                self.updates.popleft()
            return
        while self.updates and self.updates[0].update_id < offset:
            self.updates.popleft()

    def pending_updates(self, limit: int) -> list[PendingUpdate]:
        """Up to ``limit`` unconfirmed updates of allowed types, oldest first."""
        allowed = self.allowed_updates
        while self.updates and self.updates[0].kind not in allowed:
            self.updates.popleft()
        batch: list[PendingUpdate] = []
        for update in self.updates:
            if update.kind in allowed:
                batch.append(update)
                if len(batch) >= limit:
                    break
        return batch

    # -- files ----------------------------------------------------------------------

    def store_file(
        self,
        kind: str,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        width: int = 0,
        height: int = 0,
    ) -> StoredFile:
        """Store bytes under a new file_id (Telegram-like opaque ids, unique per bot)."""
        number = next(self._file_counter)
        digest = hashlib.sha1(f"{self.id}:{kind}:{number}".encode()).digest()
        prefix = {"photo": "AgAC", "document": "BQAC", "sticker": "CAAC"}.get(kind, "BAAC")
        file_id = prefix + base64.urlsafe_b64encode(digest + digest[:6]).decode().rstrip("=")
        unique = "AQAD" + base64.urlsafe_b64encode(digest[:9]).decode()
        folder = {"photo": "photos", "document": "documents", "sticker": "stickers"}.get(kind, kind)
        extension = _extension(kind, file_name)
        stored = StoredFile(
            file_id=file_id,
            file_unique_id=unique,
            kind=kind,
            data=data,
            file_path=f"{folder}/file_{number}{extension}",
            file_name=file_name,
            mime_type=mime_type,
            width=width,
            height=height,
        )
        self.files[file_id] = stored
        self.files_by_path[stored.file_path] = stored
        return stored

    def new_callback_id(self) -> str:
        """A fresh callback query id."""
        return f"{self.id}{next(self._callback_counter):010d}"


def _extension(kind: str, file_name: str | None) -> str:
    if file_name and "." in file_name:
        return "." + file_name.rsplit(".", 1)[1]
    return {"photo": ".jpg", "sticker": ".webp"}.get(kind, "")


def scope_key(scope: Any) -> str:
    """Canonical key of a ``BotCommandScope`` (``None`` = the default scope)."""
    if not scope:
        scope = {"type": "default"}
    if isinstance(scope, str):
        scope = json.loads(scope)
    normalized = dict(scope)
    if "chat_id" in normalized:
        try:
            normalized["chat_id"] = int(normalized["chat_id"])
        except (TypeError, ValueError):
            pass
    return json.dumps(normalized, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------- the log


@dataclass
class ApiCall:
    """One Bot API request as the emulator answered it."""

    bot_id: int | None
    method: str
    params: JsonDict
    """Parameters as received; uploads appear as :class:`emulator.params.UploadedFile`."""
    status: int
    time: float
    """Wall-clock time (``time.time()``) when the request arrived."""
    duration: float
    description: str | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        """True for a successful (200) answer."""
        return self.status == 200

    def to_json(self) -> JsonDict:
        """A JSON-safe view (uploads described, not embedded)."""
        params = {
            key: (value.to_json() if hasattr(value, "to_json") else value)
            for key, value in self.params.items()
        }
        return {
            "bot_id": self.bot_id,
            "method": self.method,
            "params": params,
            "status": self.status,
            "time": self.time,
            "duration": self.duration,
            "description": self.description,
        }


@dataclass
class Stats:
    """Counters over the emulator's lifetime (or since :meth:`reset`)."""

    calls: Counter[str] = field(default_factory=Counter)
    """Calls per method (as the bot spelled it)."""
    statuses: Counter[int] = field(default_factory=Counter)
    """Answers per HTTP status."""
    rate_limited: int = 0
    """429 answers produced by the rate limiter."""
    faults_injected: int = 0
    """Calls a fault rule answered with an error (latency-only rules not counted)."""
    updates_enqueued: int = 0
    updates_delivered: int = 0
    """Updates returned by getUpdates for the first time."""

    @property
    def too_many_requests(self) -> int:
        """All 429 answers (rate limiter and injected)."""
        return self.statuses[429]

    def reset(self) -> None:
        """Zero every counter."""
        self.calls.clear()
        self.statuses.clear()
        self.rate_limited = self.faults_injected = 0
        self.updates_enqueued = self.updates_delivered = 0

    def to_json(self) -> JsonDict:
        """A JSON view."""
        return {
            "calls": dict(self.calls),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "rate_limited": self.rate_limited,
            "too_many_requests": self.too_many_requests,
            "faults_injected": self.faults_injected,
            "updates_enqueued": self.updates_enqueued,
            "updates_delivered": self.updates_delivered,
        }


def now() -> int:
    """Current Unix time as Telegram reports it (whole seconds)."""
    return int(time.time())
