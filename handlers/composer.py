"""/broadcast: a marketer's composer, step by step with buttons (marketers and admins).

    1. the audience: conditions from a menu, or a saved segment; the live count after each;
       save it as a named segment
    2. the message: text (Telegram HTML with {first_name} and {balance}), a photo, a URL
       button, gift points (handlers.composer_message)
    3. the control group; 4. a preview and a test to oneself; 5. now or at a time, a summary
       to confirm (handlers.composer_message)

Every step has Back and Cancel, and /cancel ends the composer at any step. The draft lives in
the FSM data (handlers.drafts); every button is checked against it.
"""

from __future__ import annotations

import re
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, StateFilter, and_f, invert_f
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _

from handlers import composer_message, composer_send
from handlers.broadcast_texts import (
    CONDITIONS,
    KEYS,
    audience_text,
    condition_label,
    condition_lines,
    counts_text,
    language_name,
    month_name,
)
from handlers.common import edit_in_place, plain_number
from handlers.composition import Composition, back_cancel, live_draft, segment_of
from handlers.drafts import draft_of, keep
from handlers.filters import HasRole, MenuButton
from handlers.keyboards import ComposeCb, inline_keyboard
from handlers.states import Composing
from ledger import policy
from ledger.rules import Rules
from marketing.saved import NAME_TAKEN, Segments
from marketing.segments import LANGUAGES, MAX_DAYS, MAX_PURCHASES, SegmentError
from staff.audit import staff_actor
from staff.roles import Role

TYPED = ("balance", "burning_within_days", "inactive_days", "joined_within_days")
TYPED_ALSO = ("purchases_min", "spent_365_min")
BOUNDS = {
    "balance": (0, policy.MAX_MEMBER_POINTS),
    "burning_within_days": (1, MAX_DAYS),
    "inactive_days": (1, MAX_DAYS),
    "joined_within_days": (1, MAX_DAYS),
    "purchases_min": (0, MAX_PURCHASES),
}
_RANGE = re.compile(r"^\s*(\d{1,12})\s*(?:[-–—]|\.\.)\s*(\d{1,12})\s*$")


def build_composer_router() -> Router:
    router = Router(name="composer")
    router.message.filter(HasRole(Role.MARKETER, Role.ADMIN), F.chat.type == "private")
    router.callback_query.filter(HasRole(Role.MARKETER, Role.ADMIN))
    router.message.register(start_composer, Command("broadcast"))
    router.message.register(cancel_composer, StateFilter(Composing), Command("cancel"))
    typed = and_f(F.text, ~F.text.startswith("/"), invert_f(MenuButton()))
    router.message.register(take_value, Composing.value, typed)
    router.message.register(take_segment_name, Composing.segment_name, typed)
    router.message.register(use_the_buttons, Composing.menu, typed)
    composer_message.register(router, typed)
    composer_send.register(router, typed)
    cb = ComposeCb.filter
    router.callback_query.register(show_audience, cb(F.action == "audience"))
    router.callback_query.register(pick_condition, cb(F.action == "cond"))
    router.callback_query.register(set_choice, cb(F.action.in_({"tier", "lang", "month"})))
    router.callback_query.register(list_saved, cb(F.action == "saved"))
    router.callback_query.register(use_saved, cb(F.action == "use"))
    router.callback_query.register(list_set, cb(F.action == "remove"))
    router.callback_query.register(drop_condition, cb(F.action == "drop"))
    router.callback_query.register(ask_segment_name, cb(F.action == "save"))
    router.callback_query.register(cancel_button, cb(F.action == "cancel"))
    return router


# ------------------------------------------------------------------ starting, leaving


async def start_composer(message: Message, state: FSMContext, segments: Segments) -> None:
    draft = Composition(started=True)
    await state.set_state(Composing.menu)
    await keep(state, draft)
    text, keyboard = await audience_screen(draft, segments)
    await message.answer(text, reply_markup=keyboard)


