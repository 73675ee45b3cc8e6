"""The send ledger: what each subscriber got, per edition. A Protocol; the engines are in digest/store/.

One row per (edition, subscriber). A row is *claimed* in a transaction before its request leaves,
so a crash, a rerun or a second process can never send it again without noticing:

    (none) --enqueue--> queued --take (lease)--> queued, run_id = taker
                                                     |
    (none) ----------------------------------------claim--> claimed --202--> accepted
                         |---- permanent error / known never sent --> failed  (claimable again)
                         |---- answer lost, or found after a crash ----> ambiguous
                         '---- scheduled send cancelled in time -------> cancelled (claimable again)

*queued* rows are the shared work of an edition: each sender plans, enqueues what it may send,
then *takes* a window of queued rows (an exclusive lease: `FOR UPDATE SKIP LOCKED` on PostgreSQL,
BEGIN IMMEDIATE on SQLite), composes them, and claims them. Nothing has left for a queued row,
leased or not: a lease whose run is gone is simply freed (`release`), never made ambiguous. So
several senders (several machines, or `--workers N`) share an edition without overlap, and a
kill -9 at any moment leaves only the claims in flight ambiguous, as before.

Selection reads the ledger too: a subscriber's window starts at their last accepted delivery, and
an article that may have reached them (accepted, ambiguous or in flight) is never sent again.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NamedTuple, Protocol

from digest.selection import History

State = Literal["queued", "claimed", "accepted", "failed", "ambiguous", "cancelled"]
STATES: tuple[State, ...] = ("queued", "claimed", "accepted", "failed", "ambiguous", "cancelled")
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


class ClaimItem(NamedTuple):
    """What a run wants to send to one subscriber. (A NamedTuple, not a frozen dataclass: a send
    makes a few per recipient, and a frozen dataclass's __init__ costs three times as much.)"""

    subscriber: str
    email: str
    article_ids: tuple[str, ...]
    selected_at: datetime
    #: Queue order: rows that share a request (one content) sort together, so a taken window
    #: makes few requests. Any string; the same for the same group in every sender.
    queue_key: str = ""


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


class RunHandle(Protocol):
    """Held while a run lives; the engine drops it when the process dies (kill -9 included)."""

    def release(self) -> None: ...


class Ledger(Protocol):
    """What a send run needs from a ledger: SqliteLedger and PgLedger (digest/store/) implement it."""

    def histories(self, exclude_edition: str, since: datetime | None = None) -> Mapping[str, History]: ...

    def oldest_last_delivery(self, exclude_edition: str, since: datetime | None = None) -> datetime | None: ...

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
        settled: Sequence[tuple[Sequence[str], State, str, str]] = (),
    ) -> tuple[str, ...]:
        """Claim rows for `run_id` (see the engines); `settled`: that run's answers to earlier
        requests, as `settle_many` takes them, recorded in the same transaction first."""
        ...

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
        """Record an outcome; with `run_id`, only rows that run still holds; with `only`, only
        rows in one of those states (recovery settles a dead run's rows still `claimed`)."""
        ...

    def settle_many(
        self,
        edition: str,
        outcomes: Sequence[tuple[Sequence[str], State, str, str]],
        *,
        run_id: str | None = None,
        only: Sequence[State] = (),
    ) -> int: ...

    def summary(self, edition: str) -> Counter[str]: ...

    def editions(self, limit: int = 5) -> list[EditionSummary]: ...

    def accepted_for(self, subscribers: Sequence[str]) -> dict[str, list[tuple[str, datetime]]]:
        """Per subscriber: (edition, when it was settled) of each accepted row, oldest first.
        What a report attributes an opt-out to: the last edition that reached them before it."""
        ...

    def sent_editions(self) -> dict[str, datetime]:
        """Every edition with an accepted row -> its moment (what selection ran for), oldest first."""
        ...

    def first_editions(self) -> Counter[str]:
        """How many subscribers each edition reached for the first time (their first accepted row)."""
        ...

    def enqueue(self, edition: str, items: Sequence[ClaimItem], *, also_from: Iterable[State] = ()) -> int:
        """Queue the items: new rows become queued, rows in a retryable state (or `also_from`) are
        queued again, anything else is left alone. The items are this connection's *scope*: `take`
        only ever leases rows among them. Returns how many rows were queued."""
        ...

    def set_scope(self, edition: str, subscribers: Sequence[str]) -> None:
        """Only these subscribers' rows for `take` (what `enqueue` sets; another sender of the same
        plan, such as a forked worker, sets it without queueing again)."""
        ...

    def take(self, edition: str, run_id: str, limit: int, after: tuple[str, str] = ("", "")) -> list[tuple[str, str]]:
        """Lease up to `limit` free queued rows of the scope after `after` (queue_key, subscriber),
        in that order; returns their (queue_key, subscriber). Never blocks on another taker."""
        ...

    def release(self, edition: str, run_id: str, subscribers: Iterable[str] | None = None) -> int:
        """Free rows leased by `run_id` (all of them with None): nothing was sent for them."""
        ...

    def leased_runs(self, edition: str) -> set[str]:
        """Runs holding leases on queued rows of the edition."""
        ...

    def run_lock(self, run_id: str) -> RunHandle:
        """Mark `run_id` alive for as long as this process (and this ledger) lives."""
        ...

    def run_alive(self, run_id: str) -> bool: ...

    def forget(self, subscriber: str, pseudonym: str) -> int:
        """Replace a subscriber's id and address in every row with `pseudonym` (`digest subscribers
        forget`): the rows stay, so counts and exactly-once still hold, but name nobody."""
        ...

    # ---- moving rows between stores (`digest state copy|backup|restore`, a scratch copy)

    def export_rows(self) -> Iterable[tuple[object, ...]]: ...

    def import_rows(self, rows: Iterable[Sequence[object]]) -> int: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Ledger: ...

    def __exit__(self, *exc: object) -> None: ...


