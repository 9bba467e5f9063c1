"""The card number as people read it (plain text: no drawing, so no imaging library loaded)."""

from __future__ import annotations


def format_card_number(card_number: str) -> str:
    """Group a card number by four digits from the left: ``"1234 5678 9012"``.

    Whitespace already in ``card_number`` is ignored.
    """
    digits = "".join(card_number.split())
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
