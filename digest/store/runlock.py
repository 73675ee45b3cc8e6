"""The SQLite engine's run locks: a lock file per run, held (flock) for as long as the run's process
lives. The kernel drops it on kill -9, so a later run can tell a dead run's claims from a live
one's (recovery.py decides what happens to them). PostgreSQL uses advisory locks instead."""

from __future__ import annotations

import os
from pathlib import Path

try:  # POSIX; elsewhere every claim of an ended run is treated as live until it is settled
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


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
