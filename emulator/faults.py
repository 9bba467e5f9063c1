"""Fault injection and Telegram's flood limits.

:class:`FaultInjector` holds rules that make matching calls fail (429, 403, 5xx, 400) or slow
down (latency), for the next N calls, with a probability (seeded, repeatable) or until
cleared. :class:`RateLimiter` enforces Telegram's documented limits on sending and editing:
about 30 messages per second per bot overall and about one message per second per chat.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from .errors import ApiError, bad_request, forbidden, server_error, too_many_requests


class FaultKind(StrEnum):
    """What a fault rule does to a matching call."""

    RETRY_AFTER = "retry_after"
    """429 ``Too Many Requests: retry after N`` with ``parameters.retry_after``."""
    BLOCKED = "blocked"
    """403 ``Forbidden: bot was blocked by the user`` (or ``description``)."""
    SERVER_ERROR = "server_error"
    """``status`` (500 by default, e.g. 502) with ``description``."""
    BAD_REQUEST = "bad_request"
    """400 ``Bad Request: <description>``."""
    LATENCY = "latency"
    """Delay the answer by ``latency_ms``; the call then proceeds normally."""


@dataclass
class FaultRule:
    """A fault injection rule.

    Args:
        kind: What happens (see :class:`FaultKind`).
        method: Bot API method it applies to (case-insensitive); ``None`` = every method.
        chat_id: Only calls whose ``chat_id`` parameter equals this; ``None`` = any call.
        times: Fire N times, then disappear; ``None`` = until removed. Without a
            probability that is "the next N matching calls".
        probability: Chance to fire per matching call, drawn from the injector's seeded RNG
            (combine with ``times`` for "N random failures").
        retry_after: Seconds reported by ``RETRY_AFTER``.
        status: HTTP status for ``SERVER_ERROR`` (500, 502...).
        description: Overrides the error text (for ``BAD_REQUEST``: the part after
            ``"Bad Request: "``, the prefix is added if missing).
        latency_ms: Delay for ``LATENCY``.
    """

    kind: FaultKind
    method: str | None = None
    chat_id: int | None = None
    times: int | None = None
    probability: float = 1.0
    retry_after: int = 5
    status: int = 500
    description: str | None = None
    latency_ms: int = 0
    id: int = 0
    """Assigned by :meth:`FaultInjector.add`."""
    fired: int = 0
    """How many calls this rule has affected."""

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 (or None for 'until cleared')")

    def matches(self, method: str, chat_id: int | None) -> bool:
        """True if the rule targets this call."""
        if self.method is not None and self.method.lower() != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id

    def error(self) -> ApiError:
        """The error answer of a firing non-latency rule."""
        if self.kind is FaultKind.RETRY_AFTER:
            error = too_many_requests(self.retry_after)
            if self.description:
                error.description = self.description
            return error
        if self.kind is FaultKind.BLOCKED:
            return forbidden(self.description or "Forbidden: bot was blocked by the user")
        if self.kind is FaultKind.SERVER_ERROR:
            return server_error(self.status, self.description)
        return bad_request(self.description or "injected fault")

    def to_json(self) -> dict[str, Any]:
        """A JSON view (also accepted by :meth:`from_json`)."""
        data = asdict(self)
        data["kind"] = str(self.kind)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        """Build a rule from a JSON object with the constructor's field names."""
        known = {f.name for f in fields(cls)} - {"id", "fired"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        return cls(**data)


class FaultInjector:
    """An ordered set of :class:`FaultRule` checked on every Bot API call.

    Args:
        seed: Seed of the RNG used for probabilistic rules (same seed, same sequence).
    """

    def __init__(self, seed: int = 0) -> None:
        self.rules: list[FaultRule] = []
        self._rng = random.Random(seed)
        self._next_id = 1

    def seed(self, seed: int) -> None:
        """Re-seed the RNG."""
        self._rng.seed(seed)

    def add(self, kind: FaultKind | str | FaultRule, **options: Any) -> FaultRule:
        """Add a rule (a :class:`FaultRule`, or its kind plus keyword options); returns it."""
        rule = kind if isinstance(kind, FaultRule) else FaultRule(FaultKind(kind), **options)
        rule.id = self._next_id
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def remove(self, rule: FaultRule | int) -> bool:
        """Remove a rule (or its id); True if it existed."""
        rule_id = rule.id if isinstance(rule, FaultRule) else rule
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self) -> None:
        """Remove every rule."""
        self.rules.clear()

    async def apply(self, method: str, chat_id: int | None) -> bool:
        """Run the rules against a call: sleep for latency rules, raise the first error.

        Returns True if a latency rule fired (errors are raised as :class:`ApiError`).
        """
        delayed = False
        for rule in list(self.rules):
            if not rule.matches(method, chat_id):
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.times is not None and rule.fired >= rule.times:
                self.remove(rule)
            if rule.kind is FaultKind.LATENCY:
                delayed = True
                await asyncio.sleep(rule.latency_ms / 1000)
                continue
            raise rule.error()
        return delayed


