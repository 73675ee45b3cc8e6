"""The subscriber state and the subscribers table in `state/subscribers.sqlite3`.

The SQL is state_sql.py's; this module only opens the file (WAL, FULL sync, the schema version
checked, see sqlite.py) and runs each method's statements on its one connection, writes inside
BEGIN IMMEDIATE ... COMMIT.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digest.db import Transaction, read_pairing, write_pairing
from digest.errors import LedgerError
from digest.events import EventsError
from digest.models import Subscriber
from digest.store.events_sql import SqlEvents
from digest.store.sqlite import open_store
from digest.store.state_sql import _SUBSCRIBER_COLUMNS, SqlSubscriberState, SqlSubscriberTable, subscriber_from
from digest.suppressions import StateError


class _SqliteSessions:
    path: Path
    _db: sqlite3.Connection
    error: type[LedgerError] = StateError
    what = "the subscriber state"

    def _open(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        # threads: the public app's worker threads share one connection
        self._db = open_store(path, "state", busy_timeout=busy_timeout, threads=True, error=self.error)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _read(self) -> Iterator[Any]:
        yield self._db

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with Transaction(self._db, self.path, self.error, self.what):
            yield self._db

    @contextmanager
    def _erasing(self) -> Iterator[Any]:
        """A write whose deleted or replaced values must not linger in the file: SQLite's
        secure_delete for it (freed space overwritten), then the write-ahead log emptied."""
        (before,) = self._db.execute("PRAGMA secure_delete").fetchone()
        self._db.execute("PRAGMA secure_delete = ON")
        try:
            with self._write() as db:
                yield db
        finally:
            self._db.execute(f"PRAGMA secure_delete = {int(before)}")
        checkpoint(self._db)


def checkpoint(db: sqlite3.Connection) -> None:
    """Copy the write-ahead log into the database and empty it: until then the log still holds the
    pages as they were before an erasure. A busy reader may keep part of it; SQLite's own next
    checkpoint finishes the job."""
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass


class SqliteSubscriberState(_SqliteSessions, SqlSubscriberState):
    """The state file. Several processes may use it at once (WAL; writes are short)."""

    engine = "sqlite"

    def __init__(self, path: Path, *, busy_timeout: float = 30.0):
        self._open(path, busy_timeout)

    def __repr__(self) -> str:
        return f"SqliteSubscriberState({str(self.path)!r})"

    def pairing(self) -> dict[str, str]:
        """The rows by which this state and the send ledger know each other (statefiles.py)."""
        return read_pairing(self._db)

    def set_pairing(self, values: Mapping[str, object]) -> None:
        with self._write():
            write_pairing(self._db, values)

    #: What a restore keeps from the state file it replaces: rows never to be forgotten (an
    #: opt-out; the opaque id that links already in inboxes name; an erased address's hash), with
    #: their columns.
    _KEPT_ON_RESTORE = {
        "optouts": "subscriber, email, reason, source, detail, at",
        "token_ids": "token_id, subscriber, created_at",
        "forgotten": "address_key, reason, at",
    }

    def merge_kept_rows_from(self, other: Path) -> dict[str, int]:
        """Copy in the opt-outs and link ids another state file holds and this one lacks; returns
        how many of each. (A restore keeps what was recorded after its backup.)"""
        added: dict[str, int] = {}
        self._db.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            with self._write():
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


class SqliteSubscriberTable(_SqliteSessions, SqlSubscriberTable):
    """The subscribers table, in the state file."""

    engine = "sqlite"

    def __init__(self, path: Path, *, busy_timeout: float = 30.0):
        self._open(path, busy_timeout)

    def stream(self) -> Iterator[Subscriber]:
        """Every row in list order; SQLite hands rows over as they are stepped, never all at once."""
        for row in self._db.execute(f"SELECT {_SUBSCRIBER_COLUMNS} FROM subscribers ORDER BY position"):
            yield subscriber_from(row)


class SqliteEvents(_SqliteSessions, SqlEvents):
    """The event store, in the state file (rowid orders events of one second by arrival)."""

    engine = "sqlite"
    error = EventsError
    what = "the event store"
    arrival = "rowid"

    def __init__(self, path: Path, *, busy_timeout: float = 30.0):
        self._open(path, busy_timeout)

    def __repr__(self) -> str:
        return f"SqliteEvents({str(self.path)!r})"
