"""The OpenAPI 3.1 document of the HTTP API, served at /api/v1/openapi.json.

tests/api/test_openapi.py checks every answer the API gives against this document, so it
cannot drift from the behaviour.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_AUTH_ERRORS = {"401": _error("Missing, unknown or revoked API key.")}
_BODY_ERRORS = {
    "400": _error(
        "The body is not a JSON object (code invalid_json), or cannot be read as its headers "
        "say, e.g. a Content-Encoding it is not in (code invalid_body)."
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
                "nothing."
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
                        "404": _error(
                            "Unknown customer, for a receipt_id not used before "
                            "(code member_not_found)."
                        ),
                        "409": _error(
                            "receipt_id was used for a different purchase, whatever this "
                            "request's customer (code idempotency_conflict)."
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
    "pattern": r"^\s*[0-9]{1,12}([.,][0-9]{1,2})?\s*$",  # for a string; spaces around ignored
    "minimum": 1,  # for an integer: whole roubles
    "maximum": 100_000_000,
    "examples": ["1500.00"],
}
_MONEY_LIMITS = (
    " A string with at most two decimals (a comma also works), or an integer of whole "
    "roubles; more than 0 and at most 100000000.00."
)
_ID = {"type": "string", "minLength": 1, "maxLength": 100}  # and no control or format characters

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
                },
            }
        },
    },
}
