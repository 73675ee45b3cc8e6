"""The signup flow's background worker: one thread per `digest serve` process doing, in order, the
work that depends on an address (lookups, writes, emails), so the visitor's answer never waits on
it and never differs by it (see digest/web/signup.py); and the stale-signup purge between jobs."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from digest.signup.flow import SignupFlow

log = logging.getLogger("digest.signup")


class SignupWorker:
    """One thread doing the address-dependent work, in order, off the request path.

    The queue is bounded (a flood cannot grow memory; a full queue answers 503 to everyone alike).
    Between jobs, at most every `purge_every` seconds, it purges stale signups."""

    def __init__(self, flow: SignupFlow, *, maxsize: int = 1000, purge_every: float = 3600.0):
        self.flow = flow
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize)
        self._purge_every = purge_every
        self._purged_at = float("-inf")
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="digest-signup", daemon=True)
                self._thread.start()

    def submit(self, job: Callable[[], None]) -> bool:
        self.start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted job is done (tests; a clean stop)."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0 or not self._queue.all_tasks_done.wait(left):
                    return not self._queue.unfinished_tasks
        return True

    def close(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=30)

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def _run(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=min(self._purge_every, 600.0))
            except queue.Empty:
                self._maybe_purge()
                continue
            try:
                if job is None:
                    return
                job()
            except Exception as exc:  # noqa: BLE001 - one failed job must not stop the worker
                log.error("signup: a background job failed: %s: %s", type(exc).__name__, str(exc)[:300])
            finally:
                self._queue.task_done()
            self._maybe_purge()

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._purged_at < self._purge_every:
            return
        self._purged_at = time.monotonic()
        try:
            counts = self.flow.purge()
        except Exception as exc:  # noqa: BLE001
            log.error("signup: purge failed: %s", type(exc).__name__)
            return
        if counts.pending or counts.requests or counts.addresses:
            log.info("signup: %s", counts)
