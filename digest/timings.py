"""Where a run's time goes, and keeping bulk loads cheap.

`Timings` adds up wall-clock seconds per stage of a send (load, plan, compose, ledger, send) as the
process that runs it sees them; `digest send --timings` and benchmarks/fanout.py print them.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: The stages of a send, in the order they are printed.
STAGES = ("load", "plan", "compose", "ledger", "send")


class Timings:
    """Seconds per stage. load, plan and compose are the driving thread's (so is `send`: the time
    it waited for the senders); `ledger` adds up every thread's ledger calls (the senders' claims
    and settles, which overlap with the rest), so the stages may add up to more than the run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:  # sender threads add their ledger time
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def describe(self) -> str:
        total = time.perf_counter() - self.started
        order = [s for s in STAGES if s in self.seconds] + sorted(set(self.seconds) - set(STAGES))
        parts = [f"{name} {self.seconds[name]:.2f} s" for name in order]
        return f"time {total:.2f} s: " + ", ".join(parts)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a bulk load builds many long-lived objects (a folder of
    articles, a list of subscribers): collections would rescan all of them again and again for
    cycles they cannot have. Reference counting still frees everything as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                # What the block built goes straight to the oldest generation: otherwise the first
                # collection after it walks all of it at once (a twentieth of a warm start). Freeze
                # then unfreeze moves every object there without walking any, and resets the young
                # generation's count; garbage among them is found by the next full collection as
                # ever. Not inside a gc_frozen block: unfreezing would let its objects out.
                gc.freeze()
                gc.unfreeze()
            gc.enable()


@contextmanager
def gc_frozen() -> Iterator[None]:
    """What exists now is left out of every garbage collection until the block ends (`gc.freeze`).

    A send builds the edition (articles, subscribers, the plan: millions of objects) and then
    allocates for hours of requests; every full collection walked the whole edition again (a
    tenth of a 300,000-subscriber send's CPU went to creating its 300,000 queue rows, in fact to
    the collections those allocations set off). Frozen, a collection walks only what is new."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
