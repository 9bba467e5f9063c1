"""The Bot API methods: each takes the bot's state and the call's parameters, returns the
``result`` Telegram would send, or raises :class:`~emulator.errors.ApiError`.

:data:`METHODS` maps lower-case method names (Telegram's are case-insensitive) to handlers.
"""

from __future__ import annotations

import io
import mimetypes
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import ApiError, bad_request, forbidden
from .formatting import FormattedText, parse_text, utf16_len
from .params import Params, UploadedFile
from .state import (
    DEFAULT_UPDATE_TYPES,
    BotMessage,
    CallbackAnswer,
    Chat,
    EmulatedBot,
    JsonDict,
    MessageEdit,
    StoredFile,
    now,
    scope_key,
)

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_UPLOAD = 50 * 1024 * 1024
MAX_DOWNLOAD = 20 * 1024 * 1024
MAX_LONG_POLL = 50.0

_CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
        "upload_document", "choose_sticker", "find_location", "record_video_note",
        "upload_video_note",
    }
)  # fmt: skip
_INLINE_ACTIONS = (
    "callback_data", "url", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)  # fmt: skip
_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_MARKUP_JSON_ERROR = "can't parse reply keyboard markup JSON object"


@dataclass
class MethodOptions:
    """Behaviour switches shared by all methods.

    Args:
        strict_images: Refuse uploads to ``sendPhoto`` that Pillow cannot read as an image
            (Telegram answers ``IMAGE_PROCESS_FAILED``). Off by default so tests may send
            arbitrary bytes as photos.
    """

    strict_images: bool = False


Handler = Callable[[EmulatedBot, Params, MethodOptions], Awaitable[Any]]


# ------------------------------------------------------------------------- helpers


def get_chat(bot: EmulatedBot, params: Params, *, check_blocked: bool = True) -> Chat:
    """The private chat named by ``chat_id``: 400 if unknown, 403 if the user blocked the bot."""
    raw = params.require_str("chat_id", error="chat_id is empty")
    try:
        chat_id = int(raw)
    except ValueError:
        raise bad_request(errors.CHAT_NOT_FOUND) from None
    chat = bot.chats.get(chat_id)
    if chat is None:
        raise bad_request(errors.CHAT_NOT_FOUND)
    if check_blocked and chat.blocked:
        raise forbidden()
    return chat


