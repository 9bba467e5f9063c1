"""The pure rules: earning, caps, FIFO, refunds, money parsing. No database."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import policy
from ledger.errors import InvalidAmount
from ledger.policy import OpenLot
from ledger.rules import Rules

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tier", "roubles", "points"),
    [
        ("base", 49.99, 0),
        ("base", 50, 1),
        ("base", 1499, 29),
        ("silver", 40, 1),
        ("silver", 79.99, 1),
        ("gold", 30, 1),
        ("gold", 1000, 33),
    ],
)
def test_earning_per_tier_rounds_down(rules: Rules, tier: str, roubles: float, points: int) -> None:
    kopecks = round(roubles * 100)
    assert policy.earned_points(kopecks, rules.tier(tier)) == points


@pytest.mark.parametrize(
    ("spend_rub", "tier"),
    [(0, "base"), (9_999.99, "base"), (10_000, "silver"), (29_999, "silver"), (30_000, "gold")],
)
def test_tier_by_qualifying_spend(rules: Rules, spend_rub: float, tier: str) -> None:
    assert policy.tier_for_spend(rules, round(spend_rub * 100)).name == tier


def test_next_tier_and_top(rules: Rules) -> None:
    assert policy.next_tier(rules, rules.tier("base")).name == "silver"  # type: ignore[union-attr]
    assert policy.next_tier(rules, rules.tier("gold")) is None


@pytest.mark.parametrize(
    ("amount_rub", "balance", "allowed"),
    [(1000, 10_000, 300), (1000, 120, 120), (999.99, 10_000, 299), (3.33, 100, 0), (10, 0, 0)],
)
def test_redemption_is_capped_at_30_percent_and_the_balance(
    rules: Rules, amount_rub: float, balance: int, allowed: int
) -> None:
    assert policy.redeemable_points(rules, round(amount_rub * 100), balance) == allowed


@given(amount=st.integers(1, 10**10), balance=st.integers(0, 10**7))
def test_redemption_never_pays_more_than_30_percent(amount: int, balance: int) -> None:
    from ledger.rules import load_rules
    from tests.conftest import ROOT

    rules = load_rules(ROOT / "rules.toml")
    points = policy.redeemable_points(rules, amount, balance)
    assert 0 <= points <= balance
    assert points * rules.point_value_kopecks * 100 <= amount * rules.max_redeem_percent


def test_fifo_spends_the_lot_that_burns_first() -> None:
    lots = [
        OpenLot(1, 50, T0 + timedelta(days=30)),
        OpenLot(2, 20, T0 + timedelta(days=10)),
        OpenLot(3, 40, T0 + timedelta(days=10)),
    ]
    allocation = policy.allocate_fifo(lots, 70)
    assert allocation.takes == ((2, 20), (3, 40), (1, 10)) and allocation.shortfall == 0


def test_fifo_reports_the_shortfall() -> None:
    allocation = policy.allocate_fifo([OpenLot(1, 5, T0)], 8)
    assert allocation.takes == ((1, 5),) and allocation.shortfall == 3


@given(
    remaining=st.lists(st.integers(0, 500), max_size=8),
    days=st.lists(st.integers(0, 400), min_size=8, max_size=8),
    points=st.integers(0, 5000),
)
def test_fifo_takes_exactly_what_is_asked_or_everything(
    remaining: list[int], days: list[int], points: int
) -> None:
    lots = [OpenLot(i, r, T0 + timedelta(days=days[i])) for i, r in enumerate(remaining)]
    allocation = policy.allocate_fifo(lots, points)
    taken = sum(take for _, take in allocation.takes)
    assert taken + allocation.shortfall == points
    assert taken == min(points, sum(remaining))
    by_id = {lot.lot_id: lot for lot in lots}
    assert all(0 < take <= by_id[lot_id].remaining for lot_id, take in allocation.takes)
    # nothing that burns later is touched while something that burns earlier is left
    untouched_early = [
        lot for lot in lots if lot.remaining > dict(allocation.takes).get(lot.lot_id, 0)
    ]
    if untouched_early and allocation.takes:
        latest_taken = max(by_id[i].expires_at for i, _ in allocation.takes)
        earliest_left = min(lot.expires_at for lot in untouched_early)
        assert latest_taken <= earliest_left


def test_due_to_burn_is_exactly_what_has_expired() -> None:
    lots = [OpenLot(1, 5, T0), OpenLot(2, 5, T0 + timedelta(seconds=1)), OpenLot(3, 0, T0)]
    assert [lot.lot_id for lot in policy.due_to_burn(lots, T0)] == [1]


@given(
    total=st.integers(0, 10_000),
    whole=st.integers(1, 10**8),
    cuts=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6),
)
def test_partial_refunds_add_up_to_the_total_exactly(
    total: int, whole: int, cuts: list[float]
) -> None:
    refunded = 0
    given_back = 0
    for fraction in cuts:
        part = min(whole - refunded, max(1, int(whole * fraction)))
        if part <= 0:
            break
        given_back += policy.pro_rata(total, refunded, part, whole)
        refunded += part
    assert 0 <= given_back <= total
    given_back += policy.pro_rata(total, refunded, whole - refunded, whole)
    assert given_back == total


def test_refund_share_rounds_down_until_the_last_part() -> None:
    assert policy.pro_rata(10, 0, 1, 3) == 3
    assert policy.pro_rata(10, 1, 1, 3) == 3
    assert policy.pro_rata(10, 2, 1, 3) == 4


@pytest.mark.parametrize(
    ("text", "kopecks"),
    [
        ("1500", 150000),
        ("1500.00", 150000),
        ("1500.5", 150050),
        ("0.01", 1),
        ("12,30", 1230),
        (" 7 ", 700),
        (12, 1200),
    ],
)
def test_amounts_are_parsed_to_kopecks(text: str | int, kopecks: int) -> None:
    assert policy.parse_amount(text) == kopecks


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0", "positive"),
        ("-5", "positive"),
        ("0.00", "positive"),
        ("1.001", "two decimals"),
        ("abc", "number"),
        ("1e3", "number"),
        ("NaN", "number"),
        ("", "number"),
        ("1000000000000", "number"),
        ("99999999999.99", "too large"),
    ],
)
def test_bad_amounts_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidAmount, match=why):
        policy.parse_amount(text)


def test_float_amounts_are_refused() -> None:
    with pytest.raises(InvalidAmount):
        policy.parse_amount(12.5)  # type: ignore[arg-type]


def test_card_numbers_carry_a_luhn_check_digit() -> None:
    assert policy.is_valid_card_number("79927398713")
    assert not policy.is_valid_card_number("79927398710")
    assert not policy.is_valid_card_number("7992739871a")
    assert policy.format_amount(150050) == "1500.50"


def test_plain_text_is_unicodes_control_surrogate_and_format_categories_exactly() -> None:
    """The regex behind is_plain_text refuses exactly categories Cc, Cs and Cf (U+202E, U+200B,
    ...), over every code point (it replaced a unicodedata loop that cost 3% of an API
    purchase). A code point this Python's Unicode has not assigned yet (Cn) may go either way:
    the regex knows the format characters of a later Unicode."""
    for code in range(0x110000):
        char = chr(code)
        category = unicodedata.category(char)
        if category == "Cn" and not policy.is_plain_text(char):
            continue
        expected = category not in ("Cc", "Cs", "Cf")
        assert policy.is_plain_text(f"a{char}b") is expected, hex(code)


def test_free_text_loses_what_would_hide_or_disguise_it_and_keeps_its_lines() -> None:
    assert policy.readable_text("Look at \u202egnp.exe\x00\nplease\t\u200b!\r") == (
        "Look at gnp.exe\nplease\t!"
    )
    assert policy.readable_text("Анна 👍") == "Анна 👍"
