"""/broadcast's second and third steps (handlers.composer has the audience, handlers.composer_send
the rest): the message (text, photo, URL button, gift points) and the control group."""

from __future__ import annotations

import re
from typing import Any

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _

from handlers.broadcast_texts import (
    broadcast_error_text,
)
from handlers.common import edit_in_place, plain_number
from handlers.composition import Composition, back_cancel, live_draft, segment_of, started_draft
from handlers.drafts import keep
from handlers.keyboards import ComposeCb, inline_keyboard
from handlers.states import Composing
from ledger.rules import Rules
from marketing.broadcasts import BroadcastError
from marketing.html import BroadcastTextError, check_text
from marketing.saved import Segments
from messaging.texts import days_text, number_text, points_text

CONTROL_CHOICES = (0, 5, 10, 20)
BUTTON_TEXT_LIMIT = 64
_GIFT = re.compile(r"^\s*(\d{1,9})(?:\s+(\d{1,4}))?\s*$")


def register(router: Router, typed: Any) -> None:
    router.message.register(take_text, Composing.text, typed)
    router.message.register(take_photo, Composing.photo, F.photo)
    router.message.register(ask_photo_again, Composing.photo, typed)
    router.message.register(take_button, Composing.button, typed)
    router.message.register(take_gift, Composing.gift, typed)
    cb = ComposeCb.filter
    router.callback_query.register(show_message_step, cb(F.action == "message"))
    router.callback_query.register(ask_typed, cb(F.action.in_(set(ASKS))))
    router.callback_query.register(
        remove_part, cb(F.action.in_({"no_photo", "no_button", "no_gift"}))
    )
    router.callback_query.register(show_control, cb(F.action == "control"))
    router.callback_query.register(pick_control, cb(F.action == "pct"))


ASKS = {"text": Composing.text, "photo": Composing.photo, "button": Composing.button}
ASKS |= {"gift": Composing.gift, "at": Composing.send_at}


# ------------------------------------------------------------------ the message


def message_screen(draft: Composition, rules: Rules) -> tuple[str, InlineKeyboardMarkup]:
    lines = [_("bc-step-message"), _("bc-message-text").format(text=draft.text)]
    lines.append(_("bc-message-photo-yes") if draft.photo else _("bc-message-photo-no"))
    if draft.button_text:
        lines.append(
            _("bc-message-button").format(text=draft.button_text, url=draft.button_url or "")
        )
    if draft.gift_points:
        lines.append(
            _("bc-message-gift").format(
                points=points_text(draft.gift_points), days=days_text(draft.gift_days)
            )
        )
    rows = [
        [(_("bc-edit-text"), ComposeCb(action="text"))],
        [
            (_("bc-remove-photo"), ComposeCb(action="no_photo"))
            if draft.photo
            else (_("bc-add-photo"), ComposeCb(action="photo"))
        ],
        [
            (_("bc-remove-button"), ComposeCb(action="no_button"))
            if draft.button_text
            else (_("bc-add-button"), ComposeCb(action="button"))
        ],
        [
            (_("bc-remove-gift"), ComposeCb(action="no_gift"))
            if draft.gift_points
            else (_("bc-add-gift"), ComposeCb(action="gift"))
        ],
        [(_("bc-back"), ComposeCb(action="audience")), (_("bc-next"), ComposeCb(action="control"))],
        [(_("bc-cancel-composer"), ComposeCb(action="cancel"))],
    ]
    return "\n\n".join(lines), inline_keyboard(rows)


def ask_text(rules: Rules, action: str) -> str:
    asks = {
        "text": _("bc-ask-text").format(name_field="{first_name}", balance_field="{balance}"),
        "photo": _("bc-ask-photo"),
        "button": _("bc-ask-button"),
        "gift": _("bc-ask-gift").format(
            default_days=rules.broadcasts.gift_days,
            most=number_text(rules.broadcasts.max_gift_points),
        ),
        "at": _("bc-ask-when"),
    }
    return asks[action]


async def show_message_step(
    callback: CallbackQuery, state: FSMContext, rules: Rules, segments: Segments
) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    assert isinstance(callback.message, Message)
    if not draft.text:
        counts = await segments.preview(segment_of(draft, segments))
        if counts.count == 0:
            await callback.answer(_("bc-audience-empty"), show_alert=True)
            return
        await callback.answer()
        await state.set_state(Composing.text)
        await edit_in_place(
            callback.message,
            _("bc-step-message") + "\n\n" + ask_text(rules, "text"),
            inline_keyboard([back_cancel("audience")]),
        )
        return
    await state.set_state(Composing.menu)
    await callback.answer()
    await edit_in_place(callback.message, *message_screen(draft, rules))


async def ask_typed(
    callback: CallbackQuery, callback_data: ComposeCb, state: FSMContext, rules: Rules
) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    await callback.answer()
    await state.set_state(ASKS[callback_data.action])
    back = "when" if callback_data.action == "at" else "message"
    assert isinstance(callback.message, Message)
    await edit_in_place(
        callback.message,
        ask_text(rules, callback_data.action),
        inline_keyboard([back_cancel(back)]),
    )


async def _answer_step(
    message: Message, state: FSMContext, draft: Composition, rules: Rules
) -> None:
    await keep(state, draft)
    await state.set_state(Composing.menu)
    text, keyboard = message_screen(draft, rules)
    await message.answer(text, reply_markup=keyboard)


