"""What every router shares: the staff's actor and language, and how numbers and dates read
(the menu and callback data are in handlers.keyboards, the filters in handlers.filters).

No words live here: every text comes from the locales through gettext.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import I18n, get_i18n, ngettext
from aiogram.utils.i18n import gettext as _
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

from ledger import policy
from ledger.service import LedgerService
from ledger.views import MemberView
from staff.roles import Role, StaffService

# The actor of what staff do in the bot, in the journal and the audit: "tg:<telegram id>".
STAFF_ACTOR = "tg:"




class StaffLanguage:
    """The language to write to a staff member in, first (they are not the sender): theirs
    as a member, else the one their Telegram was last seen speaking, else `fallback` (or the
    default)."""

    def __init__(self, ledger: LedgerService, i18n: I18n, staff: StaffService) -> None:
        self.ledger = ledger
        self.i18n = i18n
        self.staff = staff

    async def __call__(self, telegram_id: int, fallback: str | None = None) -> str:
        member = await self.ledger.member_by_telegram(telegram_id)
        if member is not None:
            return member.language
        seen = await self.staff.language_of(telegram_id)
        return seen or fallback or self.i18n.default_locale


# ---------------------------------------------------------------------- keyboards


def staff_help(roles: frozenset[Role]) -> list[str]:
    """What each of these roles can do, a paragraph each (admins can do everything)."""
    lines = []
    if roles & {Role.CASHIER, Role.ADMIN}:
        lines.append(_("cashier-help"))
    if roles & {Role.SUPPORT, Role.ADMIN}:
        lines.append(_("support-help"))
    if Role.MARKETER in roles:
        lines.append(_("marketer-help"))
    if Role.ADMIN in roles:
        lines.append(_("admin-help"))
    return lines


# -------------------------------------------------------------- numbers and dates


def current_language() -> str:
    return get_i18n().current_locale


def count_text(key: str, count: int, **values: object) -> str:
    """The message `key` about `count` things, `{n}` in it the count, grouped.

    The language's plural rules pick the message's form, and each form holds the noun in the
    case its sentence needs ("до 21 балла", "сгорят 22 балла", "up to 1 point"): a message
    with a count is one plural message (`key` and `key-plural`), never a number glued to a
    separately pluralised noun.
    """
    form = ngettext(key, f"{key}-plural", abs(count))
    return form.format(n=format_decimal(count, locale=current_language()), **values)


def points_text(points: int) -> str:
    """ "1 балл", "2 балла", "5 баллов" / "1 point", "1,200 points": the nominative, for a
    label ("Баланс: 21 балл") or a subject or object. After a preposition or a word that
    governs another case the whole message is a plural one (see count_text)."""
    return count_text("points-count", points)


def number_text(number: int) -> str:
    """ "1,200" / "1 200": a bare count, grouped as the counts in messages are."""
    return format_decimal(number, locale=current_language())


def signed_text(number: int) -> str:
    """ "+1,200", "-262", "0": a change, grouped as points_text groups."""
    grouped = format_decimal(abs(number), locale=current_language())
    return ("+" if number > 0 else "-" if number < 0 else "") + grouped


def burn_text(points: int, day: datetime | date, timezone: str | None = None) -> str:
    """ "120 points burn on 12 December" / "12 декабря сгорит 21 балл": the verb agrees."""
    return count_text("burn-phrase", points, date=date_text(day, timezone))


def plain_number(text: str, limit: int) -> int | None:
    """A whole number typed in ASCII digits, from 0 to `limit`; None for anything else
    ("²" and "٣" are digits to str.isdigit, but not numbers anyone meant)."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(limit)):
        return None
    number = int(text)
    return number if number <= limit else None


def utf16_length(text: str) -> int:
    """The length Telegram counts a message's text in."""
    return len(text.encode("utf-16-le")) // 2


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
    return format_decimal(amount, format=pattern, locale=current_language())


def date_text(moment: datetime | date, timezone: str | None = None) -> str:
    """ "12 December" / "12 декабря", in the member's time zone."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(ZoneInfo(timezone or "UTC")).date()
    return format_date(moment, "d MMMM", locale=current_language())


def full_date_text(day: date) -> str:
    """ "14.05.1990"; a birthday given without its year: "14.05"."""
    pattern = "dd.MM" if day.year == policy.BIRTH_YEAR_UNKNOWN else "dd.MM.yyyy"
    return format_date(day, pattern, locale=current_language())


def moment_text(moment: datetime, timezone: str) -> str:
    """ "12 Dec, 14:05" in the member's time zone."""
    return format_datetime(
        moment, "d MMM, HH:mm", tzinfo=ZoneInfo(timezone), locale=current_language()
    )


def tier_text(tier: str) -> str:
    return _(f"tier-{tier}")


def language_for(telegram_language: str | None) -> str:
    """The member's language from Telegram's: ru for ru*, English otherwise."""
    return "ru" if (telegram_language or "").lower().startswith("ru") else "en"


def display_name(member: MemberView | None, fallback: str | None) -> str:
    return (member.first_name if member and member.first_name else fallback) or ""
