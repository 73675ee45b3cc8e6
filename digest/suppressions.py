"""What subscribers told us after the list was written: opt-outs, suppressions, preference changes.

The state lives in its own SQLite file, `state/subscribers.sqlite3`, not in the send ledger:

- `digest serve` is a long-lived public process; it needs to write opt-outs but has no business
  holding the ledger, whose writes take the lock up front (BEGIN IMMEDIATE) for a whole claim.
  Separate files mean a burst of webhook events never makes a send run wait, or the reverse.
- The server can be given write access to this file only (least privilege), and the file can be
  backed up or inspected on its own: it is the record of consent withdrawals.

The cadence a subscriber picks on the preferences page (daily, weekly, monthly) has a table of its
own, `frequencies`, rather than a column of `preferences`: a state file from before cadences gains
the table when it is next opened, with no migration of rows that exist.

subscribers.csv is never rewritten. `effective_subscribers` lays this state over the list when a
run loads it (build, check, preview and send all call it through `open_run`), and
`digest subscribers export` writes the merged list for whoever wants it back in their CSV.

Opt-outs are keyed by (subscriber, reason): an address can be both unsubscribed and bounced, and
lifting one (a SendGrid group resubscribe) must not lift the other. Rows that came from
`digest sync` are a mirror of SendGrid's lists, replaced as a whole on every sync.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from digest.db import PAIRING_SCHEMA, Transaction, connect, explain, now_stamp, read_pairing, write_pairing
from digest.errors import DigestError, LedgerError
from digest.models import Subscriber
from digest.subscribers import SubscriberList, load_subscribers, write_list

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

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS optouts (
    subscriber TEXT NOT NULL,
    email      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    source     TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    at         TEXT NOT NULL,
    PRIMARY KEY (subscriber, reason, source)
);
CREATE TABLE IF NOT EXISTS preferences (
    subscriber TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    tags       TEXT,
    categories TEXT,
    paused     INTEGER NOT NULL DEFAULT 0,
    source     TEXT NOT NULL,
    at         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS frequencies (
    subscriber TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    frequency  TEXT NOT NULL,
    source     TEXT NOT NULL,
    at         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_events (
    event_id    TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS token_ids (
    token_id   TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
"""
    + PAIRING_SCHEMA
)

#: Rows per `IN (...)` query: well under SQLite's smallest limit on bound parameters (999).
_CHUNK = 500


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


def _terms(stored: str | None) -> tuple[str, ...] | None:
    return None if stored is None else tuple(json.loads(stored))


