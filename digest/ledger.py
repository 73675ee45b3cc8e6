"""The send ledger: what each subscriber got, per edition. SQLite (stdlib, WAL) behind a Protocol.

One row per (edition, subscriber). A row is *claimed* in a transaction before its request leaves,
so a crash, a rerun or a second process can never send it again without noticing:

    (none) --claim--> claimed --202--> accepted
                         |---- permanent error / known never sent --> failed  (claimable again)
                         |---- answer lost, or found after a crash ----> ambiguous
                         '---- scheduled send cancelled in time -------> cancelled (claimable again)

Selection reads the ledger too: a subscriber's window starts at their last accepted delivery, and
an article that may have reached them (accepted, ambiguous or in flight) is never sent again.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

from digest.db import PAIRING_SCHEMA, Transaction, connect, explain, now_stamp, read_pairing, write_pairing
from digest.errors import LedgerError
from digest.selection import History

State = Literal["claimed", "accepted", "failed", "ambiguous", "cancelled"]
STATES: tuple[State, ...] = ("claimed", "accepted", "failed", "ambiguous", "cancelled")
#: Rows a new attempt may take over: nothing can have been delivered for them.
RETRYABLE: tuple[State, ...] = ("failed", "cancelled")
#: Rows whose articles may have reached the subscriber.
MAYBE_SENT: tuple[State, ...] = ("claimed", "accepted", "ambiguous")

LEDGER_NAME = "ledger.sqlite3"


@dataclass(frozen=True)
class Delivery:
    """One (edition, subscriber) row of the ledger."""

    edition: str
    subscriber: str  #: Subscriber.id (the case-folded address)
    email: str
    state: State
    run_id: str
    attempts: int
    article_ids: tuple[str, ...]
    selected_at: datetime  #: the edition's moment the selection was made for
    updated_at: datetime
    transport: str = ""
    message_id: str = ""
    batch_id: str = ""
    send_at: int | None = None  #: epoch seconds, scheduled mode only
    error: str = ""


@dataclass(frozen=True)
class ClaimItem:
    """What a run wants to send to one subscriber."""

    subscriber: str
    email: str
    article_ids: tuple[str, ...]
    selected_at: datetime


class RowState(NamedTuple):
    """A row's state, with the run and error only where planning reports them (claimed, ambiguous)."""

    state: State
    run_id: str = ""
    error: str = ""


#: Rows whose run and error planning reports; the others share one RowState per state.
_DETAILED: tuple[State, ...] = ("claimed", "ambiguous")


@dataclass(frozen=True)
class EditionSummary:
    edition: str
    counts: Mapping[str, int]
    last_update: datetime


class Ledger(Protocol):
    """What a send run needs from a ledger; a PostgreSQL one can implement the same."""

    def histories(self, exclude_edition: str, since: datetime | None = None) -> Mapping[str, History]: ...

    def oldest_last_delivery(self, exclude_edition: str, since: datetime | None = None) -> datetime | None: ...

    def states(self, edition: str) -> dict[str, State]: ...

    def row_states(self, edition: str) -> dict[str, RowState]: ...

    def rows(self, edition: str, states: Iterable[State] | None = None) -> dict[str, Delivery]: ...

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
    ) -> tuple[str, ...]: ...

    def settle(
        self,
        edition: str,
        subscribers: Iterable[str],
        state: State,
        *,
        run_id: str | None = None,
        message_id: str = "",
        error: str = "",
    ) -> int: ...

    def settle_many(
        self,
        edition: str,
        outcomes: Sequence[tuple[Sequence[str], State, str, str]],
        *,
        run_id: str | None = None,
    ) -> int: ...

    def summary(self, edition: str) -> Counter[str]: ...

    def editions(self, limit: int = 5) -> list[EditionSummary]: ...

    def close(self) -> None: ...


_SCHEMA = (
    """
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
    send_at     INTEGER,
    error       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (edition, subscriber)
);
CREATE INDEX IF NOT EXISTS deliveries_subscriber ON deliveries (subscriber, state);
"""
    + PAIRING_SCHEMA
)


