"""The member's menu: every command and menu button, each opening its screen (card, balance and
invite here; the history, settings and requests to support in their own modules, whose routers
answer what follows), and start, help, cancel, blocking the bot.

Every command and button is registered in this one router, which comes before the other
member routers in the dispatcher: a menu button pressed while a question is pending opens its
screen instead of being taken as the answer.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import (
    KICKED,
    MEMBER,
    ChatMemberUpdatedFilter,
    Command,
    CommandObject,
    CommandStart,
)
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, ChatMemberUpdated, Message
from aiogram.utils.i18n import gettext as _

from cards.number import format_card_number
from cards.service import CardPrint, CardService
from handlers.common import staff_help
from handlers.filters import IsMember, MenuButton
from handlers.history import show_history
from handlers.keyboards import main_menu
from handlers.requests import ask_support
from handlers.settings import show_settings
from ledger.rules import Rules
from ledger.service import LedgerService
from ledger.views import MemberView
from messaging.texts import burn_text, display_name, points_text, roubles_text, tier_text
from staff.roles import Role


def build_member_router() -> Router:
    """The menu, for registered members in a private chat."""
    router = Router(name="member")
    router.message.filter(IsMember(), F.chat.type == "private")

    router.message.register(start_again, CommandStart())
    router.message.register(show_help, Command("help"))
    router.message.register(cancel, Command("cancel"))
    router.message.register(show_card, Command("card"))
    router.message.register(show_card, MenuButton("menu-card"))
    router.message.register(show_balance, Command("balance"))
    router.message.register(show_balance, MenuButton("menu-balance"))
    router.message.register(show_history, Command("history"))
    router.message.register(show_history, MenuButton("menu-history"))
    router.message.register(show_invite, Command("invite"))
    router.message.register(show_invite, MenuButton("menu-invite"))
    router.message.register(show_settings, Command("settings"))
    router.message.register(show_settings, MenuButton("menu-settings"))
    router.message.register(ask_support, Command("support"))
    router.message.register(ask_support, MenuButton("menu-support"))

    router.my_chat_member.register(blocked_the_bot, ChatMemberUpdatedFilter(KICKED))
    router.my_chat_member.register(unblocked_the_bot, ChatMemberUpdatedFilter(MEMBER))
    return router


# ------------------------------------------------------------- blocking and unblocking


async def blocked_the_bot(
    event: ChatMemberUpdated, ledger: LedgerService, member: MemberView | None = None
) -> None:
    """Stop writing to someone who blocked the bot (the outbox skips unreachable members)."""
    if member is not None:
        await ledger.update_profile(member.member_id, unreachable=True)


async def unblocked_the_bot(
    event: ChatMemberUpdated, ledger: LedgerService, member: MemberView | None = None
) -> None:
    if member is not None and member.unreachable:
        await ledger.update_profile(member.member_id, unreachable=False)


# -------------------------------------------------------------------- start, help


async def start_again(
    message: Message, command: CommandObject, member: MemberView, state: FSMContext
) -> None:
    await state.clear()
    if (command.args or "").startswith("ref_"):
        await message.answer(_("already-member-invite"), reply_markup=main_menu())
        return
    name = display_name(member, message.from_user.first_name if message.from_user else None)
    await message.answer(_("welcome-back").format(name=name), reply_markup=main_menu())


async def show_help(message: Message, rules: Rules, roles: frozenset[Role] = frozenset()) -> None:
    lines = [
        _("help-text").format(
            program=rules.program_name, referral=points_text(rules.referral.inviter_points)
        )
    ]
    lines += staff_help(roles)
    await message.answer("\n\n".join(lines), reply_markup=main_menu())


async def cancel(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(_("cancelled"), reply_markup=main_menu())


# --------------------------------------------------------------------------- card


async def show_card(
    message: Message,
    member: MemberView,
    rules: Rules,
    cards: CardService,
    bot_username: str,
    state: FSMContext,
) -> None:
    await state.clear()
    tier_label = tier_text(member.tier)
    card = CardPrint(
        program_name=rules.program_name,
        first_name=member.first_name or "",
        card_number=member.card_number,
        tier=member.tier,
        tier_label=tier_label,
        caption_label=_("card-number-label"),
    )
    caption = _("card-caption").format(card=format_card_number(member.card_number), tier=tier_label)
    file_id = await cards.cached_file_id(member.member_id, card)
    if file_id is not None:
        try:
            await message.answer_photo(file_id, caption=caption, reply_markup=main_menu())
            return
        except TelegramBadRequest:
            await cards.forget(member.member_id)  # Telegram lost it: upload again
    png = await cards.draw(card, bot_username)
    sent = await message.answer_photo(
        BufferedInputFile(png, filename="card.png"), caption=caption, reply_markup=main_menu()
    )
    if sent.photo:
        await cards.remember(member.member_id, card, sent.photo[-1].file_id)


# ------------------------------------------------------------------------ balance


async def show_balance(
    message: Message, member: MemberView, ledger: LedgerService, rules: Rules, state: FSMContext
) -> None:
    await state.clear()
    view = await ledger.balance(member.member_id)
    lines = [_("balance-usable").format(points=points_text(view.balance))]
    if view.pending:
        lines.append(_("balance-pending").format(points=points_text(view.pending)))
    if view.debt:
        lines.append(_("balance-debt").format(points=points_text(view.debt)))
    tier = rules.tier(view.tier)
    lines.append(_("balance-tier").format(tier=tier_text(view.tier), rate=tier.rub_per_point))
    if view.next_tier:
        lines.append(
            _("balance-next-tier").format(
                amount=roubles_text(view.to_next_tier), tier=tier_text(view.next_tier)
            )
        )
    else:
        lines.append(_("balance-top-tier"))
    if view.nearest_burn:
        burn = view.nearest_burn
        lines.append(
            _("balance-burn").format(burn=burn_text(burn.points, burn.burns_at, member.timezone))
        )
    elif view.balance:
        lines.append(_("balance-no-burn"))
    await message.answer("\n".join(lines), reply_markup=main_menu())


# ------------------------------------------------------------------------- invite


async def show_invite(
    message: Message, member: MemberView, rules: Rules, bot_username: str, state: FSMContext
) -> None:
    await state.clear()
    link = f"https://t.me/{bot_username}?start=ref_{member.referral_code}"
    await message.answer(
        _("invite-text").format(points=points_text(rules.referral.inviter_points), link=link),
        reply_markup=main_menu(),
    )
