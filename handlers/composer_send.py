"""/broadcast's last steps (handlers.composer has the first ones): the preview with "Send a test to
me", the time, and the summary whose Confirm creates the broadcast and posts its progress
message (handlers.broadcasts edits it as it sends)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.broadcast_texts import (
    audience_text,
    broadcast_buttons,
    broadcast_error_text,
    counts_text,
    duration_text,
    progress_text,
)
from handlers.common import edit_in_place
from handlers.composition import Composition, back_cancel, live_draft, segment_of, started_draft
from handlers.drafts import keep
from handlers.keyboards import ComposeCb, inline_keyboard
from handlers.states import Composing
from ledger.clock import Clock
from ledger.rules import Rules
from ledger.views import MemberView
from marketing.broadcasts import Broadcast, BroadcastError, Broadcasts, Draft, new_public_id
from marketing.offer import compose_offer
from marketing.saved import Segments
from marketing.segments import SegmentFilter
from messaging.composing import Composed
from messaging.limits import quiet_hours_end
from messaging.texts import days_text, moment_text, number_text, points_text
from staff.audit import staff_actor

_WHEN = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\.?\s+(\d{1,2})[:.](\d{2})\s*$")


class SendRate(Protocol):
    """What the summary reads of the process's settings."""

    send_rate_per_second: float


def register(router: Router, typed: Any) -> None:
    router.message.register(take_send_at, Composing.send_at, typed)
    cb = ComposeCb.filter
    router.callback_query.register(show_preview, cb(F.action == "preview"))
    router.callback_query.register(send_test, cb(F.action == "test"))
    router.callback_query.register(show_when, cb(F.action == "when"))
    router.callback_query.register(send_now, cb(F.action == "now"))
    router.callback_query.register(confirm, cb(F.action == "confirm"))


# ------------------------------------------------------------------ preview and test


def _composed(
    draft: Composition,
    member: MemberView | None,
    first_name: str,
    rules: Rules,
    now: datetime,
    i18n: I18n,
) -> Composed:
    """The message as this marketer would get it as a member (their name and balance)."""
    sample = Broadcast(
        id=0,
        public_id="preview",
        status="scheduled",
        created_by="",
        created_at=now,
        filter=SegmentFilter(),
        segment_name=None,
        text=draft.text,
        photo=draft.photo,
        button_text=draft.button_text,
        button_url=draft.button_url,
        control_percent=draft.control_percent or 0,
        gift_points=draft.gift_points,
        gift_days=draft.gift_days or rules.broadcasts.gift_days,
        window_days=rules.broadcasts.attribution_days,
        send_at=now,
        audience=0,
        control=0,
        recipients=0,
        started_at=None,
        finished_at=None,
        progress_chat_id=None,
        progress_message_id=None,
    )
    return compose_offer(
        sample,
        first_name=(member.first_name if member and member.first_name else first_name),
        balance=member.balance if member else 0,
        timezone=member.timezone if member else rules.messages.default_timezone,
        now=now,
        language=i18n.current_locale,
        i18n=i18n,
    )


async def _send_composed(bot: Bot, chat_id: int, composed: Composed) -> None:
    markup = (
        InlineKeyboardMarkup.model_validate(composed.reply_markup)
        if composed.reply_markup
        else None
    )
    if composed.photo:
        await bot.send_photo(
            chat_id, composed.photo, caption=composed.text, parse_mode="HTML", reply_markup=markup
        )
    else:
        await bot.send_message(chat_id, composed.text, parse_mode="HTML", reply_markup=markup)


async def show_preview(
    callback: CallbackQuery,
    state: FSMContext,
    bot: Bot,
    rules: Rules,
    clock: Clock,
    i18n: I18n,
    member: MemberView | None = None,
) -> None:
    await _preview(callback, state, bot, rules, clock, i18n, member, test=False)


