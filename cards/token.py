"""Signed, opaque card tokens for the QR deep link.

A member's QR code holds ``https://t.me/<bot>?start=c_<token>``.  Telegram limits a
``start`` payload to 64 characters of ``[A-Za-z0-9_-]``; ``c_`` takes two, so a token
must fit in 62.  The token:

* identifies a card number (a string of 8-16 ASCII digits, leading zeros preserved);
* hides it: whoever scans the code learns nothing about the number;
* is authenticated with the app's ``SECRET_KEY``, so a tampered or forged token is refused.

Construction (all standard library)::

    key_enc = HMAC-SHA256(SECRET_KEY, "tg-loyalty/card-token/v1/enc")
    key_mac = HMAC-SHA256(SECRET_KEY, "tg-loyalty/card-token/v1/mac")
    nonce   = 8 random bytes
    plain   = uint64_be(len(card_number) << 56 | int(card_number))
    cipher  = plain XOR HMAC-SHA256(key_enc, nonce)[:8]
    tag     = HMAC-SHA256(key_mac, version || nonce || cipher)[:13]
    token   = base64url(version || nonce || cipher || tag)      # 30 bytes -> 40 chars

HMAC-SHA256 keyed by ``key_enc`` is a PRF, so ``cipher`` is a one-time pad as long as
nonces do not repeat (64 random bits: a collision is expected only after ~2**32 tokens,
and even then it leaks only the XOR of two card numbers).  The 104-bit tag is checked
in constant time.  30 bytes is a multiple of 3, so the base64 text has no padding and
no slack bits: every character matters and any change is detected.

The leading ``version`` byte selects the key-derivation labels, so the scheme or the
keys can be rotated later while old tokens stay verifiable (or are deliberately
retired) by adding an entry to ``_LABELS``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from functools import lru_cache

__all__ = [
    "MAX_TOKEN_LENGTH",
    "TOKEN_LENGTH",
    "card_deep_link",
    "sign_card_token",
    "verify_card_token",
]

#: Telegram ``start`` payloads are at most 64 chars; ``c_`` takes two.
MAX_TOKEN_LENGTH = 62

_CURRENT_VERSION = 1
# version -> (encryption-key label, MAC-key label)
_LABELS: dict[int, tuple[bytes, bytes]] = {
    1: (b"tg-loyalty/card-token/v1/enc", b"tg-loyalty/card-token/v1/mac"),
}

_NONCE_LEN = 8
_CIPHER_LEN = 8
_TAG_LEN = 13
_RAW_LEN = 1 + _NONCE_LEN + _CIPHER_LEN + _TAG_LEN  # 30 bytes, a multiple of 3

#: Length of every token produced by :func:`sign_card_token` (40 characters).
TOKEN_LENGTH = _RAW_LEN * 4 // 3

_CARD_NUMBER_RE = re.compile(r"[0-9]{8,16}")
_TOKEN_RE = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
_LINK_TOKEN_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_TOKEN_LENGTH}}}")
_BOT_USERNAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{4,31}")
_LEN_SHIFT = 56
_VALUE_MASK = (1 << _LEN_SHIFT) - 1

assert TOKEN_LENGTH <= MAX_TOKEN_LENGTH
assert 10**16 <= _VALUE_MASK  # a 16-digit number fits below the length byte


@lru_cache(maxsize=16)
def _derive_keys(secret_key: str, version: int) -> tuple[bytes, bytes]:
    """Derive the (encryption, MAC) key pair for ``version`` from the app secret."""
    enc_label, mac_label = _LABELS[version]
    master = secret_key.encode("utf-8")
    return (
        hmac.new(master, enc_label, hashlib.sha256).digest(),
        hmac.new(master, mac_label, hashlib.sha256).digest(),
    )


def _check_secret(secret_key: str) -> None:
    if not isinstance(secret_key, str) or not secret_key:
        raise ValueError("secret_key must be a non-empty string")


def _keystream(key_enc: bytes, nonce: bytes) -> bytes:
    return hmac.new(key_enc, nonce, hashlib.sha256).digest()[:_CIPHER_LEN]


def _tag(key_mac: bytes, signed: bytes) -> bytes:
    return hmac.new(key_mac, signed, hashlib.sha256).digest()[:_TAG_LEN]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def sign_card_token(card_number: str, secret_key: str) -> str:
    """Return a fresh opaque token for ``card_number``, signed with ``secret_key``.

    Every call uses a new random nonce, so two tokens for the same card differ; both
    verify.  The result is :data:`TOKEN_LENGTH` (40) characters of ``[A-Za-z0-9_-]``.

    Raises:
        ValueError: if ``card_number`` is not 8-16 ASCII digits or ``secret_key`` is empty.
    """
    if not isinstance(card_number, str) or not _CARD_NUMBER_RE.fullmatch(card_number):
        raise ValueError("card_number must be a string of 8-16 ASCII digits")
    _check_secret(secret_key)

    key_enc, key_mac = _derive_keys(secret_key, _CURRENT_VERSION)
    nonce = secrets.token_bytes(_NONCE_LEN)
    plain = struct.pack(">Q", (len(card_number) << _LEN_SHIFT) | int(card_number))
    cipher = _xor(plain, _keystream(key_enc, nonce))
    signed = bytes([_CURRENT_VERSION]) + nonce + cipher
    raw = signed + _tag(key_mac, signed)
    return base64.urlsafe_b64encode(raw).decode("ascii")


def verify_card_token(token: str, secret_key: str) -> str | None:
    """Return the card number carried by ``token``, or ``None`` if it is not genuine.

    ``None`` covers every failure: wrong length or alphabet, unknown version, a bad tag
    (tampering, forgery, a different ``secret_key``), or a malformed payload.  Never
    raises on any ``token`` value, including non-strings.

    Raises:
        ValueError: only if ``secret_key`` itself is empty (a configuration error).
    """
    _check_secret(secret_key)
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _RAW_LEN:
        return None

    version = raw[0]
    if version not in _LABELS:
        return None
    key_enc, key_mac = _derive_keys(secret_key, version)
    signed, tag = raw[:-_TAG_LEN], raw[-_TAG_LEN:]
    if not hmac.compare_digest(tag, _tag(key_mac, signed)):
        return None

    nonce, cipher = signed[1 : 1 + _NONCE_LEN], signed[1 + _NONCE_LEN :]
    (packed,) = struct.unpack(">Q", _xor(cipher, _keystream(key_enc, nonce)))
    length, value = packed >> _LEN_SHIFT, packed & _VALUE_MASK
    if not 8 <= length <= 16 or value >= 10**length:
        return None  # authentic but not something we ever sign; be defensive
    return str(value).zfill(length)


def card_deep_link(bot_username: str, token: str) -> str:
    """Build the deep link ``https://t.me/<bot_username>?start=c_<token>``.

    A leading ``@`` on ``bot_username`` is dropped.

    Raises:
        ValueError: if the username is not a valid Telegram username, or ``token`` is
            empty or would not fit a Telegram ``start`` payload (more than 62 chars, or
            a character outside ``[A-Za-z0-9_-]``).
    """
    username = bot_username.removeprefix("@")
    if not _BOT_USERNAME_RE.fullmatch(username):
        raise ValueError(f"invalid bot username: {bot_username!r}")
    if not isinstance(token, str) or not _LINK_TOKEN_RE.fullmatch(token):
        raise ValueError("token does not fit a Telegram start payload")
    return f"https://t.me/{username}?start=c_{token}"
