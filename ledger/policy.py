"""The arithmetic of the program as pure functions: no database, no clock, no Telegram.

Money is integer kopecks and points are integers everywhere; `Decimal` appears only in
`parse_amount`, where text from outside becomes money.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ledger.errors import InvalidAmount
from ledger.rules import Rules, Tier

MAX_AMOUNT_KOPECKS = 100_000_000_00  # 100 million roubles: anything above is a typo
# A member's points (usable plus held) stay below this: far above any real program, and well
# inside the 32-bit columns that hold them (Journal.credit refuses what would pass it).
MAX_MEMBER_POINTS = 1_000_000_000
# The year of a birthday given without one ("14.05"): a leap year, so 29 February fits, and
# none a member can be born in.
BIRTH_YEAR_UNKNOWN = 4


# Unicode's control characters (category Cc: C0, DEL, C1), surrogates (Cs) and format
# characters (Cf: invisible ones such as U+200B and the direction overrides such as U+202E that
# make "R-1\u202e" or "\u202egnp.exe" read as something else), as a regex: checked on every id
# from outside, and one regex search is much cheaper than asking unicodedata character by
# character.
# Cf as of Unicode 15 (U+13439-U+1343F joined in 15; unassigned before, so refusing them is safe).
_FORMAT_CHARACTERS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
_NOT_PLAIN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff" + _FORMAT_CHARACTERS + "]")
# The same but tab and newline, which free text keeps.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff" + _FORMAT_CHARACTERS + "]")
_AMOUNT_TEXT = re.compile(r"^[0-9]{1,12}(?:[.,][0-9]{1,2})?$")


# parse_amount's refusals; the bot says each in the cashier's language (handlers.cashier).
AMOUNT_NOT_TEXT = 'amount must be a string like "1500.00"'
AMOUNT_NOT_POSITIVE = "amount must be positive"
AMOUNT_DECIMALS = "amount has more than two decimals"
AMOUNT_NOT_NUMBER = 'amount is not a number like "1500.00"'
AMOUNT_TOO_LARGE = "amount is too large"


def parse_amount(value: str | int) -> int:
    """Roubles as text ("1500", "1500.5", "1500.00") or a whole int to kopecks.

    Refuses what is not plainly money: signs, exponents, more than two decimals, zero.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise InvalidAmount(AMOUNT_NOT_TEXT, value=str(value))
    if text.startswith("-"):
        raise InvalidAmount(AMOUNT_NOT_POSITIVE, value=text)
    if not _AMOUNT_TEXT.match(text):
        if re.match(r"^[0-9]+[.,][0-9]{3,}$", text):
            raise InvalidAmount(AMOUNT_DECIMALS, value=text)
        raise InvalidAmount(AMOUNT_NOT_NUMBER, value=text)
    kopecks = int(Decimal(text.replace(",", ".")) * 100)
    if kopecks <= 0:
        raise InvalidAmount(AMOUNT_NOT_POSITIVE, value=text)
    if kopecks > MAX_AMOUNT_KOPECKS:
        raise InvalidAmount(AMOUNT_TOO_LARGE, value=text)
    return kopecks


def format_amount(kopecks: int) -> str:
    """Kopecks to the API's text form: 150000 -> "1500.00"."""
    sign = "-" if kopecks < 0 else ""
    whole, part = divmod(abs(kopecks), 100)
    return f"{sign}{whole}.{part:02d}"


def tier_for_spend(rules: Rules, qualifying_kopecks: int) -> Tier:
    """The highest tier whose threshold the qualifying spend reaches."""
    reached = rules.tiers[0]
    for tier in rules.tiers:
        if qualifying_kopecks >= tier.threshold_kopecks:
            reached = tier
    return reached


def next_tier(rules: Rules, tier: Tier) -> Tier | None:
    """The tier above `tier`, or None at the top."""
    names = [t.name for t in rules.tiers]
    index = names.index(tier.name) if tier.name in names else 0
    return rules.tiers[index + 1] if index + 1 < len(rules.tiers) else None


def earned_points(money_kopecks: int, tier: Tier) -> int:
    """Points earned on the part of a purchase paid in money, rounded down."""
    return max(money_kopecks, 0) // tier.kopecks_per_point


def redeem_cap(rules: Rules, amount_kopecks: int) -> int:
    """The most points that may pay for a purchase of this amount (before the balance)."""
    return amount_kopecks * rules.max_redeem_percent // (100 * rules.point_value_kopecks)


def redeemable_points(rules: Rules, amount_kopecks: int, balance: int) -> int:
    """The most points a member with `balance` may spend on this purchase."""
    return max(0, min(balance, redeem_cap(rules, amount_kopecks)))


def money_paid(rules: Rules, amount_kopecks: int, redeemed_points: int) -> int:
    """The part of a purchase paid in money."""
    return amount_kopecks - redeemed_points * rules.point_value_kopecks


def pro_rata(total: int, refunded_before: int, refunded_now: int, whole: int) -> int:
    """The share of `total` that a refund of `refunded_now` out of `whole` gives back.

    Computed on the cumulative refunded amount, so that several partial refunds add up to
    exactly `total` when the whole purchase has been refunded, never more.
    """
    if whole <= 0:
        return 0
    after = total * (refunded_before + refunded_now) // whole
    before = total * refunded_before // whole
    return after - before


@dataclass(frozen=True, slots=True)
class OpenLot:
    """A lot with points left, as FIFO spending sees it."""

    lot_id: int
    remaining: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Allocation:
    """Which lots pay for a debit, and what they could not cover."""

    takes: tuple[tuple[int, int], ...]  # (lot_id, points)
    shortfall: int


def allocate_fifo(open_lots: Iterable[OpenLot], points: int) -> Allocation:
    """Take `points` from lots, the one that burns first first; ties by lot id."""
    if points < 0:
        raise ValueError("cannot allocate a negative number of points")
    takes: list[tuple[int, int]] = []
    left = points
    for lot in sorted(open_lots, key=lambda lot: (lot.expires_at, lot.lot_id)):
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            takes.append((lot.lot_id, take))
            left -= take
    return Allocation(tuple(takes), left)


def due_to_burn(open_lots: Sequence[OpenLot], now: datetime) -> list[OpenLot]:
    """Lots whose points burn at `now`."""
    return [lot for lot in open_lots if lot.expires_at <= now and lot.remaining > 0]


def luhn_check_digit(digits: str) -> str:
    """The Luhn check digit for a string of digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def is_valid_card_number(card_number: str) -> bool:
    """True for a string of digits whose last one is its Luhn check digit."""
    return (
        len(card_number) >= 2
        and card_number.isascii()
        and card_number.isdigit()
        and luhn_check_digit(card_number[:-1]) == card_number[-1]
    )


def readable_text(text: str) -> str:
    """Someone's free text (a support request, a name) without what would hide or disguise it
    from the staff who read it: control characters but tab and newline (NUL, escape, ...), lone
    surrogates and invisible format characters ("\u202egnp.exe" displays as "exe.png"). Emoji
    joined by U+200D fall apart into their parts; they stay readable."""
    return _HIDDEN.sub("", text)


def is_plain_text(value: str) -> bool:
    """No control characters (NUL, newline, escape, ...), no lone surrogates and no invisible
    format characters (zero-width space, direction overrides, ...): text that every database
    stores as it is and that reads the same in a message as it compares."""
    return _NOT_PLAIN.search(value) is None