async def send_test(
    callback: CallbackQuery,
    state: FSMContext,
    bot: Bot,
    rules: Rules,
    clock: Clock,
    i18n: I18n,
    member: MemberView | None = None,
) -> None:
    await _preview(callback, state, bot, rules, clock, i18n, member, test=True)


async def _preview(
    callback: CallbackQuery,
    state: FSMContext,
    bot: Bot,
    rules: Rules,
    clock: Clock,
    i18n: I18n,
    member: MemberView | None,
    *,
    test: bool,
) -> None:
    draft = await live_draft(callback, state)
    if draft is None or not draft.text:
        if draft is not None:
            await callback.answer(_("bc-text-first"), show_alert=True)
        return
    composed = _composed(draft, member, callback.from_user.first_name, rules, clock.now(), i18n)
    chat_id = callback.from_user.id
    try:
        if not test:
            await bot.send_message(chat_id, _("bc-preview-title"))
        await _send_composed(bot, chat_id, composed)
    except TelegramAPIError:
        await callback.answer(_("bc-test-failed"), show_alert=True)
        return
    await callback.answer(_("bc-test-sent") if test else None)
    rows = [
        [(_("bc-send-test"), ComposeCb(action="test"))],
        [(_("bc-back"), ComposeCb(action="control")), (_("bc-next"), ComposeCb(action="when"))],
        [(_("bc-cancel-composer"), ComposeCb(action="cancel"))],
    ]
    await bot.send_message(chat_id, _("bc-step-preview"), reply_markup=inline_keyboard(rows))


# ------------------------------------------------------------------ when, summary, confirm


async def show_when(callback: CallbackQuery, state: FSMContext) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    await state.set_state(Composing.menu)
    await callback.answer()
    rows = [
        [(_("bc-send-now"), ComposeCb(action="now")), (_("bc-send-at"), ComposeCb(action="at"))],
        back_cancel("preview"),
    ]
    assert isinstance(callback.message, Message)
    await edit_in_place(callback.message, _("bc-step-when"), inline_keyboard(rows))


async def send_now(
    callback: CallbackQuery,
    state: FSMContext,
    rules: Rules,
    segments: Segments,
    clock: Clock,
    settings: SendRate,
) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    draft = draft.model_copy(update={"send_at": None, "public_id": new_public_id(clock.now())})
    draft = draft.model_copy(update={"summarised": draft.content_digest()})
    await keep(state, draft)
    await callback.answer()
    text, keyboard = await summary_screen(draft, rules, segments, clock, settings)
    assert isinstance(callback.message, Message)
    await edit_in_place(callback.message, text, keyboard)


async def take_send_at(
    message: Message,
    state: FSMContext,
    rules: Rules,
    segments: Segments,
    clock: Clock,
    settings: SendRate,
) -> None:
    draft = await started_draft(message, state)
    if draft is None:
        return
    zone = ZoneInfo(rules.messages.default_timezone)
    now = clock.now()
    found = _WHEN.match(message.text or "")
    when = None
    if found:
        day, month, hour, minute = (int(group) for group in found.groups())
        year = now.astimezone(zone).year
        try:
            when = datetime(year, month, day, hour, minute, tzinfo=zone)
            if now - when > timedelta(days=180):  # "05.01" typed in December: next January
                when = datetime(year + 1, month, day, hour, minute, tzinfo=zone)
        except ValueError:
            when = None
    back = inline_keyboard([back_cancel("when")])
    if when is None:
        await message.answer(_("bc-bad-when"), reply_markup=back)
        return
    if when <= now:
        await message.answer(
            _("bc-when-past").format(now=moment_text(now, rules.messages.default_timezone)),
            reply_markup=back,
        )
        return
    draft = draft.model_copy(update={"send_at": when.isoformat(), "public_id": new_public_id(now)})
    draft = draft.model_copy(update={"summarised": draft.content_digest()})
    await keep(state, draft)
    await state.set_state(Composing.menu)
    text, keyboard = await summary_screen(draft, rules, segments, clock, settings)
    await message.answer(text, reply_markup=keyboard)