#: Methods the rate limiter counts by default: everything that sends or edits a message.
LIMITED_METHODS = frozenset(
    {
        "sendmessage", "sendphoto", "senddocument", "sendaudio", "sendvideo", "sendanimation",
        "sendvoice", "sendvideonote", "sendmediagroup", "sendlocation", "sendvenue",
        "sendcontact", "sendpoll", "senddice", "sendsticker", "copymessage", "forwardmessage",
        "editmessagetext", "editmessagecaption", "editmessagereplymarkup", "editmessagemedia",
    }
)  # fmt: skip


@dataclass
class RateLimitConfig:
    """Flood limits (Telegram's defaults).

    Args:
        enabled: Whether the limiter answers 429 at all.
        global_per_second: Max limited calls per bot within any sliding 1 s window.
        per_chat_per_second: Refill rate of each chat's token bucket.
        per_chat_burst: Bucket size: how many calls a quiet chat may receive at once.
        methods: Lower-case method names that count (default: send*/edit*).
    """

    enabled: bool = False
    global_per_second: int = 30
    per_chat_per_second: float = 1.0
    per_chat_burst: int = 1
    methods: frozenset[str] = field(default=LIMITED_METHODS)

    def to_json(self) -> dict[str, Any]:
        """A JSON view."""
        return {
            "enabled": self.enabled,
            "global_per_second": self.global_per_second,
            "per_chat_per_second": self.per_chat_per_second,
            "per_chat_burst": self.per_chat_burst,
            "methods": sorted(self.methods),
        }


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Telegram-like flood control for send/edit calls.

    Per bot, a sliding one-second window allows ``global_per_second`` calls; per chat, a token
    bucket allows ``per_chat_burst`` calls at once refilled at ``per_chat_per_second``. A call
    breaking either limit is refused with 429 and a whole-second ``retry_after`` (>= 1) and is
    not counted against the limits.

    Args:
        config: The limits; change them later with :meth:`configure`.
        clock: Monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self, config: RateLimitConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or RateLimitConfig()
        self.clock = clock
        self._windows: dict[int, deque[float]] = {}
        self._buckets: dict[tuple[int, int], _Bucket] = {}

    @property
    def enabled(self) -> bool:
        """Whether the limiter is active."""
        return self.config.enabled

    def configure(self, **changes: Any) -> RateLimitConfig:
        """Change config fields (e.g. ``enabled=True, per_chat_burst=3``); returns the config."""
        for name, value in changes.items():
            if not hasattr(self.config, name):
                raise ValueError(f"unknown rate limit option {name!r}")
            if name == "methods":
                value = frozenset(m.lower() for m in value)
            setattr(self.config, name, value)
        self.reset()
        return self.config

    def reset(self) -> None:
        """Forget all recorded calls."""
        self._windows.clear()
        self._buckets.clear()

    def check(self, bot_id: int, method: str, chat_id: int | None) -> None:
        """Record a call or raise a 429 :class:`ApiError` if it breaks a limit."""
        config = self.config
        if not config.enabled or method.lower() not in config.methods:
            return
        now = self.clock()
        window = self._windows.setdefault(bot_id, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= config.global_per_second:
            raise too_many_requests(math.ceil(window[0] + 1.0 - now))
        bucket = None
        if chat_id is not None:
            bucket = self._buckets.get((bot_id, chat_id))
            if bucket is None:
                bucket = _Bucket(float(config.per_chat_burst), now)
                self._buckets[(bot_id, chat_id)] = bucket
            bucket.tokens = min(
                float(config.per_chat_burst),
                bucket.tokens + (now - bucket.updated) * config.per_chat_per_second,
            )
            bucket.updated = now
            if bucket.tokens < 1.0:
                raise too_many_requests(
                    math.ceil((1.0 - bucket.tokens) / config.per_chat_per_second)
                )
        if bucket is not None:
            bucket.tokens -= 1.0
        window.append(now)
