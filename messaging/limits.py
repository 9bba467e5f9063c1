"""Telegram's limits and the member's quiet hours, as the sender applies them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ledger.rules import MessageRules


class RateLimiter:
    """At most `per_second` sends overall and one per chat per `per_chat_interval` seconds."""

    def __init__(self, per_second: float, per_chat_interval: float) -> None:
        self.interval = 1.0 / per_second
        self.per_chat_interval = per_chat_interval
        self._next_global = 0.0
        self._next_chat: dict[int, float] = {}
        self.paused_until = 0.0

    def chat_ready_in(self, chat_id: int) -> float:
        return max(0.0, self._next_chat.get(chat_id, 0.0) - time.monotonic())

    def busy_chats(self) -> set[int]:
        """The chats whose interval has not passed yet: nothing is claimed for them."""
        now = time.monotonic()
        return {chat for chat, ready in self._next_chat.items() if ready > now}

    def next_ready_in(self) -> float | None:
        """Seconds until the first busy chat is free again; None when none is busy."""
        now = time.monotonic()
        waits = [ready - now for ready in self._next_chat.values() if ready > now]
        return min(waits) if waits else None

    async def acquire(self, chat_id: int) -> None:
        now = time.monotonic()
        start = max(now, self._next_global, self.paused_until, self._next_chat.get(chat_id, 0.0))
        self._next_global = start + self.interval
        self._next_chat[chat_id] = start + self.per_chat_interval
        if start > now:
            await asyncio.sleep(start - now)
        if len(self._next_chat) > 10_000:  # forget chats whose interval is long over
            horizon = time.monotonic()
            self._next_chat = {c: t for c, t in self._next_chat.items() if t > horizon}

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


def quiet_hours_end(now: datetime, timezone: str, rules: MessageRules) -> datetime | None:
    """When the quiet hours around `now` end in this time zone, or None outside them."""
    try:
        zone = ZoneInfo(timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo(rules.default_timezone)
    local = now.astimezone(zone)
    start, end = rules.quiet_hours_start, rules.quiet_hours_end
    moment = local.time()
    if start == end:
        return None
    if start > end:  # across midnight, e.g. 21:00-10:00
        quiet = moment >= start or moment < end
    else:
        quiet = start <= moment < end
    if not quiet:
        return None
    end_day = local.date() if moment < end else local.date() + timedelta(days=1)
    return datetime.combine(end_day, end, tzinfo=zone)


__all__: Sequence[str] = ["RateLimiter", "quiet_hours_end"]
