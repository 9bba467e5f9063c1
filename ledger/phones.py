"""Phone numbers become E.164 here, or are refused."""

from __future__ import annotations

import phonenumbers

from ledger.errors import InvalidPhone

DEFAULT_REGION = "RU"


def normalize_phone(raw: str, region: str = DEFAULT_REGION) -> str:
    """A phone in any common format ("8 999 123-45-67", "79991234567", "+7 (999) ...") as E.164."""
    text = raw.strip()
    if not text or len(text) > 32:
        raise InvalidPhone("phone number is empty or too long")
    digits = "".join(ch for ch in text if ch.isdigit())
    # Telegram sends contacts without the "+"; a bare international number is not local.
    if not text.startswith(("+", "8")) and len(digits) > 10:
        text = "+" + digits
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("not a phone number") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """ "+79991234567" -> "+7 *** ***-45-67": enough for a cashier to confirm, nothing more."""
    return f"{e164[:2]} *** ***-{e164[-4:-2]}-{e164[-2:]}" if len(e164) > 6 else "***"
