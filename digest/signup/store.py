"""Signups, consent records and forgotten addresses, kept in the subscriber state.

Three tables beside the state's opt-outs and preferences (schema.py's state step 4; on SQLite in
`subscribers.sqlite3`, on PostgreSQL beside the state's other tables):

- `signups`: one row per address that signed up: `pending` until the double opt-in completes,
  then `active`. Pending rows never reach a send (merge.py reads active rows only) and are purged
  after `signup.pending_days`.
- `consents`: one row per request for a confirmation email, and per consent given another way
  (the preferences page, an import). The row *is* the confirmation: its random id is what the
  signed link names, it expires (`expires_at`) and confirming it is one conditional UPDATE, so a
  link works once however many requests race. It keeps what was asked (name, topics, cadence),
  when, from where (form, api, import ...), the consent text shown, and the client address only
  when `signup.keep_ip_days` says so (erased after that many days).
- `forgotten`: a one-way hash of each address erased by `digest subscribers forget`, with the most
  serious suppression it carried, so the address is never re-imported or re-added by accident.

The SQL is written once for both engines with `?` placeholders, over `_read()` / `_write()` /
`_erasing()` sessions, the shape of the state's other stores: the engines (store/sqlite_signups.py,
store/pg_signups.py) supply the sessions, and PostgreSQL a lock per address.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from digest.models import Subscriber

#: Opt-out reasons a new consent lifts: the person's own unsubscribes. Bounces, complaints and
#: invalid addresses are the mailbox provider's word and are never lifted by a form.
LIFTABLE = ("unsubscribed", "group_unsubscribed")
#: Statuses of a list row that no signup overrides (the list's own bounces and complaints).
BLOCKING_STATUSES = frozenset({"bounced", "complained", "cleaned"})
#: The state's tables whose rows name a subscriber: `forget` deletes theirs (the subscribers
#: table is the list itself when `[subscribers] source = "database"`).
ERASED_TABLES = ("signups", "consents", "optouts", "preferences", "frequencies", "token_ids", "subscribers")
#: Where a request for a confirmation email may come from (these count against the daily limit).
REQUEST_SOURCES = ("form", "api")


_SIGNUP_COLUMNS = (
    "subscriber, email, name, tags, categories, cadence, status, source, listed_status, created_at, confirmed_at"
)
_CONSENT_COLUMNS = (
    "consent_id, subscriber, email, source, consent_text, ip, name, tags, categories, cadence, at, expires_at,"
    " confirmed_at"
)


def address_key(email: str) -> str:
    """The one-way key a forgotten address is kept under: SHA-256 of the case-folded address.

    Unsalted on purpose: it must match the same address in any later list or export without a
    secret that a rotation could lose. (A hash of an address can be confirmed by whoever already
    has the address; it cannot be read back into one.)"""
    return hashlib.sha256(b"newsletter-digest forgotten\x00" + email.casefold().encode("utf-8")).hexdigest()


def stamp(moment: datetime) -> str:
    """A moment as stored: UTC ISO 8601 to the second (text order is time order)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _terms(text: str) -> tuple[str, ...]:
    value = json.loads(text) if text else []
    return tuple(str(t) for t in value) if isinstance(value, list) else ()


@dataclass(frozen=True)
class SignupRequest:
    """What a form or API call asks for: validated and cleaned before it gets here."""

    email: str
    name: str = ""
    tags: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    cadence: str = ""
    source: str = "form"  #: "form" or "api"
    consent_text: str = ""
    ip: str = ""  #: "" when not recorded (`signup.keep_ip_days = 0`)

    @property
    def subscriber(self) -> str:
        return self.email.casefold()


@dataclass(frozen=True)
class Consent:
    """One consent record: a request awaiting confirmation, or a consent given."""

    consent_id: str
    subscriber: str
    email: str
    source: str  #: form, api, preferences page, import:<tool>
    consent_text: str
    ip: str | None
    name: str
    tags: tuple[str, ...]
    categories: tuple[str, ...]
    cadence: str
    at: datetime
    expires_at: datetime | None
    confirmed_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.confirmed_at is not None:
            return "confirmed"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "awaiting confirmation"


