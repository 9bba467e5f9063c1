"""The keyboards and the callback data of the buttons: what a button carries and how a menu is
drawn. A button's data comes from the person's client and can be anything: out-of-range
numbers do not unpack (the fallback answers "this button is no longer active"), and every
value that does is checked again against what the server knows.

No words live here: every label comes from the locales through gettext.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.i18n import gettext as _
from pydantic import Field

from usecases.sales import ConfirmCb, RowId

MENU_ROWS = (
    ("menu-card", "menu-balance"),
    ("menu-history", "menu-invite"),
    ("menu-settings", "menu-support"),
)

Points = Annotated[int, Field(ge=0, le=2**31 - 1)]
Page = Annotated[int, Field(ge=0, le=2**31 - 1)]


class HistoryPageCb(CallbackData, prefix="hist"):
    page: Page


class DisputeListCb(CallbackData, prefix="dlist"):
    page: Page


class DisputeEntryCb(CallbackData, prefix="disp"):
    entry_id: RowId


class ConsentCb(CallbackData, prefix="consent"):
    pass


class SettingsCb(CallbackData, prefix="set"):
    action: str  # menu | lang | notify | birthday | delete | delete_yes | delete_no
    value: str = ""


class SaleCb(CallbackData, prefix="sale"):
    """A button of a sale. Only `action` picks the step: the member, the amount and the
    points are the server's (the cashier's FSM data); the button's own values must match them,
    or it is an old screen or a forged one."""

    action: str  # record | redeem | other | confirm | cancel
    member_id: RowId
    points: Points = 0
    sale: str = ""  # the sale's token in the FSM data ("" on the customer's panel)


class WithdrawCb(CallbackData, prefix="rw"):
    """The cashier gives up waiting for the member's confirmation."""

    request_id: RowId


class ComposeCb(CallbackData, prefix="bc"):
    """A button of the broadcast composer: the step's action and its value (a condition, a
    tier, a month, a percentage...). What it changes is checked against the FSM draft."""

    action: str
    value: str = ""


class BroadcastCb(CallbackData, prefix="bcast"):
    """A button on a broadcast's progress message or report: open | pause | resume |
    cancel | cancel_yes | cancel_no | list."""

    action: str
    broadcast_id: RowId = 0


class SegmentCb(CallbackData, prefix="seg"):
    """A saved segment's button in /segments: delete | delete_yes | delete_no."""

    action: str
    segment_id: RowId


def inline_keyboard(rows: Sequence[Sequence[tuple[str, CallbackData]]]) -> InlineKeyboardMarkup:
    """Rows of (label, callback data) as an inline keyboard."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=data.pack()) for text, data in row]
            for row in rows
        ]
    )


def button(text: str, data: str) -> InlineKeyboardButton:
    """One inline button with its (packed) callback data."""
    return InlineKeyboardButton(text=text, callback_data=data)


def main_menu() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=_(key)) for key in row] for row in MENU_ROWS],
        resize_keyboard=True,
        is_persistent=True,
        input_field_placeholder=_("menu-placeholder"),
    )


__all__ = [
    "MENU_ROWS",
    "BroadcastCb",
    "ComposeCb",
    "ConfirmCb",
    "ConsentCb",
    "DisputeEntryCb",
    "DisputeListCb",
    "HistoryPageCb",
    "Page",
    "Points",
    "RowId",
    "SaleCb",
    "SegmentCb",
    "SettingsCb",
    "WithdrawCb",
    "button",
    "inline_keyboard",
    "main_menu",
]
