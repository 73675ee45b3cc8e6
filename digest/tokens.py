"""Signed per-recipient tokens for unsubscribe and preference links.

A token is `v2.<id>.<mac>`:

- `<id>` is an opaque random id (16 random bytes, URL-safe base64) that the subscriber state maps
  to the address (`SubscriberState.token_ids`), made once per subscriber and kept. It says nothing
  about who the subscriber is, so link scanners, URL rewriters, proxies and browser histories that
  log the link learn nothing personal.
- `<mac>` is HMAC-SHA256 over the version, the purpose and the id with the secret from the
  environment, so nobody can make a token, alter its id, or reuse an unsubscribe token as a
  preferences token without the secret.

Before, a token was `<base64url(address)>.<mac>` ("legacy"): the address was readable by anyone
who saw the link. Those are still read (`Claim.kind == "address"`) so links already in inboxes keep
working; the public app accepts them only for a transition period (`serve.legacy_token_days`).

Secret rotation: tokens are always signed with the current secret, and verified with it or any of
the previous ones (`sending.previous_secrets_env`), so a rotation does not break every link in
every inbox at once.

The same `v2` shape signs a signup's confirmation and cancel links (purposes "confirm" and "cancel"):
their id names a consent record (digest.signup.store), not a subscriber. A form's fill-time stamp
(`s1.<epoch>.<mac>`) and a first-party click's link token (`l1....`) have MAC inputs of their own,
so none of these can stand in for another.

Only the exact spelling made here verifies. A lenient base64 decoder would accept extra characters
(quotes, angle brackets) in a token that still verifies, and those would be reflected into the
public pages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from digest.errors import ConfigError

#: "click": a reader's part of a first-party click link (clicks.py), good for nothing else.
#: "confirm" / "cancel": a signup's confirmation link and the link that withdraws it; their id
#: names a consent record (digest.signup.store), not a subscriber.
_PURPOSES = frozenset({"unsubscribe", "preferences", "click", "confirm", "cancel"})
_VERSION = "v2"
#: 16 random bytes in unpadded URL-safe base64, then an 18-byte MAC in the same.
ID_CHARS = 22
_CURRENT = re.compile(r"v2\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{24})")
#: An id exactly as `new_token_id` spells it: 16 bytes leave the last character's low 4 bits zero.
_ID = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")
_LEGACY = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
MIN_SECRET_CHARS = 16
_LINK_VERSION = "l1"
#: An edition id and an article id: bounded, so a crafted URL cannot make us decode megabytes.
_LINK = re.compile(r"l1\.([A-Za-z0-9_-]{2,700})\.([A-Za-z0-9_-]{24})")
_STAMP_VERSION = "s1"
_STAMP = re.compile(r"s1\.([0-9]{1,12})\.([A-Za-z0-9_-]{24})")


@dataclass(frozen=True)
class Claim:
    """What a verified token names: an opaque id (current tokens) or an address (legacy tokens)."""

    kind: Literal["id", "address"]
    value: str
    rotated: bool = False  #: verified with a previous secret, not the current one


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_token_id() -> str:
    """A fresh opaque id: 128 random bits, 22 URL-safe characters."""
    return _b64(secrets.token_bytes(16))


def secret_from_env(name: str) -> bytes:
    """The signing secret; an error names the variable, never prints a value."""
    value = os.environ.get(name, "")
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"environment variable {name} must hold a secret of at least {MIN_SECRET_CHARS} characters "
            "(needed to sign unsubscribe links)"
        )
    return value.encode("utf-8")


def previous_secrets_from_env(name: str) -> tuple[bytes, ...]:
    """Secrets that still verify after a rotation: whitespace-separated in one variable, maybe none.

    Each must be as long as a current secret would have to be: a short piece means the value was
    split where it should not have been (a secret containing spaces cannot be listed here).
    """
    pieces = os.environ.get(name, "").split() if name else []
    if any(len(p) < MIN_SECRET_CHARS for p in pieces):
        raise ConfigError(
            f"environment variable {name} must hold whitespace-separated secrets of at least "
            f"{MIN_SECRET_CHARS} characters each"
        )
    return tuple(p.encode("utf-8") for p in pieces)


def _mac(secret: bytes, purpose: str, token_id: str) -> str:
    message = f"{_VERSION}\x00{purpose}\x00{token_id}".encode("ascii")
    return _b64(hmac.new(secret, message, hashlib.sha256).digest()[:18])


def _legacy_mac(secret: bytes, purpose: str, payload: bytes) -> bytes:
    # Starts with the purpose, never with "v2": no legacy MAC input equals a current one.
    return hmac.new(secret, purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()[:18]


def make_token(token_id: str, secret: bytes, purpose: str = "unsubscribe") -> str:
    """The token for a subscriber's opaque id (from `SubscriberState.token_ids`)."""
    return Signer(secret).token(token_id, purpose)


