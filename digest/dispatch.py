"""Requests in flight: composed ahead by the driving thread, each claimed by the sender thread
that sends it, just before it leaves.

Claim-before-send (send.py) makes a send exactly once; this module bounds what a crash can leave in
doubt. A row is only ever *claimed* by a sender thread about to send its request, and each thread
holds at most one claimed request (in flight, or answered and about to be recorded), so a kill -9
leaves at most `concurrency` requests ambiguous. Everything else the run holds is *leased* (taken
from the queue, see ledger.py): composed or waiting to be, nothing sent, so a later run simply takes
it back. (Before, a whole window was claimed at once: 50 outbox requests while 4 were in flight, and
a kill turned the 46 that never started into "ambiguous" too.)

Disk syncs are shared: a thread records the answer to its last request in the transaction that
claims its next one, and threads that want to claim at the same moment claim together (a group
commit: whoever writes takes every claim waiting by then). A thread with nothing to send next
records its answer on its own, in a short unsynced write (a settle lost to a power cut leaves its
rows claimed, i.e. ambiguous, never resent).

Meanwhile the driving thread composes the next requests (contents, recipients' fields), a few per
sender ahead: the composing, the network and the provider overlap. The ledger is one connection, so
calls to it are serialized (`Serialized`); SQLite and PostgreSQL both let other threads run while
one waits on the disk or the server.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from digest.compose import Content, list_headers
from digest.errors import NotSentError
from digest.ledger import ClaimItem, Ledger, State
from digest.models import Selection
from digest.pipeline import Run
from digest.timings import Timings
from digest.transports import Batch, Outcome, Recipient, Transport


@dataclass
class Tally:
    accepted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    ambiguous: list[tuple[str, str]] = field(default_factory=list)
    requests: int = 0

    def add(self, emails: list[str], outcome: Outcome) -> None:
        if outcome.kind == "accepted":
            self.accepted.extend(emails)
        elif outcome.kind == "ambiguous":
            self.ambiguous.extend((e, outcome.error) for e in emails)
        else:
            self.failed.extend((e, outcome.error) for e in emails)


def settled_state(outcome: Outcome) -> State:
    if outcome.kind == "accepted" or outcome.kind == "ambiguous":  # narrows the Literal for mypy
        return outcome.kind
    return "failed"  # refused for good, or known never sent: nothing went out, retried next run


def recipient(run: Run, selection: Selection) -> Recipient:
    values = run.values(selection.subscriber)
    return Recipient(selection, values, list_headers(run.config, values))


class Serialized:
    """A ledger shared by the driving thread and the sender threads: one call at a time (it is
    one connection, and a transaction must not take in another thread's statements)."""

    def __init__(self, ledger: Ledger):
        self._ledger = ledger
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._ledger, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return found(*args, **kwargs)

        return call


def serialized(ledger: Ledger) -> Ledger:
    return ledger if isinstance(ledger, Serialized) else cast(Ledger, Serialized(ledger))


@dataclass
class _Request:
    """One request: composed (driving thread), then claimed, sent and recorded (a sender thread)."""

    selections: list[Selection]
    content: Content
    recipients: list[Recipient]
    claimed: tuple[str, ...] | None = None  #: set once its claim is written
    error: BaseException | None = None  #: what its claim raised
    outcome: Outcome | None = None
    #: what its claim also records: the same thread's answer to its previous request
    settles: list[tuple[Sequence[str], State, str, str]] = field(default_factory=list)

    def items(self, at: Any) -> list[ClaimItem]:
        return [ClaimItem(s.subscriber.id, s.subscriber.email, s.content_key, at) for s in self.selections]

    def outcome_row(self) -> tuple[Sequence[str], State, str, str]:
        assert self.outcome is not None
        return (self.claimed or (), settled_state(self.outcome), self.outcome.message_id, self.outcome.error)


_DONE = None  #: the end of the requests, one per sender thread


class Dispatcher:
    """One sender's requests through compose -> claim -> send -> record (see the module docstring)."""

    def __init__(
        self,
        run: Run,
        ledger: Ledger,
        transport: Transport,
        run_id: str,
        pool: ThreadPoolExecutor,
        *,
        workers: int,
        also_from: tuple[State, ...],
        tally: Tally,
        timings: Timings,
        progress: Callable[[int], None] | None = None,
    ):
        self.run = run
        self.ledger = serialized(ledger)
        self.transport = transport
        self.run_id = run_id
        self.pool = pool
        self.workers = workers
        self.also_from = also_from
        self.tally = tally
        self.timings = timings
        self.progress = progress
        self.stop: BaseException | None = None  #: what stops the run: no request starts after it
        #: composed, for the sender threads: one per thread waiting, so none waits for the composer
        self._ready: queue.Queue[_Request | None] = queue.Queue()
        self._answered: queue.Queue[_Request] = queue.Queue()
        self._handed = 0  #: requests handed to the senders
        self._reported = 0  #: ... whose fate came back (sent, or never started)
        self._senders: list[Future[None]] = []
        self._claims: list[_Request] = []  #: waiting for the next group commit
        self._writing = False
        self._cv = threading.Condition(threading.Lock())

    # --- the driving thread -----------------------------------------------------------------------

    def submit(self, chunk: list[Selection]) -> None:
        """Compose one request and hand it to the senders (waiting while enough are ready)."""
        # Whatever can fail on our side (a template, a missing DIGEST_SECRET) fails here, before
        # this request is claimed.
        with self.timings.stage("compose"):
            request = _Request(chunk, self.run.content_for(chunk[0]), [recipient(self.run, s) for s in chunk])
        if not self._senders:
            self._senders = [self.pool.submit(self._sender) for _ in range(self.workers)]
        self._collect()
        while self._ready.qsize() >= self.workers:
            self._raise_stop()
            with self.timings.stage("send"):
                self._collect(wait=0.02)
        self._raise_stop()
        self._ready.put(request)
        self._handed += 1

    def settle_all(self) -> None:
        """Wait until every request handed over has been sent and recorded; raise what stopped
        the run, if anything did."""
        while self._reported < self._handed:
            if self.stop is not None and all(sender.done() for sender in self._senders):
                break  # every sender ended on an error: what they never took has no answer coming
            with self.timings.stage("send"):
                self._collect(wait=0.05)
        self._raise_stop()

    def close(self) -> None:
        """The senders stop once what they hold is recorded; requests not started stay leased."""
        if not self._senders:
            return
        with self._cv:
            self.stop = self.stop or _Stopped("the run stopped")
        for _ in self._senders:
            self._ready.put(_DONE)  # after the unstarted ones: each sender drops those
        for sender in self._senders:
            try:
                sender.result()
            except BaseException:  # noqa: BLE001 - already told through `stop`
                pass
        self._collect()
        self._senders = []

    def _raise_stop(self) -> None:
        if self.stop is not None and not isinstance(self.stop, _Stopped):
            raise self.stop

    def _collect(self, wait: float = 0.0) -> None:
        """Take in the senders' answers: the tally, the progress."""
        sent = 0
        while True:
            try:
                request = self._answered.get(timeout=wait) if wait else self._answered.get_nowait()
            except queue.Empty:
                break
            wait = 0.0
            self._reported += 1
            if request.claimed is None:
                continue  # never claimed: the run was stopping, its rows are only leased
            mine = set(request.claimed)
            for s in request.selections:
                if s.subscriber.id not in mine:
                    self.tally.skipped.append((s.subscriber.email, "claimed by another run"))
            if mine and request.outcome is not None:
                self.tally.requests += 1
                self.tally.add(
                    [s.subscriber.email for s in request.selections if s.subscriber.id in mine], request.outcome
                )
                sent += len(mine)
        if sent and self.progress is not None and self.stop is None:
            self.progress(sent)

    # --- the sender threads -----------------------------------------------------------------------

    def _sender(self) -> None:
        """Claim, send, record, one request after another, until told to stop. Whatever goes
        wrong stops the run (`stop`): what this thread holds claimed stays so, and the next run
        makes it ambiguous."""
        last: _Request | None = None  #: answered, not yet recorded
        request: _Request | None = None  #: taken, not yet handed back or sent
        try:
            while True:
                try:
                    request = self._ready.get_nowait()
                except queue.Empty:
                    if last is not None:  # nothing to claim next: record the answer on its own
                        self._record(last)
                        last = None
                    request = self._ready.get()
                if request is _DONE:
                    break
                if last is not None:
                    request.settles.append(last.outcome_row())
                claimed = self._claim(request)
                if last is not None:
                    if claimed:
                        self._answered.put(last)  # recorded with this claim
                    else:
                        self._record(last)  # no claim was written: record it alone
                    last = None
                if not claimed or not request.claimed:
                    self._answered.put(request)  # nothing (of it) is this run's to send
                    request = None
                    continue
                self._send(request)
                last, request = request, None
            if last is not None:
                self._record(last)
        except BaseException as exc:  # noqa: BLE001 - told to the driving thread through `stop`
            self._stopping(exc)
            # Handed back unrecorded (their rows stay claimed or leased), so the driving thread
            # is not left waiting for them.
            for held in (last, request):
                if held is not None:
                    self._answered.put(held)

    def _record(self, request: _Request) -> None:
        start = time.perf_counter()
        try:
            self.ledger.settle_many(self.run.edition.id, [request.outcome_row()], run_id=self.run_id)
        finally:
            self.timings.add("ledger", time.perf_counter() - start)
        self._answered.put(request)

    def _send(self, request: _Request) -> None:
        claimed = set(request.claimed or ())
        kept = tuple(
            r for s, r in zip(request.selections, request.recipients, strict=True) if s.subscriber.id in claimed
        )
        run = self.run
        batch = Batch(run.edition.id, request.content, kept, lambda r: run.email(r.selection, r.values), None)
        try:
            request.outcome = self.transport.send(batch)
        except NotSentError as exc:
            # refused before anything was queued; no request starts after this one
            request.outcome = Outcome("failed", error=str(exc))
            self._stopping(exc)
        except BaseException as exc:  # noqa: BLE001 - a bug mid-request: it may have left
            request.outcome = Outcome("ambiguous", error=f"interrupted: {type(exc).__name__}")
            self._stopping(exc)

    def _stopping(self, exc: BaseException) -> None:
        with self._cv:
            if self.stop is None or isinstance(self.stop, _Stopped):
                self.stop = exc

    def _claim(self, request: _Request) -> bool:
        """Claim this request's rows (recording `request.settles` first), together with every other
        thread's claim waiting by then: one transaction, one disk sync. False when the run is
        stopping: nothing claimed (its `settles` are then not recorded either)."""
        with self._cv:
            if self.stop is not None:
                return False
            self._claims.append(request)
            while request.claimed is None and request.error is None:
                if self._writing:
                    self._cv.wait()
                    continue
                group, self._claims, self._writing = self._claims, [], True
                if self.stop is not None:  # stopped while waiting: none of them starts
                    self._writing = False
                    self._cv.notify_all()
                    for waiting in group:
                        waiting.error = waiting.error or _Stopped()
                    break
                self._cv.release()
                try:
                    self._write_claims(group)
                finally:
                    self._cv.acquire()
                    self._writing = False
                    self._cv.notify_all()
        if isinstance(request.error, _Stopped):
            return False
        if request.error is not None:
            raise request.error
        return True

    def _write_claims(self, group: list[_Request]) -> None:
        start = time.perf_counter()
        items = [item for request in group for item in request.items(self.run.at)]
        settles = [row for request in group for row in request.settles]
        try:
            claimed = set(
                self.ledger.claim(
                    self.run.edition.id,
                    self.run_id,
                    items,
                    transport=self.transport.name,
                    also_from=self.also_from,
                    settled=settles,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - each waiting thread raises it
            for request in group:
                request.error = exc
            return
        finally:
            self.timings.add("ledger", time.perf_counter() - start)
        for request in group:
            request.claimed = tuple(s.subscriber.id for s in request.selections if s.subscriber.id in claimed)


class _Stopped(Exception):
    """The run is stopping: no claim is written any more."""
