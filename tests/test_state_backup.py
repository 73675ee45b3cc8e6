"""`digest state backup PATH` / `digest state restore PATH`: both files, through SQLite's online
backup API, into one folder with a manifest; a restore never forgets an opt-out."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from send_support import AT, copy_sample

from digest.cli import main
from digest.ledger import LEDGER_NAME
from digest.store.sqlite_state import SqliteSubscriberState as SubscriberState
from digest.suppressions import STATE_NAME

OPTED_OUT = "ada@example.com"


def digest(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def sent_to(config: Path, edition: str) -> set[str]:
    folder = config.parent / "outbox" / edition
    return {p.name.removesuffix(".eml") for p in folder.glob("*.eml")} if folder.is_dir() else set()


@pytest.fixture
def sent(tmp_path: Path) -> Path:
    config = copy_sample(tmp_path / "news")
    with SubscriberState(config.parent / "state" / STATE_NAME) as state:
        state.opt_out(OPTED_OUT, "unsubscribed", "one-click")
    code, out = digest(config, "send", "--yes", "--at", AT)
    assert code == 0, out
    return config


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def test_a_backup_is_one_folder_of_two_self_contained_databases_and_a_manifest(sent: Path, tmp_path: Path) -> None:
    folder = tmp_path / "backups" / "2026-11-30"
    code, out = digest(sent, "state", "backup", str(folder))
    assert code == 0, out
    assert out.strip() == (
        f"backed up the send ledger (6 delivery row(s)) and the subscriber state (1 opted-out address(es)) into {folder}"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["backup.json", LEDGER_NAME, STATE_NAME]
    manifest = json.loads((folder / "backup.json").read_text())
    assert manifest["format"] == "newsletter-digest state backup" and manifest["version"] == 1
    assert manifest["deliveries"] == 6 and manifest["optouts"] == 1 and manifest["seq"] == 1
    for name in (LEDGER_NAME, STATE_NAME):
        with closing(sqlite3.connect(f"{(folder / name).as_uri()}?mode=ro", uri=True)) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # no -wal needed beside it
            assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    with closing(sqlite3.connect(folder / STATE_NAME)) as db:
        assert db.execute("SELECT subscriber FROM optouts").fetchall() == [(OPTED_OUT,)]
    code, out = digest(sent, "state", "backup", str(folder))
    assert code == 1 and "already exists; back up into a new folder" in out


def test_the_state_lost_then_restored_and_the_opt_out_holds(sent: Path, tmp_path: Path) -> None:
    folder = tmp_path / "backup"
    assert digest(sent, "state", "backup", str(folder))[0] == 0
    _remove(sent.parent / "state" / STATE_NAME)
    code, out = digest(sent, "send", "--yes", "--at", AT, "--edition", "2026-W49-second")
    assert code == 1 and "the subscriber state is missing" in out
    code, out = digest(sent, "state", "restore", str(folder))
    assert code == 0, out
    assert "restored the send ledger (6 delivery row(s)) and the subscriber state (1 opted-out" in out
    aside = out.strip().splitlines()[-1].removeprefix("the files it replaced are in ")
    assert Path(aside).is_dir() and Path(aside).parent == sent.parent / "state"
    code, out = digest(sent, "send", "--yes", "--at", AT, "--edition", "2026-W49-second")
    assert code == 0, out
    assert OPTED_OUT not in sent_to(sent, "2026-W49-second")


def test_a_restore_keeps_opt_outs_recorded_after_the_backup(sent: Path, tmp_path: Path) -> None:
    folder = tmp_path / "backup"
    assert digest(sent, "state", "backup", str(folder))[0] == 0
    state_path = sent.parent / "state" / STATE_NAME
    # `digest serve` holds the state open and records an opt-out after the backup
    with SubscriberState(state_path) as served:
        served.opt_out("grace@example.org", "unsubscribed", "one-click")
        (sent.parent / "state" / LEDGER_NAME).write_bytes(b"")  # then the ledger is lost
        code, out = digest(sent, "state", "restore", str(folder))
        assert code == 0, out
        assert "kept 1 opt-out(s) and 0 link id(s) recorded after the backup was taken" in out
        # the open connection sees the restored file: the restore went through SQLite
        assert set(served.optouts()) == {OPTED_OUT, "grace@example.org"}
    code, out = digest(sent, "send", "--yes", "--at", AT, "--edition", "2026-W49-second")
    assert code == 0, out
    assert sent_to(sent, "2026-W49-second") == set()  # the ledger is back: nobody gets it twice
    code, out = digest(sent, "send", "--yes", "--at", AT, "--edition", "2026-W50", "--subscriber", "grace@example.org")
    assert code == 0 and "status is unsubscribed" in out


def test_a_damaged_or_foreign_backup_is_refused_and_nothing_changes(sent: Path, tmp_path: Path) -> None:
    folder = tmp_path / "backup"
    assert digest(sent, "state", "backup", str(folder))[0] == 0
    state_file = sent.parent / "state" / STATE_NAME
    before = state_file.read_bytes()
    with (folder / STATE_NAME).open("r+b") as f:
        f.seek(200)
        f.write(b"\xff")
    code, out = digest(sent, "state", "restore", str(folder))
    assert code == 1 and f"{folder / STATE_NAME}: damaged (its SHA-256 is not the one the manifest recorded)" in out
    code, out = digest(sent, "state", "restore", str(tmp_path))
    assert code == 1 and "not a state backup (no backup.json" in out
    assert state_file.read_bytes() == before
    assert not list((sent.parent / "state").glob("before-restore-*"))


def test_nothing_to_back_up_before_the_first_send(tmp_path: Path) -> None:
    config = copy_sample(tmp_path / "news")
    code, out = digest(config, "state", "backup", str(tmp_path / "b"))
    assert code == 1 and "nothing to back up yet (the first `digest send` creates it)" in out
    assert not (tmp_path / "b").exists()


def test_no_restore_while_a_send_runs(sent: Path, tmp_path: Path) -> None:
    from digest.store.runlock import RunLock

    folder = tmp_path / "backup"
    assert digest(sent, "state", "backup", str(folder))[0] == 0
    lock = RunLock(sent.parent / "state", "live-run")  # what a running send holds
    try:
        code, out = digest(sent, "state", "restore", str(folder))
    finally:
        lock.release()
    assert code == 1 and "a send is running (run live-run): restore when it has finished" in out
    assert digest(sent, "state", "restore", str(folder))[0] == 0
