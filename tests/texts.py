"""Texts as the bot writes them, for tests to expect: rendered by key from the locales the bot
loads, so that a change of wording breaks no test.

    assert message.text == t("dispute-received", ticket=1)
    assert text.startswith(t("balance-usable", points=points(100)))
    assert shape("registered-linked").fullmatch(text)        # any card number
    assert message.keyboard_texts == menu("ru")

Numbers are grouped as the bot groups them (babel, the text's language), counts pick the
language's plural form as the bot does.
"""

from __future__ import annotations

import re
import string
from decimal import Decimal
from functools import cache

from aiogram.utils.i18n import I18n
from babel.numbers import format_decimal

from bot.i18n import build_i18n

MENU = ("card", "balance", "history", "invite", "settings", "support")


@cache
def _i18n() -> I18n:
    return build_i18n()


def t(key: str, locale: str = "en", /, **values: object) -> str:
    """The text `key` in `locale`, its `{placeholders}` filled from `values` (all of them: a
    placeholder left out is a KeyError; see shape() to leave some open)."""
    return _i18n().gettext(key, locale=locale).format(**values)


def count(key: str, n: int, locale: str = "en", /, **values: object) -> str:
    """The plural text `key` (and `key-plural`) about `n` things, `{n}` grouped."""
    form = _i18n().gettext(key, f"{key}-plural", abs(n), locale=locale)
    return form.format(n=format_decimal(n, locale=locale), **values)


def points(n: int, locale: str = "en") -> str:
    """ "1 point", "1,200 points" / "21 балл", "22 балла"."""
    return count("points-count", n, locale)


def roubles(kopecks: int, locale: str = "en") -> str:
    """ "1,500", "1,500.50" / "1 500,50": an amount as the bot writes it (without "₽")."""
    pattern = "#,##0" if kopecks % 100 == 0 else "#,##0.00"
    return format_decimal(Decimal(kopecks) / 100, format=pattern, locale=locale)


def menu(locale: str = "en") -> list[str]:
    """The member's menu buttons, in their order."""
    return [t(f"menu-{name}", locale) for name in MENU]


def shape(
    key: str, locale: str = "en", /, *, n: int | None = None, **values: object
) -> re.Pattern[str]:
    """The text `key` as a pattern: the placeholders in `values` filled, any other one matches
    any text (on one line or several). With `n`, the plural text's form for `n`, `{n}` filled."""
    if n is None:
        text = _i18n().gettext(key, locale=locale)
    else:
        text = _i18n().gettext(key, f"{key}-plural", abs(n), locale=locale)
        values["n"] = format_decimal(n, locale=locale)
    parts = []
    for literal, field, _, _ in string.Formatter().parse(text):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(re.escape(str(values[field])) if field in values else "(?s:.+?)")
    return re.compile("".join(parts))
