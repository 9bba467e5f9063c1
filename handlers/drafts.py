"""A multi-step flow's FSM data as one typed, frozen draft: a handler reads the whole draft
with `draft_of` and writes the next one with `keep`, and never indexes a dict.

The storage may be memory or Redis (JSON): a draft is kept as its `model_dump()` and rebuilt
with validation, so data that does not fit (damaged, or kept by a version with other fields
that no longer make sense) reads as an empty draft: the flow then starts again, as after
/cancel, rather than failing halfway.
"""

from __future__ import annotations

from typing import TypeVar

from aiogram.fsm.context import FSMContext
from pydantic import BaseModel, ConfigDict, ValidationError


class Draft(BaseModel):
    """Base of a flow's data: frozen (a step makes a new draft with `model_copy(update=...)`),
    unknown keys ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


D = TypeVar("D", bound=Draft)


async def draft_of(state: FSMContext, kind: type[D]) -> D:
    """The flow's draft as kept by the last step (an empty one if none or unreadable)."""
    try:
        return kind.model_validate(await state.get_data())
    except ValidationError:
        return kind()


async def keep(state: FSMContext, draft: Draft) -> None:
    """Keep `draft` as the flow's whole data (the FSM state itself is left as it is)."""
    await state.set_data(draft.model_dump(mode="json"))
