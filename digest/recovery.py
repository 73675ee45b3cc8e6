"""Recovery after a crash: which runs are alive, and what to do with the claims of those that are not.

Every run holds a run lock for as long as its process lives (`Ledger.run_lock`): on SQLite a lock
file (flock, `RunLock` here), on PostgreSQL a session-level advisory lock; the kernel, or the
server when the session ends, drops it on kill -9. A later run that finds rows `claimed` by a run
whose lock is free knows that run is gone: its requests may or may not have left, so the rows
become ambiguous, unless their scheduled batch can still be cancelled in time. Rows it had only
*leased* (queued, taken but not claimed) had nothing sent: they go back to the queue.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from digest.ledger import Delivery, Ledger
from digest.transports import Transport

try:  # POSIX; elsewhere every claim of an ended run is treated as live until it is settled
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

#: SendGrid refuses to cancel a scheduled send later than 10 minutes before send_at; keep a margin.
CANCEL_CUTOFF_SECONDS = 600 + 60


class RunLock:
    """A lock file held (flock) for as long as a run's process lives; the kernel drops it on kill -9."""

    def __init__(self, state_dir: Path, run_id: str):
        self.path = _lock_path(state_dir, run_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BaseException:
                os.close(self._fd)  # held by another run: do not leak the descriptor
                self._fd = -1
                raise

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.path.unlink(missing_ok=True)


def _lock_path(state_dir: Path, run_id: str) -> Path:
    return state_dir / "runs" / f"{run_id}.lock"


def run_alive(state_dir: Path, run_id: str) -> bool:
    path = _lock_path(state_dir, run_id)
    if fcntl is None:
        return path.exists()
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)  # a crashed run's leftover
    return False


def free_dead_leases(ledger: Ledger, edition: str) -> int:
    """Queued rows leased by runs that are gone go back to the queue (nothing was sent for them)."""
    return sum(ledger.release(edition, run) for run in ledger.leased_runs(edition) if not ledger.run_alive(run))


def settle_dead_claims(ledger: Ledger, transport: Transport, edition: str, now: Callable[[], float]) -> None:
    """Settle claims left by runs that are gone: cancel them when still possible, else ambiguous;
    free their leases."""
    free_dead_leases(ledger, edition)
    by_run: dict[tuple[str, str, int | None], list[Delivery]] = {}
    alive: dict[str, bool] = {}
    for row in ledger.rows(edition, states=("claimed", "ambiguous")).values():
        if row.state == "claimed" and row.run_id not in alive:
            alive[row.run_id] = ledger.run_alive(row.run_id)
        stale = row.state == "claimed" and not alive[row.run_id]
        retry_cancel = row.state == "ambiguous" and bool(row.batch_id)
        if stale or retry_cancel:
            by_run.setdefault((row.run_id, row.batch_id, row.send_at), []).append(row)
    for (run_id, batch_id, send_at), group in by_run.items():
        ids = [r.subscriber for r in group]
        if batch_id and send_at and transport.can_schedule and send_at - now() > CANCEL_CUTOFF_SECONDS:
            if transport.cancel(batch_id):
                ledger.settle(edition, ids, "cancelled", run_id=run_id, error=f"scheduled batch {batch_id} cancelled")
                continue
        if any(r.state == "claimed" for r in group):
            note = f"claimed by run {run_id}, which ended before the answer: the request may have left"
            ledger.settle(
                edition, [r.subscriber for r in group if r.state == "claimed"], "ambiguous", run_id=run_id, error=note
            )