async def summary_screen(
    draft: Composition, rules: Rules, segments: Segments, clock: Clock, settings: SendRate
) -> tuple[str, InlineKeyboardMarkup]:
    segment = segment_of(draft, segments)
    counts = await segments.preview(segment)
    percent = (
        rules.broadcasts.control_percent if draft.control_percent is None else draft.control_percent
    )
    control = (counts.count * percent + 50) // 100
    recipients = counts.count - control
    zone = rules.messages.default_timezone
    when = datetime.fromisoformat(draft.send_at) if draft.send_at else clock.now()
    lines = [
        _("bc-step-summary"),
        _("bc-summary-audience").format(audience=audience_text(segment, draft.segment_name)),
        counts_text(counts),
        _("bc-summary-control").format(percent=percent, control=number_text(control))
        if percent
        else _("bc-no-control-warning"),
        _("bc-summary-recipients").format(recipients=number_text(recipients)),
    ]
    if draft.gift_points:
        lines.append(
            _("bc-summary-gift").format(
                points=points_text(draft.gift_points),
                total=number_text(draft.gift_points * recipients),
                days=days_text(draft.gift_days),
            )
        )
    lines.append(
        _("bc-summary-when-at").format(when=moment_text(when, zone, now=clock.now()))
        if draft.send_at
        else _("bc-summary-when-now")
    )
    rate = settings.send_rate_per_second
    lines.append(
        _("bc-summary-duration").format(
            duration=duration_text(recipients / rate), rate=number_text(round(rate))
        )
    )
    quiet_end = quiet_hours_end(when, zone, rules.messages)
    if quiet_end is not None:
        lines.append(_("bc-summary-quiet").format(until=f"{quiet_end:%H:%M}"))
    rows = [
        [(_("bc-confirm"), ComposeCb(action="confirm", value=draft.public_id))],
        back_cancel("when"),
    ]
    return "\n\n".join(lines), inline_keyboard(rows)


async def confirm(
    callback: CallbackQuery,
    callback_data: ComposeCb,
    state: FSMContext,
    rules: Rules,
    segments: Segments,
    broadcasts: Broadcasts,
    clock: Clock,
) -> None:
    draft = await live_draft(callback, state)
    if draft is None:
        return
    if (
        not draft.public_id
        or callback_data.value != draft.public_id
        or draft.summarised != draft.content_digest()  # changed after this summary
    ):
        await callback.answer(_("button-stale"), show_alert=True)
        return
    percent = (
        rules.broadcasts.control_percent if draft.control_percent is None else draft.control_percent
    )
    request = Draft(
        filter=segment_of(draft, segments),
        text=draft.text,
        public_id=draft.public_id,
        photo=draft.photo,
        button_text=draft.button_text,
        button_url=draft.button_url,
        control_percent=percent,
        gift_points=draft.gift_points,
        gift_days=draft.gift_days or rules.broadcasts.gift_days,
        send_at=datetime.fromisoformat(draft.send_at) if draft.send_at else None,
        segment_name=draft.segment_name,
    )
    assert isinstance(callback.message, Message)
    # Answered before the audience is drawn (seconds at 200,000 members): Telegram gives a
    # button's answer a few seconds only.
    await callback.answer()
    try:
        broadcast, created = await broadcasts.create(
            request, actor=staff_actor(callback.from_user.id)
        )
    except BroadcastError as error:
        await callback.message.answer(broadcast_error_text(error))
        return
    await state.clear()
    await edit_in_place(callback.message, _("bc-created").format(id=broadcast.public_id), None)
    if not created:
        return
    progress = await broadcasts.progress(broadcast)
    shown = await callback.message.answer(
        progress_text(broadcast, progress, clock.now(), rules.messages.default_timezone),
        reply_markup=broadcast_buttons(broadcast),
    )
    await broadcasts.show_progress_in(broadcast, shown.chat.id, shown.message_id)


__all__ = ["SendRate", "register", "summary_screen"]