def _text_error(error: BroadcastTextError) -> str:
    return broadcast_error_text(BroadcastError(error.code, "text", error.message, **error.details))


async def take_text(message: Message, state: FSMContext, rules: Rules) -> None:
    draft = await started_draft(message, state)
    if draft is None:
        return
    # Typed HTML is taken as it is; formatting made in the app (bold, links) as its HTML.
    formatted = any(
        entity.type not in ("url", "mention", "hashtag") for entity in message.entities or []
    )
    text = message.html_text if formatted else (message.text or "")
    try:
        check_text(text, caption=draft.photo is not None)
    except BroadcastTextError as error:
        await message.answer(
            _text_error(error), reply_markup=inline_keyboard([back_cancel("message")])
        )
        return
    await _answer_step(message, state, draft.model_copy(update={"text": text}), rules)


async def take_photo(message: Message, state: FSMContext, rules: Rules) -> None:
    draft = await started_draft(message, state)
    if draft is None or not message.photo:
        return
    try:
        check_text(draft.text, caption=True)
    except BroadcastTextError as error:
        await message.answer(_("bc-photo-caption-long") + "\n" + _text_error(error))
        return
    photo = message.photo[-1].file_id
    await _answer_step(message, state, draft.model_copy(update={"photo": photo}), rules)


async def ask_photo_again(message: Message) -> None:
    await message.answer(_("bc-ask-photo"), reply_markup=inline_keyboard([back_cancel("message")]))


async def take_button(message: Message, state: FSMContext, rules: Rules) -> None:
    draft = await started_draft(message, state)
    if draft is None:
        return
    parts = [part.strip() for part in (message.text or "").split("\n") if part.strip()]
    if (
        len(parts) != 2
        or len(parts[0]) > BUTTON_TEXT_LIMIT
        or not parts[1].startswith(("https://", "http://"))
        or len(parts[1]) > 1000
        or any(ch.isspace() for ch in parts[1])
    ):
        await message.answer(
            _("bc-bad-button"), reply_markup=inline_keyboard([back_cancel("message")])
        )
        return
    update = {"button_text": parts[0], "button_url": parts[1]}
    await _answer_step(message, state, draft.model_copy(update=update), rules)


async def take_gift(message: Message, state: FSMContext, rules: Rules) -> None:
    draft = await started_draft(message, state)
    if draft is None:
        return
    found = _GIFT.match(message.text or "")
    limits = rules.broadcasts
    points = int(found.group(1)) if found else -1
    days = int(found.group(2)) if found and found.group(2) else limits.gift_days
    if not 0 <= points <= limits.max_gift_points or not 1 <= days <= 365:
        answer = _("bc-bad-gift").format(most=number_text(limits.max_gift_points))
        await message.answer(answer, reply_markup=inline_keyboard([back_cancel("message")]))
        return
    update = {"gift_points": points, "gift_days": days if points else 0}
    await _answer_step(message, state, draft.model_copy(update=update), rules)


async def remove_part(
    callback: CallbackQuery, callback_data: ComposeCb, state: FSMContext, rules: Rules
) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    removed: dict[str, dict[str, Any]] = {
        "no_photo": {"photo": None},
        "no_button": {"button_text": None, "button_url": None},
        "no_gift": {"gift_points": 0, "gift_days": 0},
    }
    draft = draft.model_copy(update=removed[callback_data.action])
    await keep(state, draft)
    await callback.answer()
    assert isinstance(callback.message, Message)
    await edit_in_place(callback.message, *message_screen(draft, rules))


# ------------------------------------------------------------------ the control group


def control_screen(draft: Composition, rules: Rules) -> tuple[str, InlineKeyboardMarkup]:
    current = (
        rules.broadcasts.control_percent if draft.control_percent is None else draft.control_percent
    )
    buttons = [
        (("✅ " if pct == current else "") + f"{pct}%", ComposeCb(action="pct", value=str(pct)))
        for pct in sorted({*CONTROL_CHOICES, rules.broadcasts.control_percent})
    ]
    text = _("bc-step-control").format(percent=rules.broadcasts.control_percent)
    return text, inline_keyboard([buttons, back_cancel("message")])


async def show_control(callback: CallbackQuery, state: FSMContext, rules: Rules) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    if not draft.text:
        await callback.answer(_("bc-text-first"), show_alert=True)
        return
    await state.set_state(Composing.menu)
    await callback.answer()
    assert isinstance(callback.message, Message)
    await edit_in_place(callback.message, *control_screen(draft, rules))


async def pick_control(
    callback: CallbackQuery,
    callback_data: ComposeCb,
    state: FSMContext,
    rules: Rules,
) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    percent = plain_number(callback_data.value, 50)
    if percent is None:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    draft = draft.model_copy(update={"control_percent": percent})
    await keep(state, draft)
    await callback.answer(
        _("bc-no-control-warning") if percent == 0 else None, show_alert=percent == 0
    )
    assert isinstance(callback.message, Message)
    rows = [
        [(_("bc-show-preview"), ComposeCb(action="preview"))],
        back_cancel("control"),
    ]
    text = _("bc-control-chosen").format(percent=percent)
    if percent == 0:
        text += "\n\n" + _("bc-no-control-warning")
    await edit_in_place(callback.message, text, inline_keyboard(rows))
