"""Versioned, forward-only schema migrations: the same steps, mostly the same SQL, for both engines.

Two stores, each with its own numbered steps: the send ledger (`deliveries`) and the subscriber
state (opt-outs, preferences, webhook events, opaque link ids, the subscribers table, events,
signups and consent records). On SQLite
each store is its own file (`ledger.sqlite3`, `subscribers.sqlite3`); on PostgreSQL both live in
one database. Either way a `schema_migrations` table records which steps ran.

Types are the SQL both engines share: TEXT stamps in one UTC ISO format (text order is time order,
see `ledger._stamp`), JSON as TEXT, INTEGER/BIGINT. So a step is one text for both, except where an
engine cannot do the same thing (SQLite cannot change a CHECK constraint: it rebuilds the table).

Rules: a step is never edited once released, only followed by a new one; `digest state migrate`
applies what is missing, in one transaction per step; every other command only checks
(`check_version`) and refuses with a clear line, except that a brand-new SQLite file is created at
the current version (the zero-setup default has no data a step could change).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from digest.errors import LedgerError

Engine = Literal["sqlite", "postgresql"]
StoreName = Literal["ledger", "state"]


class SchemaError(LedgerError):
    """The stored schema is older or newer than this digest: migrate, or upgrade digest."""


@dataclass(frozen=True)
class Migration:
    store: StoreName
    version: int
    name: str
    sql: str  #: for both engines, unless `sqlite`/`postgresql` says otherwise
    sqlite: str | None = None
    postgresql: str | None = None

    def text(self, engine: Engine) -> str:
        own = self.sqlite if engine == "sqlite" else self.postgresql
        return own if own is not None else self.sql


MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    store      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (store, version)
);
"""

_DELIVERIES_V1 = """
CREATE TABLE IF NOT EXISTS deliveries (
    edition     TEXT NOT NULL,
    subscriber  TEXT NOT NULL,
    email       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('claimed','accepted','failed','ambiguous','cancelled')),
    run_id      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 1,
    article_ids TEXT NOT NULL,
    selected_at TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    transport   TEXT NOT NULL DEFAULT '',
    message_id  TEXT NOT NULL DEFAULT '',
    batch_id    TEXT NOT NULL DEFAULT '',
    send_at     BIGINT,
    error       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (edition, subscriber)
);
CREATE INDEX IF NOT EXISTS deliveries_subscriber ON deliveries (subscriber, state);
"""

#: Key/value rows by which the SQLite ledger and subscriber state know each other (statefiles.py).
#: Files from the release before migrations may hold it already.
_PAIRING = """
CREATE TABLE IF NOT EXISTS pairing (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_STATES_V2 = "('queued','claimed','accepted','failed','ambiguous','cancelled')"
_QUEUE_INDEX = "CREATE INDEX deliveries_queue ON deliveries (edition, queue_key, subscriber) WHERE state = 'queued';"

_DELIVERIES_V2_SQLITE = f"""
CREATE TABLE deliveries_v2 (
    edition     TEXT NOT NULL,
    subscriber  TEXT NOT NULL,
    email       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN {_STATES_V2}),
    run_id      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 1,
    article_ids TEXT NOT NULL,
    selected_at TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    transport   TEXT NOT NULL DEFAULT '',
    message_id  TEXT NOT NULL DEFAULT '',
    batch_id    TEXT NOT NULL DEFAULT '',
    send_at     BIGINT,
    error       TEXT NOT NULL DEFAULT '',
    queue_key   TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (edition, subscriber)
);
INSERT INTO deliveries_v2 (edition, subscriber, email, state, run_id, attempts, article_ids, selected_at,
    claimed_at, updated_at, transport, message_id, batch_id, send_at, error)
SELECT edition, subscriber, email, state, run_id, attempts, article_ids, selected_at,
    claimed_at, updated_at, transport, message_id, batch_id, send_at, error FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v2 RENAME TO deliveries;
