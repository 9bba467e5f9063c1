"""A segment's filter: the conditions a member must all meet (an omitted one is no condition),
as the interface contract (PRODUCT.md, "Segments") defines them, and their validation.

    tiers                list of tier names (the configured ones)
    balance_min/_max     usable points, 0 ... MAX_MEMBER_POINTS
    burning_within_days  has usable points that burn within N days, 1 ... MAX_DAYS
    inactive_days        no purchase in the last N days (a member who never bought: joined
                         at least N days ago), 1 ... MAX_DAYS
    joined_within_days   joined in the last N days, 1 ... MAX_DAYS
    language             ru | en
    birthday_month       1 ... 12
    purchases_min        lifetime count of purchases, 0 ... MAX_PURCHASES
    spent_365_min        money (qualifying: paid in money, net of refunds) over the last 365
                         days, as text: "10000.00"

Days are periods of 24 hours back from the ledger's clock (a purchase 30 days and one hour
ago is not "in the last 30 days"); a birthday's month is the month of the date the member set.
Pure: no database. marketing.audience turns a filter into SQL.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ledger import policy
from ledger.errors import InvalidAmount

MAX_DAYS = 3660  # ten years
MAX_PURCHASES = 1_000_000
LANGUAGES = ("ru", "en")
SPEND_DAYS = 365  # spent_365_min's window, whatever the tier window is
_ZERO_MONEY = re.compile(r"^0+(?:[.,]0{1,2})?$")

# The codes of a refused filter (the HTTP API answers them with 422).
INVALID_FILTER = "invalid_filter"  # not a JSON object
UNKNOWN_CONDITION = "unknown_condition"  # a key the contract does not define
INVALID_CONDITION = "invalid_condition"  # a value of the wrong type or out of range
UNKNOWN_TIER = "unknown_tier"  # a tier name the program's rules do not have


class SegmentError(Exception):
    """A segment refused: a code a program can act on, the field it is about, a message."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class SegmentFilter:
    """The conditions of a segment; None is no condition. Money in kopecks."""

    tiers: tuple[str, ...] | None = None
    balance_min: int | None = None
    balance_max: int | None = None
    burning_within_days: int | None = None
    inactive_days: int | None = None
    joined_within_days: int | None = None
    language: str | None = None
    birthday_month: int | None = None
    purchases_min: int | None = None
    spent_365_min: int | None = None

    def conditions(self) -> list[str]:
        """The names of the conditions set, in the contract's order."""
        return [item.name for item in fields(self) if getattr(self, item.name) is not None]

    def to_json(self) -> dict[str, Any]:
        """The filter as the contract writes it (parse_filter reads it back to an equal one)."""
        found: dict[str, Any] = {}
        for name in self.conditions():
            value = getattr(self, name)
            if name == "tiers":
                value = list(value)
            elif name == "spent_365_min":
                value = policy.format_amount(value)
            found[name] = value
        return found


CONDITIONS = frozenset(item.name for item in fields(SegmentFilter))
_DAYS = ("burning_within_days", "inactive_days", "joined_within_days")
_BOUNDS: dict[str, tuple[int, int]] = {
    "balance_min": (0, policy.MAX_MEMBER_POINTS),
    "balance_max": (0, policy.MAX_MEMBER_POINTS),
    **{name: (1, MAX_DAYS) for name in _DAYS},
    "birthday_month": (1, 12),
    "purchases_min": (0, MAX_PURCHASES),
}


def parse_filter(raw: Any, tiers: Collection[str] | None) -> SegmentFilter:
    """The filter a JSON object describes; SegmentError names the first bad key.

    tiers: the configured tier names a filter may name (None: any well-formed name, for a
    filter saved under earlier rules)."""
    if not isinstance(raw, Mapping):
        raise SegmentError(INVALID_FILTER, "filter", "filter must be a JSON object of conditions")
    unknown = sorted(str(key) for key in raw if key not in CONDITIONS)
    if unknown:
        raise SegmentError(
            UNKNOWN_CONDITION,
            unknown[0],
            f"unknown condition {unknown[0]!r}; the conditions are: {', '.join(_ORDER)}",
        )
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _BOUNDS:
            values[name] = _whole(name, value, *_BOUNDS[name])
        elif name == "tiers":
            values[name] = _tiers(value, tiers)
        elif name == "language":
            if value not in LANGUAGES:
                raise _invalid(name, f"language must be one of {', '.join(LANGUAGES)}")
            values[name] = value
        else:  # spent_365_min
            values[name] = _money(name, value)
    return SegmentFilter(**values)


_ORDER = [item.name for item in fields(SegmentFilter)]


def _invalid(name: str, message: str) -> SegmentError:
    return SegmentError(INVALID_CONDITION, name, message)


def _whole(name: str, value: Any, low: int, high: int) -> int:
    # JSON Schema's "integer" takes 5.0 too (Python's json reads it as a float).
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(name, f"{name} must be a whole number from {low} to {high}")
    return value


def _tiers(value: Any, known: Collection[str] | None) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(item, str) and _TIER_NAME.match(item) for item in value)
    ):
        raise _invalid("tiers", 'tiers must be a non-empty list of tier names, e.g. ["gold"]')
    if known is not None:
        missing = [item for item in value if item not in known]
        if missing:
            raise SegmentError(
                UNKNOWN_TIER,
                "tiers",
                f"no tier {missing[0]!r} in the program; its tiers are: {', '.join(known)}",
            )
    return tuple(dict.fromkeys(value))  # each once, in the order given


_TIER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")  # as ledger.rules.Tier's names


def _money(name: str, value: Any) -> int:
    if not isinstance(value, str):
        raise _invalid(name, f'{name} must be money as text, e.g. "10000.00"')
    if _ZERO_MONEY.match(value.strip()):
        return 0
    try:
        return policy.parse_amount(value)
    except InvalidAmount as error:
        raise _invalid(name, f'{name}: {error.message}, e.g. "10000.00"') from error
