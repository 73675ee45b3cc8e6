"""What subscribers told us after the list was written: opt-outs, suppressions, preference changes.

The state is a store of its own (digest/store/): on SQLite its own file, `state/subscribers.sqlite3`,
not the send ledger's; on PostgreSQL its own tables beside the ledger's.

- `digest serve` is a long-lived public process; it needs to write opt-outs but has no business
  holding the ledger, whose writes take the lock up front (BEGIN IMMEDIATE) for a whole claim.
  Separate files mean a burst of webhook events never makes a send run wait, or the reverse.
- The server can be given write access to this file only (least privilege), and the file can be
  backed up or inspected on its own: it is the record of consent withdrawals.

The cadence a subscriber picks on the preferences page (daily, weekly, monthly) has a table of its
own, `frequencies`, rather than a column of `preferences`.

subscribers.csv is never rewritten. `effective_subscribers` lays this state over the list when a
run loads it (build, check, preview and send all call it through `open_run`), and
`digest subscribers export` writes the merged list for whoever wants it back in their CSV.

Opt-outs are keyed by (subscriber, reason): an address can be both unsubscribed and bounced, and
lifting one (a SendGrid group resubscribe) must not lift the other. Rows that came from
`digest sync` are a mirror of SendGrid's lists, replaced as a whole on every sync.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol

from digest.errors import LedgerError
from digest.models import Subscriber
from digest.subscribers import SubscriberList

STATE_NAME = "subscribers.sqlite3"

Reason = Literal["unsubscribed", "group_unsubscribed", "bounced", "complained", "invalid", "suppressed"]
#: The subscriber status a reason turns into (the statuses a list may carry, see subscribers.py).
STATUS_FOR: Mapping[str, str] = {
    "unsubscribed": "unsubscribed",
    "group_unsubscribed": "unsubscribed",
    "bounced": "bounced",
    "complained": "complained",
    "invalid": "cleaned",
    "suppressed": "cleaned",
}
#: When several reasons apply, the status shown is the most serious one.
_SEVERITY = ("complained", "bounced", "invalid", "suppressed", "unsubscribed", "group_unsubscribed")


class StateError(LedgerError):
    """The subscriber state database is unusable."""


@dataclass(frozen=True)
class OptOut:
    """One reason not to send to an address, and where we learned it."""

    subscriber: str  #: Subscriber.id (the case-folded address)
    email: str
    reason: str
    source: str  #: e.g. "one-click", "unsubscribe page", "preferences page", "webhook", "sync:bounces"
    detail: str
    at: datetime


@dataclass(frozen=True)
class Preference:
    """A subscriber's own choice of topics (overrides the list's) and whether they paused."""

    subscriber: str
    email: str
    tags: tuple[str, ...] | None  #: None: the list's (a pause alone must not freeze the list's topics)
    categories: tuple[str, ...] | None
    paused: bool
    source: str
    at: datetime


@dataclass(frozen=True)
class Change:
    """One change to apply to the state: what the web app and the webhook produce."""

    email: str
    kind: Literal["opt_out", "lift"]
    reason: str
    source: str
    detail: str = ""


def terms(stored: str | None) -> tuple[str, ...] | None:
    return None if stored is None else tuple(json.loads(stored))


class SubscriberState(Protocol):
    """The state: SqliteSubscriberState and PgSubscriberState (digest/store/) implement it."""

    def optouts(self) -> dict[str, tuple[OptOut, ...]]: ...

    def preferences(self) -> dict[str, Preference]: ...

    def frequencies(self, subscriber: str | None = None) -> dict[str, str]: ...

    def overlay_for(self, subscriber: str) -> Overlay: ...

    def count_optouts(self) -> int: ...

    def token_ids(self, subscribers: Sequence[str], *, create: bool = True) -> dict[str, str]: ...

    def subscriber_for_token_id(self, token_id: str) -> str | None: ...

    def first_token_id_at(self) -> datetime | None: ...

    def opt_out(self, email: str, reason: Reason, source: str, detail: str = "") -> None: ...

    def set_topics(self, email: str, *, tags: Sequence[str], categories: Sequence[str], source: str) -> None: ...

    def set_paused(self, email: str, paused: bool, *, source: str) -> None: ...

    def set_frequency(self, email: str, frequency: str, *, source: str) -> None: ...

    def apply_events(self, events: Iterable[tuple[str, str, Sequence[Change]]]) -> int: ...

    def replace_synced(self, lists: Mapping[str, Sequence[tuple[str, Reason, str]]]) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> SubscriberState: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class Overlay:
    """A snapshot of the state, read once per run."""

    optouts: Mapping[str, tuple[OptOut, ...]]
    preferences: Mapping[str, Preference]
    frequencies: Mapping[str, str] = field(default_factory=dict)  #: cadences chosen on the preferences page


EMPTY = Overlay({}, {})


def optout_status(optouts: Sequence[OptOut]) -> str:
    reasons = {o.reason for o in optouts}
    worst = next(r for r in _SEVERITY if r in reasons)
    return STATUS_FOR[worst]


def apply_overlay(subscriber: Subscriber, overlay: Overlay) -> Subscriber:
    """One subscriber as the state says they are now."""
    pref = overlay.preferences.get(subscriber.id)
    if pref is not None:
        if pref.tags is not None and pref.categories is not None:
            subscriber = replace(subscriber, tags=pref.tags, categories=pref.categories)
        if pref.paused and subscriber.active:
            subscriber = replace(subscriber, status="paused")
    chosen = overlay.frequencies.get(subscriber.id)
    if chosen is not None and chosen != subscriber.frequency:
        subscriber = replace(subscriber, frequency=chosen)
    optouts = overlay.optouts.get(subscriber.id)
    # An opt-out always wins over the list: a CSV re-exported from elsewhere that still says
    # "active" must not undo an unsubscribe (that is how others re-mail people who left).
    if optouts and subscriber.status in ("active", "paused", "pending"):
        subscriber = replace(subscriber, status=optout_status(optouts))
    return subscriber


def effective_subscribers(subscribers: SubscriberList, overlay: Overlay) -> SubscriberList:
    """The list with the state laid over it: opt-outs, pauses, topic and cadence changes."""
    if not overlay.optouts and not overlay.preferences and not overlay.frequencies:
        return subscribers
    return replace(subscribers, subscribers=tuple(apply_overlay(s, overlay) for s in subscribers.subscribers))
