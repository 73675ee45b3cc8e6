"""SendGrid's Event Webhook: is a request SendGrid's, and what does each of its events mean.

SendGrid signs `timestamp + raw body` with ECDSA P-256/SHA-256 and sends the signature and the
timestamp in two headers; the public key to check them with is shown in its settings. A verified
body is a JSON array of flat event objects, each flattening the custom_args our transport sent
(`edition`, `subscriber`) into itself. Two things come out of an event:

- a change to the subscriber state (`changes_for`): bounces, address drops, spam reports,
  unsubscribes and the asm group's (un)subscribes; delivery and engagement events change nothing;
- an event kept for reports (`from_sendgrid`, an `events.Event`): delivery and engagement events,
  and the opt-out ones, when they belong to mail digest sent.

The Starlette view that receives them (limits, answers, recording) is `digest serve`'s
(web/public.py); this module holds only what is SendGrid's.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from digest.errors import ConfigError
from digest.events import Event
from digest.suppressions import Change, Reason

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
#: SendGrid drop reasons that are about the address (others are about one message's content).
ADDRESS_DROPS: dict[str, Reason] = {
    "bounced address": "bounced",
    "unsubscribed address": "unsubscribed",
    "spam reporting address": "complained",
    "invalid": "invalid",
}
#: Delivery and engagement events kept (the opt-out ones too: reports attribute them to editions).
KINDS = frozenset(
    {
        "processed",
        "delivered",
        "deferred",
        "bounce",
        "dropped",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    }
)
#: Longest value kept from an event field (they come from SendGrid, but are still input).
_MAX_ID = 200
_MAX_URL = 2000
#: The Event Webhook's verification key (`digest serve`'s settings hold one).
WebhookKey = ec.EllipticCurvePublicKey


# ---------------------------------------------------------------- is it SendGrid's


def load_webhook_key(env_name: str, environ: Mapping[str, str] | None = None) -> ec.EllipticCurvePublicKey | None:
    """The Event Webhook's public key from the environment, or None when unset.

    SendGrid shows it as base64 DER (a PEM body without the armour); a full PEM is accepted too.
    A malformed key stops the server at start: a webhook that can never verify would silently
    drop every bounce and complaint.
    """
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    value = (environ if environ is not None else os.environ).get(env_name, "").strip()
    if not value:
        return None
    try:
        if value.startswith("-----BEGIN"):
            key = load_pem_public_key(value.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode("".join(value.split()), validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise ConfigError(f"environment variable {env_name} does not hold an EC public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"environment variable {env_name} does not hold an EC public key")
    return key


def verify_signature(key: ec.EllipticCurvePublicKey, body: bytes, signature: str, timestamp: str) -> bool:
    """SendGrid signs `timestamp + raw body` with ECDSA P-256/SHA-256 (base64 DER signature).

    Checked by the sendgrid package's own helper; it lets malformed input raise, so that is
    caught here: anything that does not verify is simply not verified.
    """
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        payload = body.decode("utf-8")  # the helper signs text; SendGrid's bodies are UTF-8 JSON
        return bool(EventWebhook().verify_signature(payload, signature, timestamp, public_key=key))
    except (binascii.Error, ValueError, TypeError, UnicodeError):
        return False


# ---------------------------------------------------------------- what its events mean


def changes_for(event: dict[str, Any], asm_group_id: int) -> list[Change]:
    """What one SendGrid event means for the state (nothing, for delivery and engagement events)."""
    email = event.get("email")
    kind = event.get("event")
    if not isinstance(email, str) or not email or "@" not in email:
        return []
    if kind == "bounce":
        # A "blocked" bounce is temporary (the receiving server refused for now): not the address's fault.
        if event.get("type") == "blocked":
            return []
        return [Change(email, "opt_out", "bounced", "webhook", str(event.get("reason", "")))]
    if kind == "dropped":
        reason = ADDRESS_DROPS.get(str(event.get("reason", "")).strip().casefold())
        return [Change(email, "opt_out", reason, "webhook", str(event.get("reason")))] if reason else []
    if kind == "spamreport":
        return [Change(email, "opt_out", "complained", "webhook", "spam report")]
    if kind == "unsubscribe":
        return [Change(email, "opt_out", "unsubscribed", "webhook", "SendGrid unsubscribe")]
    if kind in ("group_unsubscribe", "group_resubscribe"):
        group = event.get("asm_group_id")
        # Only our own group's events count. Another list's group on the same account is none of
        # our business, and with no group configured (0) no group is ours: every one is ignored.
        if not asm_group_id or group != asm_group_id:
            return []
        if kind == "group_unsubscribe":
            return [Change(email, "opt_out", "group_unsubscribed", "webhook", f"asm group {group}")]
        return [Change(email, "lift", "group_unsubscribed", "webhook")]
    return []


def usable_events(events: Sequence[Any]) -> list[dict[str, Any]]:
    """Events with an id, in the order they happened."""
    usable = [e for e in events if isinstance(e, dict) and isinstance(e.get("sg_event_id"), str)]
    usable.sort(key=lambda e: e["timestamp"] if isinstance(e.get("timestamp"), int) else 0)
    return usable


def event_batch(events: Sequence[Any], asm_group_id: int) -> list[tuple[str, str, list[Change]]]:
    """(event id, event, changes) in the order they happened, so an unsubscribe followed by a
    resubscribe in one batch ends resubscribed: what `SubscriberState.apply_events` takes."""
    return [(e["sg_event_id"], str(e.get("event", "")), changes_for(e, asm_group_id)) for e in usable_events(events)]


def _text(value: Any, limit: int = _MAX_ID) -> str:
    return value[:limit] if isinstance(value, str) else ""


def from_sendgrid(event: Mapping[str, Any]) -> Event | None:
    """The event to keep from one webhook event, or None (not ours, or a kind not kept).

    SendGrid flattens a message's custom_args into each of its events: `edition` and `subscriber`
    are the ones our transport sends.
    """
    kind = event.get("event")
    event_id = _text(event.get("sg_event_id"))
    edition = _text(event.get("edition"))
    if kind not in KINDS or not event_id or not edition:
        return None
    subscriber = _text(event.get("subscriber")) or _text(event.get("email"), 320).casefold()
    if not subscriber:
        return None
    timestamp = event.get("timestamp")
    at = timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) and timestamp >= 0 else 0
    message_id = _text(event.get("sg_message_id")).split(".", 1)[0]
    detail = ""
    if kind == "bounce":
        detail = f"{_text(event.get('type'), 20) or 'bounce'} {_text(event.get('status'), 20)}".strip()
    elif kind == "dropped":
        detail = _text(event.get("reason"), 100)
    return Event(
        event_id=event_id,
        source="sendgrid",
        kind=str(kind),
        edition=edition,
        subscriber=subscriber,
        at=at,
        message_id=message_id,
        machine=kind == "open" and event.get("sg_machine_open") is True,
        url=_text(event.get("url"), _MAX_URL) if kind == "click" else "",
        detail=detail,
    )


def kept_events(events: Sequence[Any]) -> list[Event]:
    """The events to keep for reports, in the order they happened."""
    return [e for e in map(from_sendgrid, usable_events(events)) if e is not None]
