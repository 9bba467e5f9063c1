"""The lift of a broadcast: how the recipients did against the control group, who got nothing,
over the purchases of the attribution window. Pure arithmetic: the counts come in as two
`GroupOutcome`s (one query per group elsewhere), a `Lift` comes out.

Two measures, each as both groups' values, their difference and a 95% confidence interval:

- the buyers' share (members with at least one purchase in the window / members): the
  difference of two proportions with **Newcombe's hybrid score interval** (his method 10, 1998:
  the Wilson score interval of each share, combined). Unlike the Wald interval it stays sensible
  with few or no buyers and never leaves [-1, 1].
- revenue per member (kopecks, refunds subtracted): the difference of two means with **Welch's**
  standard error and the normal approximation (the groups are at least `MIN_MEMBERS` large).

What cannot be told is None (`null` in JSON), by one rule each:

- control group empty (a broadcast with control_percent 0): `LiftState.NO_CONTROL`; only the
  recipients' own values are given, nothing that compares.
- either group under `MIN_MEMBERS` members: `LiftState.TOO_SMALL`; both groups' values are
  given (of a group with members), no difference and no interval.
- the revenue interval also needs `MIN_BUYERS_FOR_REVENUE` buyers in each group: the spread of
  revenue comes from the buyers alone, and a handful of them says little about it. Below that
  the difference of the means is given without an interval.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ledger.policy import format_amount

MIN_MEMBERS = 30  # in each group, for any difference
MIN_BUYERS_FOR_REVENUE = 5  # in each group, for the revenue interval
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
_RATIO_PLACES = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """What one group (recipients or control) did in the attribution window.

    members          members in the group (erased members are left out of both sides)
    buyers           members with at least one purchase in the window
    purchases        purchases in the window
    revenue          the sum over the members of their money in the window, kopecks, refunds
                     subtracted (so one member's share may be negative)
    revenue_squares  the sum over the members of (their revenue)^2, kopecks^2; with `members`
                     and `revenue` it gives the variance of revenue per member without holding
                     every member. A member's square can pass 2^63 for large spenders: sum it in
                     Python integers (or NUMERIC), not in a 64-bit SQL integer.

    Members who bought nothing count with revenue 0 (they add nothing to either sum).
    """

    members: int
    buyers: int
    purchases: int
    revenue: int
    revenue_squares: int

    def __post_init__(self) -> None:
        if self.members < 0 or not 0 <= self.buyers <= self.members:
            raise ValueError(f"buyers {self.buyers} out of 0...members {self.members}")
        if self.purchases < self.buyers:
            raise ValueError(f"fewer purchases {self.purchases} than buyers {self.buyers}")
        # Cauchy-Schwarz: (sum x)^2 <= n * sum x^2; else the sums do not belong together.
        if self.revenue_squares < 0 or self.revenue**2 > self.members * self.revenue_squares:
            raise ValueError("revenue_squares is too small for revenue and members")

    @classmethod
    def of_members(cls, members: Iterable[tuple[int, int]]) -> GroupOutcome:
        """The outcome of members given one by one as (purchases, revenue in kopecks)."""
        count = buyers = purchases = revenue = squares = 0
        for bought, money in members:
            count += 1
            buyers += bought > 0
            purchases += bought
            revenue += money
            squares += money * money
        return cls(count, buyers, purchases, revenue, squares)

    @property
    def buyers_share(self) -> float | None:
        """Buyers / members; None for an empty group."""
        return self.buyers / self.members if self.members else None

    @property
    def revenue_per_member(self) -> float | None:
        """Mean revenue per member, kopecks; None for an empty group."""
        return self.revenue / self.members if self.members else None

    @property
    def revenue_variance(self) -> float | None:
        """The sample variance of revenue per member (kopecks^2); None under two members."""
        n = self.members
        if n < 2:
            return None
        # Exact in integers up to the one division: no cancellation of two large floats.
        return (n * self.revenue_squares - self.revenue**2) / (n * (n - 1))


class LiftState(enum.StrEnum):
    MEASURED = "measured"  # both groups large enough: differences and intervals
    TOO_SMALL = "too_small"  # a group under MIN_MEMBERS: each group's values only
    NO_CONTROL = "no_control"  # the control group is empty: lift cannot be measured


@dataclass(frozen=True, slots=True)
class Comparison:
    """One measure in both groups, the difference (recipients - control) and its 95% interval.
    None is what cannot be told."""

    recipients: float | None
    control: float | None
    difference: float | None = None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True)
class Lift:
    """A broadcast's lift: `buyers` compares shares (0...1), `revenue_per_member` compares
    kopecks per member."""

    state: LiftState
    buyers: Comparison
    revenue_per_member: Comparison

    def to_json(self) -> dict[str, Any]:
        """The HTTP API's form: ratios as "0.1234", money as "123.45", null for unknown."""
        return {
            "state": self.state.value,
            "buyers": _comparison_json(self.buyers, _ratio_text),
            "revenue_per_member": _comparison_json(self.revenue_per_member, _money_text),
        }


def measure(recipients: GroupOutcome, control: GroupOutcome) -> Lift:
    """The lift of the recipients over the control group (see the module's rules)."""
    shares = Comparison(recipients.buyers_share, control.buyers_share)
    means = Comparison(recipients.revenue_per_member, control.revenue_per_member)
    if control.members == 0:
        return Lift(LiftState.NO_CONTROL, shares, means)
    if min(recipients.members, control.members) < MIN_MEMBERS:
        return Lift(LiftState.TOO_SMALL, shares, means)
    low, high = newcombe_interval(
        recipients.buyers, recipients.members, control.buyers, control.members
    )
    share_difference = recipients.buyers / recipients.members - control.buyers / control.members
    return Lift(
        LiftState.MEASURED,
        Comparison(shares.recipients, shares.control, share_difference, low, high),
        _revenue_comparison(recipients, control),
    )


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval of a proportion (trials > 0)."""
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    successes_1: int, trials_1: int, successes_2: int, trials_2: int, z: float = Z_95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 - p2 (both trials > 0)."""
    p1, p2 = successes_1 / trials_1, successes_2 / trials_2
    low_1, high_1 = wilson_interval(successes_1, trials_1, z)
    low_2, high_2 = wilson_interval(successes_2, trials_2, z)
    difference = p1 - p2
    # Within [-1, 1] in exact arithmetic; the clamp only removes a float's last-bit overshoot.
    return (
        max(-1.0, difference - math.hypot(p1 - low_1, high_2 - p2)),
        min(1.0, difference + math.hypot(high_1 - p1, p2 - low_2)),
    )


def welch_interval(
    recipients: GroupOutcome, control: GroupOutcome, z: float = Z_95
) -> tuple[float, float]:
    """The normal-approximation interval of the difference of mean revenue per member, with
    Welch's (unpooled) standard error; both groups need at least two members."""
    variance_1, variance_2 = recipients.revenue_variance, control.revenue_variance
    if variance_1 is None or variance_2 is None:
        raise ValueError("Welch's interval needs two members in each group")
    difference = recipients.revenue / recipients.members - control.revenue / control.members
    error = math.sqrt(variance_1 / recipients.members + variance_2 / control.members)
    return difference - z * error, difference + z * error


def _revenue_comparison(recipients: GroupOutcome, control: GroupOutcome) -> Comparison:
    mean_1, mean_2 = recipients.revenue / recipients.members, control.revenue / control.members
    if min(recipients.buyers, control.buyers) < MIN_BUYERS_FOR_REVENUE:
        return Comparison(mean_1, mean_2, mean_1 - mean_2)
    low, high = welch_interval(recipients, control)
    return Comparison(mean_1, mean_2, mean_1 - mean_2, low, high)


def _ratio_text(value: float) -> str:
    # "+ 0" turns a negative zero ("-0.0000") into "0.0000".
    return str(Decimal(value).quantize(_RATIO_PLACES, rounding=ROUND_HALF_UP) + 0)


def _money_text(kopecks: float) -> str:
    whole = int(Decimal(kopecks).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return format_amount(whole)


def _comparison_json(comparison: Comparison, text: Callable[[float], str]) -> dict[str, str | None]:
    values = {
        "recipients": comparison.recipients,
        "control": comparison.control,
        "difference": comparison.difference,
        "low": comparison.low,
        "high": comparison.high,
    }
    return {key: None if value is None else text(value) for key, value in values.items()}
