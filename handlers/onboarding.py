"""Joining the program: greeting and rules, consent, then the member's own phone by button."""

from __future__ import annotations

import contextlib

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.utils.i18n import gettext as _

from cards.number import format_card_number
from handlers.drafts import Draft, draft_of, keep
from handlers.filters import IsMember
from handlers.keyboards import ConsentCb, main_menu
from ledger.errors import InvalidPhone
from ledger.rules import Rules
from ledger.service import LedgerService
from messaging.languages import language_for
from messaging.notifier import Notifier
from messaging.texts import count_text, days_text, points_text

REFERRAL_PREFIX = "ref_"
MAX_CONSENT_MESSAGES = 20


class Joining(StatesGroup):
    consent = State()
    contact = State()


class JoiningDraft(Draft):
    """The FSM data while joining: the invitation the member came with (a valid one, or
    None), and the ids of the messages with [I agree] (agreeing takes every such button
    away)."""

    referral: str | None = None
    consent_messages: tuple[int, ...] = ()


def build_onboarding_router() -> Router:
    router = Router(name="onboarding")
    router.message.filter(IsMember(registered=False), F.chat.type == "private")
    router.callback_query.filter(IsMember(registered=False))

    router.message.register(start, CommandStart())
    router.message.register(leave_joining, Command("cancel"))  # in any step, or none
    router.callback_query.register(agree, ConsentCb.filter())
    router.message.register(own_contact, Joining.contact, F.contact)
    router.message.register(contact_before_consent, F.contact)
    typed = F.text & ~F.text.startswith("/")
    router.message.register(typed_instead_of_contact, Joining.contact, typed)
    router.message.register(share_the_phone, Joining.contact)  # a sticker, /help, /balance ...
    router.message.register(needs_consent, Joining.consent)
    return router


async def start(
    message: Message, command: CommandObject, state: FSMContext, rules: Rules, ledger: LedgerService
) -> None:
    payload = command.args or ""
    referral = payload[len(REFERRAL_PREFIX) :] if payload.startswith(REFERRAL_PREFIX) else None
    if referral and (len(referral) > 64 or not await ledger.invites(referral)):
        referral = None  # a broken or old link: a plain welcome, no "your friend invited you"
    await state.set_state(Joining.consent)
    await keep(
        state, (await draft_of(state, JoiningDraft)).model_copy(update={"referral": referral})
    )
    user = message.from_user
    base = rules.tiers[0]
    greeting = _("start-greeting").format(
        name=(user.first_name if user else "") or "",
        program=rules.program_name,
        # (No line at all when the program gives no joining bonus.)
        welcome=(
            _("start-welcome-line").format(points=points_text(rules.welcome_bonus))
            if rules.welcome_bonus > 0
            else ""
        ),
        base_rate=base.rub_per_point,
        cap=rules.max_redeem_percent,
        lifetime=days_text(rules.points_lifetime_days),
    )
    if referral:
        greeting = _("start-invited") + "\n\n" + greeting
    await _ask_consent(message, state, greeting)


async def agree(callback: CallbackQuery, state: FSMContext, bot: Bot) -> None:
    await callback.answer()
    if await state.get_state() == Joining.contact.state:
        return  # a second tap on "I agree": the request for the phone is there already
    draft = await draft_of(state, JoiningDraft)
    asked = draft.consent_messages
    await state.set_state(Joining.contact)
    await keep(state, draft.model_copy(update={"consent_messages": ()}))
    if isinstance(callback.message, Message):
        chat_id = callback.message.chat.id
        # Every message that asked (the greeting, a second one, a reminder) loses its button.
        for message_id in {callback.message.message_id, *asked}:
            with contextlib.suppress(TelegramBadRequest):  # its keyboard may be gone already
                await bot.edit_message_reply_markup(
                    chat_id=chat_id, message_id=message_id, reply_markup=None
                )
        await callback.message.answer(_("consent-thanks"), reply_markup=_share_phone_keyboard())


async def own_contact(
    message: Message, state: FSMContext, ledger: LedgerService, rules: Rules, notifier: Notifier
) -> None:
    contact = message.contact
    user = message.from_user
    if contact is None or user is None or contact.user_id != user.id:
        await message.answer(_("contact-foreign"), reply_markup=_share_phone_keyboard())
        return
    draft = await draft_of(state, JoiningDraft)
    try:
        registration = await ledger.register_member(
            contact.phone_number,
            telegram_id=user.id,
            first_name=user.first_name,
            last_name=user.last_name,
            username=user.username,
            language=language_for(user.language_code),
            referral_code=draft.referral,
        )
    except InvalidPhone:
        await message.answer(_("contact-invalid"), reply_markup=_share_phone_keyboard())
        return
    await state.clear()
    member = registration.member
    if registration.created and not registration.welcome_points:
        # No bonus: the program gives none, or the number had it before (its data were
        # deleted since), which is said.
        key = "registered-no-welcome" if rules.welcome_bonus > 0 else "registered-plain"
        text = _(key).format(
            program=rules.program_name, card=format_card_number(member.card_number)
        )
    elif registration.created:
        text = count_text(
            "registered",
            registration.welcome_points,
            program=rules.program_name,
            card=format_card_number(member.card_number),
        )
    else:
        text = _("registered-linked").format(card=format_card_number(member.card_number))
    await message.answer(text, reply_markup=main_menu())
    if registration.moved_from is not None:
        await notifier.account_moved(member, registration.moved_from)


async def leave_joining(message: Message, state: FSMContext) -> None:
    """/cancel before joining: whatever step it was is over; /start begins again."""
    await state.clear()
    await message.answer(_("joining-cancelled"), reply_markup=ReplyKeyboardRemove())


async def contact_before_consent(message: Message, state: FSMContext) -> None:
    await needs_consent(message, state)


async def typed_instead_of_contact(message: Message) -> None:
    await message.answer(_("contact-typed"), reply_markup=_share_phone_keyboard())


async def share_the_phone(message: Message) -> None:
    """Anything but text while the phone is asked for: what is needed, with the button."""
    await message.answer(_("contact-needed"), reply_markup=_share_phone_keyboard())


async def needs_consent(message: Message, state: FSMContext) -> None:
    await state.set_state(Joining.consent)
    await _ask_consent(message, state, _("consent-first"))


async def _ask_consent(message: Message, state: FSMContext, text: str) -> None:
    """Send `text` with [I agree], remembering the message: agreeing takes every such
    button away."""
    sent = await message.answer(text, reply_markup=_consent_keyboard())
    draft = await draft_of(state, JoiningDraft)
    asked = (*draft.consent_messages, sent.message_id)[-MAX_CONSENT_MESSAGES:]
    await keep(state, draft.model_copy(update={"consent_messages": asked}))


def _consent_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=_("consent-button"), callback_data=ConsentCb().pack())]
        ]
    )


def _share_phone_keyboard() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=_("share-phone-button"), request_contact=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )
