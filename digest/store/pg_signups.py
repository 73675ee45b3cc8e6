"""The signup store (digest.signup.store) in PostgreSQL, beside the state's other tables."""

from __future__ import annotations

from typing import Any

from digest.signup.store import SqlSignupStore
from digest.store import pg
from digest.store.pg_state import _PgSessions


class PgSignupStore(_PgSessions, SqlSignupStore):
    engine = "postgresql"
    what = "the signups"

    def __init__(self, url: str):
        self._open(url)

    def __repr__(self) -> str:
        return f"PgSignupStore({pg.masked(self.url)!r})"

    def _lock_address(self, db: Any, subscriber: str) -> None:
        # READ COMMITTED lets two transactions count the same rows and both insert: one
        # transaction-scoped advisory lock per address makes the count-then-insert of
        # `add_request` serial for that address (other addresses never wait).
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 7117))", (subscriber,))
