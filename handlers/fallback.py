"""The last router: anything nobody else understood gets a polite answer, never an error."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from handlers.keyboards import main_menu
from ledger.views import MemberView


def build_anytime_router() -> Router:
    """Commands that work for anyone in any state (before joining's steps catch them)."""
    router = Router(name="anytime")
    router.message.register(my_id, Command("id"), F.chat.type == "private")
    return router


def build_fallback_router() -> Router:
    router = Router(name="fallback")
    router.message.register(anything, F.chat.type == "private")
    router.callback_query.register(stale_button)
    return router


async def anything(message: Message, member: MemberView | None = None) -> None:
    if member is None:
        await message.answer(_("fallback-guest"))
    elif (message.text or "").startswith("/"):
        await message.answer(_("unknown-command"), reply_markup=main_menu())
    else:
        await message.answer(_("fallback-member"), reply_markup=main_menu())


async def my_id(message: Message) -> None:
    """/id: what an admin needs to give this person a staff role."""
    if message.from_user is not None:
        await message.answer(_("your-id").format(id=message.from_user.id))


async def stale_button(callback: CallbackQuery) -> None:
    await callback.answer(_("button-stale"), show_alert=True)
