"""Reading Bot API method parameters from an HTTP request.

Telegram accepts parameters as a query string, ``application/x-www-form-urlencoded``,
``multipart/form-data`` or ``application/json``. In the form encodings every value is a string
and complex values (``reply_markup``, ``reply_parameters``, ``commands``...) are JSON strings;
aiogram's ``AiohttpSession`` sends exactly that (url-encoded without files, multipart with
files, uploads referenced as ``attach://<part name>``). :class:`Params` hides the difference
behind typed getters that accept both the string and the native JSON form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from .errors import bad_request


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe description (the bytes are left out)."""
        return {"upload": self.filename, "size": len(self.data), "content_type": self.content_type}


class Params:
    """The parameters of one Bot API call with typed, Telegram-like getters.

    Values are kept as received (strings from forms, native values from JSON); uploads are
    :class:`UploadedFile` objects, already resolved from ``attach://`` references.
    """

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __contains__(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def get_str(self, name: str, *, required: bool = False, error: str | None = None) -> str | None:
        """Return the value as a string; ``None`` if absent (or a 400 if ``required``)."""
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(error or f"{name} is empty")
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, UploadedFile):
            raise bad_request(f'field "{name}" must be of type String')
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return json.dumps(value)

    def require_str(self, name: str, error: str | None = None) -> str:
        """Like :meth:`get_str` with ``required=True``; never returns ``None``."""
        value = self.get_str(name, required=True, error=error)
        assert value is not None
        return value

    def get_int(self, name: str, *, required: bool = False, error: str | None = None) -> int | None:
        """Return the value as an int; ``None`` if absent (or a 400 if ``required``)."""
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(error or f"{name} is empty")
            return None
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise bad_request(f'field "{name}" must be a valid Number')

    def require_int(self, name: str, error: str | None = None) -> int:
        """Like :meth:`get_int` with ``required=True``; never returns ``None``."""
        value = self.get_int(name, required=True, error=error)
        assert value is not None
        return value

    def get_float(self, name: str) -> float | None:
        """Return the value as a float, or ``None`` if absent."""
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, int | float):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            raise bad_request(f'field "{name}" must be a valid Number') from None

    def get_bool(self, name: str, default: bool = False) -> bool:
        """Return the value as a bool (``true``/``1`` are true), or ``default`` if absent."""
        value = self.values.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        return str(value).strip().lower() in ("true", "1", "yes")

    def get_json(self, name: str, *, error: str | None = None) -> Any:
        """Return a JSON value: parsed from a string, or as-is if it came in a JSON body."""
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(error or f"can't parse {name} JSON object") from None
        return value

    def get_file(self, name: str) -> str | UploadedFile | None:
        """Return an upload, or the string (file_id / URL) given for a file parameter."""
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, UploadedFile):
            return value
        return str(value)

    def for_log(self) -> dict[str, Any]:
        """A shallow copy of the values for the call log."""
        return dict(self.values)


MAX_BODY_BYTES = 64 * 1024 * 1024


async def read_params(request: web.Request) -> Params:
    """Collect query, JSON, url-encoded and multipart parameters of ``request``."""
    values: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.body_exists:
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON request body") from None
            if not isinstance(body, dict):
                raise bad_request("JSON request body must be an object")
            values.update(body)
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, FileField):
                    values[key] = UploadedFile(
                        filename=value.filename,
                        content_type=value.content_type,
                        data=value.file.read(),
                    )
                else:
                    values[key] = value
    # Resolve attach://<part> references to the uploaded part they name, then drop the
    # parts that only existed to be referenced.
    referenced: set[str] = set()
    for key, value in list(values.items()):
        if isinstance(value, str) and value.startswith("attach://"):
            part_name = value[len("attach://") :]
            part = values.get(part_name)
            if not isinstance(part, UploadedFile):
                raise bad_request(f"file attachment {part_name} not found")
            values[key] = part
            referenced.add(part_name)
    for part_name in referenced:
        values.pop(part_name, None)
    return Params(values)