class Signer:
    """`make_token` for many ids with one secret: HMAC's keyed state is set up once and copied per
    token (a send signs two links for each of 100,000 subscribers)."""

    def __init__(self, secret: bytes):
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)

    def token(self, token_id: str, purpose: str = "unsubscribe") -> str:
        assert purpose in _PURPOSES
        assert _ID.fullmatch(token_id), "not an opaque id"
        mac = self._keyed.copy()
        mac.update(f"{_VERSION}\x00{purpose}\x00{token_id}".encode("ascii"))
        return f"{_VERSION}.{token_id}.{_b64(mac.digest()[:18])}"


def make_legacy_token(address: str, secret: bytes, purpose: str = "unsubscribe") -> str:
    """A token as digest wrote them before opaque ids (the address in base64). Nothing sends these
    any more; kept so the transition can be tested against exactly what is in inboxes."""
    assert purpose in _PURPOSES
    payload = address.encode("utf-8")
    return f"{_b64(payload)}.{_b64(_legacy_mac(secret, purpose, payload))}"


def make_link_token(edition: str, article: str, secret: bytes) -> str:
    """`l1.<payload>.<mac>`: an edition and one of its articles, for a first-party click link.

    Names no one: the reader's part is a separate "click" token (see clicks.py). The MAC's input
    starts with "l1", never with "v2" or a purpose, so it can never stand in for another token.
    """
    payload = f"{edition}\x00{article}".encode()
    return f"{_LINK_VERSION}.{_b64(payload)}.{_b64(_link_mac(secret, payload))}"


def read_link_token(token: str, secrets_: Sequence[bytes]) -> tuple[str, str] | None:
    """(edition, article) from a link token one of `secrets_` signed; None for anything else."""
    m = _LINK.fullmatch(token)
    if not m:
        return None
    try:
        payload, mac = _unb64(m.group(1)), _unb64(m.group(2))
    except (ValueError, TypeError):
        return None
    if _b64(payload) != m.group(1) or _b64(mac) != m.group(2):
        return None
    if not any(hmac.compare_digest(mac, _link_mac(secret, payload)) for secret in secrets_):
        return None
    try:
        edition, article = payload.decode("utf-8").split("\x00")
    except ValueError:  # UnicodeDecodeError too
        return None
    return edition, article


def make_stamp(moment: int, secret: bytes) -> str:
    """`s1.<epoch seconds>.<mac>`: when the server handed out a signup form, so a submission can
    be told apart from one made faster than a person types (or from a form never fetched)."""
    return f"{_STAMP_VERSION}.{moment}.{_b64(_stamp_mac(secret, moment))}"


def read_stamp(stamp: str, secrets_: Sequence[bytes]) -> int | None:
    """The moment a stamp one of `secrets_` signed was made; None for anything else."""
    m = _STAMP.fullmatch(stamp)
    if not m:
        return None
    moment = int(m.group(1))
    if any(hmac.compare_digest(m.group(2), _b64(_stamp_mac(secret, moment))) for secret in secrets_):
        return moment
    return None


def _stamp_mac(secret: bytes, moment: int) -> bytes:
    # Starts with "s1": no other token's MAC input does, so a stamp stands in for nothing else.
    return hmac.new(secret, f"{_STAMP_VERSION}\x00stamp\x00{moment}".encode(), hashlib.sha256).digest()[:18]


def _link_mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, _LINK_VERSION.encode() + b"\x00link\x00" + payload, hashlib.sha256).digest()[:18]


def read_token(token: str, secrets_: Sequence[bytes], purpose: str = "unsubscribe") -> Claim | None:
    """What a token names, if one of `secrets_` (current first) signed it for `purpose`; None for
    anything forged, tampered, malformed or made for the other purpose."""
    if purpose not in _PURPOSES:
        return None
    current = _CURRENT.fullmatch(token)
    if current:
        token_id, mac = current.groups()
        if _b64(_unb64(token_id)) != token_id:  # spare bits in the last character: not our spelling
            return None
        for n, secret in enumerate(secrets_):
            if hmac.compare_digest(mac, _mac(secret, purpose, token_id)):
                return Claim("id", token_id, rotated=n > 0)
        return None
    return _read_legacy(token, secrets_, purpose)


def _read_legacy(token: str, secrets_: Sequence[bytes], purpose: str) -> Claim | None:
    if not _LEGACY.fullmatch(token):
        return None
    payload_b64, mac_b64 = token.split(".")
    try:
        payload, mac = _unb64(payload_b64), _unb64(mac_b64)
    except (ValueError, TypeError):
        return None
    # base64 lets several spellings decode alike (spare bits in the last character): only ours counts
    if _b64(payload) != payload_b64 or _b64(mac) != mac_b64:
        return None
    for n, secret in enumerate(secrets_):
        if hmac.compare_digest(mac, _legacy_mac(secret, purpose, payload)):
            try:
                address = payload.decode("utf-8")
            except UnicodeDecodeError:
                return None
            return Claim("address", address, rotated=n > 0) if "@" in address else None
    return None