def _stamp(moment: datetime) -> str:
    """A stored moment: UTC, always with microseconds, so text order is time order in SQL."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class SqliteLedger:
    """The ledger in one SQLite file. Safe for several processes: writes take the lock up front
    (BEGIN IMMEDIATE), so two runs can never both claim a row."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0):
        self.path = path
        try:
            self._db = connect(path, _SCHEMA, busy_timeout=busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"{path}: cannot open the send ledger: {explain(exc)}") from None

    @classmethod
    def scratch_copy(cls, path: Path) -> SqliteLedger:
        """An in-memory ledger holding what `path` holds (empty if it does not exist): a run that
        must read the real history but record nothing (a sandbox send) writes here."""
        scratch = cls(Path(":memory:"))
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
        million subscribers' rows would cost minutes and gigabytes. Rows come in subscriber order
        and equal histories are shared, so memory grows with distinct histories, not with rows.
        """
        marks = ",".join("?" * len(MAYBE_SENT))
        where = f"edition != ? AND state IN ({marks})"
        args: list[object] = [exclude_edition, *MAYBE_SENT]
        if since is not None:
            where += " AND selected_at >= ?"
            args.append(_stamp(since))
        cur = self._db.execute(
            f"SELECT subscriber, state, article_ids, selected_at FROM deliveries WHERE {where} ORDER BY subscriber",
            args,
        )
        out: dict[str, History] = {}
        shared: dict[tuple[datetime | None, frozenset[str]], History] = {}

        def flush(subscriber: str, ids: set[str], last: datetime | None) -> None:
            key = (last, frozenset(ids))
            out[subscriber] = shared.setdefault(key, History(last_delivery=last, sent_article_ids=key[1]))

        current: str | None = None
        ids: set[str] = set()
        last: datetime | None = None
        for subscriber, state, article_ids, selected_at in cur:
            if subscriber != current:
                if current is not None:
                    flush(current, ids, last)
                current, ids, last = subscriber, set(), None
            ids.update(json.loads(article_ids))
            if state == "accepted":
                at = datetime.fromisoformat(selected_at)
                if last is None or at > last:
                    last = at
        if current is not None:
            flush(current, ids, last)
        return out

    def oldest_last_delivery(self, exclude_edition: str, since: datetime | None = None) -> datetime | None:
        """The earliest of the subscribers' last accepted deliveries (from `since` on): how far back
        the candidate pool must reach so a subscriber who missed editions can catch up."""
        where = "edition != ? AND state = 'accepted'"
        args: list[object] = [exclude_edition]
        if since is not None:
            where += " AND selected_at >= ?"
            args.append(_stamp(since))
        # stamps are UTC in one format (see _stamp), so text order is time order
        cur = self._db.execute(
            f"SELECT MIN(last) FROM (SELECT MAX(selected_at) AS last FROM deliveries WHERE {where} GROUP BY subscriber)",
            args,
        )
        (oldest,) = cur.fetchone()
        return datetime.fromisoformat(oldest) if oldest else None

    def states(self, edition: str) -> dict[str, State]:
        """subscriber -> state for an edition: what planning needs, without loading whole rows."""
        names: dict[str, State] = {s: s for s in ("claimed", "accepted", "failed", "ambiguous", "cancelled")}
        cur = self._db.execute("SELECT subscriber, state FROM deliveries WHERE edition = ?", (edition,))
        return {subscriber: names[state] for subscriber, state in cur}

    def row_states(self, edition: str) -> dict[str, RowState]:
        """subscriber -> (state, run_id, error) for an edition, in ONE read: what planning needs.

        Two reads (states, then the details of the claimed and ambiguous rows) could see a row
        settled by another process in between. Only claimed and ambiguous rows carry their run and
        error; every other row shares one RowState per state, so a million accepted rows cost a
        dict of references.
        """
        plain: dict[str, RowState] = {s: RowState(s) for s in STATES}
        detailed = ",".join("?" * len(_DETAILED))
        cur = self._db.execute(
            f"SELECT subscriber, state, CASE WHEN state IN ({detailed}) THEN run_id END,"
            f" CASE WHEN state IN ({detailed}) THEN error END FROM deliveries WHERE edition = ?",
            (*_DETAILED, *_DETAILED, edition),
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
        cur = self._db.execute(f"SELECT * FROM deliveries WHERE {where}", args)
        names = [d[0] for d in cur.description]
        out = {}
        for values in cur:
            row = dict(zip(names, values, strict=True))
            out[row["subscriber"]] = Delivery(
                edition=row["edition"],
                subscriber=row["subscriber"],
                email=row["email"],
                state=row["state"],
                run_id=row["run_id"],
                attempts=row["attempts"],
                article_ids=tuple(json.loads(row["article_ids"])),
                selected_at=datetime.fromisoformat(row["selected_at"]),
                updated_at=datetime.fromisoformat(row["updated_at"]),
                transport=row["transport"],
                message_id=row["message_id"],
                batch_id=row["batch_id"],
                send_at=row["send_at"],
                error=row["error"],
            )
        return out

    def pairing(self) -> dict[str, str]:
        """The rows by which this ledger and the subscriber state know each other (statefiles.py)."""
        return read_pairing(self._db)

    def set_pairing(self, values: Mapping[str, object]) -> None:
        with self._transaction():
            write_pairing(self._db, values)

    def count(self) -> int:
        """Rows in the ledger: every (edition, subscriber) ever claimed."""
        return int(self._db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0])

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
        """Per subscriber: (edition, when it was settled) of each accepted row, oldest first.
        What a report attributes an opt-out to: the last edition that reached them before it."""
        out: dict[str, list[tuple[str, datetime]]] = {}
        wanted = list(dict.fromkeys(subscribers))
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            cur = self._db.execute(
                "SELECT subscriber, edition, updated_at FROM deliveries WHERE state = 'accepted'"
                f" AND subscriber IN ({','.join('?' * len(chunk))}) ORDER BY updated_at",
                chunk,
            )
            for subscriber, edition, at in cur:
                out.setdefault(subscriber, []).append((edition, datetime.fromisoformat(at)))
        return out

    def sent_editions(self) -> dict[str, datetime]:
        """Every edition with an accepted row -> its moment (what selection ran for), oldest first."""
        cur = self._db.execute(
            "SELECT edition, MIN(selected_at) AS at FROM deliveries WHERE state = 'accepted'"
            " GROUP BY edition ORDER BY at, edition"
        )
        return {edition: datetime.fromisoformat(at) for edition, at in cur}

    def first_editions(self) -> Counter[str]:
        """How many subscribers each edition reached for the first time (their first accepted row)."""
        # SQLite gives a bare column of a MIN() aggregate from the row holding the minimum:
        # `edition` is that of each subscriber's earliest accepted row (PostgreSQL: DISTINCT ON).
        cur = self._db.execute(
            "SELECT edition, COUNT(*) FROM (SELECT subscriber, MIN(selected_at), edition FROM deliveries"
            " WHERE state = 'accepted' GROUP BY subscriber) GROUP BY edition"
        )
        return Counter(dict(cur.fetchall()))

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
    ) -> tuple[str, ...]:
        """Claim rows for this run, atomically; returns the subscribers actually claimed.

        A new row is claimed; an existing one only when its state is retryable (or in `also_from`,
        e.g. ambiguous with --on-ambiguous=resend). Anything else belongs to someone else.
        """
        takeable = set(RETRYABLE) | set(also_from)
        now = now_stamp()
        with self._transaction():
            # One SELECT per slice and executemany for the writes: a few statements per request
            # instead of three per subscriber (the ledger was most of a 100,000-subscriber send).
            existing: dict[str, str] = {}
            for i in range(0, len(items), 500):
                ids = [item.subscriber for item in items[i : i + 500]]
                marks = ",".join("?" * len(ids))
                cur = self._db.execute(
                    f"SELECT subscriber, state FROM deliveries WHERE edition = ? AND subscriber IN ({marks})",
                    (edition, *ids),
                )
                existing.update(cur.fetchall())
            inserts: list[tuple[object, ...]] = []
            updates: list[tuple[object, ...]] = []
            claimed: list[str] = []
            for item in items:
                state = existing.get(item.subscriber)
                if state is not None and state not in takeable:
                    continue  # someone else's, or already settled for good
                ids_json = json.dumps(list(item.article_ids))
                at = _stamp(item.selected_at)
                if state is None:
                    inserts.append(
                        (
                            edition,
                            item.subscriber,
                            item.email,
                            run_id,
                            ids_json,
                            at,
                            now,
                            now,
                            transport,
                            batch_id,
                            send_at,
                        )
                    )
                else:
                    updates.append(
                        (run_id, ids_json, at, now, now, transport, batch_id, send_at, edition, item.subscriber)
                    )
                claimed.append(item.subscriber)
            self._db.executemany(
                "INSERT INTO deliveries (edition, subscriber, email, state, run_id, attempts, article_ids,"
                " selected_at, claimed_at, updated_at, transport, batch_id, send_at)"
                " VALUES (?, ?, ?, 'claimed', ?, 1, ?, ?, ?, ?, ?, ?, ?)",
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
    ) -> int:
        """Record the outcome for rows; with `run_id`, only rows that run still holds."""
        return self.settle_many(edition, [(tuple(subscribers), state, message_id, error)], run_id=run_id)

    def settle_many(
        self,
        edition: str,
        outcomes: Sequence[tuple[Sequence[str], State, str, str]],
        *,
        run_id: str | None = None,
    ) -> int:
        """Several `settle`s, (subscribers, state, message_id, error) each, in one transaction."""
        guard = " AND run_id = ?" if run_id is not None else ""
        tail = (run_id,) if run_id is not None else ()
        now = now_stamp()
        # A settle need not wait for the disk (one fsync per window saved): if a power cut loses
        # it, its rows are still `claimed` (that commit WAS synced before anything was sent) and
        # become ambiguous, never resent; the next synced commit carries it to disk anyway.
        self._db.execute("PRAGMA synchronous = NORMAL")
        try:
            with self._transaction():
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
        finally:
            self._db.execute("PRAGMA synchronous = FULL")

    def _transaction(self) -> Transaction:
        return Transaction(self._db, self.path, LedgerError, "the send ledger")


def open_ledger(state_dir: Path) -> SqliteLedger:
    return SqliteLedger(state_dir / LEDGER_NAME)
