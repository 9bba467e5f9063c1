"""The HTTP API's refusals: `{"error": {"code": ..., "message": ..., <extra>}}` with a status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered as JSON: status, code, message and extra fields."""

    def __init__(
        self, status: int, code: str, message: str, *, close: bool = False, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close = close  # close the connection after the answer
        self.extra = extra
