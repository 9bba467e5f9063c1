"""What the sender hands a composer (a broadcast's, marketing/offer.py) and what it gets back:
the member a message goes to, the message made for them, or word that it is withdrawn."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from messaging.outbox import OutboxMessage


@dataclass(frozen=True, slots=True)
class Recipient:
    """The member a message goes to, as the sender reads them when it sends."""

    language: str
    timezone: str
    unreachable: bool
    active: bool
    opted_in: dict[str, bool]
    first_name: str
    balance: int


@dataclass(frozen=True, slots=True)
class Composed:
    """A message as its composer made it for one member: Telegram HTML, the text or a
    photo's caption."""

    text: str
    reply_markup: dict[str, Any] | None = None
    photo: str | None = None  # a Telegram file_id: sent as a photo with `text` as its caption


class Withdrawn(Exception):
    """A composer's answer: this message is not to be sent now (its broadcast was paused or
    cancelled after it was claimed); recorded with `status` and `reason`."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# Makes the message of an outbox row whose `kind` it is registered for (a broadcast's), at send
# time; None when there is nothing to send (recorded as failed), or raises Withdrawn.
Composer = Callable[[OutboxMessage, Recipient], Awaitable[Composed | None]]


__all__: Sequence[str] = ["Composed", "Composer", "Recipient", "Withdrawn"]
