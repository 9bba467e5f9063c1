"""A segment's filter: what the contract takes, what it refuses and with which code, and the
segments a marketer saves (audited). Saving runs on both backends."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.clock import ManualClock
from ledger.service import LedgerService
from marketing.saved import INVALID_NAME, NAME_TAKEN, Segments
from marketing.segments import (
    INVALID_CONDITION,
    INVALID_FILTER,
    UNKNOWN_CONDITION,
    UNKNOWN_TIER,
    SegmentError,
    SegmentFilter,
    parse_filter,
)
from staff.audit import AuditLog

TIERS = ("base", "silver", "gold")
EVERY_CONDITION = {
    "tiers": ["silver", "gold"],
    "balance_min": 10,
    "balance_max": 5000,
    "burning_within_days": 7,
    "inactive_days": 30,
    "joined_within_days": 365,
    "language": "en",
    "birthday_month": 12,
    "purchases_min": 2,
    "spent_365_min": "10000.50",
}


def test_every_condition_of_the_contract_is_read_and_written_back_alike() -> None:
    segment = parse_filter(EVERY_CONDITION, TIERS)
    assert segment.spent_365_min == 1_000_050  # kopecks
    assert segment.tiers == ("silver", "gold")
    assert segment.to_json() == EVERY_CONDITION
    assert parse_filter(segment.to_json(), TIERS) == segment
    assert segment.conditions() == list(EVERY_CONDITION)


def test_an_empty_filter_is_no_condition() -> None:
    assert parse_filter({}, TIERS) == SegmentFilter()
    assert SegmentFilter().to_json() == {}


def test_whole_numbers_written_with_a_fraction_of_zero_are_taken() -> None:
    assert parse_filter({"balance_min": 100.0}, TIERS).balance_min == 100


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        (None, INVALID_FILTER, "filter"),
        ([], INVALID_FILTER, "filter"),
        ("tiers", INVALID_FILTER, "filter"),
        ({"tier": ["gold"]}, UNKNOWN_CONDITION, "tier"),
        ({"balance": 5, "tiers": ["gold"]}, UNKNOWN_CONDITION, "balance"),
        ({"tiers": "gold"}, INVALID_CONDITION, "tiers"),
        ({"tiers": []}, INVALID_CONDITION, "tiers"),
        ({"tiers": ["Gold"]}, INVALID_CONDITION, "tiers"),
        ({"tiers": [1]}, INVALID_CONDITION, "tiers"),
        ({"tiers": ["platinum"]}, UNKNOWN_TIER, "tiers"),
        ({"balance_min": -1}, INVALID_CONDITION, "balance_min"),
        ({"balance_min": "5"}, INVALID_CONDITION, "balance_min"),
        ({"balance_min": True}, INVALID_CONDITION, "balance_min"),
        ({"balance_max": 1.5}, INVALID_CONDITION, "balance_max"),
        ({"balance_max": 1_000_000_001}, INVALID_CONDITION, "balance_max"),
        ({"balance_max": None}, INVALID_CONDITION, "balance_max"),
        ({"burning_within_days": 0}, INVALID_CONDITION, "burning_within_days"),
        ({"inactive_days": 3661}, INVALID_CONDITION, "inactive_days"),
        ({"joined_within_days": -3}, INVALID_CONDITION, "joined_within_days"),
        ({"language": "de"}, INVALID_CONDITION, "language"),
        ({"language": "RU"}, INVALID_CONDITION, "language"),
        ({"birthday_month": 0}, INVALID_CONDITION, "birthday_month"),
        ({"birthday_month": 13}, INVALID_CONDITION, "birthday_month"),
        ({"purchases_min": -1}, INVALID_CONDITION, "purchases_min"),
        ({"spent_365_min": 10000}, INVALID_CONDITION, "spent_365_min"),
        ({"spent_365_min": "-5.00"}, INVALID_CONDITION, "spent_365_min"),
        ({"spent_365_min": "10.001"}, INVALID_CONDITION, "spent_365_min"),
        ({"spent_365_min": "ten"}, INVALID_CONDITION, "spent_365_min"),
        ({"spent_365_min": "1e5"}, INVALID_CONDITION, "spent_365_min"),
    ],
)
def test_a_bad_filter_is_refused_with_a_code_and_the_field(raw: Any, code: str, field: str) -> None:
    with pytest.raises(SegmentError) as refused:
        parse_filter(raw, TIERS)
    assert (refused.value.code, refused.value.field) == (code, field)
    assert refused.value.message


def test_the_configured_tiers_are_the_ones_a_filter_may_name() -> None:
    assert parse_filter({"tiers": ["vip"]}, ("regular", "vip")).tiers == ("vip",)
    with pytest.raises(SegmentError):
        parse_filter({"tiers": ["gold"]}, ("regular", "vip"))
    # A saved filter is read back even if its tier was renamed since (it matches nobody).
    assert parse_filter({"tiers": ["gold"]}, None).tiers == ("gold",)


def test_zero_spend_is_taken_in_its_usual_spellings() -> None:
    for text in ("0", "0.00", "0,0", "000"):
        assert parse_filter({"spent_365_min": text}, TIERS).spent_365_min == 0


async def test_a_saved_segment_is_listed_read_back_and_deleted_with_audit_records(
    ledger: LedgerService, clock: ManualClock
) -> None:
    audit = AuditLog(ledger.engine, clock)
    segments = Segments(ledger.engine, ledger.rules, clock, audit)
    sleeping = segments.parse({"inactive_days": 60, "tiers": ["gold"]})
    saved = await segments.save("  Sleeping gold  ", sleeping, actor="tg:42")
    assert (saved.name, saved.filter, saved.created_by, saved.created_at) == (
        "Sleeping gold",
        sleeping,
        "tg:42",
        clock.now(),
    )
    other = await segments.save("Everyone", segments.parse({}), actor="tg:43")
    assert [s.name for s in await segments.saved()] == ["Everyone", "Sleeping gold"]
    assert await segments.get(saved.segment_id) == saved

    with pytest.raises(SegmentError) as taken:
        await segments.save("Sleeping gold", segments.parse({}), actor="tg:43")
    assert taken.value.code == NAME_TAKEN
    for bad in ("", "   ", "x" * 101, "a\x00b"):
        with pytest.raises(SegmentError) as invalid:
            await segments.save(bad, sleeping, actor="tg:42")
        assert invalid.value.code == INVALID_NAME

    assert await segments.delete(saved.segment_id, actor="tg:44") is True
    assert await segments.delete(saved.segment_id, actor="tg:44") is False
    assert await segments.get(saved.segment_id) is None
    assert [s.segment_id for s in await segments.saved()] == [other.segment_id]

    records = [(r.actor, r.action, r.target, r.details) for r in reversed(await audit.recent())]
    assert records == [
        (
            "tg:42",
            "segment.save",
            f"segment:{saved.segment_id}",
            {"name": "Sleeping gold", "filter": {"inactive_days": 60, "tiers": ["gold"]}},
        ),
        (
            "tg:43",
            "segment.save",
            f"segment:{other.segment_id}",
            {"name": "Everyone", "filter": {}},
        ),
        (
            "tg:44",
            "segment.delete",
            f"segment:{saved.segment_id}",
            {"name": "Sleeping gold", "filter": {"inactive_days": 60, "tiers": ["gold"]}},
        ),
    ]
