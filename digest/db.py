"""Opening the project's SQLite files (the send ledger, the subscriber state) the one right way."""

from __future__ import annotations

import sqlite3
from pathlib import Path


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
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(schema)
    return db
