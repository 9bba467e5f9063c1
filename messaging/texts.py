"""How numbers, points, money, dates and names read, in the current language (gettext's).

No words live here: every text comes from the locales; these helpers put counts, amounts and
dates into them the way each language writes them.
"""

from __future__ import annotations

import functools
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import get_i18n, ngettext
from aiogram.utils.i18n import gettext as _
from babel.core import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import NumberPattern, parse_pattern

from ledger import policy
from ledger.views import MemberView


def current_language() -> str:
    return get_i18n().current_locale


@functools.lru_cache(maxsize=64)
def _number_format(language: str, pattern: str | None) -> tuple[Locale, NumberPattern]:
    """The language's locale data and the parsed pattern, found once: babel's format_decimal
    looks both up on every call, which was most of the time a receipt takes to render."""
    locale = Locale.parse(language)
    return locale, parse_pattern(locale.decimal_formats[None] if pattern is None else pattern)


def format_decimal(number: int | Decimal, *, format: str | None = None) -> str:
    """babel.numbers.format_decimal in the current language, exactly (its default arguments)."""
    locale, pattern = _number_format(current_language(), format)
    return pattern.apply(number, locale)


def count_text(key: str, count: int, **values: object) -> str:
    """The message `key` about `count` things, `{n}` in it the count, grouped.

    The language's plural rules pick the message's form, and each form holds the noun in the
    case its sentence needs ("до 21 балла", "сгорят 22 балла", "up to 1 point"): a message
    with a count is one plural message (`key` and `key-plural`), never a number glued to a
    separately pluralised noun.
    """
    form = ngettext(key, f"{key}-plural", abs(count))
    return form.format(n=format_decimal(count), **values)


def points_text(points: int) -> str:
    """ "1 балл", "2 балла", "5 баллов" / "1 point", "1,200 points": the nominative, for a
    label ("Баланс: 21 балл") or a subject or object. After a preposition or a word that
    governs another case the whole message is a plural one (see count_text)."""
    return count_text("points-count", points)


def number_text(number: int) -> str:
    """ "1,200" / "1 200": a bare count, grouped as the counts in messages are."""
    return format_decimal(number)


def signed_text(number: int) -> str:
    """ "+1,200", "-262", "0": a change, grouped as points_text groups."""
    grouped = format_decimal(abs(number))
    return ("+" if number > 0 else "-" if number < 0 else "") + grouped


def burn_text(points: int, day: datetime | date, timezone: str | None = None) -> str:
    """ "120 points burn on 12 December" / "12 декабря сгорит 21 балл": the verb agrees."""
    return count_text("burn-phrase", points, date=date_text(day, timezone))


def shorten(text: str, limit: int) -> str:
    """Someone's text in a list or a notice: on one line, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def days_text(days: int) -> str:
    return count_text("days-count", days)


def seconds_text(seconds: int) -> str:
    return count_text("seconds-count", seconds)


def roubles_text(kopecks: int) -> str:
    """Kopecks as roubles, grouped; kopecks only when there are some, and then both digits:
    "19 600", "1 234,50"."""
    amount = Decimal(kopecks) / 100
    pattern = "#,##0" if kopecks % 100 == 0 else "#,##0.00"
    return format_decimal(amount, format=pattern)


def date_text(moment: datetime | date, timezone: str | None = None) -> str:
    """ "12 December" / "12 декабря", in the member's time zone."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(ZoneInfo(timezone or "UTC")).date()
    return format_date(moment, "d MMMM", locale=current_language())


def full_date_text(day: date) -> str:
    """ "14.05.1990"; a birthday given without its year: "14.05"."""
    pattern = "dd.MM" if day.year == policy.BIRTH_YEAR_UNKNOWN else "dd.MM.yyyy"
    return format_date(day, pattern, locale=current_language())


def moment_text(moment: datetime, timezone: str, *, now: datetime | None = None) -> str:
    """ "12 Dec, 14:05" in the member's time zone; "5 Jan 2027, 10:00" when `now` is given
    and the moment falls in another year."""
    zone = ZoneInfo(timezone)
    other_year = now is not None and now.astimezone(zone).year != moment.astimezone(zone).year
    pattern = "d MMM y, HH:mm" if other_year else "d MMM, HH:mm"
    return format_datetime(moment, pattern, tzinfo=zone, locale=current_language())


def tier_text(tier: str) -> str:
    return _(f"tier-{tier}")


def display_name(member: MemberView | None, fallback: str | None) -> str:
    return (member.first_name if member and member.first_name else fallback) or ""
