"""The subscriber state and the subscribers table, written once in the SQL both engines share.

Everything here is standard SQL (`INSERT ... ON CONFLICT`, primary keys, `?` placeholders that the
PostgreSQL session turns into `%s`). The engines supply only sessions: `_read()` and `_write()`
(one transaction) over their own connection (sqlite_state.py) or a pooled one (pg_state.py).

Concurrency rests on constraints, never on read-then-write: a webhook event is new when its
INSERT into `webhook_events` (primary key `event_id`) inserts a row, so two `digest serve` replicas
given the same event apply it once; two runs minting a link id agree because the second INSERT
conflicts on `subscriber` and both read back the first one's id.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from digest.db import now_stamp
from digest.models import Subscriber
from digest.suppressions import Change, OptOut, Overlay, Preference, Reason, terms

#: Rows per `IN (...)` query: well under SQLite's smallest limit on bound parameters (999).
CHUNK = 500


class Session(Protocol):
    def execute(self, sql: str, args: Sequence[object] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> Any: ...


class SqlSubscriberState:
    """suppressions.SubscriberState over `_read`/`_write` sessions (see the engines)."""

    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]

    # ---- reading

    def optouts(self) -> dict[str, tuple[OptOut, ...]]:
        out: dict[str, list[OptOut]] = {}
        with self._read() as db:
            cur = db.execute("SELECT subscriber, email, reason, source, detail, at FROM optouts ORDER BY at")
            for sub, email, reason, source, detail, at in cur:
                out.setdefault(sub, []).append(OptOut(sub, email, reason, source, detail, datetime.fromisoformat(at)))
        return {k: tuple(v) for k, v in out.items()}

    def preferences(self) -> dict[str, Preference]:
        with self._read() as db:
            cur = db.execute("SELECT subscriber, email, tags, categories, paused, source, at FROM preferences")
            return {
                sub: Preference(sub, email, terms(tags), terms(cats), bool(paused), source, datetime.fromisoformat(at))
                for sub, email, tags, cats, paused, source, at in cur
            }

    def frequencies(self, subscriber: str | None = None) -> dict[str, str]:
        """Subscriber -> the cadence they chose on the preferences page (all, or one's)."""
        sql = "SELECT subscriber, frequency FROM frequencies"
        args: tuple[str, ...] = ()
        if subscriber is not None:
            sql, args = sql + " WHERE subscriber = ?", (subscriber,)
        with self._read() as db:
            return {sub: freq for sub, freq in db.execute(sql, args).fetchall()}

    def overlay_for(self, subscriber: str) -> Overlay:
        """One subscriber's rows only (primary-key lookups): what the public app reads per request."""
        with self._read() as db:
            optouts = tuple(
                OptOut(sub, email, reason, source, detail, datetime.fromisoformat(at))
                for sub, email, reason, source, detail, at in db.execute(
                    "SELECT subscriber, email, reason, source, detail, at FROM optouts WHERE subscriber = ?"
                    " ORDER BY at",
                    (subscriber,),
                )
            )
            row = db.execute(
                "SELECT subscriber, email, tags, categories, paused, source, at FROM preferences WHERE subscriber = ?",
                (subscriber,),
            ).fetchone()
        preferences = {}
        if row is not None:
            sub, email, tags, cats, paused, source, at = row
            preferences[sub] = Preference(
                sub, email, terms(tags), terms(cats), bool(paused), source, datetime.fromisoformat(at)
            )
        return Overlay({subscriber: optouts} if optouts else {}, preferences, self.frequencies(subscriber))

    def count_optouts(self) -> int:
        """Addresses with at least one opt-out."""
        with self._read() as db:
            return int(db.execute("SELECT COUNT(DISTINCT subscriber) FROM optouts").fetchone()[0])

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
        with self._write() as db:
            db.executemany(
                "INSERT INTO token_ids (token_id, subscriber, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(new_token_id(), sub, at) for sub in missing],
            )
        found.update(self._token_ids(missing))
        # Only a collision of two random 128-bit ids could leave one out; it gets a fresh id.
        return found if len(found) == len(wanted) else self.token_ids(wanted)

    def _token_ids(self, subscribers: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._read() as db:
            for i in range(0, len(subscribers), CHUNK):
                chunk = subscribers[i : i + CHUNK]
                marks = ",".join("?" * len(chunk))
                out.update(
                    db.execute(f"SELECT subscriber, token_id FROM token_ids WHERE subscriber IN ({marks})", chunk)
                )
        return out

    def subscriber_for_token_id(self, token_id: str) -> str | None:
        """The subscriber id an opaque link id was made for, or None."""
        with self._read() as db:
            row = db.execute("SELECT subscriber FROM token_ids WHERE token_id = ?", (token_id,)).fetchone()
        return None if row is None else str(row[0])

    def first_token_id_at(self) -> datetime | None:
        """When the first opaque id was made: the moment links stopped carrying addresses, from
        which the transition period for address-carrying links is counted."""
        with self._read() as db:
            (at,) = db.execute("SELECT min(created_at) FROM token_ids").fetchone()
        return None if at is None else datetime.fromisoformat(at)

    # ---- writing

    def opt_out(self, email: str, reason: Reason, source: str, detail: str = "") -> None:
        with self._write() as db:
            _opt_out(db, email, reason, source, detail)

    def set_topics(self, email: str, *, tags: Sequence[str], categories: Sequence[str], source: str) -> None:
        """Replace the subscriber's topics (the list's are no longer used for them)."""
        self._upsert_preference(email, source, tags=json.dumps(list(tags)), categories=json.dumps(list(categories)))

    def set_frequency(self, email: str, frequency: str, *, source: str) -> None:
        """Record the cadence a subscriber chose (overrides the list's `frequency`)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO frequencies (subscriber, email, frequency, source, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (subscriber) DO UPDATE SET email = excluded.email, frequency = excluded.frequency,"
                " source = excluded.source, at = excluded.at",
                (email.casefold(), email, frequency, source, now_stamp("seconds")),
            )

    def set_paused(self, email: str, paused: bool, *, source: str) -> None:
        self._upsert_preference(email, source, paused=int(paused))

    def _upsert_preference(self, email: str, source: str, **values: object) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO preferences (subscriber, email, paused, source, at) VALUES (?, ?, 0, ?, ?)"
                " ON CONFLICT (subscriber) DO UPDATE SET source = excluded.source, at = excluded.at",
                (email.casefold(), email, source, now_stamp("seconds")),
            )
            sets = ", ".join(f"{column} = ?" for column in values)  # column names are ours, not input
            db.execute(f"UPDATE preferences SET {sets} WHERE subscriber = ?", (*values.values(), email.casefold()))

    def apply_events(self, events: Iterable[tuple[str, str, Sequence[Change]]]) -> int:
        """Apply webhook events (event id, event name, changes) once each; returns how many were new.

        The event ids are recorded in the same transaction as their changes, so a repeat of an
        event (SendGrid delivers at least once) is a no-op even after a crash between the two, and
        two servers given the same event at once apply it once: the second INSERT waits on the
        first one's key and then inserts nothing.
        """
        applied = 0
        with self._write() as db:
            for event_id, event, changes in events:
                cur = db.execute(
                    "INSERT INTO webhook_events (event_id, event, received_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (event_id) DO NOTHING",
                    (event_id, event, now_stamp("seconds")),
                )
                if cur.rowcount == 0:
                    continue
                applied += 1
                for change in changes:
                    if change.kind == "opt_out":
                        _opt_out(db, change.email, change.reason, change.source, change.detail)
                    else:
                        db.execute(
                            "DELETE FROM optouts WHERE subscriber = ? AND reason = ?",
                            (change.email.casefold(), change.reason),
                        )
        return applied

    def replace_synced(self, lists: Mapping[str, Sequence[tuple[str, Reason, str]]]) -> None:
        """Mirror SendGrid's suppression lists: each list's rows replaced by (email, reason, detail)."""
        with self._write() as db:
            for name, entries in lists.items():
                source = f"sync:{name}"
                db.execute("DELETE FROM optouts WHERE source = ?", (source,))
                for email, reason, detail in entries:
                    _opt_out(db, email, reason, source, detail)

    # ---- whole-state copies (digest state copy / backup / restore)

    def export_table(self, table: str) -> Iterator[tuple[object, ...]]:
        """Every row of one of STATE_TABLES (the subscribers table included), streamed."""
        with self._read() as db:
            yield from (tuple(r) for r in db.execute(f"SELECT {STATE_TABLES[table]} FROM {table}"))  # names are ours

    def import_table(self, table: str, rows: Iterable[Sequence[object]], *, chunk: int = 5000) -> int:
        """Rows of one of STATE_TABLES in: an opt-out, an event or a link id already here is kept,
        a preference or a subscriber replaced only by a later one. Returns rows written."""
        columns = STATE_TABLES[table]
        marks = ",".join("?" * len(columns.split(",")))
        sql = f"INSERT INTO {table} ({columns}) VALUES ({marks}) {_ON_CONFLICT[table]}"
        written = 0
        batch: list[tuple[object, ...]] = []

        def flush() -> None:
            nonlocal written
            with self._write() as db:
                cur = db.executemany(sql, batch)
                written += max(0, cur.rowcount)
            batch.clear()

        for row in rows:
            batch.append(tuple(row))
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
        return written

    def clear_for_restore(self) -> None:
        """Everything a restore replaces: all but the opt-outs, link ids and erased addresses
        (never forgotten)."""
        with self._write() as db:
            for table in (
                "preferences",
                "frequencies",
                "webhook_events",
                "subscribers",
                "engagement_events",
                "edition_articles",
                "editions",
                "signups",
                "consents",
            ):
                db.execute(f"DELETE FROM {table}")  # names are ours


def _opt_out(db: Session, email: str, reason: str, source: str, detail: str) -> None:
    # A repeat keeps the first moment: that is when consent was withdrawn.
    db.execute(
        "INSERT INTO optouts (subscriber, email, reason, source, detail, at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (subscriber, reason, source) DO NOTHING",
        (email.casefold(), email, reason, source, detail[:500], now_stamp("seconds")),
    )


_SUBSCRIBER_COLUMNS = "subscriber, email, name, tags, categories, status, attributes, extra, position"

_ON_CONFLICT: dict[str, str] = {
    "optouts": "ON CONFLICT DO NOTHING",
    "preferences": "ON CONFLICT (subscriber) DO UPDATE SET email = excluded.email, tags = excluded.tags,"
    " categories = excluded.categories, paused = excluded.paused, source = excluded.source, at = excluded.at"
    " WHERE excluded.at > preferences.at",
    "webhook_events": "ON CONFLICT DO NOTHING",
    "frequencies": "ON CONFLICT (subscriber) DO UPDATE SET email = excluded.email, frequency = excluded.frequency,"
    " source = excluded.source, at = excluded.at WHERE excluded.at > frequencies.at",
    "token_ids": "ON CONFLICT DO NOTHING",
    "engagement_events": "ON CONFLICT DO NOTHING",
    "editions": "ON CONFLICT (edition) DO UPDATE SET label = excluded.label",
    "edition_articles": "ON CONFLICT (edition, article) DO UPDATE SET url = excluded.url, link = excluded.link,"
    " title = excluded.title, tags = excluded.tags, categories = excluded.categories",
    # signups (digest.signup.store): the later request or confirmation wins; a consent record's
    # confirmation is never lost; an erased address is kept from both sides
    "signups": "ON CONFLICT (subscriber) DO UPDATE SET email = excluded.email, name = excluded.name,"
    " tags = excluded.tags, categories = excluded.categories, cadence = excluded.cadence,"
    " status = excluded.status, source = excluded.source, listed_status = excluded.listed_status,"
    " created_at = excluded.created_at, confirmed_at = excluded.confirmed_at"
    " WHERE COALESCE(excluded.confirmed_at, excluded.created_at) > COALESCE(signups.confirmed_at, signups.created_at)",
    "consents": "ON CONFLICT (consent_id) DO UPDATE SET confirmed_at = COALESCE(consents.confirmed_at,"
    " excluded.confirmed_at), ip = CASE WHEN consents.ip IS NULL THEN NULL ELSE excluded.ip END",
    "forgotten": "ON CONFLICT DO NOTHING",
    "subscribers": "ON CONFLICT (subscriber) DO UPDATE SET email = excluded.email, name = excluded.name,"
    " tags = excluded.tags, categories = excluded.categories, status = excluded.status,"
    " attributes = excluded.attributes, extra = excluded.extra, position = excluded.position,"
    " updated_at = excluded.updated_at WHERE excluded.updated_at > subscribers.updated_at",
}

STATE_TABLES: dict[str, str] = {
    "optouts": "subscriber, email, reason, source, detail, at",
    "preferences": "subscriber, email, tags, categories, paused, source, at",
    "webhook_events": "event_id, event, received_at",
    "token_ids": "token_id, subscriber, created_at",
    "frequencies": "subscriber, email, frequency, source, at",
    "subscribers": f"{_SUBSCRIBER_COLUMNS}, created_at, updated_at",
    # the event store (events.py): events in arrival order, so a copy keeps that order
    "engagement_events": "event_id, source, kind, edition, subscriber, message_id, at, machine, article, link, detail",
    "editions": "edition, label, at, recorded_at",
    "edition_articles": "edition, article, url, link, title, tags, categories",
    "signups": "subscriber, email, name, tags, categories, cadence, status, source, listed_status, created_at,"
    " confirmed_at",
    "consents": "consent_id, subscriber, email, source, consent_text, ip, name, tags, categories, cadence, at,"
    " expires_at, confirmed_at",
    "forgotten": "address_key, reason, at",
}


# ---------------------------------------------------------------- the subscribers table


@dataclass(frozen=True)
class UpsertCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0


#: What `Subscriber.file` says for a row of the table (messages name it).
TABLE_SOURCE = "the subscribers table"


def _row(sub: Subscriber) -> tuple[object, ...]:
    """The stored columns of a subscriber, `subscriber` first, position left out."""
    extra = {
        name: getattr(sub, name)
        for name in ("external_id", "frequency")
        if getattr(sub, name, None)  # fields a newer subscriber model carries
    }
    at = getattr(sub, "subscribed_at", None)
    if at is not None:
        extra["subscribed_at"] = at.isoformat()
    return (
        sub.id,
        sub.email,
        sub.name,
        json.dumps(list(sub.tags)),
        json.dumps(list(sub.categories)),
        sub.status,
        json.dumps(dict(sub.attributes), sort_keys=True),
        json.dumps(extra, sort_keys=True),
    )


#: Stored topic lists (JSON) -> one shared tuple each: a million rows name the same few thousand
#: sets, and the file reader shares them the same way (subscribers.split_terms).
_STORED_TERMS: dict[str, tuple[str, ...]] = {}


def _shared(stored: str) -> tuple[str, ...]:
    terms = _STORED_TERMS.get(stored)
    if terms is None:
        terms = tuple(json.loads(stored))
        if len(_STORED_TERMS) < 100_000:
            _STORED_TERMS[stored] = terms
    return terms


def subscriber_from(row: Sequence[Any]) -> Subscriber:
    """A Subscriber from a row of _SUBSCRIBER_COLUMNS."""
    _, email, name, tags, categories, status, attributes, extra, position = row
    fields: dict[str, Any] = {}
    if extra != "{}":
        for key, value in json.loads(extra).items():
            if key in Subscriber.__dataclass_fields__:
                fields[key] = datetime.fromisoformat(value) if key == "subscribed_at" else value
    return Subscriber(
        email=email,
        name=name,
        tags=_shared(tags),
        categories=_shared(categories),
        status=sys.intern(status),
        attributes=json.loads(attributes) if attributes != "{}" else {},
        file=TABLE_SOURCE,
        line=int(position),
        **fields,
    )


class SqlSubscriberTable:
    """The subscribers table (`[subscribers] source = "database"`) over the engine's sessions."""

    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]

    def count(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM subscribers").fetchone()[0])

    def get(self, subscriber_id: str) -> Subscriber | None:
        """One subscriber by id (the case-folded address): a primary-key lookup."""
        with self._read() as db:
            row = db.execute(f"SELECT {_SUBSCRIBER_COLUMNS} FROM subscribers WHERE subscriber = ?", (subscriber_id,))
            found = row.fetchone()
        return None if found is None else subscriber_from(found)

    def upsert(self, subscribers: Iterable[Subscriber], *, chunk: int = 1000) -> UpsertCounts:
        """Insert new subscribers (after the last, in the order given), update changed ones, leave
        equal ones alone: one transaction per `chunk` rows, so a million-row import never holds
        one huge transaction nor the whole file in memory."""
        added = updated = unchanged = 0
        batch: list[Subscriber] = []

        def flush() -> None:
            nonlocal added, updated, unchanged
            a, u, n = self._upsert_chunk(batch)
            added, updated, unchanged = added + a, updated + u, unchanged + n
            batch.clear()

        for sub in subscribers:
            batch.append(sub)
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
        return UpsertCounts(added, updated, unchanged)

    def _upsert_chunk(self, subs: Sequence[Subscriber]) -> tuple[int, int, int]:
        rows = {r[0]: r for r in map(_row, subs)}  # a repeat within the chunk: the last one wins
        now = now_stamp("seconds")
        with self._write() as db:
            stored: dict[str, tuple[object, ...]] = {}
            ids = list(rows)
            for i in range(0, len(ids), CHUNK):
                part = ids[i : i + CHUNK]
                cur = db.execute(
                    f"SELECT {_SUBSCRIBER_COLUMNS} FROM subscribers WHERE subscriber IN ({','.join('?' * len(part))})",
                    part,
                )
                stored.update((r[0], tuple(r[:8])) for r in cur)
            new = [r for sid, r in rows.items() if sid not in stored]
            changed = [r for sid, r in rows.items() if sid in stored and stored[sid] != r]
            (last,) = db.execute("SELECT COALESCE(MAX(position), 0) FROM subscribers").fetchone()
            db.executemany(
                f"INSERT INTO subscribers ({_SUBSCRIBER_COLUMNS}, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (subscriber) DO UPDATE SET email = excluded.email, name = excluded.name,"
                " tags = excluded.tags, categories = excluded.categories, status = excluded.status,"
                " attributes = excluded.attributes, extra = excluded.extra, updated_at = excluded.updated_at",
                [(*r, int(last) + n + 1, now, now) for n, r in enumerate(new)],
            )
            db.executemany(
                "UPDATE subscribers SET email = ?, name = ?, tags = ?, categories = ?, status = ?, attributes = ?,"
                " extra = ?, updated_at = ? WHERE subscriber = ?",
                [(*r[1:], now, r[0]) for r in changed],
            )
        return len(new), len(changed), len(rows) - len(new) - len(changed)
