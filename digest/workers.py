"""`digest send --workers N`: N senders forked after one plan, sharing the edition's queue.

Each worker is a sender like any other (another machine would be the same): its own ledger
connection, its own run id and run lock, leases taken with the ledger's `take` (SKIP LOCKED on
PostgreSQL, BEGIN IMMEDIATE on SQLite), claims before sends. What they share is only what was ready
before the fork: the plan, the compiled edition and the minted link ids (copy-on-write), so the
expensive, single-threaded work of planning and compiling is done once.

A worker killed with -9 is like any crashed sender: its claims become ambiguous, its leases go
back to the queue. When every worker has ended, the parent settles what dead workers left and
drains the rest of the queue itself, so the run still finishes the edition.
"""

from __future__ import annotations

import gc
import os
import pickle
import selectors
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from digest.dispatch import Tally
from digest.errors import SendError
from digest.ledger import Ledger
from digest.recovery import settle_dead_claims
from digest.transports import Transport

#: One sender's loop over the queue (send.py binds its own to the run, the plan and the options):
#: (its ledger, its transport, its run id, its tally, progress, its thread pool) -> the
#: subscribers it took. Handed in, so that this module needs nothing of send.py.
Drain = Callable[
    [Ledger, Transport, str, Tally, Callable[[int], None] | None, ThreadPoolExecutor],
    set[str],
]


def _write(fd: int, message: object) -> None:
    """One length-prefixed pickle down the pipe to the parent."""
    data = pickle.dumps(message)
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def send_in_workers(
    edition: str,
    subscribers: Sequence[str],
    ledger: Ledger,
    transport: Transport,
    run_id: str,
    drain: Drain,
    *,
    workers: int,
    concurrency: int,
    now: Callable[[], float],
    tally: Tally,
    progress: Callable[[int], None] | None,
    reopen: Callable[[], tuple[Ledger, Transport]] | None,
) -> set[str]:
    """Fork `workers` senders, each running `drain`, over the edition's queue (already enqueued
    for `subscribers`); fold their tallies into `tally`; returns the subscribers they (and this
    process) took. `concurrency`: sending threads per sender, on transports that allow it."""
    from digest.store import pg

    if reopen is None:
        raise SendError("--workers needs the ledger and transport to be opened again in each worker")
    if not hasattr(os, "fork"):
        raise SendError("--workers needs fork(), which this platform lacks: run several `digest send` instead")
    pg.close_pools()  # a child must never touch (or close) the parent's pooled connections
    children: dict[int, int] = {}  # pid -> read end of its pipe
    # What the plan built is shared copy-on-write until something writes to it, and a garbage
    # collection in a worker walks (so copies) every object it reaches. Frozen, the parent's
    # objects are never walked: a worker copies only the pages it really uses.
    gc.freeze()
    try:
        for n in range(workers):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker
                os.close(read)
                code = 0
                try:
                    worker_ledger, worker_transport = reopen()
                    worker_id = f"{run_id}-w{n + 1}"
                    lock = worker_ledger.run_lock(worker_id)
                    worker_ledger.set_scope(edition, subscribers)
                    mine = Tally()
                    threads = max(1, concurrency) if getattr(worker_transport, "concurrent", False) else 1
                    try:
                        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="send") as pool:
                            took = drain(
                                worker_ledger,
                                worker_transport,
                                worker_id,
                                mine,
                                lambda k, fd=write: _write(fd, ("progress", k)),  # type: ignore[misc]
                                pool,
                            )
                    finally:
                        worker_ledger.release(edition, worker_id)
                        lock.release()
                    _write(write, ("done", mine, took))
                except BaseException as exc:  # noqa: BLE001 - told to the parent, which raises it
                    code = 1
                    try:
                        _write(write, ("error", exc if isinstance(exc, SendError) else SendError(f"worker: {exc}")))
                    except BaseException:  # noqa: BLE001
                        pass
                finally:
                    os._exit(code)  # no finalizer of the parent's objects may run here
            os.close(write)
            children[pid] = read
    finally:
        gc.unfreeze()  # the parent collects as before, even when a fork failed
    taken: set[str] = set()
    errors: list[BaseException] = []
    _collect(children, tally, taken, errors, progress)
    died = []
    for pid in children:
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            died.append(os.WTERMSIG(status))
    # Workers that died left claims (ambiguous now) and leases (free now): finish the queue here.
    settle_dead_claims(ledger, transport, edition, now)
    if errors:
        raise errors[0]
    threads = max(1, concurrency) if getattr(transport, "concurrent", False) else 1
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="send") as pool:
            taken |= drain(ledger, transport, run_id, tally, progress, pool)
    finally:
        ledger.release(edition, run_id)
    return taken


def _collect(
    children: dict[int, int],
    tally: Tally,
    taken: set[str],
    errors: list[BaseException],
    progress: Callable[[int], None] | None,
) -> None:
    """Read every worker's messages until each pipe closes."""
    selector = selectors.DefaultSelector()
    buffers: dict[int, bytearray] = {}
    for fd in children.values():
        selector.register(fd, selectors.EVENT_READ)
        buffers[fd] = bytearray()
    open_fds = set(children.values())
    while open_fds:
        for key, _ in selector.select():
            fd = int(key.fd)
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                selector.unregister(fd)
                os.close(fd)
                open_fds.discard(fd)
                continue
            buffer = buffers[fd]
            buffer += chunk
            while len(buffer) >= 4:
                (size,) = struct.unpack(">I", buffer[:4])
                if len(buffer) < 4 + size:
                    break
                message: Any = pickle.loads(bytes(buffer[4 : 4 + size]))  # our own children's bytes
                del buffer[: 4 + size]
                _apply(message, tally, taken, errors, progress)
    selector.close()


def _apply(
    message: Any, tally: Tally, taken: set[str], errors: list[BaseException], progress: Callable[[int], None] | None
) -> None:
    kind = message[0]
    if kind == "progress":
        if progress is not None:
            progress(message[1])
    elif kind == "done":
        mine, theirs = message[1], message[2]
        tally.accepted += mine.accepted
        tally.skipped += mine.skipped
        tally.failed += mine.failed
        tally.ambiguous += mine.ambiguous
        tally.requests += mine.requests
        taken |= theirs
    elif kind == "error":
        errors.append(message[1])
