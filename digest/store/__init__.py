"""Where the state lives, and opening its stores on the right engine.

Small Protocols, one per store: the send ledger (`ledger.Ledger`), the subscriber state
(`suppressions.SubscriberState`: opt-outs, preferences, webhook events, opaque link ids), the
subscribers table (`SubscriberTable`, for `[subscribers] source = "database"`), the events
(`events.EventLog`) and the signups (`signup.store.SignupStore`: signups, consent records, erased
addresses). Two engines:

- SQLite (the default): files in the state folder, nothing to set up.
- PostgreSQL: `[state] url = "postgresql://user@host/db"`, or the whole URL in the environment
  variable DIGEST_DATABASE_URL (which wins). The password never goes in the config file: put it in
  DIGEST_DATABASE_URL, PGPASSWORD or ~/.pgpass. Its schema is set up and upgraded by
  `digest state migrate`, never silently (see schema.py).

The state folder is used on both engines for what is not state (the content cache) and, on
SQLite, for the run lock files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from digest.events import EditionRecord, EventLog, edition_articles
from digest.ledger import LEDGER_NAME, Ledger
from digest.models import Article, Edition, Subscriber
from digest.subscribers import SubscriberList
from digest.suppressions import STATE_NAME, SubscriberState

if TYPE_CHECKING:
    from digest.config import Config
    from digest.signup.store import SignupStore
    from digest.store.state_sql import UpsertCounts

DATABASE_URL_ENV = "DIGEST_DATABASE_URL"


@dataclass(frozen=True)
class Location:
    """Where a newsletter's state is: a folder, and a PostgreSQL URL when it lives there."""

    folder: Path
    url: str = ""

    @property
    def engine(self) -> Literal["sqlite", "postgresql"]:
        return "postgresql" if self.url else "sqlite"

    def __str__(self) -> str:
        if self.url:
            from digest.store.pg import masked

            return masked(self.url)
        return str(self.folder)


def locate(where: Config | Location | Path) -> Location:
    """The config's state location (DIGEST_DATABASE_URL, then `[state] url`, else the folder). A
    bare folder is that folder, on PostgreSQL only if DIGEST_DATABASE_URL says so."""
    if isinstance(where, Location):
        return where
    env = os.environ.get(DATABASE_URL_ENV, "").strip()
    if isinstance(where, Path):
        return Location(where, env)
    return Location(where.state.path, env or where.state.url)


class SubscriberTable(Protocol):
    """The subscribers table: a list kept in the database instead of a file."""

    def count(self) -> int: ...

    def get(self, subscriber_id: str) -> Subscriber | None: ...

    def stream(self) -> Iterator[Subscriber]: ...

    def upsert(self, subscribers: Any, *, chunk: int = 1000) -> UpsertCounts: ...

    def close(self) -> None: ...

    def __enter__(self) -> SubscriberTable: ...

    def __exit__(self, *exc: object) -> None: ...


# ---------------------------------------------------------------- opening


def ledger_exists(where: Config | Location | Path) -> bool:
    """Whether there is a ledger to read (SQLite: its file; PostgreSQL: always, checked on open)."""
    loc = locate(where)
    return bool(loc.url) or (loc.folder / LEDGER_NAME).is_file()


#: How a ledger is opened: see `open_ledger`.
LedgerMode = Literal["write", "read", "scratch"]


def open_ledger(where: Config | Location | Path, mode: LedgerMode = "write") -> Ledger:
    """The send ledger, on its engine; the one way to open it, in one of three modes:

    - "write": what a send records into (created on SQLite when new; the schema version checked on
      both engines);
    - "read": for a command that must write nothing (test-send): SQLite opened mode=ro, PostgreSQL
      in read-only transactions, so the engine itself refuses any write. A missing SQLite ledger is
      a LedgerError: ask `ledger_exists` first;
    - "scratch": an in-memory SQLite ledger holding what the real one holds, for a run that must
      read the real history but record nothing (a sandbox send, a dry run before the first send).
      Nothing is created: no ledger yet gives an empty scratch ledger.
    """
    loc = locate(where)
    if mode == "scratch":
        from digest.store.sqlite_ledger import SqliteLedger

        if not loc.url:
            return SqliteLedger.scratch_copy(loc.folder / LEDGER_NAME)
        with open_ledger(loc, "read") as real:
            return SqliteLedger.scratch_from(real, loc.folder)
    if loc.url:
        from digest.store.pg_ledger import PgLedger

        return PgLedger(loc.url, read_only=mode == "read")
    from digest.store.sqlite_ledger import SqliteLedger

    if mode == "read":
        return SqliteLedger.read_only(loc.folder / LEDGER_NAME)
    return SqliteLedger(loc.folder / LEDGER_NAME)