CREATE INDEX deliveries_subscriber ON deliveries (subscriber, state);
{_QUEUE_INDEX}
{_PAIRING}"""

_DELIVERIES_V2_POSTGRESQL = f"""
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check CHECK (state IN {_STATES_V2});
ALTER TABLE deliveries ADD COLUMN queue_key TEXT NOT NULL DEFAULT '';
{_QUEUE_INDEX}
{_PAIRING}"""

_STATE_V1 = """
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

_SUBSCRIBERS_V2 = (
    """
CREATE TABLE subscribers (
    subscriber  TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '[]',
    categories  TEXT NOT NULL DEFAULT '[]',
    status      TEXT NOT NULL,
    attributes  TEXT NOT NULL DEFAULT '{}',
    extra       TEXT NOT NULL DEFAULT '{}',
    position    BIGINT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX subscribers_position ON subscribers (position);
-- the cadence a subscriber chose on the preferences page (files from the release before
-- migrations may hold it already)
CREATE TABLE IF NOT EXISTS frequencies (
    subscriber TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    frequency  TEXT NOT NULL,
    source     TEXT NOT NULL,
    at         TEXT NOT NULL
);
"""
    + _PAIRING
)

#: The event store (events.py): files from the release before migrations may hold it already.
_EVENTS_V3 = """
CREATE TABLE IF NOT EXISTS engagement_events (
    event_id    TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    edition     TEXT NOT NULL,
    subscriber  TEXT NOT NULL,
    message_id  TEXT NOT NULL DEFAULT '',
    at          INTEGER NOT NULL,
    machine     INTEGER NOT NULL DEFAULT 0,
    article     TEXT NOT NULL DEFAULT '',
    link        TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT ''
);
-- covers every per-edition count, the human/machine split and clicks per article
CREATE INDEX IF NOT EXISTS engagement_by_edition ON engagement_events (edition, kind, subscriber, machine, article);
-- opt-out events are few: reports read them all, without scanning the rest
CREATE INDEX IF NOT EXISTS engagement_opt_outs ON engagement_events (at)
    WHERE kind IN ('spamreport', 'unsubscribe', 'group_unsubscribe');
CREATE TABLE IF NOT EXISTS editions (
    edition     TEXT PRIMARY KEY,
    label       TEXT NOT NULL,
    at          TEXT NOT NULL,  -- UTC, so text order is time order
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS edition_articles (
    edition    TEXT NOT NULL,
    article    TEXT NOT NULL,
    url        TEXT NOT NULL,
    link       TEXT NOT NULL,
    title      TEXT NOT NULL,
    tags       TEXT NOT NULL,
    categories TEXT NOT NULL,
    PRIMARY KEY (edition, article)
);
CREATE INDEX IF NOT EXISTS edition_articles_by_link ON edition_articles (edition, link);
"""
_EVENTS_V3_POSTGRESQL = """
CREATE TABLE IF NOT EXISTS engagement_events (
    event_id    TEXT PRIMARY KEY,
    seq         BIGINT GENERATED ALWAYS AS IDENTITY,  -- arrival order (SQLite: rowid)
    source      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    edition     TEXT NOT NULL,
    subscriber  TEXT NOT NULL,
    message_id  TEXT NOT NULL DEFAULT '',
    at          INTEGER NOT NULL,
    machine     INTEGER NOT NULL DEFAULT 0,
    article     TEXT NOT NULL DEFAULT '',
    link        TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT ''
);
-- covers every per-edition count, the human/machine split and clicks per article
CREATE INDEX IF NOT EXISTS engagement_by_edition ON engagement_events (edition, kind, subscriber, machine, article);
-- opt-out events are few: reports read them all, without scanning the rest
CREATE INDEX IF NOT EXISTS engagement_opt_outs ON engagement_events (at)
    WHERE kind IN ('spamreport', 'unsubscribe', 'group_unsubscribe');
CREATE TABLE IF NOT EXISTS editions (
    edition     TEXT PRIMARY KEY,
    label       TEXT NOT NULL,
    at          TEXT NOT NULL,  -- UTC, so text order is time order
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS edition_articles (
    edition    TEXT NOT NULL,
    article    TEXT NOT NULL,
    url        TEXT NOT NULL,
    link       TEXT NOT NULL,
    title      TEXT NOT NULL,
    tags       TEXT NOT NULL,
    categories TEXT NOT NULL,
    PRIMARY KEY (edition, article)
);
CREATE INDEX IF NOT EXISTS edition_articles_by_link ON edition_articles (edition, link);
"""

