"""Opening the project's SQLite files (the send ledger, the subscriber state) the one right way,
and the one write transaction both use."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from digest.errors import DigestError

#: Key/value rows by which the ledger and the subscriber state know each other (statefiles.py).
#: A table of its own in each file, so neither file's other tables need to know about it.
PAIRING_SCHEMA = """
CREATE TABLE IF NOT EXISTS pairing (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def read_pairing(db: sqlite3.Connection) -> dict[str, str]:
    """The pairing rows; {} for a file that has none (never paired, or from before pairing)."""
    try:
        return dict(db.execute("SELECT key, value FROM pairing").fetchall())
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise


def write_pairing(db: sqlite3.Connection, values: Mapping[str, object]) -> None:
    """Set pairing rows (None deletes one); the caller holds the transaction."""
    for key, value in values.items():
        if value is None:
            db.execute("DELETE FROM pairing WHERE key = ?", (key,))
        else:
            db.execute(
                "INSERT INTO pairing (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, str(value)),
            )


def explain(exc: BaseException) -> str:
    """An sqlite3 or OS error as a reader can act on it: a read-only file or folder says so."""
    text = str(exc)
    if "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
        return f"{text} (the file or its folder is read-only for this user)"
    return text


def connect(path: Path, schema: str, *, busy_timeout: float = 30.0, threads: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode with FULL sync and the schema applied.

    isolation_level=None: callers issue BEGIN IMMEDIATE themselves, so each write is one explicit
    transaction that takes the lock up front. FULL sync: a recorded send or opt-out must survive a
    power cut, or the next run would resend or ignore it. Raises sqlite3.Error or OSError; callers
    turn them into their own DigestError.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=not threads)
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    _wal(db, busy_timeout)
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(schema)
    return db


def _wal(db: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch to WAL, waiting out another process doing the same: the switch on a new file needs
    an exclusive lock and SQLite may answer "database is locked" at once instead of waiting the
    busy timeout (two senders or a sender and `digest serve` starting on a fresh state)."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def now_stamp(timespec: str = "microseconds") -> str:
    """The current moment as stored: UTC ISO 8601."""
    return datetime.now(UTC).isoformat(timespec=timespec)


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error.

    Every sqlite3 error (a lock held too long, a full disk, an I/O error, a failed COMMIT) becomes
    the caller's `error` class, one line naming the file, so the CLI prints it as such. A failed
    COMMIT leaves SQLite's transaction open; it is rolled back here, or every later BEGIN on the
    connection would fail too.
    """

    def __init__(self, db: sqlite3.Connection, path: Path, error: type[DigestError], what: str):
        self._db = db
        self._path = path
        self._error = error
        self._what = what  #: "the send ledger", "the subscriber state"

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._error(f"{self._path}: {self._what} is locked by another process ({exc})") from None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as commit_error:
                exc = commit_error
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise self._error(f"{self._path}: cannot write {self._what}: {explain(exc)}") from None
        # anything else (a bug, an interrupt) propagates as it is, after the rollback

    def _rollback(self) -> None:
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite may have rolled back on its own (a full disk); nothing is left open
