"""Phone numbers become E.164 here, or are refused."""

from __future__ import annotations

import phonenumbers

from ledger.errors import InvalidPhone

DEFAULT_REGION = "RU"
MASK_KEEP_DIGITS = 4  # the last digits of a masked phone that stay visible


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
    """A phone as a cashier sees it, in its own country's format with all but the country code
    and the last 4 digits hidden: "+79991234567" -> "+7 *** ***-45-67", "+447911123456" ->
    "+44 **** **3456". Enough to confirm the number with the customer, nothing more."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return "***"
    national = phonenumbers.national_significant_number(parsed)
    if len(national) <= MASK_KEEP_DIGITS:
        return "***"
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    code, _, rest = formatted.partition(" ")
    hidden = sum(ch.isdigit() for ch in rest) - MASK_KEEP_DIGITS
    masked = []
    for ch in rest:
        if ch.isdigit() and hidden > 0:
            masked.append("*")
            hidden -= 1
        else:
            masked.append(ch)
    return f"{code} {''.join(masked)}"
