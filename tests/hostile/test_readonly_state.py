"""`digest send` on a state folder it cannot write: one line saying which path is read-only,
nothing sent, nothing half-recorded (it used to be `internal error: PermissionError`)."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from send_support import AT, copy_sample

from .support import run_digest

SECOND = ("--edition", "2026-W49-second")


@pytest.fixture
def sent(tmp_path: Path) -> Path:
    config = copy_sample(tmp_path)
    result = run_digest(config, "send", "--yes", "--at", AT)
    assert result.code == 0, result.stderr
    return config


def _rows(config: Path) -> int:
    with closing(sqlite3.connect(config.parent / "state" / "ledger.sqlite3")) as db:
        return int(db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0])


@pytest.fixture
def read_only() -> Iterator[list[Path]]:
    """Paths made read-only by the test, made writable again afterwards (tmp_path is cleaned up)."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.mark.parametrize("which", ["state", "state/runs", "state/ledger.sqlite3", "state/subscribers.sqlite3"])
def test_a_read_only_state_folder_or_file_is_one_clear_line(sent: Path, read_only: list[Path], which: str) -> None:
    path = sent.parent / which
    before = _rows(sent)
    path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    read_only.append(path)
    result = run_digest(sent, "send", "--yes", "--at", AT, *SECOND, readonly_as_user=True)
    assert result.code == 1
    assert result.error_lines == [
        f"error: {path}: read-only for this user; `digest send` records every claim and delivery in the state "
        "folder before anything leaves, so it must be writable (nothing was sent)"
    ]
    assert not (sent.parent / "outbox" / "2026-W49-second").exists()
    for p in read_only:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert _rows(sent) == before


def test_a_state_folder_that_cannot_be_created_is_one_clear_line(tmp_path: Path, read_only: list[Path]) -> None:
    config = copy_sample(tmp_path)
    tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    read_only.append(tmp_path)
    result = run_digest(config, "send", "--yes", "--at", AT, readonly_as_user=True)
    assert result.code == 1
    (line,) = result.error_lines
    assert line.startswith(f"error: {tmp_path / 'state'}: cannot create the state folder: ") and "read-only" in line
    assert "internal error" not in result.stderr
    assert os.access(tmp_path, os.R_OK)