class SubscriberState:
    """The state database. Several processes may use it at once (WAL; writes are short)."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0):
        self.path = path
        try:
            # threads: the public app's worker threads share one connection
            self._db = connect(path, _SCHEMA, busy_timeout=busy_timeout, threads=True)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"{path}: cannot open the subscriber state: {explain(exc)}") from None

    def __repr__(self) -> str:
        return f"SubscriberState({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SubscriberState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading

    def optouts(self) -> dict[str, tuple[OptOut, ...]]:
        out: dict[str, list[OptOut]] = {}
        cur = self._db.execute("SELECT subscriber, email, reason, source, detail, at FROM optouts ORDER BY at")
        for sub, email, reason, source, detail, at in cur:
            out.setdefault(sub, []).append(OptOut(sub, email, reason, source, detail, datetime.fromisoformat(at)))
        return {k: tuple(v) for k, v in out.items()}

    def preferences(self) -> dict[str, Preference]:
        cur = self._db.execute("SELECT subscriber, email, tags, categories, paused, source, at FROM preferences")
        return {
            sub: Preference(sub, email, _terms(tags), _terms(cats), bool(paused), source, datetime.fromisoformat(at))
            for sub, email, tags, cats, paused, source, at in cur
        }

    def frequencies(self, subscriber: str | None = None) -> dict[str, str]:
        """Subscriber -> the cadence they chose on the preferences page (all, or one's)."""
        sql = "SELECT subscriber, frequency FROM frequencies"
        args: tuple[str, ...] = ()
        if subscriber is not None:
            sql, args = sql + " WHERE subscriber = ?", (subscriber,)
        try:
            return dict(self._db.execute(sql, args).fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a state file from before cadences, opened read-only
                return {}
            raise

    def overlay_for(self, subscriber: str) -> Overlay:
        """One subscriber's rows only (primary-key lookups): what the public app reads per request."""
        optouts = tuple(
            OptOut(sub, email, reason, source, detail, datetime.fromisoformat(at))
            for sub, email, reason, source, detail, at in self._db.execute(
                "SELECT subscriber, email, reason, source, detail, at FROM optouts WHERE subscriber = ? ORDER BY at",
                (subscriber,),
            )
        )
        row = self._db.execute(
            "SELECT subscriber, email, tags, categories, paused, source, at FROM preferences WHERE subscriber = ?",
            (subscriber,),
        ).fetchone()
        preferences = {}
        if row is not None:
            sub, email, tags, cats, paused, source, at = row
            preferences[sub] = Preference(
                sub, email, _terms(tags), _terms(cats), bool(paused), source, datetime.fromisoformat(at)
            )
        return Overlay({subscriber: optouts} if optouts else {}, preferences, self.frequencies(subscriber))

    # ---- opaque link ids (see tokens.py)

    def token_ids(self, subscribers: Sequence[str], *, create: bool = True) -> dict[str, str]:
        """Subscriber id (the case-folded address) -> its opaque link id, for many at once.

        Ids are made the first time a subscriber needs one and kept for good: every link sent
        since names that id. All the missing ones of a call are made in ONE transaction, so
        minting for a whole list is one write, not one per subscriber. Two processes minting at
        once (a build and a send) agree: the first writer's id wins and both return it.
        `create=False` only reads (a preview or a check writes nothing).
        """
        wanted = list(dict.fromkeys(subscribers))
        found = self._token_ids(wanted)
        missing = [s for s in wanted if s not in found]
        if not missing or not create:
            return found
        from digest.tokens import new_token_id

        at = now_stamp("seconds")
        with self._transaction():
            self._db.executemany(
                "INSERT INTO token_ids (token_id, subscriber, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                ((new_token_id(), sub, at) for sub in missing),
            )
        found.update(self._token_ids(missing))
        # Only a collision of two random 128-bit ids could leave one out; it gets a fresh id.
        return found if len(found) == len(wanted) else self.token_ids(wanted)

    def _token_ids(self, subscribers: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(subscribers), _CHUNK):
            chunk = subscribers[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            out.update(
                self._db.execute(f"SELECT subscriber, token_id FROM token_ids WHERE subscriber IN ({marks})", chunk)
            )
        return out

    def subscriber_for_token_id(self, token_id: str) -> str | None:
        """The subscriber id an opaque link id was made for, or None."""
        row = self._db.execute("SELECT subscriber FROM token_ids WHERE token_id = ?", (token_id,)).fetchone()
        return None if row is None else str(row[0])

    def first_token_id_at(self) -> datetime | None:
        """When the first opaque id was made: the moment links stopped carrying addresses, from
        which the transition period for address-carrying links is counted."""
        (at,) = self._db.execute("SELECT min(created_at) FROM token_ids").fetchone()
        return None if at is None else datetime.fromisoformat(at)

    def pairing(self) -> dict[str, str]:
        """The rows by which this state and the send ledger know each other (statefiles.py)."""
        return read_pairing(self._db)

    def set_pairing(self, values: Mapping[str, object]) -> None:
        with self._transaction():
            write_pairing(self._db, values)

    #: What a restore keeps from the state file it replaces: rows never to be forgotten (an
    #: opt-out; the opaque id that links already in inboxes name), with their columns.
    _KEPT_ON_RESTORE = {
        "optouts": "subscriber, email, reason, source, detail, at",
        "token_ids": "token_id, subscriber, created_at",
    }

    def merge_kept_rows_from(self, other: Path) -> dict[str, int]:
        """Copy in the opt-outs and link ids another state file holds and this one lacks; returns
        how many of each. (A restore keeps what was recorded after its backup.)"""
        added: dict[str, int] = {}
        self._db.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            with self._transaction():
                for table, columns in self._KEPT_ON_RESTORE.items():
                    if not self._db.execute(
                        "SELECT 1 FROM other.sqlite_master WHERE type = 'table' AND name = ?", (table,)
                    ).fetchone():
                        continue
                    before = self._db.total_changes
                    # table and column names are ours; OR IGNORE: a row this file already has wins
                    self._db.execute(f"INSERT OR IGNORE INTO {table} ({columns}) SELECT {columns} FROM other.{table}")
                    added[table] = self._db.total_changes - before
        finally:
            self._db.execute("DETACH DATABASE other")
        return added

    def count_optouts(self) -> int:
        """Addresses with at least one opt-out."""
        return int(self._db.execute("SELECT COUNT(DISTINCT subscriber) FROM optouts").fetchone()[0])

    # ---- writing

    def opt_out(self, email: str, reason: Reason, source: str, detail: str = "") -> None:
        with self._transaction():
            self._opt_out(email, reason, source, detail)

    def set_topics(self, email: str, *, tags: Sequence[str], categories: Sequence[str], source: str) -> None:
        """Replace the subscriber's topics (the list's are no longer used for them)."""
        self._upsert_preference(email, source, tags=json.dumps(list(tags)), categories=json.dumps(list(categories)))

    def set_frequency(self, email: str, frequency: str, *, source: str) -> None:
        """Record the cadence a subscriber chose (overrides the list's `frequency`)."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO frequencies (subscriber, email, frequency, source, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (subscriber) DO UPDATE SET email = excluded.email, frequency = excluded.frequency,"
                " source = excluded.source, at = excluded.at",
                (email.casefold(), email, frequency, source, now_stamp("seconds")),
            )

    def set_paused(self, email: str, paused: bool, *, source: str) -> None:
        self._upsert_preference(email, source, paused=int(paused))

    def _upsert_preference(self, email: str, source: str, **values: object) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO preferences (subscriber, email, paused, source, at) VALUES (?, ?, 0, ?, ?)"
                " ON CONFLICT (subscriber) DO UPDATE SET source = excluded.source, at = excluded.at",
                (email.casefold(), email, source, now_stamp("seconds")),
            )
            sets = ", ".join(f"{column} = ?" for column in values)  # column names are ours, not input
            self._db.execute(
                f"UPDATE preferences SET {sets} WHERE subscriber = ?", (*values.values(), email.casefold())
            )

    def apply_events(self, events: Iterable[tuple[str, str, Sequence[Change]]]) -> int:
        """Apply webhook events (event id, event name, changes) once each; returns how many were new.

        The event ids are recorded in the same transaction as their changes, so a repeat of an
        event (SendGrid delivers at least once) is a no-op even after a crash between the two.
        """
        applied = 0
        with self._transaction():
            for event_id, event, changes in events:
                cur = self._db.execute(
                    "INSERT INTO webhook_events (event_id, event, received_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (event_id) DO NOTHING",
                    (event_id, event, now_stamp("seconds")),
                )
                if cur.rowcount == 0:
                    continue
                applied += 1
                for change in changes:
                    if change.kind == "opt_out":
                        self._opt_out(change.email, change.reason, change.source, change.detail)
                    else:
                        self._db.execute(
                            "DELETE FROM optouts WHERE subscriber = ? AND reason = ?",
                            (change.email.casefold(), change.reason),
                        )
        return applied

    def replace_synced(self, lists: Mapping[str, Sequence[tuple[str, Reason, str]]]) -> None:
        """Mirror SendGrid's suppression lists: each list's rows replaced by (email, reason, detail)."""
        with self._transaction():
            for name, entries in lists.items():
                source = f"sync:{name}"
                self._db.execute("DELETE FROM optouts WHERE source = ?", (source,))
                for email, reason, detail in entries:
                    self._opt_out(email, reason, source, detail)

    def _opt_out(self, email: str, reason: str, source: str, detail: str) -> None:
        # A repeat keeps the first moment: that is when consent was withdrawn.
        self._db.execute(
            "INSERT INTO optouts (subscriber, email, reason, source, detail, at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (subscriber, reason, source) DO NOTHING",
            (email.casefold(), email, reason, source, detail[:500], now_stamp("seconds")),
        )

    def _transaction(self) -> Transaction:
        return Transaction(self._db, self.path, StateError, "the subscriber state")


def open_state(state_dir: Path) -> SubscriberState:
    return SubscriberState(state_dir / STATE_NAME)


def open_existing_state(state_dir: Path) -> SubscriberState | None:
    """The state if there is one; None before anything was ever recorded (a read must not create
    the state folder, or a preview, a check or a forged link would)."""
    return open_state(state_dir) if (state_dir / STATE_NAME).is_file() else None


@dataclass(frozen=True)
class Overlay:
    """A snapshot of the state, read once per run."""

    optouts: Mapping[str, tuple[OptOut, ...]]
    preferences: Mapping[str, Preference]
    frequencies: Mapping[str, str] = field(default_factory=dict)  #: cadences chosen on the preferences page


EMPTY = Overlay({}, {})


def read_overlay(state_dir: Path) -> Overlay:
    """The state as of now; empty when there is none yet (reading must not create the state folder,
    or a dry run or a preview would)."""
    path = state_dir / STATE_NAME
    # A zero-byte file is left as it is (opening it would make it an empty database): it is a
    # lost state, which `digest send` refuses (statefiles.py) and must be able to tell apart.
    if not path.is_file() or path.stat().st_size == 0:
        return EMPTY
    with open_state(state_dir) as state:
        return Overlay(state.optouts(), state.preferences(), state.frequencies())


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


def load_effective(subscribers_path: Path, state_dir: Path) -> SubscriberList:
    return effective_subscribers(load_subscribers(subscribers_path), read_overlay(state_dir))


# ---------------------------------------------------------------- digest subscribers export


@dataclass(frozen=True)
class ExportReport:
    written: int
    changed: int  #: rows that differ from the list (status or topics)
    skipped_rows: int  #: invalid rows of the list, not exported


def export_subscribers(subscribers_path: Path, state_dir: Path, out: Path | None) -> tuple[ExportReport, str]:
    """The merged list as CSV; written to `out`, or returned as text when `out` is None."""
    if out is not None and out.resolve() == subscribers_path.resolve():
        raise DigestError(f"{out}: refusing to overwrite the subscriber list; export to another file")
    original = load_subscribers(subscribers_path)
    merged = effective_subscribers(original, read_overlay(state_dir))
    buffer = io.StringIO()
    write_list(merged.subscribers, buffer)  # formula-looking cells neutralised (digest.csvfile)
    changed = sum(1 for a, b in zip(original.subscribers, merged.subscribers, strict=True) if a != b)
    skipped = sum(1 for p in original.problems if p.severity == "error")
    report = ExportReport(len(merged.subscribers), changed, skipped)
    if out is None:
        return report, buffer.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(buffer.getvalue(), encoding="utf-8")
    return report, ""
