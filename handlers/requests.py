"""The member's requests to support: a question, or a dispute of an entry chosen from the
history. Each is stored as a ticket, confirmed to the member, and announced to support.

The menu (handlers.member) asks for a question; this router takes the text the member then
sends, and the dispute buttons under the history.
"""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember
from handlers.history import HISTORY_PAGE_SIZE, entry_line
from handlers.keyboards import DisputeEntryCb, DisputeListCb, button, main_menu
from handlers.states import Asking
from ledger.errors import EntryNotFound
from ledger.service import LedgerService
from ledger.views import MemberView
from messaging.notifier import SupportNews
from messaging.texts import count_text
from support.tickets import MAX_TICKET_TEXT, TicketService

log = logging.getLogger("loyalty.member")


def build_requests_router() -> Router:
    """The question or dispute the member writes, and choosing the entry to dispute."""
    router = Router(name="requests")
    router.message.filter(IsMember(), F.chat.type == "private")
    router.callback_query.filter(IsMember())
    # Free text while a question is pending; the menu's buttons (an earlier router) win over it.
    router.message.register(receive_request, StateFilter(Asking.support, Asking.dispute))
    router.callback_query.register(list_disputable, DisputeListCb.filter())
    router.callback_query.register(ask_dispute, DisputeEntryCb.filter())
    return router


async def ask_support(message: Message, state: FSMContext) -> None:
    await state.set_state(Asking.support)
    await message.answer(_("support-ask"), reply_markup=main_menu())


async def receive_request(
    message: Message,
    member: MemberView,
    tickets: TicketService,
    state: FSMContext,
    support_news: SupportNews,
) -> None:
    """A question to support, or a dispute of the entry chosen before: stored as a ticket,
    confirmed to the member, and support is told (the ticket stands either way)."""
    text = await _ticket_text(message)
    if text is None:
        return
    if await state.get_state() == Asking.dispute.state:
        entry_id = (await state.get_data()).get("entry_id")
        ticket = await tickets.open_ticket(
            member.member_id, text, kind="dispute", entry_id=entry_id
        )
        key = "dispute-received"
    else:
        ticket = await tickets.open_ticket(member.member_id, text)
        key = "support-received"
    await state.clear()
    text = _(key).format(ticket=ticket.ticket_id)
    if message.photo or message.document or message.video:
        text += "\n" + _("support-text-kept")  # the caption is; the file is not
    await message.answer(text, reply_markup=main_menu())
    try:
        await support_news.announce(ticket, member)
    except Exception:
        log.exception("could not tell support about ticket %s", ticket.ticket_id)


async def _ticket_text(message: Message) -> str | None:
    """The text of a support or dispute message, or None after telling the member why not."""
    text = (message.text or message.caption or "").strip()
    if not text:
        await message.answer(_("support-text-only"))
        return None
    if len(text) > MAX_TICKET_TEXT:
        await message.answer(count_text("support-too-long", MAX_TICKET_TEXT))
        return None
    return text


async def list_disputable(
    callback: CallbackQuery,
    callback_data: DisputeListCb,
    member: MemberView,
    ledger: LedgerService,
) -> None:
    history = await ledger.history(member.member_id, callback_data.page, HISTORY_PAGE_SIZE)
    if history.page != callback_data.page or not history.entries:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await callback.answer()
    rows = [
        [
            button(
                entry_line(entry, member.timezone)[:60],
                DisputeEntryCb(entry_id=entry.entry_id).pack(),
            )
        ]
        for entry in history.entries
    ]
    if callback.message is not None and rows:
        await callback.message.answer(
            _("dispute-choose"), reply_markup=InlineKeyboardMarkup(inline_keyboard=rows)
        )


async def ask_dispute(
    callback: CallbackQuery,
    callback_data: DisputeEntryCb,
    member: MemberView,
    ledger: LedgerService,
    state: FSMContext,
) -> None:
    try:
        owner = await ledger.entry_owner(callback_data.entry_id)
        entry = await ledger.entry(callback_data.entry_id)
    except EntryNotFound:
        owner = None
    if owner != member.member_id:
        await callback.answer(_("button-stale"), show_alert=True)
        return
    await state.set_state(Asking.dispute)
    await state.update_data(entry_id=callback_data.entry_id)
    await callback.answer()
    if callback.message is not None:
        await callback.message.answer(
            _("dispute-write").format(line=entry_line(entry, member.timezone))
        )
