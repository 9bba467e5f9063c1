"""The OpenAPI 3.1 document of the HTTP API, served at /api/v1/openapi.json.

The API tests check every answer they get against this document (tests/api/conftest.py), and
schemathesis sends it requests generated from it (tests/api/test_schemathesis.py), so it cannot
drift from the behaviour.
"""

from __future__ import annotations

from typing import Any

from ledger.policy import MAX_MEMBER_POINTS
from marketing.segments import LANGUAGES, MAX_DAYS, MAX_PURCHASES

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_AUTH_ERRORS = {"401": _error("Missing, unknown or revoked API key.")}
_TILL_ONLY = {"403": _error("A marketing key: purchases and refunds need a till key (forbidden).")}
_MARKETING_ONLY = {
    "403": _error("A till key: this endpoint needs a marketing key (code forbidden).")
}
_BODY_ERRORS = {
    "400": _error(
        "The body is not a JSON object (code invalid_json), or cannot be read as its headers "
        "say, e.g. a Content-Encoding it is not in (code invalid_body)."
    ),
    "408": _error(
        "The body did not arrive within the server's body timeout, API_BODY_TIMEOUT_SECONDS "
        "(code body_timeout); the connection is closed."
    ),
    "413": _error("The body is larger than 16 KiB (code body_too_large)."),
}