@dataclass(frozen=True)
class Signup:
    """An address that signed up, as the state holds it."""

    subscriber: str
    email: str
    name: str
    tags: tuple[str, ...]
    categories: tuple[str, ...]
    cadence: str
    status: str  #: pending or active
    source: str
    listed_status: str  #: the list row's status when it was confirmed ('' when not on the list)
    created_at: datetime
    confirmed_at: datetime | None

    def as_subscriber(self) -> Subscriber:
        return Subscriber(
            email=self.email,
            name=self.name,
            tags=self.tags,
            categories=self.categories,
            status="active" if self.status == "active" else "pending",
            file=SIGNUPS_SOURCE,
            subscribed_at=self.confirmed_at,
            frequency=self.cadence or None,
        )


#: What a signup's subscriber record names as the list it came from (in messages and reports).
SIGNUPS_SOURCE = "signups"


def _signup(row: Sequence[Any]) -> Signup:
    sub, email, name, tags, cats, cadence, status, source, listed, created, confirmed = row
    return Signup(
        sub,
        email,
        name,
        _terms(tags),
        _terms(cats),
        cadence,
        status,
        source,
        listed,
        datetime.fromisoformat(created),
        _moment(confirmed),
    )


def _consent(row: Sequence[Any]) -> Consent:
    cid, sub, email, source, text, ip, name, tags, cats, cadence, at, expires, confirmed = row
    return Consent(
        cid,
        sub,
        email,
        source,
        text,
        ip,
        name,
        _terms(tags),
        _terms(cats),
        cadence,
        datetime.fromisoformat(at),
        _moment(expires),
        _moment(confirmed),
    )


@dataclass(frozen=True)
class PurgeCounts:
    pending: int = 0  #: unconfirmed signups removed
    requests: int = 0  #: unconfirmed consent records removed
    addresses: int = 0  #: client addresses erased from consent records

    def __str__(self) -> str:
        return (
            f"{self.pending} pending signup(s) and {self.requests} unconfirmed request(s) purged, "
            f"{self.addresses} client address(es) erased"
        )


class SignupStore(Protocol):
    """What the signup flow, the merged list and `subscribers show|forget` need."""

    def add_request(
        self,
        request: SignupRequest,
        consent_id: str,
        at: datetime,
        expires_at: datetime,
        *,
        limit: int,
        since: datetime,
    ) -> bool: ...

    def requests_since(self, subscriber: str, since: datetime) -> int: ...

    def cancel(self, consent_id: str, at: datetime) -> Consent | None: ...

    def consent(self, consent_id: str) -> Consent | None: ...

    def confirm(self, consent_id: str, at: datetime, listed_status: str) -> Consent | None: ...

    def resubscribe(
        self, email: str, consent_id: str, at: datetime, *, source: str, consent_text: str, listed_status: str
    ) -> None: ...

    def record_consents(self, consents: Iterable[Consent]) -> int: ...

    def signup(self, subscriber: str) -> Signup | None: ...

    def signups(self, status: str = "active") -> list[Signup]: ...

    def consents_for(self, subscriber: str) -> list[Consent]: ...

    def latest_consents(self) -> dict[str, Consent]: ...

    def forgotten(self) -> dict[str, str]: ...

    def forgotten_reason(self, email: str) -> str | None: ...

    def forget(self, email: str, reason: str, at: datetime) -> dict[str, int]: ...

    def purge(self, *, pending_before: datetime, ip_before: datetime | None) -> PurgeCounts: ...

    def named(self) -> set[str]: ...

    def close(self) -> None: ...

    def __enter__(self) -> SignupStore: ...

    def __exit__(self, *exc: object) -> None: ...


class _Session(Protocol):
    def execute(self, sql: str, args: Sequence[object] = ()) -> Any: ...


