"""Errors the ledger refuses an operation with. Each has a stable code (the HTTP API's error
code, and the key of the message a person reads) and the facts needed to explain it."""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """An operation was refused and nothing was changed."""

    code = "ledger_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidAmount(LedgerError):
    code = "invalid_amount"


class InvalidPoints(LedgerError):
    code = "invalid_points"


class PointsLimit(LedgerError):
    """The member's points would pass policy.MAX_MEMBER_POINTS."""

    code = "points_limit"


class InvalidPhone(LedgerError):
    code = "invalid_phone"


class MemberNotFound(LedgerError):
    code = "member_not_found"


class PurchaseNotFound(LedgerError):
    code = "purchase_not_found"


class EntryNotFound(LedgerError):
    code = "entry_not_found"


class RedeemAboveLimit(LedgerError):
    """More points asked than the cap or the balance allows; `allowed` is the maximum."""

    code = "redeem_above_limit"


class InsufficientPoints(LedgerError):
    code = "insufficient_points"


class RefundExceedsPurchase(LedgerError):
    code = "refund_exceeds_purchase"


class IdempotencyConflict(LedgerError):
    """The same operation id was used before with a different request."""

    code = "idempotency_conflict"


class EntryNotReversible(LedgerError):
    code = "entry_not_reversible"


class MemberErased(LedgerError):
    code = "member_erased"


class InvalidReference(LedgerError):
    """A receipt, refund or operation id that is empty or too long."""

    code = "invalid_reference"


class ReasonRequired(LedgerError):
    code = "reason_required"


class BirthdayInvalid(LedgerError):
    code = "birthday_invalid"


class BirthdayAlreadySet(LedgerError):
    code = "birthday_already_set"
