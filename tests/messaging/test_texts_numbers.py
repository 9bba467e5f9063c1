"""The numbers in messages read exactly as babel writes them in each language (the formats are
found once per language now, not on every number)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from babel.numbers import format_decimal as babel_format_decimal

from bot.i18n import build_i18n
from messaging.texts import number_text, points_text, roubles_text, signed_text

NUMBERS = [0, 1, 2, 5, 11, 21, 999, 1_000, 1_234, 12_345, 999_999, 1_000_000, 123_456_789]


@pytest.mark.parametrize("language", ["ru", "en"])
def test_counts_and_amounts_read_as_babel_writes_them(language: str) -> None:
    i18n = build_i18n()
    with i18n.context(), i18n.use_locale(language):
        for number in NUMBERS:
            grouped = babel_format_decimal(number, locale=language)
            assert number_text(number) == grouped
            assert signed_text(-number) == ("-" if number else "") + grouped
            assert grouped in points_text(number)
            for kopecks in (number * 100, number * 100 + 5, number * 100 + 50):
                pattern = "#,##0" if kopecks % 100 == 0 else "#,##0.00"
                expected = babel_format_decimal(
                    Decimal(kopecks) / 100, format=pattern, locale=language
                )
                assert roubles_text(kopecks) == expected


def test_the_language_of_the_moment_is_the_one_used() -> None:
    i18n = build_i18n()
    with i18n.context():
        with i18n.use_locale("en"):
            assert number_text(1_234_567) == "1,234,567"
        with i18n.use_locale("ru"):
            assert number_text(1_234_567) == babel_format_decimal(1_234_567, locale="ru")
            assert number_text(1_234_567) != "1,234,567"
