"""The subscriber state and the subscribers table in PostgreSQL.

The SQL is state_sql.py's (its `?` placeholders become psycopg's `%s` here). Every method borrows
a connection from the process's pool (pg.pool) for its statements and gives it back, so
`digest serve` with many threads, and several replicas, share a few connections each; a write is
one transaction on the borrowed connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from digest.errors import LedgerError
from digest.events import EventsError
from digest.models import Subscriber
from digest.store import pg
from digest.store.events_sql import SqlEvents
from digest.store.state_sql import _SUBSCRIBER_COLUMNS, SqlSubscriberState, SqlSubscriberTable, subscriber_from
from digest.suppressions import StateError


class _Session:
    """A borrowed connection that takes the shared SQL's `?` placeholders."""

    def __init__(self, conn: Any):
        self._conn = conn

    def execute(self, sql: str, args: Sequence[object] = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), args)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> Any:
        cur = self._conn.cursor()
        cur.executemany(sql.replace("?", "%s"), list(rows))
        return cur


class _PgSessions:
    url: str
    what = "the subscriber state"
    error: type[LedgerError] = StateError

    def _open(self, url: str) -> None:
        self.url = url
        self._pool = pg.pool(url, self.error)

    def close(self) -> None:
        pass  # the pool is the process's (pg.close_pools)

    @contextmanager
    def _read(self) -> Iterator[Any]:
        psycopg = pg.psycopg_module()
        try:
            with self._pool.connection() as conn:
                yield _Session(conn)
        except psycopg.Error as exc:
            raise self.error(f"{pg.masked(self.url)}: cannot read {self.what}: {pg.one_line(exc)}") from None

    @contextmanager
    def _write(self) -> Iterator[Any]:
        psycopg = pg.psycopg_module()
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _Session(conn)
        except psycopg.Error as exc:
            raise self.error(f"{pg.masked(self.url)}: cannot write {self.what}: {pg.one_line(exc)}") from None

    def _erasing(self) -> Any:
        """A write that erases (forget): an ordinary transaction. PostgreSQL keeps the old row
        versions until (auto)vacuum reclaims them, as it does for every delete."""
        return self._write()


class PgSubscriberState(_PgSessions, SqlSubscriberState):
    engine = "postgresql"

    def __init__(self, url: str):
        self._open(url)

    def __repr__(self) -> str:
        return f"PgSubscriberState({pg.masked(self.url)!r})"


class PgSubscriberTable(_PgSessions, SqlSubscriberTable):
    engine = "postgresql"
    what = "the subscribers table"

    def __init__(self, url: str):
        self._open(url)

    def stream(self, itersize: int = 2000) -> Iterator[Subscriber]:
        """Every row in list order through a server-side cursor: `itersize` rows at a time cross
        the wire, so a million-row list never sits in the driver's memory at once."""
        psycopg = pg.psycopg_module()
        try:
            with self._pool.connection() as conn, conn.transaction():
                with conn.cursor(name="digest_subscribers") as cur:
                    cur.itersize = itersize
                    cur.execute(f"SELECT {_SUBSCRIBER_COLUMNS} FROM subscribers ORDER BY position")
                    for row in cur:
                        yield subscriber_from(row)
        except psycopg.Error as exc:
            raise self.error(f"{pg.masked(self.url)}: cannot read {self.what}: {pg.one_line(exc)}") from None


class PgEvents(_PgSessions, SqlEvents):
    """The event store in PostgreSQL (an identity column orders events of one second by arrival)."""

    engine = "postgresql"
    error = EventsError
    what = "the event store"
    arrival = "seq"

    def __init__(self, url: str):
        self._open(url)

    def __repr__(self) -> str:
        return f"PgEvents({pg.masked(self.url)!r})"
