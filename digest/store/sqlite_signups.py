"""The signup store (digest.signup.store) in the subscriber state's SQLite file."""

from __future__ import annotations

from pathlib import Path

from digest.signup.store import SqlSignupStore
from digest.store.sqlite_state import _SqliteSessions


class SqliteSignupStore(_SqliteSessions, SqlSignupStore):
    """Signups, consent records and erased addresses in `state/subscribers.sqlite3`. Requests for
    one address need no lock of their own: SQLite runs one write transaction at a time."""

    engine = "sqlite"
    what = "the signups"

    def __init__(self, path: Path, *, busy_timeout: float = 30.0):
        self._open(path, busy_timeout)

    def __repr__(self) -> str:
        return f"SqliteSignupStore({str(self.path)!r})"