def state_exists(where: Config | Location | Path) -> bool:
    """Whether there is a state to read. A zero-byte SQLite file is left as it is (opening it would
    make it an empty database): it is a lost state, which `digest send` refuses (statefiles.py)."""
    loc = locate(where)
    path = loc.folder / STATE_NAME
    return bool(loc.url) or (path.is_file() and path.stat().st_size > 0)


def open_state(where: Config | Location | Path) -> SubscriberState:
    """The subscriber state (created on SQLite when new; the schema version checked on both)."""
    loc = locate(where)
    if loc.url:
        from digest.store.pg_state import PgSubscriberState

        return PgSubscriberState(loc.url)
    from digest.store.sqlite_state import SqliteSubscriberState

    return SqliteSubscriberState(loc.folder / STATE_NAME)


def open_existing_state(where: Config | Location | Path) -> SubscriberState | None:
    """The state if there is one; None before anything was ever recorded (a read must not create
    the state folder, or a preview, a check or a forged link would)."""
    return open_state(where) if state_exists(where) else None


def open_signups(where: Config | Location | Path) -> SignupStore:
    """The signups, consent records and erased addresses (digest.signup.store), in the state."""
    loc = locate(where)
    if loc.url:
        from digest.store.pg_signups import PgSignupStore

        return PgSignupStore(loc.url)
    from digest.store.sqlite_signups import SqliteSignupStore

    return SqliteSignupStore(loc.folder / STATE_NAME)


def open_existing_signups(where: Config | Location | Path) -> SignupStore | None:
    """The signup store if there is a state; None before anything was recorded (nothing created)."""
    return open_signups(where) if state_exists(where) else None


def open_subscriber_table(where: Config | Location | Path) -> SubscriberTable:
    loc = locate(where)
    if loc.url:
        from digest.store.pg_state import PgSubscriberTable

        return PgSubscriberTable(loc.url)
    from digest.store.sqlite_state import SqliteSubscriberTable

    return SqliteSubscriberTable(loc.folder / STATE_NAME)


def load_list(config: Config) -> SubscriberList:
    """The subscriber list the config names: its file (CSV/JSON), or the subscribers table."""
    from digest.subscribers import load_subscribers

    if config.subscribers.source != "database":
        return load_subscribers(config.subscribers.path)
    if not state_exists(config):
        return SubscriberList((), ())
    with open_subscriber_table(config) as table:
        return SubscriberList(tuple(table.stream()), ())


# ---------------------------------------------------------------- events


def record_sent_edition(where: Any, edition: Edition, pool: Sequence[Article], link: Callable[[Article], str]) -> None:
    """Before a real send: the edition and every article it may carry, so clicks map back to
    articles and first-party click links resolve (to these URLs and no others)."""
    with open_events(where) as store:
        store.record_edition(
            EditionRecord(edition.id, edition.label, edition.at), edition_articles(edition.id, pool, link)
        )


def open_events(where: Any) -> EventLog:
    """The event store of `where` (a Config, a store Location or a state folder), on its engine."""
    loc = locate(where)
    if loc.url:
        from digest.store.pg_state import PgEvents

        return PgEvents(loc.url)
    from digest.store.sqlite_state import SqliteEvents

    return SqliteEvents(loc.folder / STATE_NAME)


def open_existing_events(where: Any) -> EventLog | None:
    """The store if there is a state; None before anything was recorded (reading must not
    create the state folder, or a report or a preview would)."""
    return open_events(where) if state_exists(where) else None
