"""The send ledger in one SQLite file (`state/ledger.sqlite3`): the zero-setup engine.

Safe for several processes on one machine: every write takes the lock up front (BEGIN IMMEDIATE),
so two runs can never both claim or take a row. A run is alive while it holds its lock file
(recovery.RunLock, flock): the kernel drops it on kill -9.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from digest.db import Transaction, now_stamp, read_pairing, write_pairing
from digest.errors import LedgerError
from digest.ledger import (
    DELIVERY_COLUMNS,
    RETRYABLE,
    STATES,
    ClaimItem,
    Delivery,
    EditionSummary,
    Ledger,
    RowState,
    State,
    delivery,
    fold_histories,
    ids_json,
    queue_rows_json,
    stamp,
)
from digest.selection import History
from digest.store.runlock import RunLock, run_alive
from digest.store.schema import check_version
from digest.store.sqlite import open_store, version

#: Rows whose run and error planning reports; the others share one RowState per state.
_DETAILED: tuple[State, ...] = ("claimed", "ambiguous")
#: Rows per `IN (...)`: well under SQLite's smallest limit on bound parameters (999).
_CHUNK = 500


class SqliteLedger:
    """The ledger in one SQLite file."""

    engine = "sqlite"

    def __init__(self, path: Path, *, busy_timeout: float = 30.0, state_dir: Path | None = None):
        self.path = path
        #: where run lock files live (the state folder; a scratch copy names the real one)
        self.state_dir = state_dir if state_dir is not None else path.parent
        # threads: a sender's threads claim and settle their own requests, one call at a time
        # (dispatch.Serialized)
        self._db = open_store(path, "ledger", busy_timeout=busy_timeout, threads=True, error=LedgerError)
        self._scope_edition: str | None = None
        self._scope_size = 0

    @classmethod
    def read_only(cls, path: Path) -> SqliteLedger:
        """The ledger in `path` opened with mode=ro: reading methods work, SQLite refuses every
        write (no folder made, no schema or pragma written). See store.open_ledger(mode="read")."""
        ledger = cls.__new__(cls)
        ledger.path = path
        ledger.state_dir = path.parent
        ledger._scope_edition = None
        try:
            ledger._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"{path}: cannot open the send ledger for reading: {exc}") from None
        try:
            # Same refusal as a writer's: a ledger from another version (or a zero-byte file, "not
            # set up") is named with what to do, not met later as "no such column".
            check_version(str(path), "ledger", version(ledger._db, "ledger"))
        except sqlite3.Error as exc:
            ledger._db.close()
            raise LedgerError(f"{path}: cannot open the send ledger for reading: {exc}") from None
        except BaseException:
            ledger._db.close()  # the refusal leaves no connection behind
            raise
        return ledger

    @classmethod
    def scratch_copy(cls, path: Path) -> SqliteLedger:
        """An in-memory ledger holding what `path` holds (empty if it does not exist): a run that
        must read the real history but record nothing (a sandbox send) writes here. See
        store.open_ledger(mode="scratch")."""
        scratch = cls(Path(":memory:"), state_dir=path.parent)
        if path.exists():
            try:
                source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    source.backup(scratch._db)
                finally:
                    source.close()
            except sqlite3.Error as exc:
                raise LedgerError(f"{path}: cannot read the send ledger: {exc}") from None
        return scratch

    @classmethod
    def scratch_from(cls, source: Ledger, state_dir: Path) -> SqliteLedger:
        """An in-memory ledger holding what another ledger (any engine) holds. See
        store.open_ledger(mode="scratch")."""
        scratch = cls(Path(":memory:"), state_dir=state_dir)
        scratch.import_rows(source.export_rows())
        return scratch

    def __repr__(self) -> str:
        return f"SqliteLedger({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading

    def histories(self, exclude_edition: str, since: datetime | None = None) -> dict[str, History]:
        """Per subscriber: the moment of their last accepted digest and every article that may
        have reached them, from editions other than `exclude_edition` (the one being sent).

        `since`: only editions selected from then on. Older ones cannot matter to a send whose
        candidates are all newer (see `selection.history_horizon`), and reading a year of a
        million subscribers' rows would cost minutes and gigabytes.
        """
        where = "edition != ? AND state IN ('claimed', 'accepted', 'ambiguous')"
        args: list[object] = [exclude_edition]
        if since is not None:
            where += " AND selected_at >= ?"
            args.append(stamp(since))
        cur = self._db.execute(
            f"SELECT subscriber, state, article_ids, selected_at FROM deliveries WHERE {where} ORDER BY subscriber",
            args,
        )
        return fold_histories(cur)

    def oldest_last_delivery(self, exclude_edition: str, since: datetime | None = None) -> datetime | None:
        """The earliest of the subscribers' last accepted deliveries (from `since` on): how far back
        the candidate pool must reach so a subscriber who missed editions can catch up."""
        where = "edition != ? AND state = 'accepted'"
        args: list[object] = [exclude_edition]
        if since is not None:
            where += " AND selected_at >= ?"
            args.append(stamp(since))
        # stamps are UTC in one format (see stamp), so text order is time order
        cur = self._db.execute(
            f"SELECT MIN(last) FROM (SELECT MAX(selected_at) AS last FROM deliveries WHERE {where} GROUP BY subscriber)",
            args,
        )
        (oldest,) = cur.fetchone()
        return datetime.fromisoformat(oldest) if oldest else None

    def row_states(self, edition: str) -> dict[str, RowState]:
        """subscriber -> (state, run_id, error) for an edition, in ONE read: what planning needs.

        Two reads (states, then the details of the claimed and ambiguous rows) could see a row
        settled by another process in between. Only claimed and ambiguous rows carry their run and
        error; every other row shares one RowState per state.
        """
        plain: dict[str, RowState] = {s: RowState(s) for s in STATES}
        cur = self._db.execute(
            "SELECT subscriber, state, CASE WHEN state IN ('claimed', 'ambiguous') THEN run_id END,"
            " CASE WHEN state IN ('claimed', 'ambiguous') THEN error END FROM deliveries WHERE edition = ?",
            (edition,),
        )
        return {
            subscriber: plain[state] if run_id is None else RowState(plain[state].state, run_id, error)
            for subscriber, state, run_id, error in cur
        }

    def rows(self, edition: str, states: Iterable[State] | None = None) -> dict[str, Delivery]:
        """Whole rows of an edition; `states` limits them (a million accepted rows are not needed
        to find the few claimed ones)."""
        where, args = "edition = ?", [edition]
        if states is not None:
            wanted = list(states)
            where += f" AND state IN ({','.join('?' * len(wanted))})"
            args += wanted
        cur = self._db.execute(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {where}", args)
        return {row[1]: delivery(row) for row in cur}

    def summary(self, edition: str) -> Counter[str]:
        cur = self._db.execute("SELECT state, COUNT(*) FROM deliveries WHERE edition = ? GROUP BY state", (edition,))
        return Counter(dict(cur.fetchall()))

    def editions(self, limit: int = 5) -> list[EditionSummary]:
        """The most recently touched editions, newest first."""
        cur = self._db.execute(
            "SELECT edition, MAX(updated_at) AS last FROM deliveries GROUP BY edition ORDER BY last DESC LIMIT ?",
            (limit,),
        )
        return [
            EditionSummary(edition, self.summary(edition), datetime.fromisoformat(last))
            for edition, last in cur.fetchall()
        ]

    def accepted_for(self, subscribers: Sequence[str]) -> dict[str, list[tuple[str, datetime]]]:
        out: dict[str, list[tuple[str, datetime]]] = {}
        wanted = list(dict.fromkeys(subscribers))
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            cur = self._db.execute(
                "SELECT subscriber, edition, updated_at FROM deliveries WHERE state = 'accepted'"
                f" AND subscriber IN ({','.join('?' * len(chunk))}) ORDER BY updated_at",
                chunk,
            )
            for subscriber, edition, at in cur:
                out.setdefault(subscriber, []).append((edition, datetime.fromisoformat(at)))
        return out

    def sent_editions(self) -> dict[str, datetime]:
        cur = self._db.execute(
            "SELECT edition, MIN(selected_at) AS at FROM deliveries WHERE state = 'accepted'"
            " GROUP BY edition ORDER BY at, edition"
        )
        return {edition: datetime.fromisoformat(at) for edition, at in cur}

    def first_editions(self) -> Counter[str]:
        # SQLite gives a bare column of a MIN() aggregate from the row holding the minimum:
        # `edition` is that of each subscriber's earliest accepted row (PostgreSQL: DISTINCT ON).
        cur = self._db.execute(
            "SELECT edition, COUNT(*) FROM (SELECT subscriber, MIN(selected_at), edition FROM deliveries"
            " WHERE state = 'accepted' GROUP BY subscriber) GROUP BY edition"
        )
        return Counter(dict(cur.fetchall()))

    def count(self) -> int:
        """Rows in the ledger: every (edition, subscriber) ever claimed or queued."""
        return int(self._db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0])

    def pairing(self) -> dict[str, str]:
        """The rows by which this ledger and the subscriber state know each other (statefiles.py)."""
        return read_pairing(self._db)

    def set_pairing(self, values: Mapping[str, object]) -> None:
        with self._transaction():
            write_pairing(self._db, values)

    # ---- writing

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
        """Claim rows for this run, atomically; returns the subscribers actually claimed.

        A new row is claimed; an existing one only when its state is retryable (or in `also_from`,
        e.g. ambiguous with --on-ambiguous=resend), or queued and free or leased by this run.
        Anything else belongs to someone else. `settled`: this run's answers to earlier requests
        (as `settle_many` takes them), recorded in the same transaction: one disk sync for both.
        """
        takeable = set(RETRYABLE) | set(also_from)
        now = now_stamp()
        with self._transaction():
            self._settle_rows(edition, settled, run_id, ())
            # One SELECT per slice and executemany for the writes: a few statements per request
            # instead of three per subscriber (the ledger was most of a 100,000-subscriber send).
            existing: dict[str, tuple[str, str]] = {}
            for i in range(0, len(items), _CHUNK):
                ids = [item.subscriber for item in items[i : i + _CHUNK]]
                cur = self._db.execute(
                    "SELECT subscriber, state, run_id FROM deliveries WHERE edition = ?"
                    f" AND subscriber IN ({','.join('?' * len(ids))})",
                    (edition, *ids),
                )
                existing.update((sub, (state, owner)) for sub, state, owner in cur)
            inserts: list[tuple[object, ...]] = []
            updates: list[tuple[object, ...]] = []
            claimed: list[str] = []
            for item in items:
                found = existing.get(item.subscriber)
                if found is not None:
                    state, owner = found
                    free = state in takeable or (state == "queued" and owner in ("", run_id))
                    if not free:
                        continue  # someone else's, or already settled for good
                article_ids = ids_json(item.article_ids)
                at = stamp(item.selected_at)
                if found is None:
                    inserts.append(
                        (edition, item.subscriber, item.email, run_id, article_ids, at, now, now, transport, batch_id)
                        + (send_at, item.queue_key)
                    )
                else:
                    updates.append(
                        (run_id, article_ids, at, now, now, transport, batch_id, send_at, edition, item.subscriber)
                    )
                claimed.append(item.subscriber)
            self._db.executemany(
                "INSERT INTO deliveries (edition, subscriber, email, state, run_id, attempts, article_ids,"
                " selected_at, claimed_at, updated_at, transport, batch_id, send_at, queue_key)"
                " VALUES (?, ?, ?, 'claimed', ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
            self._db.executemany(
                "UPDATE deliveries SET state = 'claimed', run_id = ?, attempts = attempts + 1,"
                " article_ids = ?, selected_at = ?, claimed_at = ?, updated_at = ?, transport = ?,"
                " message_id = '', batch_id = ?, send_at = ?, error = ''"
                " WHERE edition = ? AND subscriber = ?",
                updates,
            )
        return tuple(claimed)

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
        """Record the outcome for rows; with `run_id`, only rows that run still holds; with `only`,
        only rows in one of those states."""
        return self.settle_many(edition, [(tuple(subscribers), state, message_id, error)], run_id=run_id, only=only)

    def settle_many(
        self,
        edition: str,
        outcomes: Sequence[tuple[Sequence[str], State, str, str]],
        *,
        run_id: str | None = None,
        only: Sequence[State] = (),
    ) -> int:
        """Several `settle`s, (subscribers, state, message_id, error) each, in one transaction."""
        # A settle need not wait for the disk (one fsync per window saved): if a power cut loses
        # it, its rows are still `claimed` (that commit WAS synced before anything was sent) and
        # become ambiguous, never resent; the next synced commit carries it to disk anyway.
        with self._relaxed(), self._transaction():
            return self._settle_rows(edition, outcomes, run_id, only)

    def _settle_rows(
        self,
        edition: str,
        outcomes: Sequence[tuple[Sequence[str], State, str, str]],
        run_id: str | None,
        only: Sequence[State],
    ) -> int:
        """The UPDATE of `settle_many`, inside the caller's transaction."""
        guard = " AND run_id = ?" if run_id is not None else ""
        tail: tuple[object, ...] = (run_id,) if run_id is not None else ()
        if only:
            guard += f" AND state IN ({','.join('?' * len(only))})"
            tail += tuple(only)
        now = now_stamp()
        before = self._db.total_changes
        self._db.executemany(
            "UPDATE deliveries SET state = ?, message_id = ?, error = ?, updated_at = ?"
            f" WHERE edition = ? AND subscriber = ?{guard}",
            [
                (state, message_id, error, now, edition, subscriber, *tail)
                for subscribers, state, message_id, error in outcomes
                for subscriber in subscribers
            ],
        )
        return self._db.total_changes - before

    # ---- the queue (several senders, --workers)

    def enqueue(self, edition: str, items: Sequence[ClaimItem], *, also_from: Iterable[State] = ()) -> int:
        retry = [*RETRYABLE, *also_from]
        marks = ",".join("?" * len(retry))
        now = now_stamp()
        self.set_scope(edition, [i.subscriber for i in items])
        size = self._scope_size
        # Losing a queue write to a power cut loses nothing: the rows are planned again.
        with self._relaxed(), self._transaction():
            # New rows go in, rows to retry (failed, cancelled, ...) are queued again, anything
            # else is left as it is. Each write only when it has work: a rerun, or the second of
            # several senders, finds every row there and none to retry.
            (present,) = self._db.execute(
                "SELECT count(*) FROM temp.scope s JOIN deliveries d ON d.edition = ? AND d.subscriber = s.subscriber",
                (edition,),
            ).fetchone()
            (requeue,) = self._db.execute(
                f"SELECT EXISTS (SELECT 1 FROM deliveries WHERE edition = ? AND state IN ({marks}))", (edition, *retry)
            ).fetchone()
            if present == size and not requeue:
                return 0
            before = self._db.total_changes
            # The rows as JSON values parsed by SQLite in C (`json_each`), not bound a row at a
            # time; 20,000 at a time, so memory stays within a few megabytes.
            table = (
                "(SELECT json_extract(r.value, '$[0]') AS s, json_extract(r.value, '$[1]') AS m,"
                " json_extract(r.value, '$[2]') AS a, json_extract(r.value, '$[3]') AS t,"
                " json_extract(r.value, '$[4]') AS q FROM json_each(?) AS r) AS u"
            )
            for start in range(0, len(items), 20_000):
                rows = queue_rows_json(items[start : start + 20_000])
                if present < size:
                    self._db.execute(
                        "INSERT INTO deliveries (edition, subscriber, email, state, run_id, attempts, article_ids,"
                        " selected_at, claimed_at, updated_at, queue_key)"
                        f" SELECT ?, u.s, u.m, 'queued', '', 0, u.a, u.t, ?, ?, u.q FROM {table}"
                        " WHERE true"  # SQLite reads ON CONFLICT after a bare FROM as a join constraint
                        " ON CONFLICT (edition, subscriber) DO NOTHING",
                        (edition, now, now, rows),
                    )
                if requeue:
                    self._db.execute(
                        "UPDATE deliveries SET state = 'queued', run_id = '', article_ids = u.a, selected_at = u.t,"
                        f" updated_at = ?, queue_key = u.q FROM {table} WHERE deliveries.edition = ?"
                        f" AND deliveries.subscriber = u.s AND deliveries.state IN ({marks})",
                        (now, rows, edition, *retry),
                    )
            return self._db.total_changes - before

    def set_scope(self, edition: str, subscribers: Sequence[str]) -> None:
        """The rows `take` may lease from now on (a temp table of this connection)."""
        unique = dict.fromkeys(subscribers)
        # One transaction, and a deferred one: the scope is this connection's temp table, so no
        # lock on the ledger is needed; row by row in autocommit, refilling the table took 2.6 s
        # per 100,000 instead of 0.14 s.
        self._db.execute("BEGIN")
        try:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS scope (subscriber TEXT PRIMARY KEY)")
            self._db.execute("DELETE FROM temp.scope")
            self._db.executemany("INSERT INTO temp.scope (subscriber) VALUES (?)", ((s,) for s in unique))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.rollback()
            raise
        self._scope_edition = edition
        self._scope_size = len(unique)

    def take(self, edition: str, run_id: str, limit: int, after: tuple[str, str] = ("", "")) -> list[tuple[str, str]]:
        if self._scope_edition != edition:
            raise LedgerError(f"{self.path}: take() before enqueue() for edition {edition}")
        with self._relaxed(), self._transaction():
            picked = self._db.execute(
                "SELECT d.queue_key, d.subscriber FROM deliveries d JOIN temp.scope s ON s.subscriber = d.subscriber"
                " WHERE d.edition = ? AND d.state = 'queued' AND d.run_id = ''"
                " AND (d.queue_key > ? OR (d.queue_key = ? AND d.subscriber > ?))"
                " ORDER BY d.queue_key, d.subscriber LIMIT ?",
                (edition, after[0], after[0], after[1], limit),
            ).fetchall()
            self._db.executemany(
                "UPDATE deliveries SET run_id = ? WHERE edition = ? AND subscriber = ?",
                ((run_id, edition, subscriber) for _, subscriber in picked),
            )
        return [(key, subscriber) for key, subscriber in picked]

    def release(self, edition: str, run_id: str, subscribers: Iterable[str] | None = None) -> int:
        with self._relaxed(), self._transaction():
            before = self._db.total_changes
            if subscribers is None:
                self._db.execute(
                    "UPDATE deliveries SET run_id = '' WHERE edition = ? AND state = 'queued' AND run_id = ?",
                    (edition, run_id),
                )
            else:
                self._db.executemany(
                    "UPDATE deliveries SET run_id = '' WHERE edition = ? AND subscriber = ?"
                    " AND state = 'queued' AND run_id = ?",
                    ((edition, subscriber, run_id) for subscriber in subscribers),
                )
            return self._db.total_changes - before

    def leased_runs(self, edition: str) -> set[str]:
        cur = self._db.execute(
            "SELECT DISTINCT run_id FROM deliveries WHERE edition = ? AND state = 'queued' AND run_id != ''",
            (edition,),
        )
        return {run for (run,) in cur}

    def run_lock(self, run_id: str) -> RunLock:
        return RunLock(self.state_dir, run_id)

    def run_alive(self, run_id: str) -> bool:
        return run_alive(self.state_dir, run_id)

    # ---- whole-ledger copies (digest state copy / backup / restore)

    def export_rows(self) -> Iterable[tuple[object, ...]]:
        return self._db.execute(f"SELECT {EXPORT_COLUMNS} FROM deliveries ORDER BY edition, subscriber")

    def import_rows(self, rows: Iterable[Sequence[object]]) -> int:
        """Rows of EXPORT_COLUMNS; of two rows for one (edition, subscriber) the later-updated wins."""
        with self._transaction():
            before = self._db.total_changes
            marks = ",".join("?" * len(EXPORT_COLUMNS.split(",")))
            self._db.executemany(
                f"INSERT INTO deliveries ({EXPORT_COLUMNS}) VALUES ({marks}) {UPSERT_NEWER}", (tuple(r) for r in rows)
            )
            return self._db.total_changes - before

    def clear(self) -> None:
        """Every row gone (a restore, before it puts the backup's rows in)."""
        with self._transaction():
            self._db.execute("DELETE FROM deliveries")

    def _relaxed(self) -> _Sync:
        return _Sync(self._db)

    def forget(self, subscriber: str, pseudonym: str) -> int:
        """See Ledger.forget. secure_delete for the update (the old cells are overwritten, not left
        in free space), then the write-ahead log emptied."""
        from digest.store.sqlite_state import checkpoint

        (before,) = self._db.execute("PRAGMA secure_delete").fetchone()
        self._db.execute("PRAGMA secure_delete = ON")
        try:
            with self._transaction():
                cur = self._db.execute(
                    "UPDATE deliveries SET subscriber = ?, email = ?, error = '' WHERE subscriber = ?",
                    (pseudonym, pseudonym, subscriber),
                )
        finally:
            self._db.execute(f"PRAGMA secure_delete = {int(before)}")
        checkpoint(self._db)
        return int(cur.rowcount)

    def _transaction(self) -> Transaction:
        return Transaction(self._db, self.path, LedgerError, "the send ledger")


EXPORT_COLUMNS = (
    "edition, subscriber, email, state, run_id, attempts, article_ids, selected_at, claimed_at, updated_at,"
    " transport, message_id, batch_id, send_at, error, queue_key"
)
#: A copied row replaces the one already there only if it changed later (copies converge on rerun).
UPSERT_NEWER = (
    "ON CONFLICT (edition, subscriber) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in EXPORT_COLUMNS.split(",")[2:])
    + " WHERE excluded.updated_at > deliveries.updated_at"
)


class _Sync:
    """synchronous = NORMAL for a write whose loss to a power cut loses nothing that matters."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("PRAGMA synchronous = NORMAL")

    def __exit__(self, *exc: object) -> None:
        self._db.execute("PRAGMA synchronous = FULL")
