"""Phones as a cashier or support sees them: masked in the number's own country format."""

from __future__ import annotations

import pytest

from ledger.phones import mask_phone


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+79991234567", "+7 *** ***-45-67"),  # Russia
        ("+447911123456", "+44 **** **3456"),  # Great Britain: it read "+4 *** ***-34-56"
        ("+12015550123", "+1 ***-***-0123"),  # the United States
        ("+4915123456789", "+49 **** ***6789"),  # Germany, a mobile
        ("+493012345678", "+49 ** ****5678"),  # Germany, Berlin
        ("+998901234567", "+998 ** *** 45 67"),  # Uzbekistan: a three-digit country code
    ],
)
def test_a_phone_is_masked_in_its_own_countrys_format_keeping_the_code_and_last_4_digits(
    phone: str, masked: str
) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize("phone", ["", "+7", "12345", "not a phone", "+"])
def test_something_that_is_not_a_phone_is_masked_entirely(phone: str) -> None:
    assert mask_phone(phone) == "***"