def validate_reply_markup(markup: Any, *, inline_only: bool = False) -> JsonDict | None:
    """Check a ``reply_markup`` object like Telegram does; returns it normalised."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request(_MARKUP_JSON_ERROR)
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'can\'t parse inline keyboard button: field "inline_keyboard" '
                "must be an Array of Arrays"
            )
        for row in rows:
            for button in row:
                _validate_inline_button(button)
        return {"inline_keyboard": rows}
    if inline_only:
        raise bad_request("inline keyboard expected")
    if "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request('field "keyboard" must be an Array of Arrays')
        normalised = dict(markup)
        normalised["keyboard"] = [
            [{"text": b} if isinstance(b, str) else b for b in row] for row in rows
        ]
        for row in normalised["keyboard"]:
            for button in row:
                if not isinstance(button, dict) or not str(button.get("text", "")):
                    raise bad_request("keyboard button text must be non-empty")
        return normalised
    if markup.get("remove_keyboard") or markup.get("force_reply"):
        return dict(markup)
    raise bad_request(_MARKUP_JSON_ERROR)


def _validate_inline_button(button: Any) -> None:
    if not isinstance(button, dict) or not str(button.get("text", "")):
        raise bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    actions = [key for key in _INLINE_ACTIONS if key in button]
    if not actions:
        raise bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in button:
        url = button["url"]
        if not isinstance(url, str) or not re.match(r"(https?|tg)://\S+$", url):
            raise bad_request("BUTTON_URL_INVALID")


def _read_markup(params: Params, *, inline_only: bool = False) -> JsonDict | None:
    return validate_reply_markup(
        params.get_json("reply_markup", error=_MARKUP_JSON_ERROR), inline_only=inline_only
    )


def _parse(params: Params, text: str, entities_field: str) -> FormattedText:
    entities = params.get_json(entities_field)
    return parse_text(text, params.get_str("parse_mode"), entities if entities else None)


def _reply_to(chat: Chat, params: Params) -> tuple[int | None, JsonDict | None]:
    reply_parameters = params.get_json("reply_parameters")
    if isinstance(reply_parameters, dict) and reply_parameters.get("message_id") is not None:
        nested = Params(reply_parameters)
        message_id = nested.require_int("message_id")
        allow_missing = nested.get_bool("allow_sending_without_reply")
    else:
        maybe_id = params.get_int("reply_to_message_id")
        if maybe_id is None:
            return None, None
        message_id = maybe_id
        allow_missing = params.get_bool("allow_sending_without_reply")
    replied = chat.message_json(message_id)
    if replied is None:
        if allow_missing:
            return None, None
        raise bad_request(errors.REPLIED_NOT_FOUND)
    replied = dict(replied)
    replied.pop("reply_to_message", None)
    return message_id, replied


def _new_message(
    bot: EmulatedBot, chat: Chat, params: Params, kind: str, **content: Any
) -> BotMessage:
    reply_markup = _read_markup(params)
    reply_to_id, reply_to = _reply_to(chat, params)
    message = BotMessage(
        message_id=chat.take_message_id(),
        chat_id=chat.id,
        date=now(),
        kind=kind,
        bot_user=bot.user_json(),
        chat=chat.user.chat_json(),
        reply_markup=reply_markup,
        reply_to_message_id=reply_to_id,
        reply_to_message=reply_to,
        disable_notification=params.get_bool("disable_notification"),
        protect_content=params.get_bool("protect_content"),
        **content,
    )
    chat.add_bot_message(message)
    return message


def _caption(params: Params) -> dict[str, Any]:
    raw = params.get_str("caption")
    if raw is None:
        return {}
    formatted = _parse(params, raw, "caption_entities")
    if utf16_len(formatted.text) > MAX_CAPTION:
        raise bad_request(errors.CAPTION_TOO_LONG)
    return {
        "caption": formatted.text,
        "raw_caption": raw,
        "caption_parse_mode": params.get_str("parse_mode"),
        "caption_entities": formatted.entities,
    }


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) if Pillow can read ``data`` as an image, else None."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            return int(width), int(height)
    except Exception:  # any decoding problem means "not an image"
        return None


def _input_file(
    bot: EmulatedBot, params: Params, field: str, kind: str, options: MethodOptions
) -> StoredFile:
    """Resolve an upload or a file_id for ``field`` into a stored file of ``kind``."""
    value = params.get_file(field)
    if value is None:
        raise bad_request(f"there is no {field} in the request")
    if isinstance(value, UploadedFile):
        if len(value.data) > MAX_UPLOAD:
            raise ApiError(413, "Request Entity Too Large")
        if not value.data:
            raise bad_request("file must be non-empty")
        if kind == "photo":
            size = image_size(value.data)
            if size is None and options.strict_images:
                raise bad_request("IMAGE_PROCESS_FAILED")
            width, height = size or (0, 0)
            return bot.store_file("photo", value.data, width=width, height=height)
        mime = value.content_type
        if not mime or mime == "application/octet-stream":
            mime = mimetypes.guess_type(value.filename)[0] or "application/octet-stream"
        return bot.store_file(kind, value.data, file_name=value.filename, mime_type=mime)
    stored = bot.files.get(value)
    if stored is None:
        raise bad_request(errors.WRONG_FILE_ID)
    if stored.kind != kind:
        raise bad_request(
            f"can't use file of type {stored.kind.capitalize()} as {kind.capitalize()}"
        )
    return stored


def _edit_target(chat: Chat, params: Params) -> BotMessage:
    message_id = params.require_int("message_id", error="message identifier is not specified")
    message = chat.messages_by_id.get(message_id)
    if message is None:
        if message_id in chat.user_messages and message_id not in chat.deleted_user_message_ids:
            raise bad_request(errors.MESSAGE_CANT_BE_EDITED)
        raise bad_request(errors.MESSAGE_TO_EDIT_NOT_FOUND)
    if message.deleted:
        raise bad_request(errors.MESSAGE_TO_EDIT_NOT_FOUND)
    return message


def _edit_chat(bot: EmulatedBot, params: Params) -> Chat:
    if "chat_id" not in params and "inline_message_id" in params:
        # Inline messages are not emulated.
        raise bad_request(errors.MESSAGE_TO_EDIT_NOT_FOUND)
    return get_chat(bot, params)


def _record_edit(chat: Chat, message: BotMessage, method: str) -> JsonDict:
    message.edit_date = now()
    message.edits.append(
        MessageEdit(method, message.edit_date, message.text, message.caption, message.reply_markup)
    )
    chat.changed.notify()
    return message.to_api()


# --------------------------------------------------------------------------- methods


async def get_me(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """getMe."""
    return bot.get_me_json()


async def log_out(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """logOut / close: always succeed."""
    return True


async def get_updates(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """getUpdates with real long polling."""
    if bot.webhook_url:
        raise ApiError(409, errors.WEBHOOK_ACTIVE)
    offset = params.get_int("offset")
    limit = min(max(params.get_int("limit") or 100, 1), 100)
    timeout = min(max(params.get_int("timeout") or 0, 0), MAX_LONG_POLL)
    allowed = params.get_json("allowed_updates")
    if allowed is not None:
        if not isinstance(allowed, list):
            raise bad_request("can't parse allowed_updates JSON object")
        bot.allowed_updates = frozenset(allowed) if allowed else DEFAULT_UPDATE_TYPES
    bot.confirm_updates(offset)
    # A newer getUpdates terminates an older one with 409, as on Telegram.
    bot.poll_generation += 1
    generation = bot.poll_generation
    bot.updates_changed.notify()
    batch = bot.pending_updates(limit)
    if not batch and timeout > 0:

        def ready() -> bool:
            nonlocal batch
            if bot.poll_generation != generation or bot.closed:
                return True
            batch = bot.pending_updates(limit)
            return bool(batch)

        await bot.updates_changed.wait_for(ready, timeout)
        if bot.poll_generation != generation:
            raise ApiError(409, errors.GETUPDATES_CONFLICT)
    for update in batch:
        if update.update_id > bot.highest_delivered:
            bot.highest_delivered = update.update_id
            bot.stats.updates_delivered += 1
    return [update.to_json() for update in batch]


async def set_webhook(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """setWebhook (stored only; nothing is ever posted to it)."""
    bot.webhook_url = params.get_str("url") or ""
    if params.get_bool("drop_pending_updates"):
        bot.updates.clear()
    bot.updates_changed.notify()
    return True


async def delete_webhook(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """deleteWebhook."""
    bot.webhook_url = ""
    if params.get_bool("drop_pending_updates"):
        bot.updates.clear()
    return True


async def get_webhook_info(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """getWebhookInfo."""
    return {
        "url": bot.webhook_url,
        "has_custom_certificate": False,
        "pending_update_count": len(bot.updates),
    }


async def send_message(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """sendMessage."""
    chat = get_chat(bot, params)
    raw = params.require_str("text", error=errors.TEXT_EMPTY)
    formatted = _parse(params, raw, "entities")
    if not formatted.text.strip():
        raise bad_request(errors.TEXT_EMPTY)
    if utf16_len(formatted.text) > MAX_TEXT:
        raise bad_request(errors.TEXT_TOO_LONG)
    link_preview = params.get_json("link_preview_options")
    message = _new_message(
        bot,
        chat,
        params,
        "text",
        text=formatted.text,
        raw_text=raw,
        parse_mode=params.get_str("parse_mode"),
        entities=formatted.entities,
        link_preview_options=link_preview if isinstance(link_preview, dict) else None,
    )
    return message.to_api()


async def send_photo(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """sendPhoto (upload or file_id)."""
    chat = get_chat(bot, params)
    stored = _input_file(bot, params, "photo", "photo", options)
    message = _new_message(bot, chat, params, "photo", file=stored, **_caption(params))
    return message.to_api()


async def send_document(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """sendDocument (upload or file_id)."""
    chat = get_chat(bot, params)
    stored = _input_file(bot, params, "document", "document", options)
    message = _new_message(bot, chat, params, "document", file=stored, **_caption(params))
    return message.to_api()


async def edit_message_text(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """editMessageText (an omitted reply_markup removes the inline keyboard, as on Telegram)."""
    chat = _edit_chat(bot, params)
    message = _edit_target(chat, params)
    if message.kind != "text":
        raise bad_request(errors.NO_TEXT_TO_EDIT)
    raw = params.require_str("text", error=errors.TEXT_EMPTY)
    formatted = _parse(params, raw, "entities")
    if not formatted.text.strip():
        raise bad_request(errors.TEXT_EMPTY)
    if utf16_len(formatted.text) > MAX_TEXT:
        raise bad_request(errors.TEXT_TOO_LONG)
    markup = _read_markup(params, inline_only=True)
    if (
        formatted.text == message.text
        and formatted.entities == message.entities
        and markup == _inline_part(message.reply_markup)
    ):
        raise bad_request(errors.NOT_MODIFIED)
    message.text, message.raw_text, message.entities = formatted.text, raw, formatted.entities
    message.parse_mode = params.get_str("parse_mode")
    _apply_markup(message, markup)
    link_preview = params.get_json("link_preview_options")
    if isinstance(link_preview, dict):
        message.link_preview_options = link_preview
    return _record_edit(chat, message, "editMessageText")


async def edit_message_caption(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """editMessageCaption."""
    chat = _edit_chat(bot, params)
    message = _edit_target(chat, params)
    if message.kind == "text":
        raise bad_request(errors.NO_CAPTION_TO_EDIT)
    caption = _caption(params)
    markup = _read_markup(params, inline_only=True)
    if (
        caption.get("caption") == message.caption
        and caption.get("caption_entities", []) == message.caption_entities
        and markup == _inline_part(message.reply_markup)
    ):
        raise bad_request(errors.NOT_MODIFIED)
    message.caption = caption.get("caption")
    message.raw_caption = caption.get("raw_caption")
    message.caption_parse_mode = caption.get("caption_parse_mode")
    message.caption_entities = caption.get("caption_entities", [])
    _apply_markup(message, markup)
    return _record_edit(chat, message, "editMessageCaption")


async def edit_message_reply_markup(
    bot: EmulatedBot, params: Params, options: MethodOptions
) -> Any:
    """editMessageReplyMarkup."""
    chat = _edit_chat(bot, params)
    message = _edit_target(chat, params)
    markup = _read_markup(params, inline_only=True)
    if markup == _inline_part(message.reply_markup):
        raise bad_request(errors.NOT_MODIFIED)
    _apply_markup(message, markup)
    return _record_edit(chat, message, "editMessageReplyMarkup")


def _inline_part(markup: JsonDict | None) -> JsonDict | None:
    return markup if markup is not None and "inline_keyboard" in markup else None


def _apply_markup(message: BotMessage, markup: JsonDict | None) -> None:
    """Set the new inline keyboard (None removes it; a reply keyboard record is kept)."""
    if markup is not None or _inline_part(message.reply_markup) is not None:
        message.reply_markup = markup


async def delete_message(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """deleteMessage (bot messages and, as in private chats, the user's own)."""
    chat = get_chat(bot, params)
    message_id = params.require_int("message_id", error="message identifier is not specified")
    message = chat.messages_by_id.get(message_id)
    if message is not None and not message.deleted:
        message.deleted = True
    elif message_id in chat.user_messages and message_id not in chat.deleted_user_message_ids:
        chat.deleted_user_message_ids.add(message_id)
    else:
        raise bad_request(errors.MESSAGE_TO_DELETE_NOT_FOUND)
    chat.changed.notify()
    return True


async def answer_callback_query(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """answerCallbackQuery: answering twice or an unknown id is the 'query is too old' 400."""
    query_id = params.require_str("callback_query_id", error=errors.QUERY_TOO_OLD)
    query = bot.callbacks.get(query_id)
    if query is None or query.answer is not None:
        raise bad_request(errors.QUERY_TOO_OLD)
    text = params.get_str("text")
    if text is not None and len(text) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    query.answer = CallbackAnswer(
        text=text,
        show_alert=params.get_bool("show_alert"),
        url=params.get_str("url"),
        cache_time=params.get_int("cache_time") or 0,
    )
    chat = bot.chats.get(query.chat_id)
    if chat is not None:
        chat.changed.notify()
    return True


def _commands_key(params: Params) -> tuple[str, str]:
    scope = params.get_json("scope")
    if scope is not None and not isinstance(scope, dict):
        raise bad_request("can't parse BotCommandScope JSON object")
    return scope_key(scope), params.get_str("language_code") or ""


async def set_my_commands(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """setMyCommands, stored per (scope, language_code)."""
    commands = params.get_json("commands", error="can't parse commands JSON object")
    if not isinstance(commands, list):
        raise bad_request("can't parse commands JSON object")
    if len(commands) > 100:
        raise bad_request("too many commands")
    stored: list[JsonDict] = []
    for command in commands:
        if not isinstance(command, dict):
            raise bad_request("can't parse commands JSON object")
        name = str(command.get("command", ""))
        description = str(command.get("description", ""))
        if not _COMMAND_RE.fullmatch(name):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(description) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        stored.append({"command": name, "description": description})
    bot.commands[_commands_key(params)] = stored
    return True


async def get_my_commands(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """getMyCommands for exactly the given (scope, language_code)."""
    return list(bot.commands.get(_commands_key(params), []))


async def delete_my_commands(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """deleteMyCommands."""
    bot.commands.pop(_commands_key(params), None)
    return True


async def set_chat_menu_button(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """setChatMenuButton (stored per chat, ``None`` = default for all chats)."""
    chat_id = params.get_int("chat_id")
    if chat_id is not None and chat_id not in bot.chats:
        raise bad_request(errors.CHAT_NOT_FOUND)
    button = params.get_json("menu_button") or {"type": "default"}
    bot.menu_buttons[chat_id] = button
    return True


async def get_chat_menu_button(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """getChatMenuButton."""
    chat_id = params.get_int("chat_id")
    return bot.menu_buttons.get(chat_id) or bot.menu_buttons.get(None) or {"type": "default"}


async def send_chat_action(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """sendChatAction (recorded in ``Chat.chat_actions``)."""
    chat = get_chat(bot, params)
    action = params.require_str("action", error="wrong parameter action in request")
    if action not in _CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    chat.chat_actions.append(action)
    return True


async def get_chat_info(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """getChat: the ChatFullInfo of a known private chat."""
    chat = get_chat(bot, params, check_blocked=False)
    return {
        **chat.user.chat_json(),
        "accent_color_id": 0,
        "max_reaction_count": 11,
        "accepted_gift_types": {
            "unlimited_gifts": True,
            "limited_gifts": True,
            "unique_gifts": True,
            "premium_subscription": True,
            "gifts_from_channels": True,
        },
    }


async def get_file(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
    """getFile."""
    file_id = params.require_str("file_id", error=errors.INVALID_FILE_ID)
    stored = bot.files.get(file_id)
    if stored is None:
        raise bad_request(errors.INVALID_FILE_ID)
    if stored.size > MAX_DOWNLOAD:
        raise bad_request("file is too big")
    return stored.file_json()


def _setting(name: str) -> Handler:
    async def store_setting(bot: EmulatedBot, params: Params, options: MethodOptions) -> Any:
        bot.settings[name] = params.for_log()
        return True

    store_setting.__doc__ = f"{name}: stored in ``EmulatedBot.settings``."
    return store_setting


METHODS: dict[str, Handler] = {
    "getme": get_me,
    "logout": log_out,
    "close": log_out,
    "getupdates": get_updates,
    "setwebhook": set_webhook,
    "deletewebhook": delete_webhook,
    "getwebhookinfo": get_webhook_info,
    "sendmessage": send_message,
    "sendphoto": send_photo,
    "senddocument": send_document,
    "editmessagetext": edit_message_text,
    "editmessagecaption": edit_message_caption,
    "editmessagereplymarkup": edit_message_reply_markup,
    "deletemessage": delete_message,
    "answercallbackquery": answer_callback_query,
    "setmycommands": set_my_commands,
    "getmycommands": get_my_commands,
    "deletemycommands": delete_my_commands,
    "setchatmenubutton": set_chat_menu_button,
    "getchatmenubutton": get_chat_menu_button,
    "sendchataction": send_chat_action,
    "getchat": get_chat_info,
    "getfile": get_file,
    "setmydescription": _setting("setMyDescription"),
    "setmyshortdescription": _setting("setMyShortDescription"),
    "setmyname": _setting("setMyName"),
}