#: Signups, consent records (each request for a confirmation is one, its id what the link names)
#: and the hashes of erased addresses (digest.signup.store).
_SIGNUPS_V4 = """
CREATE TABLE IF NOT EXISTS signups (
    subscriber    TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    name          TEXT NOT NULL DEFAULT '',
    tags          TEXT NOT NULL DEFAULT '[]',
    categories    TEXT NOT NULL DEFAULT '[]',
    cadence       TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL CHECK (status IN ('pending', 'active')),
    source        TEXT NOT NULL,
    listed_status TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    confirmed_at  TEXT
);
CREATE INDEX IF NOT EXISTS signups_by_status ON signups (status, confirmed_at);
CREATE TABLE IF NOT EXISTS consents (
    consent_id    TEXT PRIMARY KEY,
    subscriber    TEXT NOT NULL,
    email         TEXT NOT NULL,
    source        TEXT NOT NULL,
    consent_text  TEXT NOT NULL,
    ip            TEXT,
    name          TEXT NOT NULL DEFAULT '',
    tags          TEXT NOT NULL DEFAULT '[]',
    categories    TEXT NOT NULL DEFAULT '[]',
    cadence       TEXT NOT NULL DEFAULT '',
    at            TEXT NOT NULL,
    expires_at    TEXT,
    confirmed_at  TEXT
);
CREATE INDEX IF NOT EXISTS consents_by_subscriber ON consents (subscriber, at);
CREATE TABLE IF NOT EXISTS forgotten (
    address_key   TEXT PRIMARY KEY,
    reason        TEXT NOT NULL,
    at            TEXT NOT NULL
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration("ledger", 1, "deliveries", _DELIVERIES_V1),
    Migration(
        "ledger",
        2,
        "a queue: rows planned but not yet claimed (state queued, queue_key, index); the pairing table",
        "",
        sqlite=_DELIVERIES_V2_SQLITE,
        postgresql=_DELIVERIES_V2_POSTGRESQL,
    ),
    Migration("state", 1, "opt-outs, preferences, webhook events, opaque link ids", _STATE_V1),
    Migration("state", 2, "the subscribers table; chosen cadences; the pairing table", _SUBSCRIBERS_V2),
    Migration(
        "state",
        3,
        "delivery and engagement events, editions and their articles",
        _EVENTS_V3,
        postgresql=_EVENTS_V3_POSTGRESQL,
    ),
    Migration("state", 4, "signups, consent records and erased addresses", _SIGNUPS_V4),
)


def steps(store: StoreName) -> tuple[Migration, ...]:
    return tuple(m for m in MIGRATIONS if m.store == store)


def latest(store: StoreName) -> int:
    return max(m.version for m in steps(store))


#: What each store's first step creates: a database holding it but no schema_migrations table is
#: from before versioning, i.e. at version 1.
BASELINE_TABLE: dict[StoreName, str] = {"ledger": "deliveries", "state": "optouts"}
WHAT: dict[StoreName, str] = {"ledger": "the send ledger", "state": "the subscriber state"}


def check_version(where: str, store: StoreName, found: int) -> None:
    """Refuse a store whose schema is not the one this digest reads and writes."""
    want = latest(store)
    if found == want:
        return
    if found > want:
        raise SchemaError(
            f"{where}: {WHAT[store]} is at schema version {found}, newer than this digest knows ({want}): "
            "upgrade newsletter-digest"
        )
    at = f"at schema version {found}" if found else "not set up (no schema yet)"
    raise SchemaError(
        f"{where}: {WHAT[store]} is {at}; this digest needs version {want}: run `digest state migrate` "
        "(back it up first with `digest state backup`)"
    )
