"""Broadcasts once composed (marketers and admins): their progress messages, edited in place as
they send; /broadcasts, the latest with their status and each one's report; Pause, Resume and
Cancel; /segments, the saved segments with today's counts. And the member's side: the
"Unsubscribe from offers" button under every broadcast message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.broadcast_texts import (
    attribution_text,
    broadcast_buttons,
    counts_text,
    progress_text,
    status_text,
)
from handlers.common import edit_in_place
from handlers.filters import HasRole, IsMember
from handlers.keyboards import BroadcastCb, SegmentCb, inline_keyboard
from ledger.clock import Clock
from ledger.rules import Rules
from ledger.service import LedgerService
from ledger.views import MemberView
from marketing.broadcasts import Broadcast, BroadcastError, Broadcasts
from marketing.offer import UNSUBSCRIBE
from marketing.saved import Segments
from messaging.languages import StaffLanguage
from messaging.texts import moment_text, number_text
from staff.audit import staff_actor
from staff.roles import Role

log = logging.getLogger("loyalty.broadcasts")

LIST_LIMIT = 10
EDIT_EVERY_S = 5.0  # a progress message is edited at most this often per broadcast


# ------------------------------------------------------------------ the member's button


def build_offers_router() -> Router:
    """The member's "Unsubscribe from offers": in any state (before every flow's steps)."""
    router = Router(name="offers")
    router.callback_query.register(unsubscribe, F.data == UNSUBSCRIBE, IsMember())
    return router


async def unsubscribe(callback: CallbackQuery, member: MemberView, ledger: LedgerService) -> None:
    if member.notify_offers:
        await ledger.update_profile(member.member_id, notify_offers=False)
    await callback.answer()
    message = callback.message
    if isinstance(message, Message):
        kept = [
            [button for button in row if button.callback_data != UNSUBSCRIBE]
            for row in (message.reply_markup.inline_keyboard if message.reply_markup else [])
        ]
        rows = [row for row in kept if row]
        try:
            await message.edit_reply_markup(
                reply_markup=InlineKeyboardMarkup(inline_keyboard=rows) if rows else None
            )
        except TelegramBadRequest as error:
            if "message is not modified" not in error.message:
                raise
        await message.answer(_("offers-unsubscribed"))


# ------------------------------------------------------------------ progress messages


class ProgressMessages:
    """Edits each broadcast's progress message (its chat and message are in the broadcasts
    table, so this survives a restart): at most once every EDIT_EVERY_S seconds while it
    sends, and once more with the delivery report when it ends. In the staff member's
    language."""

    def __init__(
        self,
        bot: Bot,
        broadcasts: Broadcasts,
        staff_language: StaffLanguage,
        i18n: I18n,
        rules: Rules,
        *,
        every: float = EDIT_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.broadcasts = broadcasts
        self.staff_language = staff_language
        self.i18n = i18n
        self.rules = rules
        self.every = every
        self.monotonic = monotonic
        self._edited: dict[int, float] = {}  # broadcast id -> when its message was last edited
        self._shown: dict[int, tuple[str, str]] = {}  # broadcast id -> what it shows
        self._ended: set[int] = set()  # broadcasts whose report is shown: not edited again

    async def show(self, shown: list[Broadcast]) -> None:
        """Edit the progress message of each of these broadcasts (as `Broadcasts.tick`
        returned them) that is due an edit."""
        for listed in shown:
            if listed.progress_chat_id is None or listed.progress_message_id is None:
                continue
            if listed.id in self._ended:
                continue
            now = self.monotonic()
            last = self._edited.get(listed.id)
            if listed.active and last is not None and now - last < self.every:
                continue
            # As it is now: a button may have paused or cancelled it since the tick read it.
            broadcast = await self.broadcasts.by_id(listed.id) or listed
            self._edited[broadcast.id] = now
            try:
                await self._edit(broadcast)
            except TelegramAPIError as error:
                log.info("progress of broadcast %s not shown: %s", broadcast.id, error)
            if not broadcast.active:  # that was its last edit: the report
                self._edited.pop(broadcast.id, None)
                self._shown.pop(broadcast.id, None)
                self._ended.add(broadcast.id)

    async def _edit(self, broadcast: Broadcast) -> None:
        assert broadcast.progress_chat_id is not None and broadcast.progress_message_id is not None
        language = await self.staff_language(broadcast.progress_chat_id)
        progress = await self.broadcasts.progress(broadcast)
        with self.i18n.context(), self.i18n.use_locale(language):
            text = progress_text(
                broadcast,
                progress,
                self.broadcasts.clock.now(),
                self.rules.messages.default_timezone,
            )
            keyboard = broadcast_buttons(broadcast)
        looks = (text, keyboard.model_dump_json() if keyboard else "")
        if self._shown.get(broadcast.id) == looks:
            return  # a scheduled or paused one: nothing to change, no call
        try:
            await self.bot.edit_message_text(
                text,
                chat_id=broadcast.progress_chat_id,
                message_id=broadcast.progress_message_id,
                reply_markup=keyboard,
            )
        except TelegramBadRequest as error:
            if "message is not modified" not in error.message:
                raise
        self._shown[broadcast.id] = looks


# ------------------------------------------------------------------ /broadcasts, /segments


def build_broadcasts_router() -> Router:
    router = Router(name="broadcasts")
    router.message.filter(HasRole(Role.MARKETER, Role.ADMIN), F.chat.type == "private")
    router.callback_query.filter(HasRole(Role.MARKETER, Role.ADMIN))
    router.message.register(list_broadcasts, Command("broadcasts"))
    router.message.register(list_segments, Command("segments"))
    router.callback_query.register(broadcast_action, BroadcastCb.filter())
    router.callback_query.register(segment_action, SegmentCb.filter())
    return router


async def _listing(broadcasts: Broadcasts, rules: Rules) -> tuple[str, InlineKeyboardMarkup | None]:
    recent = await broadcasts.recent(LIST_LIMIT)
    if not recent:
        return _("bc-list-empty"), None
    lines = [_("bc-list-title")]
    rows = []
    for broadcast in recent:
        progress = await broadcasts.progress(broadcast)
        lines.append(
            _("bc-list-line").format(
                id=broadcast.public_id,
                status=status_text(broadcast.status),
                when=moment_text(broadcast.send_at, rules.messages.default_timezone),
                sent=number_text(progress.sent),
                total=number_text(progress.recipients),
            )
        )
        rows.append([(broadcast.public_id, BroadcastCb(action="open", broadcast_id=broadcast.id))])
    return "\n".join(lines), inline_keyboard(rows)


async def list_broadcasts(message: Message, broadcasts: Broadcasts, rules: Rules) -> None:
    text, keyboard = await _listing(broadcasts, rules)
    await message.answer(text, reply_markup=keyboard)


async def _report(
    broadcast: Broadcast, broadcasts: Broadcasts, clock: Clock, rules: Rules
) -> tuple[str, InlineKeyboardMarkup]:
    progress = await broadcasts.progress(broadcast)
    zone = rules.messages.default_timezone
    text = progress_text(broadcast, progress, clock.now(), zone)
    report = await broadcasts.attribution(broadcast)
    if report is not None:
        text += "\n\n" + attribution_text(report, zone)
    keyboard = broadcast_buttons(broadcast) or InlineKeyboardMarkup(inline_keyboard=[])
    keyboard.inline_keyboard.append(
        inline_keyboard([[(_("bc-back"), BroadcastCb(action="list"))]]).inline_keyboard[0]
    )
    return text, keyboard


async def broadcast_action(
    callback: CallbackQuery,
    callback_data: BroadcastCb,
    broadcasts: Broadcasts,
    clock: Clock,
    rules: Rules,
) -> None:
    message = callback.message if isinstance(callback.message, Message) else None
    action = callback_data.action
    if message is None:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    if action == "list":
        await callback.answer()
        text, keyboard = await _listing(broadcasts, rules)
        await edit_in_place(message, text, keyboard)
        return
    broadcast = await broadcasts.by_id(callback_data.broadcast_id)
    if broadcast is None:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    actor = staff_actor(callback.from_user.id)
    try:
        if action == "pause":
            broadcast = await broadcasts.pause(broadcast, actor=actor)
        elif action == "resume":
            broadcast = await broadcasts.resume(broadcast, actor=actor)
        elif action == "cancel_yes":
            broadcast = await broadcasts.cancel(broadcast, actor=actor)
        elif action == "cancel":
            await callback.answer()
            rows = [
                [
                    (
                        _("bc-cancel-yes"),
                        BroadcastCb(action="cancel_yes", broadcast_id=broadcast.id),
                    ),
                    (_("bc-cancel-no"), BroadcastCb(action="cancel_no", broadcast_id=broadcast.id)),
                ]
            ]
            text = _("bc-cancel-confirm").format(id=broadcast.public_id)
            await edit_in_place(message, text, inline_keyboard(rows))
            return
        elif action not in ("open", "cancel_no"):
            await callback.answer(_("button-stale"), show_alert=True)
            return
    except BroadcastError:
        await callback.answer(
            _("bc-cannot-change").format(status=status_text(broadcast.status)), show_alert=True
        )
        broadcast = await broadcasts.by_id(broadcast.id) or broadcast
    else:
        await callback.answer()
    progress = await broadcasts.progress(broadcast)
    text = progress_text(broadcast, progress, clock.now(), rules.messages.default_timezone)
    if action == "open" or message.message_id != broadcast.progress_message_id:
        text, keyboard = await _report(broadcast, broadcasts, clock, rules)
        await edit_in_place(message, text, keyboard)
    else:
        await edit_in_place(message, text, broadcast_buttons(broadcast))


async def list_segments(message: Message, segments: Segments) -> None:
    text, keyboard = await _segments_screen(segments)
    await message.answer(text, reply_markup=keyboard)


async def _segments_screen(segments: Segments) -> tuple[str, InlineKeyboardMarkup | None]:
    saved = await segments.saved()
    if not saved:
        return _("seg-list-empty"), None
    lines = [_("seg-list-title")]
    rows = []
    for item in saved:
        counts = await segments.preview(item.filter)
        lines.append(_("seg-list-line").format(name=item.name, counts=counts_text(counts)))
        rows.append(
            [
                (
                    _("seg-delete").format(name=item.name),
                    SegmentCb(action="delete", segment_id=item.segment_id),
                )
            ]
        )
    return "\n".join(lines), inline_keyboard(rows)


async def segment_action(
    callback: CallbackQuery, callback_data: SegmentCb, segments: Segments
) -> None:
    message = callback.message if isinstance(callback.message, Message) else None
    saved = await segments.get(callback_data.segment_id)
    if message is None or saved is None:
        await callback.answer(_("bc-segment-gone"), show_alert=True)
        return
    action = callback_data.action
    if action == "delete":
        await callback.answer()
        rows = [
            [
                (_("seg-delete-yes"), SegmentCb(action="delete_yes", segment_id=saved.segment_id)),
                (_("seg-delete-no"), SegmentCb(action="delete_no", segment_id=saved.segment_id)),
            ]
        ]
        await edit_in_place(
            message, _("seg-delete-confirm").format(name=saved.name), inline_keyboard(rows)
        )
        return
    if action == "delete_yes":
        await segments.delete(saved.segment_id, actor=staff_actor(callback.from_user.id))
        await callback.answer(_("seg-deleted").format(name=saved.name))
    elif action == "delete_no":
        await callback.answer()
    else:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    text, keyboard = await _segments_screen(segments)
    await edit_in_place(message, text, keyboard)
