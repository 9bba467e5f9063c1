"""The member's history: pages of the journal, newest first, and how one entry reads.

The menu (handlers.member) opens it; its router turns the pages. Disputing an entry is in
handlers.requests.
"""

from __future__ import annotations

from aiogram import Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _

from handlers.common import edit_in_place
from handlers.filters import IsMember
from handlers.keyboards import DisputeListCb, HistoryPageCb, button
from ledger.service import LedgerService
from ledger.views import EntryView, HistoryPage, MemberView
from messaging.texts import moment_text, points_text, signed_text
from staff.audit import STAFF_ACTOR

HISTORY_PAGE_SIZE = 10


def build_history_router() -> Router:
    """Turning the pages (the menu opens the first one)."""
    router = Router(name="history")
    router.callback_query.filter(IsMember())
    router.callback_query.register(turn_history_page, HistoryPageCb.filter())
    return router


async def show_history(
    message: Message, member: MemberView, ledger: LedgerService, state: FSMContext
) -> None:
    await state.clear()
    history = await ledger.history(member.member_id, 0, HISTORY_PAGE_SIZE)
    text, keyboard = _history_page(history, member)
    await message.answer(text, reply_markup=keyboard)


async def turn_history_page(
    callback: CallbackQuery,
    callback_data: HistoryPageCb,
    member: MemberView,
    ledger: LedgerService,
) -> None:
    history = await ledger.history(member.member_id, callback_data.page, HISTORY_PAGE_SIZE)
    if history.page != callback_data.page:  # no such page (any more)
        await callback.answer(_("button-stale"), show_alert=True)
        return
    text, keyboard = _history_page(history, member)
    await callback.answer()
    if isinstance(callback.message, Message):
        await edit_in_place(callback.message, text, keyboard)


def _history_page(
    history: HistoryPage, member: MemberView
) -> tuple[str, InlineKeyboardMarkup | None]:
    if not history.entries:
        return _("history-empty"), None
    lines = [_("history-title").format(page=history.page + 1, pages=history.pages), ""]
    lines += [entry_line(entry, member.timezone) for entry in history.entries]
    nav = []
    if history.page > 0:
        nav.append(button(_("history-prev"), HistoryPageCb(page=history.page - 1).pack()))
    if history.page + 1 < history.pages:
        nav.append(button(_("history-next"), HistoryPageCb(page=history.page + 1).pack()))
    rows = [nav] if nav else []
    rows.append([button(_("history-dispute"), DisputeListCb(page=history.page).pack())])
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


def entry_line(entry: EntryView, timezone: str) -> str:
    """ "12 Dec, 14:05 · +29 · Purchase R-1"; "· held" while points wait for their hold, and
    what a take-back left as debt counted in the change."""
    when = moment_text(entry.created_at, timezone)
    if entry.kind == "activation":  # held points moved to usable: no change in the total
        return " · ".join([when, _("kind-activation"), points_text(entry.points)])
    change = entry.points + entry.pending - max(entry.debt, 0)
    parts = [when, signed_text(change), _(f"kind-{entry.kind}")]
    if entry.reference and entry.kind in {"earn", "redeem", "refund_reverse", "refund_return"}:
        # The shop's receipt or refund number; a sale a cashier recorded in the bot has only
        # an internal id ("B-48B377C139FC"), which means nothing to the member: none.
        if not (entry.actor or "").startswith(STAFF_ACTOR):
            parts[-1] += f" {entry.reference}"
    if entry.pending > 0:
        parts.append(_("history-pending-mark"))
    if entry.debt > 0:
        parts.append(_("history-debt-mark").format(points=points_text(entry.debt)))
    return " · ".join(parts)
