"""POST /api/v1/segments/preview and key scopes, as the contract says: a marketing key counts a
segment; a till key gets 403 there, a marketing key 403 on purchases and refunds; a bad filter
422 with a code and the field. Both backends; every answer is checked against the OpenAPI
document (tests/api/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

from api.openapi import openapi_document
from marketing.segments import CONDITIONS
from tests.api.conftest import Till
from tests.conftest import ROOT, Phones

PREVIEW = "/api/v1/segments/preview"


@pytest.fixture
async def marketing_key(till: Till) -> str:
    _, secret = await till.keys.create("crm", "marketing")
    return secret


async def preview(till: Till, key: str, body: Any) -> tuple[int, Any]:
    return await till.call("POST", PREVIEW, body, key=key)


async def test_a_marketing_key_counts_a_segment_and_its_reachable_members(
    till: Till, marketing_key: str, phones: Phones
) -> None:
    ledger = till.ledger
    reachable = (await ledger.register_member(phones.next(), telegram_id=1, language="en")).member
    opted_out = (await ledger.register_member(phones.next(), telegram_id=2)).member
    blocked = (await ledger.register_member(phones.next(), telegram_id=3, language="en")).member
    no_chat = (await ledger.register_member(phones.next())).member
    erased = (await ledger.register_member(phones.next(), telegram_id=5, language="en")).member
    await ledger.update_profile(opted_out.member_id, notify_offers=False)
    await ledger.update_profile(blocked.member_id, unreachable=True)
    await ledger.erase_member(erased.member_id)
    await ledger.purchase(receipt_id="R-1", member_id=reachable.member_id, amount_kopecks=12_000_00)

    assert await preview(till, marketing_key, {"filter": {}}) == (
        200,
        {"count": 4, "reachable": 1},
    )
    assert await preview(till, marketing_key, {"filter": {"language": "en"}}) == (
        200,
        {"count": 2, "reachable": 1},
    )
    assert await preview(
        till, marketing_key, {"filter": {"tiers": ["silver"], "spent_365_min": "12000.00"}}
    ) == (200, {"count": 1, "reachable": 1})
    assert no_chat.member_id  # (counted, never reachable)


async def test_a_till_key_gets_403_on_the_segment_preview(till: Till) -> None:
    for body in ({"filter": {}}, {"filter": {"tier": 1}}, None):
        status, payload = await preview(till, till.key, body)
        assert (status, payload["error"]["code"]) == (403, "forbidden")


async def test_a_marketing_key_gets_403_on_purchases_and_refunds_and_nothing_changes(
    till: Till, marketing_key: str, phones: Phones
) -> None:
    member = (await till.ledger.register_member(phones.next(), telegram_id=1)).member
    body = {"receipt_id": "R-1", "customer": member.card_number, "amount": "1000.00"}
    status, payload = await till.call("POST", "/api/v1/purchases", body, key=marketing_key)
    assert (status, payload["error"]["code"]) == (403, "forbidden")
    assert not await till.ledger.purchase_recorded("R-1")
    refund = {"refund_id": "RF-1", "receipt_id": "R-1", "amount": "10.00"}
    status, payload = await till.call("POST", "/api/v1/refunds", refund, key=marketing_key)
    assert (status, payload["error"]["code"]) == (403, "forbidden")
    # The till itself still records it; other endpoints take either key.
    assert (await till.purchase(**body))[0] == 201
    path = f"/api/v1/members/{member.card_number}"
    assert (await till.call("GET", path, key=marketing_key))[0] == 200


async def test_a_missing_key_is_401_before_any_scope(till: Till) -> None:
    status, payload = await preview(till, "", {"filter": {}})
    assert (status, payload["error"]["code"]) == (401, "unauthorized")


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "invalid_filter", "filter"),
        ({"filter": [1, 2]}, "invalid_filter", "filter"),
        ({"filter": {"tier": ["gold"]}}, "unknown_condition", "tier"),
        ({"filter": {"balance_min": -5}}, "invalid_condition", "balance_min"),
        ({"filter": {"birthday_month": 13}}, "invalid_condition", "birthday_month"),
        ({"filter": {"language": "fr"}}, "invalid_condition", "language"),
        ({"filter": {"spent_365_min": 100}}, "invalid_condition", "spent_365_min"),
        ({"filter": {"tiers": ["platinum"]}}, "unknown_tier", "tiers"),
    ],
)
async def test_a_bad_filter_gets_422_with_its_code_and_field(
    till: Till, marketing_key: str, body: Any, code: str, field: str
) -> None:
    status, payload = await preview(till, marketing_key, body)
    assert (status, payload["error"]["code"], payload["error"]["field"]) == (422, code, field)


async def test_a_body_that_is_not_json_gets_400(till: Till, marketing_key: str) -> None:
    status, payload = await till.call("POST", PREVIEW, raw=b"{filter", key=marketing_key)
    assert (status, payload["error"]["code"]) == (400, "invalid_json")


def test_the_openapi_document_lists_the_preview_with_every_condition() -> None:
    document = openapi_document()
    operation = document["paths"][PREVIEW]["post"]
    assert {"200", "401", "403", "422"} <= set(operation["responses"])
    conditions = document["components"]["schemas"]["SegmentFilter"]["properties"]
    assert set(conditions) == CONDITIONS
    for path in ("/api/v1/purchases", "/api/v1/refunds"):
        assert "403" in document["paths"][path]["post"]["responses"]


@pytest.mark.slow  # runs the command line in a real process
async def test_the_command_line_makes_a_marketing_key_that_the_preview_takes(
    till: Till, database_url: str
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "api-key", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    made = await asyncio.to_thread(cli, "create", "--name", "crm", "--scope", "marketing")
    assert made.returncode == 0, made.stderr
    assert "(marketing)" in made.stderr
    assert (await preview(till, made.stdout.strip(), {"filter": {}}))[0] == 200
    till_key = await asyncio.to_thread(cli, "create", "--name", "till-9")
    assert "(till)" in till_key.stderr  # the default scope
    assert (await preview(till, till_key.stdout.strip(), {"filter": {}}))[0] == 403
    wrong = await asyncio.to_thread(cli, "create", "--name", "x", "--scope", "admin")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr
    listed = await asyncio.to_thread(cli, "list")
    assert "\tcrm\tmarketing\t" in listed.stdout and "\ttill-9\ttill\t" in listed.stdout
