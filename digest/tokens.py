"""Signed per-recipient tokens for unsubscribe and preference links.

A token is `<payload>.<mac>`: the payload is the subscriber id (their address) in URL-safe base64,
readable by anyone who sees the link, and the MAC is an HMAC-SHA256 over it with a secret from the
environment. The token does not hide the address; what matters is that nobody can make or alter
a valid token without the secret.

Only the canonical spelling verifies: unpadded URL-safe base64 on both sides, which must re-encode
to exactly the characters given. A lenient decoder would accept extra characters (quotes, angle
brackets) in a token that still verifies, and those would be reflected into the public pages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from digest.errors import ConfigError

_PURPOSES = frozenset({"unsubscribe", "preferences"})
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def secret_from_env(name: str) -> bytes:
    """The signing secret; an error names the variable, never prints a value."""
    value = os.environ.get(name, "")
    if len(value) < 16:
        raise ConfigError(
            f"environment variable {name} must hold a secret of at least 16 characters "
            "(needed to sign unsubscribe links)"
        )
    return value.encode("utf-8")


def _mac(secret: bytes, purpose: str, payload: bytes) -> bytes:
    return hmac.new(secret, purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()[:18]


def make_token(subscriber_id: str, secret: bytes, purpose: str = "unsubscribe") -> str:
    assert purpose in _PURPOSES
    payload = subscriber_id.encode("utf-8")
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def read_token(token: str, secret: bytes, purpose: str = "unsubscribe") -> str | None:
    """The subscriber id a token was made for, or None for anything forged, tampered or malformed."""
    if not _SHAPE.fullmatch(token):
        return None
    payload_b64, mac_b64 = token.split(".")
    try:
        payload, mac = _unb64(payload_b64), _unb64(mac_b64)
    except (ValueError, TypeError):
        return None
    # base64 lets several spellings decode alike (spare bits in the last character): only ours counts
    if _b64(payload) != payload_b64 or _b64(mac) != mac_b64:
        return None
    if not hmac.compare_digest(mac, _mac(secret, purpose, payload)):
        return None
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