class SqlSignupStore:
    """`SignupStore` in the SQL every engine shares, over `_read`/`_write` sessions."""

    def _read(self) -> AbstractContextManager[_Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[_Session]:
        raise NotImplementedError

    def _erasing(self) -> AbstractContextManager[_Session]:
        """A write whose deleted values must not linger in the engine's files (forget)."""
        raise NotImplementedError

    def _lock_address(self, db: _Session, subscriber: str) -> None:
        """Serialise requests for one address inside a write (the daily limit's count and insert).
        SQLite's writes are serial already (BEGIN IMMEDIATE); PostgreSQL takes a lock."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests and confirmations

    def add_request(
        self,
        request: SignupRequest,
        consent_id: str,
        at: datetime,
        expires_at: datetime,
        *,
        limit: int,
        since: datetime,
    ) -> bool:
        """A request for a confirmation email: its consent record, and a pending signup unless the
        address already has an active one (which a request never changes: only a confirmation
        does). False, and nothing written, when the address already had `limit` requests since
        `since` (counted inside the write, so concurrent requests cannot both slip under it)."""
        tags, cats = json.dumps(list(request.tags)), json.dumps(list(request.categories))
        marks = ",".join("?" * len(REQUEST_SOURCES))
        with self._write() as db:
            self._lock_address(db, request.subscriber)
            (count,) = db.execute(
                f"SELECT COUNT(*) FROM consents WHERE subscriber = ? AND at >= ? AND source IN ({marks})",
                (request.subscriber, stamp(since), *REQUEST_SOURCES),
            ).fetchone()
            if count >= limit:
                return False
            consent = Consent(
                consent_id,
                request.subscriber,
                request.email,
                request.source,
                request.consent_text,
                request.ip or None,
                request.name,
                request.tags,
                request.categories,
                request.cadence,
                at,
                expires_at,
                None,
            )
            self._insert_consent(db, consent)
            db.execute(
                f"INSERT INTO signups ({_SIGNUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, '', ?, NULL)"
                " ON CONFLICT (subscriber) DO UPDATE SET email = excluded.email, name = excluded.name,"
                " tags = excluded.tags, categories = excluded.categories, cadence = excluded.cadence,"
                " source = excluded.source, created_at = excluded.created_at WHERE signups.status = 'pending'",
                (
                    request.subscriber,
                    request.email,
                    request.name,
                    tags,
                    cats,
                    request.cadence,
                    request.source,
                    stamp(at),
                ),
            )
        return True

    def requests_since(self, subscriber: str, since: datetime) -> int:
        """Confirmation emails asked for this address since `since` (the per-address daily limit)."""
        marks = ",".join("?" * len(REQUEST_SOURCES))
        with self._read() as db:
            row = db.execute(
                f"SELECT COUNT(*) FROM consents WHERE subscriber = ? AND at >= ? AND source IN ({marks})",
                (subscriber, stamp(since), *REQUEST_SOURCES),
            ).fetchone()
        return int(row[0])

    def cancel(self, consent_id: str, at: datetime) -> Consent | None:
        """Withdraw an unconfirmed request (its link stops working) and drop the pending signup it
        made; None when there was nothing to cancel. The record stays, counted, until purged."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE consents SET expires_at = ? WHERE consent_id = ? AND confirmed_at IS NULL AND expires_at > ?",
                (stamp(at), consent_id, stamp(at)),
            )
            if cur.rowcount != 1:
                return None
            row = db.execute(f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE consent_id = ?", (consent_id,)).fetchone()
            db.execute("DELETE FROM signups WHERE subscriber = ? AND status = 'pending'", (row[1],))
        return _consent(row)

    def consent(self, consent_id: str) -> Consent | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE consent_id = ?", (consent_id,)).fetchone()
        return None if row is None else _consent(row)

    def confirm(self, consent_id: str, at: datetime, listed_status: str) -> Consent | None:
        """Complete a double opt-in, once: the record confirmed (if unconfirmed and unexpired, in
        one conditional UPDATE), the signup active with what was asked, the person's own
        unsubscribes lifted and the topics they chose made theirs. None when the link was used,
        expired or never made."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE consents SET confirmed_at = ? WHERE consent_id = ? AND confirmed_at IS NULL AND expires_at > ?",
                (stamp(at), consent_id, stamp(at)),
            )
            if cur.rowcount != 1:
                return None
            row = db.execute(f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE consent_id = ?", (consent_id,)).fetchone()
            consent = _consent(row)
            self._activate(db, consent, at, listed_status)
            # A new consent after an erasure is theirs to give; a kept bounce or complaint is not lifted.
            db.execute(
                "DELETE FROM forgotten WHERE address_key = ? AND reason = 'forgotten'", (address_key(consent.email),)
            )
            # Their topics now override the list's (a resubscriber's old list row included).
            db.execute(
                "INSERT INTO preferences (subscriber, email, tags, categories, paused, source, at)"
                " VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (subscriber) DO UPDATE SET tags = excluded.tags,"
                " categories = excluded.categories, paused = 0, source = excluded.source, at = excluded.at",
                (
                    consent.subscriber,
                    consent.email,
                    json.dumps(list(consent.tags)),
                    json.dumps(list(consent.categories)),
                    f"signup {consent.source}",
                    stamp(at),
                ),
            )
            if consent.cadence:  # the cadence they chose, as the preferences page records one
                db.execute(
                    "INSERT INTO frequencies (subscriber, email, frequency, source, at) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (subscriber) DO UPDATE SET email = excluded.email, frequency = excluded.frequency,"
                    " source = excluded.source, at = excluded.at",
                    (consent.subscriber, consent.email, consent.cadence, f"signup {consent.source}", stamp(at)),
                )
        return consent

    def resubscribe(
        self, email: str, consent_id: str, at: datetime, *, source: str, consent_text: str, listed_status: str
    ) -> None:
        """A consent given where the address is already proven (the preferences page's signed
        link): recorded as confirmed at once, the person's own unsubscribes lifted."""
        consent = Consent(consent_id, email.casefold(), email, source, consent_text, None, "", (), (), "", at, None, at)
        with self._write() as db:
            self._insert_consent(db, consent)
            current = db.execute(
                "SELECT name, tags, categories, cadence FROM signups WHERE subscriber = ?", (consent.subscriber,)
            ).fetchone()
            if current is not None:  # keep what they asked for when they first signed up
                name, tags, cats, cadence = current
                consent = replace(consent, name=name, tags=_terms(tags), categories=_terms(cats), cadence=cadence)
            self._activate(db, consent, at, listed_status)

    def _activate(self, db: _Session, consent: Consent, at: datetime, listed_status: str) -> None:
        db.execute(
            f"INSERT INTO signups ({_SIGNUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?)"
            " ON CONFLICT (subscriber) DO UPDATE SET email = excluded.email, name = excluded.name,"
            " tags = excluded.tags, categories = excluded.categories, cadence = excluded.cadence,"
            " status = 'active', source = excluded.source, listed_status = excluded.listed_status,"
            " confirmed_at = excluded.confirmed_at",
            (
                consent.subscriber,
                consent.email,
                consent.name,
                json.dumps(list(consent.tags)),
                json.dumps(list(consent.categories)),
                consent.cadence,
                consent.source,
                listed_status,
                stamp(consent.at),
                stamp(at),
            ),
        )
        marks = ",".join("?" * len(LIFTABLE))
        db.execute(f"DELETE FROM optouts WHERE subscriber = ? AND reason IN ({marks})", (consent.subscriber, *LIFTABLE))

    def record_consents(self, consents: Iterable[Consent]) -> int:
        """Consent records given elsewhere (an import's subscription times); a repeat id is kept once."""
        added = 0
        with self._write() as db:
            for consent in consents:
                added += self._insert_consent(db, consent)
        return added

    def _insert_consent(self, db: _Session, c: Consent) -> int:
        cur = db.execute(
            f"INSERT INTO consents ({_CONSENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (consent_id) DO NOTHING",
            (
                c.consent_id,
                c.subscriber,
                c.email,
                c.source,
                c.consent_text,
                c.ip,
                c.name,
                json.dumps(list(c.tags)),
                json.dumps(list(c.categories)),
                c.cadence,
                stamp(c.at),
                None if c.expires_at is None else stamp(c.expires_at),
                None if c.confirmed_at is None else stamp(c.confirmed_at),
            ),
        )
        return int(cur.rowcount)

    # ---- reading

    def signup(self, subscriber: str) -> Signup | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_SIGNUP_COLUMNS} FROM signups WHERE subscriber = ?", (subscriber,)).fetchone()
        return None if row is None else _signup(row)

    def signups(self, status: str = "active") -> list[Signup]:
        """Signups of one status, in the order they were confirmed (pending: requested)."""
        order = "confirmed_at, subscriber" if status == "active" else "created_at, subscriber"
        with self._read() as db:
            rows = db.execute(f"SELECT {_SIGNUP_COLUMNS} FROM signups WHERE status = ? ORDER BY {order}", (status,))
            return [_signup(r) for r in rows]

    def consents_for(self, subscriber: str) -> list[Consent]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE subscriber = ? ORDER BY at, consent_id", (subscriber,)
            )
            return [_consent(r) for r in rows]

    def latest_consents(self) -> dict[str, Consent]:
        """Each subscriber's most recent confirmed consent (what `digest subscribers export` adds)."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE confirmed_at IS NOT NULL"
                " ORDER BY subscriber, confirmed_at, consent_id"
            )
            return {c.subscriber: c for c in map(_consent, rows)}  # the last of each wins

    def forgotten(self) -> dict[str, str]:
        """Every forgotten address's key -> the reason kept with it."""
        with self._read() as db:
            return {str(k): str(r) for k, r in db.execute("SELECT address_key, reason FROM forgotten")}

    def forgotten_reason(self, email: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT reason FROM forgotten WHERE address_key = ?", (address_key(email),)).fetchone()
        return None if row is None else str(row[0])

    # ---- erasing

    def forget(self, email: str, reason: str, at: datetime) -> dict[str, int]:
        """Erase this address from the state's own tables, keeping only its hashed key and `reason`
        (the key first: an interrupted erasure still never lets the address back in)."""
        subscriber = email.casefold()
        erased: dict[str, int] = {}
        with self._erasing() as db:
            db.execute(
                "INSERT INTO forgotten (address_key, reason, at) VALUES (?, ?, ?)"
                " ON CONFLICT (address_key) DO UPDATE SET reason = excluded.reason",
                (address_key(email), reason, stamp(at)),
            )
            for table in ERASED_TABLES:
                # table names are ours, not input
                erased[table] = int(db.execute(f"DELETE FROM {table} WHERE subscriber = ?", (subscriber,)).rowcount)
        return erased

    def named(self) -> set[str]:
        """Every subscriber id the state's tables name (what `reapply_erasures` checks)."""
        found: set[str] = set()
        with self._read() as db:
            for table in (*ERASED_TABLES, "engagement_events"):
                found.update(str(r[0]) for r in db.execute(f"SELECT DISTINCT subscriber FROM {table}"))  # ours
        return found

    def purge(self, *, pending_before: datetime, ip_before: datetime | None) -> PurgeCounts:
        """Remove signups never confirmed and requests older than `pending_before`; erase client
        addresses recorded before `ip_before` (None: erase them all)."""
        with self._write() as db:
            pending = db.execute(
                "DELETE FROM signups WHERE status = 'pending' AND created_at < ?", (stamp(pending_before),)
            ).rowcount
            requests = db.execute(
                "DELETE FROM consents WHERE confirmed_at IS NULL AND at < ?", (stamp(pending_before),)
            ).rowcount
            if ip_before is None:
                addresses = db.execute("UPDATE consents SET ip = NULL WHERE ip IS NOT NULL").rowcount
            else:
                addresses = db.execute(
                    "UPDATE consents SET ip = NULL WHERE ip IS NOT NULL AND at < ?", (stamp(ip_before),)
                ).rowcount
        return PurgeCounts(int(pending), int(requests), int(addresses))
