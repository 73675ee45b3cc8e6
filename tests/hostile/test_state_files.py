"""A subscriber state or a ledger that is missing, empty, replaced or older than the other
remembers stops the send with one line naming the file: it must never read as "nobody opted out"
or "nobody was sent anything". The first send of a new newsletter still just works."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from send_support import AT, SAMPLE_RECIPIENTS, copy_sample, ledger_for, load

from digest.cli import main
from digest.ledger import LEDGER_NAME
from digest.store.sqlite_ledger import SqliteLedger
from digest.store.sqlite_state import SqliteSubscriberState as SubscriberState
from digest.suppressions import STATE_NAME

OPTED_OUT = "ada@example.com"  #: a recipient of the sample who unsubscribed before the first send
#: A second edition of the same week: everyone not yet sent these articles would get them.
SECOND = ("--edition", "2026-W49-second")


def digest(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def sent_to(config: Path, edition: str) -> set[str]:
    folder = config.parent / "outbox" / edition
    return {p.name.removesuffix(".eml") for p in folder.glob("*.eml")} if folder.is_dir() else set()


@pytest.fixture
def sent(tmp_path: Path) -> Path:
    """The sample after its first send, with one subscriber unsubscribed beforehand (as
    `digest serve` records it)."""
    config = copy_sample(tmp_path)
    with SubscriberState(tmp_path / "state" / STATE_NAME) as state:
        state.opt_out(OPTED_OUT, "unsubscribed", "one-click")
    code, out = digest(config, "send", "--yes", "--at", AT)
    assert code == 0, out
    assert sent_to(config, "2026-W49") == SAMPLE_RECIPIENTS - {OPTED_OUT}
    return config


def _state(config: Path) -> Path:
    return config.parent / "state" / STATE_NAME


def _ledger(config: Path) -> Path:
    return config.parent / "state" / LEDGER_NAME


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def delete_state(config: Path) -> None:
    _remove(_state(config))


def truncate_state(config: Path) -> None:
    _remove(_state(config))
    _state(config).write_bytes(b"")


def recreate_state(config: Path) -> None:
    """Deleted, then made anew by whatever opened it next (`digest serve`, `digest sync`)."""
    _remove(_state(config))
    SubscriberState(_state(config)).close()


def delete_ledger(config: Path) -> None:
    _remove(_ledger(config))


def truncate_ledger(config: Path) -> None:
    _remove(_ledger(config))
    _ledger(config).write_bytes(b"")


def recreate_ledger(config: Path) -> None:
    _remove(_ledger(config))
    SqliteLedger(_ledger(config)).close()


def swap_files(config: Path) -> None:
    _remove(_ledger(config))
    shutil.copy(_state(config), _ledger(config))


DAMAGE: list[tuple[Callable[[Path], None], str, str]] = [
    (delete_state, STATE_NAME, "the subscriber state is missing; the ledger last saw 1 opt-out(s) in it: "),
    (truncate_state, STATE_NAME, "the subscriber state is empty (0 bytes); the ledger last saw 1 opt-out(s) in it: "),
    (
        recreate_state,
        STATE_NAME,
        "the subscriber state is not the one the send ledger was last used with (replaced, or recreated after "
        "it was deleted; the ledger last saw 1 opt-out(s) in it; it holds 0): ",
    ),
    (delete_ledger, LEDGER_NAME, "the send ledger is missing; the subscriber state last saw 6 delivery row(s) in it: "),
    (truncate_ledger, LEDGER_NAME, "the send ledger is empty (0 bytes); the subscriber state last saw 6 delivery"),
    (recreate_ledger, LEDGER_NAME, "the send ledger is not the one the subscriber state was last used with"),
    (swap_files, LEDGER_NAME, "holds a subscriber state, not the send ledger (the files were swapped"),
]


@pytest.mark.parametrize(("damage", "name", "message"), DAMAGE, ids=[d[0].__name__ for d in DAMAGE])
def test_a_lost_or_replaced_file_stops_the_send_with_one_line(
    sent: Path, damage: Callable[[Path], None], name: str, message: str
) -> None:
    damage(sent)
    for args in (["send", "--yes", "--at", AT, *SECOND], ["send", "--dry-run", "--at", AT, *SECOND]):
        code, out = digest(sent, *args)
        assert code == 1, out
        (line,) = out.splitlines()
        assert line.startswith(f"error: {sent.parent / 'state' / name}: {message}"), line
        assert "restore it with `digest state restore BACKUP`" in line or "restore both with" in line
    assert sent_to(sent, "2026-W49-second") == set()
    code, out = digest(sent, "check", "--at", AT)
    assert code == 1 and message in out


def test_the_state_deleted_then_a_deliberate_fresh_start(sent: Path) -> None:
    delete_state(sent)
    code, out = digest(sent, "send", "--yes", "--at", AT, *SECOND)
    assert code == 1 and "the subscriber state is missing" in out
    code, out = digest(sent, "send", "--yes", "--at", AT, *SECOND, "--i-know-state-is-new")
    assert code == 0, out
    assert OPTED_OUT in sent_to(sent, "2026-W49-second")  # what the flag means: the opt-out is gone
    code, out = digest(sent, "send", "--yes", "--at", AT, "--edition", "2026-W49-third")
    assert code == 0, out  # paired again: the next send needs no flag


def _copy(live: Path, copy: Path) -> None:
    """A copy as an operator's own backup script would make one (SQLite's backup API)."""
    with closing(sqlite3.connect(live)) as src, closing(sqlite3.connect(copy)) as dst:
        src.backup(dst)


def _place(copy: Path, live: Path) -> None:
    _remove(live)
    shutil.copy(copy, live)


def test_an_older_copy_of_either_file_is_refused(sent: Path, tmp_path: Path) -> None:
    old_state, old_ledger = tmp_path / "old-state.sqlite3", tmp_path / "old-ledger.sqlite3"
    _copy(_state(sent), old_state)
    _copy(_ledger(sent), old_ledger)
    code, out = digest(sent, "send", "--yes", "--at", AT, *SECOND)
    assert code == 0, out  # the second send seals both files again
    new_state = tmp_path / "new-state.sqlite3"
    _copy(_state(sent), new_state)

    _place(old_state, _state(sent))
    code, out = digest(sent, "send", "--yes", "--at", AT, "--edition", "2026-W49-third")
    assert code == 1, out
    assert out.startswith(
        f"error: {_state(sent)}: the subscriber state is older than the send ledger remembers "
        "(it is from send #1, the send ledger from send #2: restored from an old copy?): "
        "a send now would mail people who unsubscribed"
    ), out

    _place(new_state, _state(sent))
    _place(old_ledger, _ledger(sent))
    code, out = digest(sent, "send", "--yes", "--at", AT, "--edition", "2026-W49-third")
    assert code == 1 and f"error: {_ledger(sent)}: the send ledger is older than the subscriber state" in out

    _place(old_state, _state(sent))  # both from one moment, as a restore of one backup leaves them
    code, out = digest(sent, "send", "--dry-run", "--at", AT, "--edition", "2026-W49-third")
    assert code == 0, out


def test_two_newsletters_files_mixed_are_refused(sent: Path, tmp_path: Path) -> None:
    other = copy_sample(tmp_path / "other")
    code, out = digest(other, "send", "--yes", "--at", AT)
    assert code == 0, out
    _remove(_state(sent))
    shutil.copy(_state(other), _state(sent))
    code, out = digest(sent, "send", "--yes", "--at", AT, *SECOND)
    assert code == 1 and "do not belong together" in out and str(_state(sent)) in out


def test_the_first_send_pairs_the_files_whoever_made_the_state(tmp_path: Path) -> None:
    """Neither file (a new newsletter), or only a state made by `digest serve` before the first
    send: both just work, and from then on the files know each other."""
    fresh = copy_sample(tmp_path / "fresh")
    code, out = digest(fresh, "send", "--yes", "--at", AT)
    assert code == 0, out
    assert sent_to(fresh, "2026-W49") == SAMPLE_RECIPIENTS
    with ledger_for(load(fresh)) as ledger, SubscriberState(_state(fresh)) as state:
        assert ledger.pairing()["pair_id"] == state.pairing()["pair_id"]
        assert ledger.pairing()["mark"] == state.pairing()["mark"] and "pending" not in state.pairing()
    served = copy_sample(tmp_path / "served")
    with SubscriberState(_state(served)) as state:
        state.opt_out(OPTED_OUT, "unsubscribed", "one-click")
    code, out = digest(served, "send", "--yes", "--at", AT)
    assert code == 0, out
    assert sent_to(served, "2026-W49") == SAMPLE_RECIPIENTS - {OPTED_OUT}


def test_a_crash_between_the_seals_writes_is_not_a_mismatch(sent: Path) -> None:
    """The seal writes the state (pending), then the ledger, then the state again: killed after
    the ledger, the state's pending mark is the ledger's new one."""
    with SqliteLedger(_ledger(sent)) as ledger, SubscriberState(_state(sent)) as state:
        seq = int(ledger.pairing()["seq"]) + 1
        state.set_pairing({"pending": f"{seq}:feedface"})
        ledger.set_pairing({"seq": seq, "mark": "feedface"})
    code, out = digest(sent, "send", "--yes", "--at", AT, *SECOND)
    assert code == 0, out
    assert sent_to(sent, "2026-W49-second") == set()  # nothing new for anyone, and ada still out
    code, out = digest(sent, "check", "--at", AT)
    assert "subscriber state" not in out
