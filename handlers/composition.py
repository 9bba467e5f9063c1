"""The composer's draft (`Composition`, kept in the FSM data) and what every step of it uses:
reading the draft a typed answer or a button belongs to, the Back and Cancel row, the draft's
segment. The steps live in handlers/composer.py (the audience), composer_message.py and
composer_send.py; each imports this, none imports another."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from pydantic import Field

from handlers.drafts import Draft, draft_of
from handlers.keyboards import ComposeCb
from marketing.saved import Segments
from marketing.segments import SegmentFilter


class Composition(Draft):
    """The broadcast being composed: its filter (the contract's JSON), its message, its
    control group and its time. `started` tells a live draft from an empty one."""

    started: bool = False
    filter: dict[str, Any] = Field(default_factory=dict)
    segment_name: str | None = None
    asking: str = ""  # the condition whose value is typed
    text: str = ""
    photo: str | None = None
    button_text: str | None = None
    button_url: str | None = None
    gift_points: int = 0
    gift_days: int = 0
    control_percent: int | None = None
    send_at: str | None = None  # ISO 8601 with its offset; None: now
    public_id: str = ""  # made for the summary: a second tap on Confirm creates nothing new
    summarised: str = ""  # the content its summary showed (`content_digest`)

    def content_digest(self) -> str:
        """What is sent, to whom and when: a summary's Confirm stands for this only."""
        content = self.model_dump(mode="json", exclude={"asking", "public_id", "summarised"})
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


async def started_draft(message: Message, state: FSMContext) -> Composition | None:
    """The draft a typed answer belongs to; None (and "cancelled") without one."""
    draft = await draft_of(state, Composition)
    if not draft.started:
        await state.clear()
        await message.answer(_("bc-cancelled"))
        return None
    return draft


async def live_draft(callback: CallbackQuery, state: FSMContext) -> Composition | None:
    """The draft a composer's button belongs to; None (and "no longer active") without one,
    after /cancel or a sent broadcast."""
    draft = await draft_of(state, Composition)
    if not draft.started or not isinstance(callback.message, Message):
        await callback.answer(_("button-stale"), show_alert=True)
        return None
    return draft


def back_cancel(back: str) -> list[tuple[str, ComposeCb]]:
    return [
        (_("bc-back"), ComposeCb(action=back)),
        (_("bc-cancel-composer"), ComposeCb(action="cancel")),
    ]


def segment_of(draft: Composition, segments: Segments) -> SegmentFilter:
    return segments.parse(draft.filter)
