"""The send ledger in PostgreSQL: several senders, on several machines, share one edition.

The same table and state machine as the SQLite ledger (see ledger.py); what differs is how two
senders are kept apart:

- `take` leases queued rows with `SELECT ... FOR UPDATE SKIP LOCKED`: concurrent takers never wait
  on each other and never get the same row.
- `claim` locks the rows it looks at (`FOR UPDATE`) before deciding: a second claimer waits, then
  sees the first one's claim and leaves the row.
- A run is alive while its session holds an advisory lock (`run_lock`); PostgreSQL drops it when
  the session ends, so a sender killed with -9 (or whose machine vanished: TCP keepalives, see
  pg.connect) is seen as gone by the others, and its claims become ambiguous, its leases free.

Bulk writes go as one JSON parameter of rows (`_table`), one statement per window, not one per row.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from digest.db import now_stamp
from digest.errors import LedgerError
from digest.ledger import (
    DELIVERY_COLUMNS,
    RETRYABLE,
    STATES,
    ClaimItem,
    Delivery,
    EditionSummary,
    RowState,
    State,
    delivery,
    fold_histories,
    ids_json,
    queue_rows_json,
    rows_json,
    stamp,
)
from digest.selection import History
from digest.store import pg
from digest.store.sqlite_ledger import EXPORT_COLUMNS, UPSERT_NEWER

_RUN_LOCKS = pg.LOCK_SPACE + 1  #: the advisory lock space of run locks (key 1; key 2 from the run id)
_QUEUE_LOCKS = pg.LOCK_SPACE + 2  #: ... of an edition's queue writes (key 2 from the edition id)


def _run_key(run_id: str) -> int:
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


class PgRunLock:
    """A session-level advisory lock held for as long as the run (and its connection) lives."""

    def __init__(self, ledger: PgLedger, run_id: str):
        self._ledger = ledger
        self.run_id = run_id
        ledger._q("SELECT pg_advisory_lock(%s, %s)", (_RUN_LOCKS, _run_key(run_id)))
        ledger._own_runs.add(run_id)

    @pg.retrying
    def release(self) -> None:
        if self.run_id in self._ledger._own_runs:
            self._ledger._own_runs.discard(self.run_id)
            if not self._ledger._conn.closed:
                self._ledger._q("SELECT pg_advisory_unlock(%s, %s)", (_RUN_LOCKS, _run_key(self.run_id)))


class PgLedger:
    """The ledger in a PostgreSQL database (`[state] url`)."""

    engine = "postgresql"

    def __init__(self, url: str, *, read_only: bool = False):
        self.url = url
        self._conn = pg.connect(url, LedgerError, "the send ledger")
        self._own_runs: set[str] = set()
        self._scope_edition: str | None = None
        self._scope_size = 0
        try:
            pg.check(self._conn, url, "ledger")
            if read_only:  # the server refuses every write on this session
                self._q("SET default_transaction_read_only = on")
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"PgLedger({pg.masked(self.url)!r})"

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PgLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _q(self, sql: str, args: Sequence[object] | dict[str, object] = ()) -> Any:
        """One statement outside a transaction; errors become LedgerError."""
        try:
            return self._conn.execute(sql, args)
        except pg.psycopg_module().Error as exc:
            raise LedgerError(f"{pg.masked(self.url)}: the send ledger: {pg.one_line(exc)}") from None

    def forget(self, subscriber: str, pseudonym: str) -> int:
        """See Ledger.forget."""
        with self._transaction():
            cur = self._q(
                "UPDATE deliveries SET subscriber = %s, email = %s, error = '' WHERE subscriber = %s",
                (pseudonym, pseudonym, subscriber),
            )
        return int(cur.rowcount)

    def _transaction(self) -> Any:
        return pg.transaction(self._conn, self.url, LedgerError, "the send ledger")

    def _relaxed(self) -> None:
        """Inside a transaction whose loss to a crash loses nothing that matters (a queue write, a
        lease, a settle: see SqliteLedger._relaxed): commit without waiting for the WAL flush.
        A claim never does this: it must be on disk before its request leaves."""
        self._conn.execute("SET LOCAL synchronous_commit = off")

    # ---- reading

    def histories(self, exclude_edition: str, since: datetime | None = None) -> dict[str, History]:
        """See SqliteLedger.histories; rows are streamed, never held all at once."""
        where = "edition <> %s AND state IN ('claimed', 'accepted', 'ambiguous')"
        args: list[object] = [exclude_edition]
        if since is not None:
            where += " AND selected_at >= %s"
            args.append(stamp(since))
        cur = self._conn.cursor()
        try:
            return fold_histories(
                cur.stream(
                    f"SELECT subscriber, state, article_ids, selected_at FROM deliveries WHERE {where}"
                    " ORDER BY subscriber",
                    args,
                    size=2000,
                )
            )
        except pg.psycopg_module().Error as exc:
            raise LedgerError(f"{pg.masked(self.url)}: cannot read the send ledger: {pg.one_line(exc)}") from None

    def oldest_last_delivery(self, exclude_edition: str, since: datetime | None = None) -> datetime | None:
        where = "edition <> %s AND state = 'accepted'"
        args: list[object] = [exclude_edition]
        if since is not None:
            where += " AND selected_at >= %s"
            args.append(stamp(since))
        (oldest,) = self._q(
            f"SELECT MIN(last) FROM (SELECT MAX(selected_at) AS last FROM deliveries WHERE {where}"
            " GROUP BY subscriber) AS lasts",
            args,
        ).fetchone()
        return datetime.fromisoformat(oldest) if oldest else None

    def row_states(self, edition: str) -> dict[str, RowState]:
        """See SqliteLedger.row_states: one read, details only where planning reports them."""
        plain: dict[str, RowState] = {s: RowState(s) for s in STATES}
        cur = self._conn.cursor()
        rows = cur.stream(
            "SELECT subscriber, state, CASE WHEN state IN ('claimed', 'ambiguous') THEN run_id END,"
            " CASE WHEN state IN ('claimed', 'ambiguous') THEN error END FROM deliveries WHERE edition = %s",
            (edition,),
            size=5000,
        )
        try:
            return {
                subscriber: plain[state] if run_id is None else RowState(plain[state].state, run_id, error)
                for subscriber, state, run_id, error in rows
            }
        except pg.psycopg_module().Error as exc:
            raise LedgerError(f"{pg.masked(self.url)}: cannot read the send ledger: {pg.one_line(exc)}") from None

    def rows(self, edition: str, states: Iterable[State] | None = None) -> dict[str, Delivery]:
        where, args = "edition = %s", [edition]
        if states is not None:
            where += " AND state = ANY(%s)"
            args.append(list(states))  # type: ignore[arg-type]
        cur = self._q(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {where}", args)
        return {row[1]: delivery(row) for row in cur}

    def summary(self, edition: str) -> Counter[str]:
        cur = self._q("SELECT state, COUNT(*) FROM deliveries WHERE edition = %s GROUP BY state", (edition,))
        return Counter({state: int(n) for state, n in cur})

    def editions(self, limit: int = 5) -> list[EditionSummary]:
        cur = self._q(
            "SELECT edition, MAX(updated_at) AS last FROM deliveries GROUP BY edition ORDER BY last DESC LIMIT %s",
            (limit,),
        )
        return [
            EditionSummary(edition, self.summary(edition), datetime.fromisoformat(last))
            for edition, last in cur.fetchall()
        ]

    def accepted_for(self, subscribers: Sequence[str]) -> dict[str, list[tuple[str, datetime]]]:
        out: dict[str, list[tuple[str, datetime]]] = {}
        cur = self._q(
            "SELECT subscriber, edition, updated_at FROM deliveries WHERE state = 'accepted'"
            " AND subscriber = ANY(%s) ORDER BY updated_at",
            (list(dict.fromkeys(subscribers)),),
        )
        for subscriber, edition, at in cur:
            out.setdefault(subscriber, []).append((edition, datetime.fromisoformat(at)))
        return out

    def sent_editions(self) -> dict[str, datetime]:
        cur = self._q(
            "SELECT edition, MIN(selected_at) AS at FROM deliveries WHERE state = 'accepted'"
            " GROUP BY edition ORDER BY at, edition"
        )
        return {edition: datetime.fromisoformat(at) for edition, at in cur}

    def first_editions(self) -> Counter[str]:
        cur = self._q(
            "SELECT edition, COUNT(*) FROM (SELECT DISTINCT ON (subscriber) subscriber, edition FROM deliveries"
            " WHERE state = 'accepted' ORDER BY subscriber, selected_at) AS firsts GROUP BY edition"
        )
        return Counter({edition: int(n) for edition, n in cur})

    def count(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM deliveries").fetchone()[0])

    # ---- writing

    @pg.retrying
    def claim(
        self,
        edition: str,
        run_id: str,
        items: Sequence[ClaimItem],
        *,
        transport: str,
        also_from: Iterable[State] = (),
        batch_id: str = "",
        send_at: int | None = None,
        settled: Sequence[tuple[Sequence[str], State, str, str]] = (),
    ) -> tuple[str, ...]:
        """See SqliteLedger.claim. The rows looked at are locked first (FOR UPDATE): a concurrent
        claimer of the same row waits, then sees this claim and leaves it."""
        takeable = set(RETRYABLE) | set(also_from)
        now = now_stamp()
        by_id = {item.subscriber: item for item in items}
        with self._transaction():
            self._settle_rows(edition, settled, run_id, ())
            existing = {
                sub: (state, owner)
                for sub, state, owner in self._conn.execute(
                    "SELECT subscriber, state, run_id FROM deliveries WHERE edition = %s AND subscriber = ANY(%s)"
                    " ORDER BY subscriber FOR UPDATE",
                    (edition, list(by_id)),
                )
            }
            retake = [
                sub
                for sub, (state, owner) in existing.items()
                if state in takeable or (state == "queued" and owner in ("", run_id))
            ]
            new = [sub for sub in by_id if sub not in existing]
            claimed: list[str] = []
            if retake:
                rows = [by_id[s] for s in retake]
                self._conn.execute(
                    "UPDATE deliveries AS d SET state = 'claimed', run_id = %(run)s, attempts = d.attempts + 1,"
                    " article_ids = u.a, selected_at = u.t, claimed_at = %(now)s, updated_at = %(now)s,"
                    " transport = %(tr)s, message_id = '', batch_id = %(b)s, send_at = %(sa)s::bigint, error = ''"
                    f" FROM {_table('s', 'a', 't')}"
                    " WHERE d.edition = %(e)s AND d.subscriber = u.s",
                    {
                        "run": run_id,
                        "now": now,
                        "tr": transport,
                        "b": batch_id,
                        "sa": send_at,
                        "e": edition,
                        "rows": rows_json(
                            retake, [ids_json(r.article_ids) for r in rows], [stamp(r.selected_at) for r in rows]
                        ),
                    },
                )
                claimed += retake
            if new:
                rows = [by_id[s] for s in new]
                cur = self._conn.execute(
                    "INSERT INTO deliveries (edition, subscriber, email, state, run_id, attempts, article_ids,"
                    " selected_at, claimed_at, updated_at, transport, batch_id, send_at, queue_key)"
                    " SELECT %(e)s, u.s, u.m, 'claimed', %(run)s, 1, u.a, u.t, %(now)s, %(now)s, %(tr)s, %(b)s,"
                    f" %(sa)s::bigint, u.q FROM {_table('s', 'm', 'a', 't', 'q')}"
                    " ON CONFLICT (edition, subscriber) DO NOTHING RETURNING subscriber",
                    {
                        "run": run_id,
                        "now": now,
                        "tr": transport,
                        "b": batch_id,
                        "sa": send_at,
                        "e": edition,
                        "rows": queue_rows_json(rows),
                    },
                )
                claimed += [sub for (sub,) in cur]  # a row inserted meanwhile by another run: theirs
        mine = set(claimed)
        return tuple(item.subscriber for item in items if item.subscriber in mine)

    def settle(
        self,
        edition: str,
        subscribers: Iterable[str],
        state: State,
        *,
        run_id: str | None = None,
        message_id: str = "",
        error: str = "",
        only: Sequence[State] = (),
    ) -> int:
        return self.settle_many(edition, [(tuple(subscribers), state, message_id, error)], run_id=run_id, only=only)

    @pg.retrying
    def settle_many(
        self,
        edition: str,
        outcomes: Sequence[tuple[Sequence[str], State, str, str]],
        *,
        run_id: str | None = None,
        only: Sequence[State] = (),
    ) -> int:
        if not any(subscribers for subscribers, *_ in outcomes):
            return 0
        with self._transaction():
            self._relaxed()
            return self._settle_rows(edition, outcomes, run_id, only)

    def _settle_rows(
        self,
        edition: str,
        outcomes: Sequence[tuple[Sequence[str], State, str, str]],
        run_id: str | None,
        only: Sequence[State],
    ) -> int:
        """The UPDATE of `settle_many`, inside the caller's transaction."""
        subs, states, mids, errors = [], [], [], []
        for subscribers, state, message_id, error in outcomes:
            for subscriber in subscribers:
                subs.append(subscriber)
                states.append(state)
                mids.append(message_id)
                errors.append(error)
        if not subs:
            return 0
        guard = " AND d.run_id = %(run)s" if run_id is not None else ""
        if only:
            guard += " AND d.state = ANY(%(only)s::text[])"
        cur = self._conn.execute(
            "UPDATE deliveries AS d SET state = u.st, message_id = u.m, error = u.er, updated_at = %(now)s"
            f" FROM {_table('s', 'st', 'm', 'er')}"
            f" WHERE d.edition = %(e)s AND d.subscriber = u.s{guard}",
            {
                "now": now_stamp(),
                "rows": rows_json(subs, states, mids, errors),
                "e": edition,
                "run": run_id,
                "only": list(only),
            },
        )
        return int(cur.rowcount)

    # ---- the queue

    @pg.retrying
    def enqueue(self, edition: str, items: Sequence[ClaimItem], *, also_from: Iterable[State] = ()) -> int:
        self.set_scope(edition, [i.subscriber for i in items])
        # One sender queues an edition at a time (a session lock: a sender that dies frees it).
        # Senders started together plan the same rows: the first writes them, the others wait for
        # it, then find every row of their plan there and write nothing. Three senders writing
        # 300,000 rows side by side took 14.5 s each on 2 cores, one alone 8 s.
        key = (_QUEUE_LOCKS, _run_key(edition))
        self._q("SELECT pg_advisory_lock(%s, %s)", key)
        try:
            return self._enqueue(edition, items, [*RETRYABLE, *also_from])
        finally:
            if not self._conn.closed:
                self._q("SELECT pg_advisory_unlock(%s, %s)", key)

    def _enqueue(self, edition: str, items: Sequence[ClaimItem], retry: list[str]) -> int:
        now = now_stamp()
        queued = 0
        # Is a row missing? Only then is there anything to insert: `ON CONFLICT DO NOTHING` leaves
        # every existing row as it is, so skipping it when none is missing changes nothing.
        (present,) = self._q(
            "SELECT count(*) FROM digest_scope AS s JOIN deliveries AS d ON d.edition = %s"
            " AND d.subscriber = s.subscriber",
            (edition,),
        ).fetchone()
        insert = present < self._scope_size
        # Rows to put back in the queue (failed, cancelled, ...) are the exception: one look (a
        # scan of the edition's rows) spares every slice its UPDATE when there are none.
        (requeue,) = self._q(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE edition = %s AND state = ANY(%s))", (edition, retry)
        ).fetchone()
        if not (insert or requeue):
            return 0
        for i in range(0, len(items), 20_000):
            chunk = items[i : i + 20_000]
            values = {"e": edition, "now": now, "rows": queue_rows_json(chunk), "retry": retry}
            with self._transaction():
                self._relaxed()
                # New rows, and nothing else: DO NOTHING neither locks nor rewrites a row another
                # sender queued (or leased, or claimed) meanwhile. An upsert with a WHERE locks
                # every row it meets, true or not: three senders enqueueing one edition at once
                # queued behind each other's locks (18 s each instead of 5.5 s for 300,000).
                if insert:
                    cur = self._conn.execute(
                        "INSERT INTO deliveries (edition, subscriber, email, state, run_id, attempts, article_ids,"
                        " selected_at, claimed_at, updated_at, queue_key)"
                        " SELECT %(e)s, u.s, u.m, 'queued', '', 0, u.a, u.t, %(now)s, %(now)s, u.q"
                        f" FROM {_table('s', 'm', 'a', 't', 'q')}"
                        " ORDER BY u.s"  # rows locked in one order, as claims lock them
                        " ON CONFLICT (edition, subscriber) DO NOTHING",
                        values,
                    )
                    queued += int(cur.rowcount)
                if not requeue:
                    continue
                # Then the rows to retry (failed, cancelled, ...), locked in subscriber order first
                # (as claims lock them); FOR UPDATE re-reads a row another sender changed meanwhile
                # and leaves it if it is no longer to retry.
                cur = self._conn.execute(
                    f"WITH u AS (SELECT * FROM {_table('s', 'm', 'a', 't', 'q')}),"
                    " retry AS (SELECT d.subscriber FROM u JOIN deliveries AS d ON d.edition = %(e)s"
                    " AND d.subscriber = u.s WHERE d.state = ANY(%(retry)s) ORDER BY d.subscriber FOR UPDATE OF d)"
                    " UPDATE deliveries AS d SET state = 'queued', run_id = '', article_ids = u.a,"
                    " selected_at = u.t, updated_at = %(now)s, queue_key = u.q"
                    " FROM retry, u"
                    " WHERE d.edition = %(e)s AND d.subscriber = retry.subscriber AND u.s = retry.subscriber"
                    " AND d.state = ANY(%(retry)s)",
                    values,
                )
                queued += int(cur.rowcount)
        return queued

    def set_scope(self, edition: str, subscribers: Sequence[str]) -> None:
        """The rows `take` may lease from now on (a temp table of this session)."""
        psycopg = pg.psycopg_module()
        unique = dict.fromkeys(subscribers)
        try:
            self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS digest_scope (subscriber TEXT PRIMARY KEY)")
            self._conn.execute("TRUNCATE digest_scope")
            with self._conn.cursor().copy("COPY digest_scope (subscriber) FROM STDIN") as copy:
                for subscriber in unique:
                    copy.write_row((subscriber,))
            self._conn.execute("ANALYZE digest_scope")
        except psycopg.Error as exc:
            raise LedgerError(f"{pg.masked(self.url)}: cannot queue the edition: {pg.one_line(exc)}") from None
        self._scope_edition = edition
        self._scope_size = len(unique)

    @pg.retrying
    def take(self, edition: str, run_id: str, limit: int, after: tuple[str, str] = ("", "")) -> list[tuple[str, str]]:
        if self._scope_edition != edition:
            raise LedgerError(f"{pg.masked(self.url)}: take() before enqueue() for edition {edition}")
        with self._transaction():
            self._relaxed()
            cur = self._conn.execute(
                "WITH picked AS (SELECT d.edition, d.subscriber FROM deliveries AS d"
                " WHERE d.edition = %(e)s AND d.state = 'queued' AND d.run_id = ''"
                " AND (d.edition, d.queue_key, d.subscriber) > (%(e)s, %(k)s, %(s)s)"
                " AND EXISTS (SELECT 1 FROM digest_scope AS s WHERE s.subscriber = d.subscriber)"
                " ORDER BY d.edition, d.queue_key, d.subscriber LIMIT %(n)s FOR UPDATE OF d SKIP LOCKED)"
                " UPDATE deliveries AS d SET run_id = %(run)s FROM picked"
                " WHERE d.edition = picked.edition AND d.subscriber = picked.subscriber"
                " RETURNING d.queue_key, d.subscriber",
                {"e": edition, "k": after[0], "s": after[1], "n": limit, "run": run_id},
            )
            return sorted((key, sub) for key, sub in cur)

    def release(self, edition: str, run_id: str, subscribers: Iterable[str] | None = None) -> int:
        with self._transaction():
            self._relaxed()
            if subscribers is None:
                cur = self._conn.execute(
                    "UPDATE deliveries SET run_id = '' WHERE edition = %s AND state = 'queued' AND run_id = %s",
                    (edition, run_id),
                )
            else:
                cur = self._conn.execute(
                    "UPDATE deliveries SET run_id = '' WHERE edition = %s AND subscriber = ANY(%s)"
                    " AND state = 'queued' AND run_id = %s",
                    (edition, list(subscribers), run_id),
                )
            return int(cur.rowcount)

    def leased_runs(self, edition: str) -> set[str]:
        cur = self._q(
            "SELECT DISTINCT run_id FROM deliveries WHERE edition = %s AND state = 'queued' AND run_id <> ''",
            (edition,),
        )
        return {run for (run,) in cur}

    def run_lock(self, run_id: str) -> PgRunLock:
        return PgRunLock(self, run_id)

    def run_alive(self, run_id: str) -> bool:
        """Whether any session of this database holds the run's lock (ours included)."""
        if run_id in self._own_runs:
            return True
        (held,) = self._q(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 2)",
            (_RUN_LOCKS, _run_key(run_id)),
        ).fetchone()
        return bool(held)

    # ---- whole-ledger copies

    def export_rows(self) -> Iterable[tuple[object, ...]]:
        rows: Iterable[tuple[object, ...]] = self._conn.cursor().stream(
            f"SELECT {EXPORT_COLUMNS} FROM deliveries ORDER BY edition, subscriber", size=5000
        )
        return rows

    @pg.retrying
    def import_rows(self, rows: Iterable[Sequence[object]]) -> int:
        """Rows of EXPORT_COLUMNS; of two rows for one (edition, subscriber) the later-updated wins."""
        with self._transaction():
            self._conn.execute("CREATE TEMP TABLE import_deliveries (LIKE deliveries) ON COMMIT DROP")
            with self._conn.cursor().copy(f"COPY import_deliveries ({EXPORT_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(tuple(row))
            cur = self._conn.execute(
                f"INSERT INTO deliveries ({EXPORT_COLUMNS}) SELECT {EXPORT_COLUMNS} FROM import_deliveries {UPSERT_NEWER}"
            )
            return int(cur.rowcount)

    @pg.retrying
    def clear(self) -> None:
        with self._transaction():
            self._conn.execute("DELETE FROM deliveries")


def _table(*names: str) -> str:
    """The rows of `_rows` (in %(rows)s) as a table `u` with these text columns."""
    picked = ", ".join(f"r.x->>{i} AS {name}" for i, name in enumerate(names))
    return f"(SELECT {picked} FROM json_array_elements(%(rows)s::json) AS r(x)) AS u"
