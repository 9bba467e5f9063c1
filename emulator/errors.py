"""Bot API error answers.

Every failure the emulator reports to a bot is an :class:`ApiError`. It carries the HTTP
status, the Telegram ``description`` text and the optional ``parameters`` object, and knows
how to render itself as the exact JSON body Telegram would send.
"""

from __future__ import annotations

from typing import Any

# Descriptions copied from real Bot API answers.
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
MESSAGE_TO_EDIT_NOT_FOUND = "Bad Request: message to edit not found"
MESSAGE_TO_DELETE_NOT_FOUND = "Bad Request: message to delete not found"
MESSAGE_CANT_BE_EDITED = "Bad Request: message can't be edited"
NO_TEXT_TO_EDIT = "Bad Request: there is no text in the message to edit"
NO_CAPTION_TO_EDIT = "Bad Request: there is no caption in the message to edit"
REPLIED_NOT_FOUND = "Bad Request: message to be replied not found"
CHAT_NOT_FOUND = "Bad Request: chat not found"
TEXT_EMPTY = "Bad Request: message text is empty"
TEXT_TOO_LONG = "Bad Request: message is too long"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
WRONG_FILE_ID = "Bad Request: wrong file identifier/HTTP URL specified"
INVALID_FILE_ID = "Bad Request: invalid file_id"
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
BOT_BLOCKED = "Forbidden: bot was blocked by the user"
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
GETUPDATES_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)


class ApiError(Exception):
    """A Bot API error answer (``{"ok": false, ...}``).

    Args:
        status: HTTP status code, also used as ``error_code``.
        description: Telegram's ``description`` text, e.g. ``"Bad Request: chat not found"``.
        retry_after: If set, sent as ``parameters.retry_after`` (used with 429).
    """

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def to_json(self) -> dict[str, Any]:
        """Return the JSON body Telegram sends for this error."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(description: str) -> ApiError:
    """A 400 error; ``description`` may omit the ``"Bad Request: "`` prefix."""
    if not description.startswith("Bad Request"):
        description = f"Bad Request: {description}"
    return ApiError(400, description)


def forbidden(description: str = BOT_BLOCKED) -> ApiError:
    """A 403 error (by default: the user blocked the bot)."""
    return ApiError(403, description)


def too_many_requests(retry_after: int) -> ApiError:
    """A 429 error with ``parameters.retry_after``."""
    retry_after = max(1, int(retry_after))
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


def server_error(status: int = 500, description: str | None = None) -> ApiError:
    """A 5xx error."""
    if description is None:
        description = "Bad Gateway" if status == 502 else "Internal Server Error"
    return ApiError(status, description)


NOT_FOUND = ApiError(404, "Not Found")
UNAUTHORIZED = ApiError(401, "Unauthorized")
