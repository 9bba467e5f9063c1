"""A flow's FSM data is one typed draft, read and written whole: what a handler keeps is what
the next one reads, through the JSON a Redis store keeps it as, and damaged data reads as no
draft at all (the button is then "no longer active") rather than an error."""

from __future__ import annotations

import json

from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.memory import MemoryStorage

from handlers.cashier import Sale, SaleDraft
from handlers.drafts import draft_of, keep
from handlers.onboarding import JoiningDraft


def _state() -> FSMContext:
    return FSMContext(MemoryStorage(), StorageKey(bot_id=1, chat_id=2, user_id=2))


async def test_a_sale_kept_by_one_step_is_what_the_next_step_reads_through_json() -> None:
    state = _state()
    sale = Sale(member_id=7, token="ab12cd34ef56", amount=150_000, allowed=450, redeem=450)
    draft = SaleDraft(shown=7, sale=sale)
    await keep(state, draft)
    stored = await state.get_data()
    assert json.loads(json.dumps(stored)) == stored  # what RedisStorage can keep
    assert await draft_of(state, SaleDraft) == draft


async def test_a_panel_shown_is_no_sale_yet_and_nothing_kept_reads_empty() -> None:
    state = _state()
    assert await draft_of(state, SaleDraft) == SaleDraft(shown=None, sale=None)
    await keep(state, SaleDraft(shown=7))
    assert await draft_of(state, SaleDraft) == SaleDraft(shown=7, sale=None)


async def test_damaged_sale_data_reads_as_no_sale() -> None:
    state = _state()
    await state.set_data({"shown": 7, "sale": {"member_id": 7, "token": "x", "amount": "lots"}})
    assert await draft_of(state, SaleDraft) == SaleDraft()


async def test_joining_keeps_the_referral_and_the_consent_messages() -> None:
    state = _state()
    await keep(state, JoiningDraft(referral="abc", consent_messages=(3, 4)))
    assert await draft_of(state, JoiningDraft) == JoiningDraft(
        referral="abc", consent_messages=(3, 4)
    )