_CUSTOMER_DOC = (
    "The member: a card number (12 digits, spaces allowed), a phone number in any common "
    "format (+7 999 123-45-67, 89991234567, ...), or the token from the member's QR card "
    "(bare, with its c_ prefix, or the whole t.me link)."
)


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Loyalty program API",
            "version": "1.0.0",
            "description": (
                "Record purchases and refunds from a till or an online shop, and read a "
                "member's balance. Amounts are strings in roubles with at most two decimals "
                '("1500.00"); points are integers (1 point = 1 RUB). Purchases are idempotent '
                "on receipt_id and refunds on refund_id: the same request again returns the "
                "first answer with status 200; the same id with a different body is refused "
                'with 409. Every error is {"error": {"code", "message"}} and changes '
                "nothing.\n\n"
                "Large redemptions: more points than the program's `member_confirm_above` "
                "(rules.toml, 1000 by default) are spent only with the member's consent. "
                "Either the customer is the member's QR token, scanned at the till (no "
                "question then), or the member says yes in Telegram: the first request is "
                "answered 409 `confirmation_required` with a `confirmation_id`, and the member "
                "is asked in their chat. Poll GET /api/v1/confirmations/{confirmation_id} "
                "(every second or two, until `expires_at`); once its status is `accepted`, "
                "send the same purchase again (same receipt_id and body): it is recorded (201). "
                "`declined` or `expired` are final for that receipt_id: the same purchase "
                "again gets 409 `confirmation_declined` or `confirmation_expired`, and nothing "
                "is spent; the till may then send it with at most `member_confirm_above` "
                "points, or with the QR token."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness check",
                    "security": [],
                    "responses": {
                        "200": _ok("The service is up and its database answers.", "Health"),
                        "503": _error("The database does not answer (database_unavailable)."),
                    },
                }
            },
            "/api/v1/purchases": {
                "post": {
                    "summary": "Record a purchase (earn points, optionally redeem some)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PurchaseRequest"}
                            }
                        },
                    },
                    "responses": {
                        "201": _ok("Recorded.", "Purchase"),
                        "200": _ok("The same request was recorded before; its answer.", "Purchase"),
                        **_BODY_ERRORS,
                        **_AUTH_ERRORS,
                        **_TILL_ONLY,
                        "404": _error(
                            "Unknown customer, for a receipt_id not used before "
                            "(code member_not_found)."
                        ),
                        "409": _error(
                            "receipt_id was used for a different purchase, whatever this "
                            "request's customer (code idempotency_conflict); or more than "
                            "member_confirm_above points without the member's QR token: "
                            "confirmation_required (the member was asked in Telegram; "
                            "`confirmation_id` to poll, `expires_at`), confirmation_declined, "
                            "confirmation_expired (the member said no or did not answer in "
                            "time: nothing was spent), confirmation_unavailable (the member "
                            "cannot be asked in Telegram)."
                        ),
                        "422": _error(
                            "Invalid field (invalid_field, invalid_amount, invalid_points; "
                            "`field` names it), or more points than allowed "
                            "(redeem_above_limit, with `allowed`: the most points this "
                            "purchase may be paid with), or the member would hold more than "
                            "1,000,000,000 points (points_limit)."
                        ),
                    },
                }
            },
            "/api/v1/refunds": {
                "post": {
                    "summary": "Refund part or all of a purchase",
                    "description": (
                        "Takes back the points earned on the refunded part and gives back, pro "
                        "rata, the points that paid for it. If the member has already spent "
                        "the points to take back, the shortfall becomes a debt paid off by "
                        "their next points."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/RefundRequest"}
                            }
                        },
                    },
                    "responses": {
                        "201": _ok("Recorded.", "Refund"),
                        "200": _ok("The same request was recorded before; its answer.", "Refund"),
                        **_BODY_ERRORS,
                        **_AUTH_ERRORS,
                        **_TILL_ONLY,
                        "404": _error(
                            "Unknown receipt_id, for a refund_id not used before "
                            "(code purchase_not_found)."
                        ),
                        "409": _error(
                            "refund_id was used for a different refund, whatever this "
                            "request's receipt_id (code idempotency_conflict)."
                        ),
                        "422": _error(
                            "Invalid field, or more than what is left to refund "
                            "(refund_exceeds_purchase, with `refundable`)."
                        ),
                    },
                }
            },
            "/api/v1/members/{customer}": {
                "get": {
                    "summary": "A member's balance and tier",
                    "parameters": [
                        {
                            "name": "customer",
                            "in": "path",
                            "required": True,
                            "description": _CUSTOMER_DOC,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _ok("The member.", "Member"),
                        **_AUTH_ERRORS,
                        "404": _error("Unknown customer (code member_not_found)."),
                    },
                }
            },
            "/api/v1/confirmations/{confirmation_id}": {
                "get": {
                    "summary": "The member's answer to a large redemption",
                    "description": (
                        "For a confirmation_id this key got with 409 confirmation_required. "
                        "pending: not answered yet; accepted: send the purchase again; "
                        "declined or expired: nothing will be spent under that receipt_id "
                        "with this many points."
                    ),
                    "parameters": [
                        {
                            "name": "confirmation_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _ok("The confirmation's state.", "Confirmation"),
                        **_AUTH_ERRORS,
                        "404": _error(
                            "No such confirmation for this key (code confirmation_not_found)."
                        ),
                    },
                }
            },
            "/api/v1/segments/preview": {
                "post": {
                    "summary": "Count a segment's members (marketing keys)",
                    "description": (
                        "The members who meet every condition of the filter now (an omitted "
                        "condition is none), and how many of them an offer reaches: not "
                        "blocked, not opted out of offers, with a Telegram chat. Erased "
                        "members are never in a segment. Days count back from now in periods "
                        "of 24 hours."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/SegmentPreviewRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": _ok("The segment's counts now.", "SegmentCounts"),
                        **_BODY_ERRORS,
                        **_AUTH_ERRORS,
                        **_MARKETING_ONLY,
                        "422": _error(
                            "A bad filter, `field` naming the key: not an object "
                            "(invalid_filter), a key that is not a condition "
                            "(unknown_condition), a value of the wrong type or out of range "
                            "(invalid_condition), a tier the program does not have "
                            "(unknown_tier)."
                        ),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A key from `python -m bot api-key create --name NAME`.",
                }
            },
            "schemas": _SCHEMAS,
        },
    }


_INT = {"type": "integer"}
_STR = {"type": "string"}
_TIER = {"type": "string", "description": "base, silver or gold (see rules.toml)"}
_MONEY = {
    "type": ["string", "integer"],
    # For a string: more than 0 (0.01 to 99999999.99, or 100000000 itself), at most two
    # decimals after a point or a comma. (The server also takes spaces around and leading
    # zeros; the document asks for the plain form.)
    "pattern": (
        r"^([1-9][0-9]{0,7}([.,][0-9]{1,2})?|100000000([.,]00?)?|0[.,](0[1-9]|[1-9][0-9]?))$"
    ),
    "minimum": 1,  # for an integer: whole roubles
    "maximum": 100_000_000,
    "examples": ["1500.00"],
}
_MONEY_LIMITS = (
    " A string with at most two decimals (a comma also works), or an integer of whole "
    "roubles; more than 0 and at most 100000000.00."
)
# Control (Cc) and format (Cf: invisible, direction) characters, which ids must not hold: in the
# \u and \U escapes that Python's re (schemathesis) and Rust's regex (jsonschema-rs) both read.
_NOT_IN_IDS = (
    r"\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    r"\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd"
    r"\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    r"\U000e0020-\U000e007f"
)
# Something besides spaces, and no control or format characters.
_ID_PATTERN = f"^[^{_NOT_IN_IDS}]*[^\\s{_NOT_IN_IDS}][^{_NOT_IN_IDS}]*$"
_ID = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": _ID_PATTERN}

_POINTS_BOUND = {"type": "integer", "minimum": 0, "maximum": MAX_MEMBER_POINTS}
_DAYS_BOUND = {"type": "integer", "minimum": 1, "maximum": MAX_DAYS}

_SCHEMAS: dict[str, Any] = {
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "const": "ok"}},
    },
    "PurchaseRequest": {
        "type": "object",
        "required": ["receipt_id", "customer", "amount"],
        "properties": {
            "receipt_id": {
                **_ID,
                "description": (
                    "The till's receipt id; the idempotency key. No control or invisible "
                    "formatting characters (Unicode categories Cc and Cf)."
                ),
            },
            "customer": {
                "type": "string",
                "minLength": 1,
                "maxLength": 300,
                "pattern": _ID_PATTERN,
                "description": _CUSTOMER_DOC,
            },
            "amount": {**_MONEY, "description": "The whole receipt, in roubles." + _MONEY_LIMITS},
            "redeem_points": {
                "type": "integer",
                "minimum": 0,
                "maximum": 10_000_000,
                "default": 0,
                "description": "Points to pay with: at most 30% of the amount "
                "and at most the balance.",
            },
        },
    },
    "Purchase": {
        "type": "object",
        "required": [
            "receipt_id",
            "member_id",
            "card_number",
            "accrued",
            "redeemed",
            "balance",
            "tier",
        ],
        "properties": {
            "receipt_id": _STR,
            "member_id": _INT,
            "card_number": _STR,
            "accrued": {**_INT, "description": "Points earned on the part paid in money."},
            "redeemed": {**_INT, "description": "Points that paid part of the purchase."},
            "balance": {**_INT, "description": "Usable points after the purchase."},
            "tier": _TIER,
        },
    },
    "RefundRequest": {
        "type": "object",
        "required": ["refund_id", "receipt_id", "amount"],
        "properties": {
            "refund_id": {
                **_ID,
                "description": (
                    "The refund's id; the idempotency key. No control or invisible "
                    "formatting characters (Unicode categories Cc and Cf)."
                ),
            },
            "receipt_id": {**_ID, "description": "The purchase being refunded."},
            "amount": {**_MONEY, "description": "The refunded part, in roubles." + _MONEY_LIMITS},
        },
    },
    "Refund": {
        "type": "object",
        "required": [
            "refund_id",
            "receipt_id",
            "member_id",
            "card_number",
            "reversed",
            "returned",
            "debt",
            "balance",
            "pending",
            "tier",
        ],
        "properties": {
            "refund_id": _STR,
            "receipt_id": _STR,
            "member_id": _INT,
            "card_number": _STR,
            "reversed": {**_INT, "description": "Earned points taken back."},
            "returned": {**_INT, "description": "Redeemed points given back."},
            "debt": {**_INT, "description": "Points the member owes after this refund."},
            "balance": _INT,
            "pending": _INT,
            "tier": _TIER,
        },
    },
    "Member": {
        "type": "object",
        "required": ["member_id", "card_number", "balance", "pending", "tier"],
        "properties": {
            "member_id": _INT,
            "card_number": _STR,
            "balance": {**_INT, "description": "Usable points."},
            "pending": {**_INT, "description": "Points on hold, usable later."},
            "tier": _TIER,
        },
    },
    "Confirmation": {
        "type": "object",
        "required": ["confirmation_id", "receipt_id", "status", "expires_at"],
        "properties": {
            "confirmation_id": _INT,
            "receipt_id": _STR,
            "status": {
                "type": "string",
                "enum": ["pending", "accepted", "declined", "expired"],
            },
            "expires_at": {
                **_STR,
                "description": "When the member's time to answer ends (UTC, ISO 8601).",
            },
        },
    },
    "SegmentPreviewRequest": {
        "type": "object",
        "required": ["filter"],
        "properties": {"filter": {"$ref": "#/components/schemas/SegmentFilter"}},
    },
    "SegmentFilter": {
        "type": "object",
        "additionalProperties": False,
        "description": "Conditions a member must all meet; an omitted one is no condition.",
        "properties": {
            "tiers": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,15}$"},
                "description": "The member's tier is one of these (base, silver, gold, or the "
                "tiers of rules.toml).",
            },
            "balance_min": {**_POINTS_BOUND, "description": "Usable points, at least."},
            "balance_max": {**_POINTS_BOUND, "description": "Usable points, at most."},
            "burning_within_days": {
                **_DAYS_BOUND,
                "description": "Has usable points that burn within this many days.",
            },
            "inactive_days": {
                **_DAYS_BOUND,
                "description": "No purchase in the last this many days (a member who never "
                "bought: joined at least this many days ago).",
            },
            "joined_within_days": {
                **_DAYS_BOUND,
                "description": "Joined in the last this many days.",
            },
            "language": {"type": "string", "enum": list(LANGUAGES)},
            "birthday_month": {"type": "integer", "minimum": 1, "maximum": 12},
            "purchases_min": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_PURCHASES,
                "description": "Purchases ever made, at least.",
            },
            "spent_365_min": {
                "type": "string",
                "pattern": r"^[0-9]{1,8}(\.[0-9]{1,2})?$",
                "examples": ["10000.00"],
                "description": "Money paid (net of refunds) in the last 365 days, at least, "
                "in roubles.",
            },
        },
    },
    "SegmentCounts": {
        "type": "object",
        "required": ["count", "reachable"],
        "properties": {
            "count": {**_INT, "description": "Members in the segment."},
            "reachable": {
                **_INT,
                "description": "Of them, those an offer reaches: a Telegram chat, not "
                "blocked, not opted out of offers.",
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string", "description": "Stable, for programs."},
                    "message": {"type": "string", "description": "For people."},
                    "allowed": {**_INT, "description": "redeem_above_limit: the maximum."},
                    "refundable": {
                        **_STR,
                        "description": "refund_exceeds_purchase: what is "
                        "left to refund, in roubles.",
                    },
                    "field": {**_STR, "description": "The request field that is wrong."},
                    "key": {
                        **_STR,
                        "description": "idempotency_conflict: the operation's key, e.g. "
                        "purchase:R-1.",
                    },
                    "confirmation_id": {
                        **_INT,
                        "description": "confirmation_*: what to poll at "
                        "/api/v1/confirmations/{confirmation_id}.",
                    },
                    "expires_at": {
                        **_STR,
                        "description": "confirmation_*: when the member's time to answer "
                        "ends (UTC, ISO 8601).",
                    },
                },
            }
        },
    },
}