async def cancel_composer(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(_("bc-cancelled"))


async def use_the_buttons(message: Message) -> None:
    """Text typed while the composer shows buttons."""
    await message.answer(_("bc-use-buttons"))


async def cancel_button(callback: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await callback.answer()
    if isinstance(callback.message, Message):
        await edit_in_place(callback.message, _("bc-cancelled"), None)


# ------------------------------------------------------------------ the audience


async def audience_screen(
    draft: Composition, segments: Segments, note: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    segment = segment_of(draft, segments)
    counts = await segments.preview(segment)
    lines = [_("bc-step-audience"), audience_text(segment, draft.segment_name)]
    lines.append(counts_text(counts))
    if note:
        lines.append(note)
    lines.append(_("bc-audience-hint"))
    chosen = {key for key, _text in condition_lines(segment)}
    buttons = [
        (
            ("✓ " if name in chosen else "") + condition_label(name),
            ComposeCb(action="cond", value=name),
        )
        for name in CONDITIONS
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    extra = [(_("bc-saved-segments"), ComposeCb(action="saved"))]
    if chosen:
        extra.append((_("bc-remove-condition"), ComposeCb(action="remove")))
    rows.append(extra)
    if chosen:
        rows.append([(_("bc-save-segment"), ComposeCb(action="save"))])
    rows.append(
        [
            (_("bc-cancel-composer"), ComposeCb(action="cancel")),
            (_("bc-next"), ComposeCb(action="message")),
        ]
    )
    return "\n\n".join(lines), inline_keyboard(rows)


async def show_audience(callback: CallbackQuery, state: FSMContext, segments: Segments) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    await state.set_state(Composing.menu)
    await callback.answer()
    text, keyboard = await audience_screen(draft, segments)
    assert isinstance(callback.message, Message)
    await edit_in_place(callback.message, text, keyboard)


async def pick_condition(
    callback: CallbackQuery,
    callback_data: ComposeCb,
    state: FSMContext,
    rules: Rules,
    segments: Segments,
) -> None:
    draft = await live_draft(callback, state)
    name = callback_data.value
    if draft is None:
        return
    if name not in CONDITIONS:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    assert isinstance(callback.message, Message)
    if name in ("tiers", "language", "birthday_month"):
        await edit_in_place(callback.message, *choice_screen(name, draft, rules))
        return
    await keep(state, draft.model_copy(update={"asking": name}))
    await state.set_state(Composing.value)
    asks = {
        "balance": _("bc-ask-balance"),
        "burning_within_days": _("bc-ask-burning"),
        "inactive_days": _("bc-ask-inactive"),
        "joined_within_days": _("bc-ask-joined"),
        "purchases_min": _("bc-ask-purchases"),
        "spent_365_min": _("bc-ask-spent"),
    }
    await edit_in_place(callback.message, asks[name], inline_keyboard([back_cancel("audience")]))


def choice_screen(name: str, draft: Composition, rules: Rules) -> tuple[str, InlineKeyboardMarkup]:
    """The buttons of a condition with few values: tiers (several may be chosen), a
    language, a month."""
    rows: list[list[tuple[str, ComposeCb]]] = []
    if name == "tiers":
        chosen = draft.filter.get("tiers") or []
        for tier in rules.tiers:
            mark = "✅ " if tier.name in chosen else ""
            label = mark + _(f"tier-{tier.name}")
            rows.append([(label, ComposeCb(action="tier", value=tier.name))])
        text = _("bc-ask-tiers")
    elif name == "language":
        rows.append(
            [(language_name(lang), ComposeCb(action="lang", value=lang)) for lang in LANGUAGES]
        )
        text = _("bc-ask-language")
    else:
        months = [(month_name(m), ComposeCb(action="month", value=str(m))) for m in range(1, 13)]
        rows += [months[i : i + 3] for i in range(0, 12, 3)]
        text = _("bc-ask-birthday")
    rows.append([(_("bc-done") if name == "tiers" else _("bc-back"), ComposeCb(action="audience"))])
    return text, inline_keyboard(rows)


async def set_choice(
    callback: CallbackQuery,
    callback_data: ComposeCb,
    state: FSMContext,
    rules: Rules,
    segments: Segments,
) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    action, value = callback_data.action, callback_data.value
    conditions = dict(draft.filter)
    if action == "tier" and value in {tier.name for tier in rules.tiers}:
        chosen = list(conditions.get("tiers") or [])
        chosen = [t for t in chosen if t != value] if value in chosen else [*chosen, value]
        if chosen:
            conditions["tiers"] = chosen
        else:
            conditions.pop("tiers", None)
    elif action == "lang" and value in LANGUAGES:
        conditions["language"] = value
    elif action == "month" and plain_number(value, 12):
        conditions["birthday_month"] = int(value)
    else:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    draft = draft.model_copy(update={"filter": conditions, "segment_name": None})
    await keep(state, draft)
    await callback.answer()
    assert isinstance(callback.message, Message)
    if action == "tier":  # several tiers may be chosen: the list stays, with the count
        text, keyboard = choice_screen("tiers", draft, rules)
        counts = await segments.preview(segment_of(draft, segments))
        await edit_in_place(callback.message, f"{text}\n\n{counts_text(counts)}", keyboard)
        return
    text, keyboard = await audience_screen(draft, segments)
    await edit_in_place(callback.message, text, keyboard)


async def take_value(message: Message, state: FSMContext, segments: Segments) -> None:
    draft = await draft_of(state, Composition)
    name = draft.asking
    if not draft.started or name not in CONDITIONS:
        await state.clear()
        await message.answer(_("bc-cancelled"))
        return
    typed = (message.text or "").strip()
    values = _typed_values(name, typed)
    conditions = {key: value for key, value in draft.filter.items() if key not in KEYS[name]}
    try:
        if values is None:
            raise SegmentError("invalid_condition", name, "unreadable")
        segments.parse({**conditions, **values})
    except SegmentError:
        await message.answer(
            _value_error(name), reply_markup=inline_keyboard([back_cancel("audience")])
        )
        return
    draft = draft.model_copy(
        update={"filter": {**conditions, **values}, "segment_name": None, "asking": ""}
    )
    await keep(state, draft)
    await state.set_state(Composing.menu)
    text, keyboard = await audience_screen(draft, segments)
    await message.answer(text, reply_markup=keyboard)


def _typed_values(name: str, typed: str) -> dict[str, Any] | None:
    """The filter's values a typed answer gives (None: not a number as asked)."""
    if name == "spent_365_min":
        amount = typed.replace(" ", "").replace("\u00a0", "")
        return {name: amount} if re.fullmatch(r"\d{1,12}(?:[.,]\d{1,2})?", amount) else None
    if name == "balance":
        found = _RANGE.match(typed)
        if found:
            low, high = int(found.group(1)), int(found.group(2))
            return {"balance_min": low, "balance_max": high} if low <= high else None
        number = plain_number(typed, 10**12)
        return None if number is None else {"balance_min": number}
    number = plain_number(typed, 10**12)
    return None if number is None else {name: number}


def _value_error(name: str) -> str:
    if name == "spent_365_min":
        return _("bc-bad-money")
    low, high = BOUNDS[name]
    if name == "balance":
        return _("bc-bad-balance").format(low=low, high=high)
    return _("bc-bad-number").format(low=low, high=high)


# ------------------------------------------------------------------ saved segments


async def list_saved(callback: CallbackQuery, state: FSMContext, segments: Segments) -> None:
    if await live_draft(callback, state) is None:
        return
    saved = await segments.saved()
    await callback.answer()
    rows = [[(item.name, ComposeCb(action="use", value=str(item.segment_id)))] for item in saved]
    rows.append(back_cancel("audience"))
    text = _("bc-saved-choose") if saved else _("bc-saved-none")
    assert isinstance(callback.message, Message)
    await edit_in_place(callback.message, text, inline_keyboard(rows))


async def use_saved(
    callback: CallbackQuery, callback_data: ComposeCb, state: FSMContext, segments: Segments
) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    number = plain_number(callback_data.value, 2**31 - 1)
    saved = await segments.get(number) if number is not None else None
    if saved is None:
        await callback.answer(_("bc-segment-gone"), show_alert=True)
        return
    try:
        segments.parse(saved.filter.to_json())  # a tier renamed since: said, not used
    except SegmentError:
        await callback.answer(_("bc-segment-outdated"), show_alert=True)
        return
    draft = draft.model_copy(update={"filter": saved.filter.to_json(), "segment_name": saved.name})
    await keep(state, draft)
    await callback.answer()
    text, keyboard = await audience_screen(draft, segments)
    assert isinstance(callback.message, Message)
    await edit_in_place(callback.message, text, keyboard)


async def list_set(callback: CallbackQuery, state: FSMContext, segments: Segments) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    await callback.answer()
    lines = condition_lines(segment_of(draft, segments))
    rows = [[(f"✖ {text}", ComposeCb(action="drop", value=key))] for key, text in lines]
    rows.append(back_cancel("audience"))
    assert isinstance(callback.message, Message)
    await edit_in_place(callback.message, _("bc-remove-which"), inline_keyboard(rows))


async def drop_condition(
    callback: CallbackQuery, callback_data: ComposeCb, state: FSMContext, segments: Segments
) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    name = callback_data.value
    if name not in CONDITIONS:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    conditions = {key: value for key, value in draft.filter.items() if key not in KEYS[name]}
    draft = draft.model_copy(update={"filter": conditions, "segment_name": None})
    await keep(state, draft)
    await callback.answer()
    text, keyboard = await audience_screen(draft, segments)
    assert isinstance(callback.message, Message)
    await edit_in_place(callback.message, text, keyboard)


async def ask_segment_name(callback: CallbackQuery, state: FSMContext) -> None:
    if await live_draft(callback, state) is None:
        return
    await state.set_state(Composing.segment_name)
    await callback.answer()
    assert isinstance(callback.message, Message)
    await edit_in_place(
        callback.message, _("bc-ask-segment-name"), inline_keyboard([back_cancel("audience")])
    )


async def take_segment_name(message: Message, state: FSMContext, segments: Segments) -> None:
    draft = await draft_of(state, Composition)
    if not draft.started or message.from_user is None:
        await state.clear()
        await message.answer(_("bc-cancelled"))
        return
    try:
        saved = await segments.save(
            message.text or "",
            segment_of(draft, segments),
            actor=staff_actor(message.from_user.id),
        )
    except SegmentError as error:
        answer = (
            _("bc-segment-name-taken") if error.code == NAME_TAKEN else _("bc-segment-name-bad")
        )
        await message.answer(answer, reply_markup=inline_keyboard([back_cancel("audience")]))
        return
    draft = draft.model_copy(update={"segment_name": saved.name})
    await keep(state, draft)
    await state.set_state(Composing.menu)
    note = _("bc-segment-saved").format(name=saved.name)
    text, keyboard = await audience_screen(draft, segments, note)
    await message.answer(text, reply_markup=keyboard)