@functools.lru_cache(maxsize=1024)
def stamp(moment: datetime) -> str:
    """A stored moment: UTC, always with microseconds, so text order is time order in SQL.

    Cached: a send stamps every row with the same few moments (the edition's), a row at a time."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@functools.lru_cache(maxsize=16_384)
def ids_json(article_ids: tuple[str, ...]) -> str:
    """The stored form of a row's article ids. Cached: an edition has a few thousand distinct
    selections, shared by hundreds of thousands of rows."""
    return json.dumps(list(article_ids))


def rows_json(*columns: Sequence[str]) -> str:
    """Columns of text as ONE JSON array of rows, for a bulk write: the json module encodes in C,
    and both engines parse it in C (PostgreSQL's `json_array_elements`, SQLite's `json_each`).
    Binding row by row costs a Python tuple per row (psycopg even dumps a text[] parameter element
    by element): half of a 300,000-row enqueue's time."""
    return json.dumps(list(zip(*columns, strict=True)))


def queue_rows_json(items: Sequence[ClaimItem]) -> str:
    """The queue rows of `items` for `rows_json`: (subscriber, email, article ids, selected at,
    queue key)."""
    return rows_json(
        [i.subscriber for i in items],
        [i.email for i in items],
        [ids_json(i.article_ids) for i in items],
        [stamp(i.selected_at) for i in items],
        [i.queue_key for i in items],
    )


def fold_histories(rows: Iterable[tuple[str, str, str, str]]) -> dict[str, History]:
    """(subscriber, state, article_ids JSON, selected_at) rows in subscriber order -> histories.

    Equal histories are shared, so memory grows with distinct histories, not with rows."""
    out: dict[str, History] = {}
    shared: dict[tuple[datetime | None, frozenset[str]], History] = {}

    def flush(subscriber: str, ids: set[str], last: datetime | None) -> None:
        key = (last, frozenset(ids))
        out[subscriber] = shared.setdefault(key, History(last_delivery=last, sent_article_ids=key[1]))

    current: str | None = None
    ids: set[str] = set()
    last: datetime | None = None
    for subscriber, state, article_ids, selected_at in rows:
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


#: The columns of a Delivery, in the order `delivery` reads them.
DELIVERY_COLUMNS = (
    "edition, subscriber, email, state, run_id, attempts, article_ids, selected_at, updated_at,"
    " transport, message_id, batch_id, send_at, error"
)


def delivery(row: Sequence[object]) -> Delivery:
    """A Delivery from a row of DELIVERY_COLUMNS."""
    edition, subscriber, email, state, run_id, attempts, ids, selected, updated, transport, mid, batch, at, err = row
    return Delivery(
        edition=str(edition),
        subscriber=str(subscriber),
        email=str(email),
        state=state,  # type: ignore[arg-type]
        run_id=str(run_id),
        attempts=int(attempts),  # type: ignore[call-overload]
        article_ids=tuple(json.loads(str(ids))),
        selected_at=datetime.fromisoformat(str(selected)),
        updated_at=datetime.fromisoformat(str(updated)),
        transport=str(transport),
        message_id=str(mid),
        batch_id=str(batch),
        send_at=None if at is None else int(at),  # type: ignore[call-overload]
        error=str(err),
    )
