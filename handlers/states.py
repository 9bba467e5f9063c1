"""What the bot waits for from a member between two messages (aiogram FSM states).

One group for every screen that asks (settings: the birthday; requests: a question or a
dispute), so that the states keep their stored names ("Asking:birthday") and the menu's
/cancel ends any of them.
"""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup


class Asking(StatesGroup):
    support = State()
    dispute = State()
    birthday = State()


class Composing(StatesGroup):
    """The broadcast composer's steps that wait for typed input (the others are buttons)."""

    menu = State()  # a screen of buttons
    value = State()  # a condition's value
    segment_name = State()
    text = State()
    photo = State()
    button = State()
    gift = State()
    send_at = State()
