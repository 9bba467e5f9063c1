"""PLACEHOLDER until the lift branch lands (replaced by its marketing/html.py)."""

from __future__ import annotations


class BroadcastTextError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_text(text: str, *, caption: bool = False) -> None:
    if not text.strip():
        raise BroadcastTextError("empty_text", "the text is empty")


def fill(text: str, *, first_name: str, balance: str) -> str:
    import html

    return text.replace("{first_name}", html.escape(first_name)).replace("{balance}", balance)
