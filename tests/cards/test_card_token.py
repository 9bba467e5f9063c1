"""Tests for cards.token: signed, opaque card tokens and the deep link."""

from __future__ import annotations

import base64
import re
import string
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cards.token import (
    MAX_TOKEN_LENGTH,
    TOKEN_LENGTH,
    card_deep_link,
    sign_card_token,
    verify_card_token,
)

KEY = "test-secret-key-0123456789"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,62}$")
ALPHABET = string.ascii_letters + string.digits + "-_"


@pytest.mark.parametrize(
    "card_number",
    ["12345678", "123456789012", "000000000001", "0000000000000000", "9999999999999999"],
)
def test_roundtrip(card_number: str) -> None:
    token = sign_card_token(card_number, KEY)
    assert verify_card_token(token, KEY) == card_number


def test_token_shape() -> None:
    token = sign_card_token("123456789012", KEY)
    assert TOKEN_RE.match(token)
    assert len(token) == TOKEN_LENGTH <= MAX_TOKEN_LENGTH
    assert "=" not in token


def test_leading_zeros_and_length_are_kept() -> None:
    for number in ("00001234", "0000123400001234", "12340000"):
        assert verify_card_token(sign_card_token(number, KEY), KEY) == number


def test_tokens_for_same_card_differ_and_both_verify() -> None:
    first = sign_card_token("123456789012", KEY)
    second = sign_card_token("123456789012", KEY)
    assert first != second
    assert verify_card_token(first, KEY) == "123456789012"
    assert verify_card_token(second, KEY) == "123456789012"


def test_card_number_is_not_in_clear_text() -> None:
    number = "123456789012"
    for _ in range(20):
        token = sign_card_token(number, KEY)
        raw = base64.urlsafe_b64decode(token)
        assert number not in token
        assert number.encode() not in raw
        assert struct.pack(">Q", int(number))[2:] not in raw


def test_every_single_character_change_is_refused() -> None:
    token = sign_card_token("123456789012", KEY)
    for position, original in enumerate(token):
        for replacement in ALPHABET:
            if replacement == original:
                continue
            tampered = token[:position] + replacement + token[position + 1 :]
            assert verify_card_token(tampered, KEY) is None, (position, replacement)


def test_truncated_or_extended_token_is_refused() -> None:
    token = sign_card_token("123456789012", KEY)
    assert verify_card_token(token[:-1], KEY) is None
    assert verify_card_token(token[1:], KEY) is None
    assert verify_card_token(token + "A", KEY) is None
    assert verify_card_token(token + "=", KEY) is None
    assert verify_card_token(token + "\n", KEY) is None
    assert verify_card_token(" " + token, KEY) is None


def test_wrong_key_is_refused() -> None:
    token = sign_card_token("123456789012", KEY)
    assert verify_card_token(token, KEY + "x") is None
    assert verify_card_token(token, "another key") is None


def test_unknown_version_is_refused() -> None:
    raw = bytearray(base64.urlsafe_b64decode(sign_card_token("123456789012", KEY)))
    raw[0] = 2
    assert verify_card_token(base64.urlsafe_b64encode(bytes(raw)).decode(), KEY) is None


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "A",
        "c_",
        "A" * TOKEN_LENGTH,
        "_" * TOKEN_LENGTH,
        "A" * 10_000,
        "not base64 at all!!",
        "токен" * 8,
        "🙂" * 40,
        "\x00" * 40,
        "A" * (TOKEN_LENGTH - 1) + "=",
        "/+/+" * 10,
    ],
)
def test_garbage_is_refused(garbage: str) -> None:
    assert verify_card_token(garbage, KEY) is None


@pytest.mark.parametrize("garbage", [None, b"AAAA", 12345, ["x"]])
def test_non_string_token_is_refused(garbage: object) -> None:
    assert verify_card_token(garbage, KEY) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad_number",
    ["", "1234567", "12345678901234567", "1234-5678", "١٢٣٤٥٦٧٨", "12345678\n", " 12345678"],
)
def test_sign_rejects_bad_card_numbers(bad_number: str) -> None:
    with pytest.raises(ValueError):
        sign_card_token(bad_number, KEY)


def test_empty_secret_key_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        sign_card_token("123456789012", "")
    with pytest.raises(ValueError):
        verify_card_token("anything", "")


def test_card_deep_link() -> None:
    token = sign_card_token("123456789012", KEY)
    link = card_deep_link("my_loyalty_bot", token)
    assert link == f"https://t.me/my_loyalty_bot?start=c_{token}"
    assert card_deep_link("@my_loyalty_bot", token) == link
    payload = link.split("start=", 1)[1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", payload)


@pytest.mark.parametrize("username", ["", "ab", "bad name", "bot/../x", "x" * 40])
def test_card_deep_link_rejects_bad_username(username: str) -> None:
    with pytest.raises(ValueError):
        card_deep_link(username, "abc")


@pytest.mark.parametrize("token", ["", "a" * 63, "a b", "a=b", "щ"])
def test_card_deep_link_rejects_bad_token(token: str) -> None:
    with pytest.raises(ValueError):
        card_deep_link("my_loyalty_bot", token)


@given(card_number=st.from_regex(r"[0-9]{8,16}", fullmatch=True))
def test_property_roundtrip(card_number: str) -> None:
    token = sign_card_token(card_number, KEY)
    assert TOKEN_RE.match(token)
    assert verify_card_token(token, KEY) == card_number
    assert verify_card_token(token, "other-key") is None


@settings(max_examples=300)
@given(garbage=st.one_of(st.text(), st.text(alphabet=ALPHABET, min_size=38, max_size=42)))
def test_property_garbage_never_raises(garbage: str) -> None:
    assert verify_card_token(garbage, KEY) is None


@given(
    card_number=st.from_regex(r"[0-9]{8,16}", fullmatch=True),
    secret=st.text(min_size=1, max_size=64),
)
def test_property_any_secret_key(card_number: str, secret: str) -> None:
    assert verify_card_token(sign_card_token(card_number, secret), secret) == card_number
