"""Recovery after a crash: which runs are alive, and what to do with the claims of those that are not.

Every run holds a run lock for as long as its process lives (`Ledger.run_lock`): on SQLite a lock
file (flock, `store/runlock.py`), on PostgreSQL a session-level advisory lock; the kernel, or the
server when the session ends, drops it on kill -9. A later run that finds rows `claimed` by a run
whose lock is free knows that run is gone: its requests may or may not have left, so the rows
become ambiguous, unless their scheduled batch can still be cancelled in time. Rows it had only
*leased* (queued, taken but not claimed) had nothing sent: they go back to the queue.
"""

from __future__ import annotations

from collections.abc import Callable

from digest.ledger import Delivery, Ledger
from digest.transports import Transport


def free_dead_leases(ledger: Ledger, edition: str) -> int:
    """Queued rows leased by runs that are gone go back to the queue (nothing was sent for them)."""
    return sum(ledger.release(edition, run) for run in ledger.leased_runs(edition) if not ledger.run_alive(run))


def settle_dead_claims(ledger: Ledger, transport: Transport, edition: str, now: Callable[[], float]) -> None:
    """Settle claims left by runs that are gone: cancel them when still possible, else ambiguous;
    free their leases.

    Who is gone is decided before the rows to settle are read, and only rows still `claimed` are
    settled: a run that answers its last requests and ends between a read and a liveness check
    would otherwise see what it had just settled (accepted) overwritten as ambiguous. A dead run's
    rows cannot change any more, so reading them after the check is reading them as it left them.
    """
    free_dead_leases(ledger, edition)
    runs = {row.run_id for row in ledger.rows(edition, states=("claimed",)).values()}
    dead = {run for run in runs if not ledger.run_alive(run)}
    by_run: dict[tuple[str, str, int | None], list[Delivery]] = {}
    for row in ledger.rows(edition, states=("claimed", "ambiguous")).values():
        stale = row.state == "claimed" and row.run_id in dead
        retry_cancel = row.state == "ambiguous" and bool(row.batch_id)
        if stale or retry_cancel:
            by_run.setdefault((row.run_id, row.batch_id, row.send_at), []).append(row)
    for (run_id, batch_id, send_at), group in by_run.items():
        ids = [r.subscriber for r in group]
        if batch_id and send_at and transport.can_schedule and send_at - now() > transport.cancel_cutoff:
            if transport.cancel(batch_id):
                error = f"scheduled batch {batch_id} cancelled"
                ledger.settle(edition, ids, "cancelled", run_id=run_id, error=error, only=("claimed", "ambiguous"))
                continue
        if any(r.state == "claimed" for r in group):
            note = f"claimed by run {run_id}, which ended before the answer: the request may have left"
            claimed = [r.subscriber for r in group if r.state == "claimed"]
            ledger.settle(edition, claimed, "ambiguous", run_id=run_id, error=note, only=("claimed",))
