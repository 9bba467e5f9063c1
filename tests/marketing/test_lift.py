"""A broadcast's lift over its control group: the buyers' share with Newcombe's interval, revenue
per member with Welch's, and what cannot be told (no control group, a group too small)."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketing.lift import (
    MIN_MEMBERS,
    GroupOutcome,
    LiftState,
    measure,
    newcombe_interval,
)


def group(members: int, buyers: int, spend_each: int = 0) -> GroupOutcome:
    """`members` members of whom `buyers` bought once for `spend_each` kopecks."""
    return GroupOutcome.of_members([(1, spend_each)] * buyers + [(0, 0)] * (members - buyers))


def test_the_buyers_share_difference_has_newcombes_interval_as_worked_out_by_hand() -> None:
    # z = 1.959964, z^2 = 3.841459. Wilson's interval of p = x/n:
    #   centre = (p + z^2/2n) / (1 + z^2/n)
    #   half   = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)
    # Recipients 120/1000, p1 = 0.12: 1 + z^2/n = 1.0038415,
    #   centre = (0.12 + 0.0019207) / 1.0038415 = 0.1214542,
    #   sqrt(0.12 * 0.88 / 1000 + 3.841459 / 4,000,000) = sqrt(0.0001056 + 0.00000096) = 0.0103228,
    #   half = 1.959964 / 1.0038415 * 0.0103228 = 0.0201549  ->  l1 = 0.1012993, u1 = 0.1416091.
    # Control 8/100, p2 = 0.08: 1 + z^2/n = 1.0384146,
    #   centre = (0.08 + 0.0192073) / 1.0384146 = 0.0955373,
    #   sqrt(0.08 * 0.92 / 100 + 3.841459 / 40,000) = sqrt(0.000736 + 0.0000960) = 0.0288450,
    #   half = 1.959964 / 1.0384146 * 0.0288450 = 0.0544438  ->  l2 = 0.0410935, u2 = 0.1499811.
    # Newcombe: d = p1 - p2 = 0.04,
    #   low  = d - sqrt((p1 - l1)^2 + (u2 - p2)^2) = 0.04 - sqrt(0.0187007^2 + 0.0699811^2)
    #        = 0.04 - 0.0724367 = -0.0324367
    #   high = d + sqrt((u1 - p1)^2 + (p2 - l2)^2) = 0.04 + sqrt(0.0216091^2 + 0.0389065^2)
    #        = 0.04 + 0.0445047 = 0.0845047
    # So 4.00 percentage points more buyers, but the interval, -3.24 ... +8.45 points, holds 0.
    lift = measure(group(1000, 120), group(100, 8))

    assert lift.state is LiftState.MEASURED
    assert lift.buyers.low == pytest.approx(-0.0324367, abs=5e-7)
    assert lift.buyers.high == pytest.approx(0.0845047, abs=5e-7)
    assert lift.to_json()["buyers"] == {
        "recipients": "0.1200",
        "control": "0.0800",
        "difference": "0.0400",
        "low": "-0.0324",
        "high": "0.0845",
    }


def test_newcombes_interval_matches_his_published_examples() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10.
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert newcombe_interval(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=5e-5)


def test_revenue_per_member_difference_has_welchs_interval_as_worked_out_by_hand() -> None:
    # Recipients: 40 members, 10 spent 100.00 (10,000 kopecks) each: mean 2,500 kopecks,
    #   sum of squares 10 * 10,000^2 = 1e9, variance (40 * 1e9 - 100,000^2) / (40 * 39)
    #   = 3e10 / 1,560 = 19,230,769.2; / 40 = 480,769.2.
    # Control: 30 members, 6 spent 50.00 (5,000 kopecks) each: mean 1,000 kopecks,
    #   sum of squares 6 * 5,000^2 = 1.5e8, variance (30 * 1.5e8 - 30,000^2) / (30 * 29)
    #   = 3.6e9 / 870 = 4,137,931.0; / 30 = 137,931.0.
    # Standard error sqrt(480,769.2 + 137,931.0) = sqrt(618,700.3) = 786.58;
    # difference 1,500 kopecks +- 1.959964 * 786.58 = +- 1,541.66: -41.66 ... 3,041.66 kopecks.
    recipients = GroupOutcome(members=40, buyers=10, purchases=10, revenue=100_000,
                              revenue_squares=1_000_000_000)  # fmt: skip
    control = GroupOutcome(members=30, buyers=6, purchases=6, revenue=30_000,
                           revenue_squares=150_000_000)  # fmt: skip

    lift = measure(recipients, control)

    assert lift.revenue_per_member.low == pytest.approx(-41.66, abs=0.01)
    assert lift.revenue_per_member.high == pytest.approx(3041.66, abs=0.01)
    assert lift.to_json()["revenue_per_member"] == {
        "recipients": "25.00",
        "control": "10.00",
        "difference": "15.00",
        "low": "-0.42",
        "high": "30.42",
    }


def test_without_a_control_group_the_lift_cannot_be_measured() -> None:
    lift = measure(group(500, 50, 10_000), GroupOutcome(0, 0, 0, 0, 0))

    assert lift.state is LiftState.NO_CONTROL
    assert lift.to_json() == {
        "state": "no_control",
        "buyers": {
            "recipients": "0.1000",
            "control": None,
            "difference": None,
            "low": None,
            "high": None,
        },
        "revenue_per_member": {
            "recipients": "10.00",
            "control": None,
            "difference": None,
            "low": None,
            "high": None,
        },
    }


def test_a_control_group_under_30_members_gives_each_groups_figures_but_no_difference() -> None:
    lift = measure(group(1000, 120, 5_000), group(MIN_MEMBERS - 1, 3, 5_000))

    assert lift.state is LiftState.TOO_SMALL
    body = lift.to_json()
    assert body["buyers"] == {
        "recipients": "0.1200",
        "control": "0.1034",  # 3 / 29
        "difference": None,
        "low": None,
        "high": None,
    }
    assert body["revenue_per_member"]["difference"] is None
    # One member more and the lift is measured.
    assert measure(group(1000, 120), group(MIN_MEMBERS, 3)).state is LiftState.MEASURED


def test_no_buyers_in_either_group_gives_no_difference_and_an_interval_around_zero() -> None:
    lift = measure(group(1000, 0), group(100, 0))

    body = lift.to_json()
    assert body["buyers"]["difference"] == "0.0000"
    # Nobody bought in 100 members: up to ~3.7% of the control could still have.
    assert lift.buyers.low is not None and lift.buyers.high is not None
    assert -0.04 < lift.buyers.low < 0 < lift.buyers.high < 0.01
    # No buyers, no spread of revenue to measure: the difference is 0, the interval unknown.
    assert body["revenue_per_member"] == {
        "recipients": "0.00",
        "control": "0.00",
        "difference": "0.00",
        "low": None,
        "high": None,
    }


def test_identical_groups_differ_by_zero_within_an_interval_symmetric_around_zero() -> None:
    same = group(400, 40, 10_000)

    lift = measure(same, same)

    body = lift.to_json()
    assert body["buyers"] == {
        "recipients": "0.1000",
        "control": "0.1000",
        "difference": "0.0000",
        "low": "-0.0421",
        "high": "0.0421",
    }
    assert body["revenue_per_member"]["difference"] == "0.00"
    assert body["revenue_per_member"]["low"] == "-" + body["revenue_per_member"]["high"]


def test_under_five_buyers_in_a_group_revenue_has_a_difference_but_no_interval() -> None:
    lift = measure(group(1000, 120, 10_000), group(100, 4, 10_000))

    assert lift.to_json()["revenue_per_member"] == {
        "recipients": "12.00",
        "control": "4.00",
        "difference": "8.00",
        "low": None,
        "high": None,
    }
    assert measure(group(1000, 120, 10_000), group(100, 5, 10_000)).revenue_per_member.low


def test_refunds_can_make_revenue_negative_and_money_keeps_its_sign() -> None:
    recipients = GroupOutcome.of_members([(1, -1_000)] * 10 + [(0, 0)] * 30)
    control = GroupOutcome.of_members([(1, 2_000)] * 10 + [(0, 0)] * 30)

    body = measure(recipients, control).to_json()["revenue_per_member"]

    assert (body["recipients"], body["control"], body["difference"]) == ("-2.50", "5.00", "-7.50")


def test_sums_that_cannot_come_from_real_members_are_refused() -> None:
    with pytest.raises(ValueError):
        GroupOutcome(members=10, buyers=11, purchases=11, revenue=0, revenue_squares=0)
    with pytest.raises(ValueError):
        GroupOutcome(members=10, buyers=2, purchases=1, revenue=0, revenue_squares=0)
    with pytest.raises(ValueError):  # 2 members with 100 kopecks in all: squares >= 5,000
        GroupOutcome(members=2, buyers=1, purchases=1, revenue=100, revenue_squares=4_999)


@given(st.lists(st.integers(min_value=-(10**9), max_value=10**9), min_size=2, max_size=60))
def test_the_variance_from_the_sums_is_the_variance_of_the_members(revenues: list[int]) -> None:
    outcome = GroupOutcome.of_members([(1 if money else 0, money) for money in revenues])

    assert outcome.revenue_variance == pytest.approx(
        statistics.variance(revenues), rel=1e-9, abs=1e-6
    )


@given(
    st.integers(min_value=1, max_value=2000).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n))
    ),
    st.integers(min_value=1, max_value=2000).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n))
    ),
)
def test_newcombes_interval_holds_the_difference_and_stays_within_minus_one_and_one(
    first: tuple[int, int], second: tuple[int, int]
) -> None:
    (n1, x1), (n2, x2) = first, second
    low, high = newcombe_interval(x1, n1, x2, n2)

    assert -1 <= low <= x1 / n1 - x2 / n2 <= high <= 1
