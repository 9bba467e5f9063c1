"""The OpenAPI 3.1 document of the HTTP API, served at /api/v1/openapi.json.

The API tests check every answer they get against this document (tests/api/conftest.py), and
schemathesis sends it requests generated from it (tests/api/test_schemathesis.py), so it cannot
drift from the behaviour.
"""

from __future__ import annotations

from typing import Any

from ledger.policy import MAX_MEMBER_POINTS
from marketing.broadcasts import MAX_ID as MAX_BROADCAST_ID
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
                "points, or with the QR token.\n\n"
                "Keys have a scope: a till key records purchases and refunds, a marketing key "
                "counts segments and sends broadcasts (each is refused, 403 forbidden, on the "
                "other's endpoints). A broadcast is idempotent on broadcast_id as a purchase is "
                "on receipt_id."
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
            "/api/v1/broadcasts": {
                "post": {
                    "summary": "Create a broadcast to a segment (marketing keys)",
                    "description": (
                        "Draws the segment's members now (the audience) and a random "
                        "control_percent% of them who get nothing (the control group); the "
                        "rest are the recipients, sent the text through the bot as offers "
                        "(opt-outs, the weekly cap and quiet hours apply), now or at send_at "
                        "(a moment in the past sends now). Idempotent on broadcast_id: the "
                        "same request again returns the first answer with 200 (its status as "
                        "it was then; GET says where it stands now), even once send_at has "
                        "passed; the same broadcast_id with another body is refused with 409. "
                        "send_at is compared as a moment: the same one written with another "
                        "offset is the same request. Omitted fields take their defaults (the "
                        "program's rules.toml `[broadcasts]`) when the request is made."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/BroadcastRequest"}
                            }
                        },
                    },
                    "responses": {
                        "201": _ok("Created; sending now, or scheduled.", "BroadcastCreated"),
                        "200": _ok(
                            "The same request was made before; its answer.", "BroadcastCreated"
                        ),
                        **_BODY_ERRORS,
                        **_AUTH_ERRORS,
                        **_MARKETING_ONLY,
                        "409": _error(
                            "broadcast_id was used for a different broadcast "
                            "(code broadcast_id_conflict)."
                        ),
                        "422": _error(
                            "A field that is not a broadcast's (unknown_field), a missing or "
                            "mistyped one (invalid_field, invalid_points; send_at not an ISO "
                            "8601 moment), a value out of range or send_at without its offset "
                            "(invalid_broadcast); a bad filter, as for the segment preview "
                            "(invalid_filter, unknown_condition, invalid_condition, "
                            "unknown_tier); a text Telegram would refuse: invalid_html (with "
                            "`position`, the 1-based character, and `tag` when a tag is to "
                            "blame), unknown_placeholder (with `placeholder` and `position`), "
                            "empty_text, too_long (with `length` and `limit`, counted with "
                            "the longest first name and balance). `field` names the field."
                        ),
                    },
                }
            },
            "/api/v1/broadcasts/{broadcast_id}": {
                "get": {
                    "summary": "Where a broadcast stands (marketing keys)",
                    "description": (
                        "recipients = sent + skipped_optout + skipped_cap + "
                        "skipped_unreachable + failed + pending at every moment. gift_points: "
                        "the points its gifts have credited so far, in total (a recipient's "
                        "gift is credited when their message is recorded as sent)."
                    ),
                    "parameters": [_BROADCAST_ID],
                    "responses": {
                        "200": _ok("The broadcast.", "BroadcastReport"),
                        **_AUTH_ERRORS,
                        **_MARKETING_ONLY,
                        "404": _error("No broadcast with this broadcast_id (code not_found)."),
                    },
                }
            },
            "/api/v1/broadcasts/{broadcast_id}/cancel": {
                "post": {
                    "summary": "Cancel a broadcast (marketing keys)",
                    "description": (
                        "Nothing pending is sent afterwards (a message already handed to "
                        "Telegram may still arrive); what was sent stays sent, with its gift "
                        "points. Cancelling a cancelled broadcast again answers 200 the same "
                        "way, so a retry is harmless; one that is done cannot be cancelled."
                    ),
                    "parameters": [_BROADCAST_ID],
                    "responses": {
                        "200": _ok("Cancelled; where it stands.", "BroadcastReport"),
                        **_AUTH_ERRORS,
                        **_MARKETING_ONLY,
                        "404": _error("No broadcast with this broadcast_id (code not_found)."),
                        "409": _error("The broadcast is done already (code invalid_state)."),
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
_BROADCAST_ID_SCHEMA = {
    "type": "string",
    "pattern": f"^[A-Za-z0-9._:-]{{1,{MAX_BROADCAST_ID}}}$",
    "description": f"1 to {MAX_BROADCAST_ID} letters, digits, '-', '_', '.' or ':'.",
}
_BROADCAST_ID = {
    "name": "broadcast_id",
    "in": "path",
    "required": True,
    "schema": _BROADCAST_ID_SCHEMA,
}
_COUNT = {"type": "integer", "minimum": 0}
_MAYBE_TEXT = {"type": ["string", "null"]}
_COMPARISON = {
    "type": "object",
    "required": ["recipients", "control", "difference", "low", "high"],
    "properties": {
        name: _MAYBE_TEXT for name in ("recipients", "control", "difference", "low", "high")
    },
}
_GROUP = {
    "type": "object",
    "required": ["members", "buyers", "revenue"],
    "properties": {
        "members": _COUNT,
        "buyers": {**_COUNT, "description": "Members with a purchase in the window."},
        "revenue": {**_STR, "description": 'Their purchases\' money, net of refunds, "1234.56".'},
    },
}
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
    "BroadcastRequest": {
        "type": "object",
        "required": ["broadcast_id", "filter", "text"],
        "additionalProperties": False,
        "properties": {
            "broadcast_id": {**_BROADCAST_ID_SCHEMA, "description": "The idempotency key."},
            "filter": {"$ref": "#/components/schemas/SegmentFilter"},
            "text": {
                "type": "string",
                "minLength": 1,
                "pattern": r"^[^\x00]*$",
                "description": (
                    "Telegram HTML (b, i, u, s, a href, code, pre, blockquote, tg-spoiler, "
                    "...; every tag closed; < and & written as &lt; and &amp;) with the "
                    "placeholders {first_name} and {balance}; at most 4096 characters shown "
                    "(counted with a 64-character name), 80 fewer with gift points (their "
                    "line is added under the text)."
                ),
            },
            "control_percent": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "description": "The share of the audience held back; rules.toml's by default "
                "(10). 0: no control group, and no lift to measure.",
            },
            "gift_points": {
                "type": "integer",
                "minimum": 0,
                "default": 0,
                "description": "Points credited to each recipient when their message is "
                "sent; at most rules.toml's max_gift_points (10000).",
            },
            "gift_days": {
                "type": "integer",
                "minimum": 1,
                "maximum": 365,
                "description": "How long gift points live; rules.toml's gift_days by default (14).",
            },
            "send_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "default": None,
                "description": 'When to send: ISO 8601 with its offset ("2026-03-01T10:00:00'
                '+03:00"); null or omitted: now.',
            },
            "button": {
                "type": "object",
                "required": ["text", "url"],
                "additionalProperties": False,
                "description": "An optional URL button under the message.",
                "properties": {
                    "text": {**_ID, "maxLength": 64},
                    "url": {
                        "type": "string",
                        "maxLength": 2000,
                        "pattern": f"^(https?|tg)://[^{_NOT_IN_IDS}\\s]+$",
                    },
                },
            },
        },
    },
    "BroadcastCreated": {
        "type": "object",
        "required": ["broadcast_id", "status", "audience", "control", "recipients"],
        "properties": {
            "broadcast_id": _STR,
            "status": {
                "type": "string",
                "enum": ["scheduled", "sending"],
                "description": "As it was when created.",
            },
            "audience": {**_COUNT, "description": "Members matching the filter at creation."},
            "control": {**_COUNT, "description": "Of them, held back: no message, no gift."},
            "recipients": {**_COUNT, "description": "audience - control."},
        },
    },
    "BroadcastReport": {
        "type": "object",
        "required": [
            "broadcast_id",
            "status",
            "audience",
            "control",
            "recipients",
            "sent",
            "skipped_optout",
            "skipped_cap",
            "skipped_unreachable",
            "failed",
            "pending",
            "gift_points",
            "attribution",
        ],
        "properties": {
            "broadcast_id": _STR,
            "status": {
                "type": "string",
                "enum": ["scheduled", "sending", "paused", "cancelled", "done"],
            },
            "audience": _COUNT,
            "control": _COUNT,
            "recipients": _COUNT,
            "sent": _COUNT,
            "skipped_optout": {**_COUNT, "description": "Opted out of offers."},
            "skipped_cap": {
                **_COUNT,
                "description": "The weekly cap or quiet hours would hold it more than a day.",
            },
            "skipped_unreachable": {
                **_COUNT,
                "description": "Blocked the bot, no Telegram chat, or left the program.",
            },
            "failed": {**_COUNT, "description": "Telegram refused it, or it could not go out."},
            "pending": {
                **_COUNT,
                "description": "Not sent yet (or never, once the broadcast is cancelled).",
            },
            "gift_points": {**_COUNT, "description": "Gift points credited so far, in total."},
            "attribution": {
                "type": ["object", "null"],
                "required": ["window_days", "recipients", "control", "lift"],
                "description": "Recipients against the control group: their purchases from "
                "when sending started to window_days later (so far, while the window runs). "
                "Every member drawn into a group counts, reached or skipped; members who "
                "erased their data are left out of both. null before sending started.",
                "properties": {
                    "window_days": _INT,
                    "recipients": _GROUP,
                    "control": _GROUP,
                    "lift": {"$ref": "#/components/schemas/Lift"},
                },
            },
        },
    },
    "Lift": {
        "type": "object",
        "required": ["state", "buyers", "revenue_per_member"],
        "description": "state: measured (differences with 95% intervals), too_small (a group "
        "too small to tell: each group's values only), no_control (control_percent 0). Each "
        "measure gives recipients, control, difference (recipients - control) and the "
        "interval's low and high; null is what cannot be told.",
        "properties": {
            "state": {"type": "string", "enum": ["measured", "too_small", "no_control"]},
            "buyers": {
                **_COMPARISON,
                "description": 'The share of members who bought, as "0.1234".',
            },
            "revenue_per_member": {
                **_COMPARISON,
                "description": 'Money per member, net of refunds, as "123.45".',
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
                    "position": {
                        **_INT,
                        "description": "invalid_html, unknown_placeholder: the 1-based "
                        "character of the text where it is.",
                    },
                    "tag": {**_STR, "description": "invalid_html: the tag to blame."},
                    "placeholder": {
                        **_STR,
                        "description": "unknown_placeholder: the placeholder, e.g. {name}.",
                    },
                    "length": {**_INT, "description": "too_long: the text's length."},
                    "limit": {**_INT, "description": "too_long: the most that fits."},
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
