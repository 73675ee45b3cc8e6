"""`digest send --scheduled`: the most recent slot's edition, within the grace period, exactly once
(two processes racing included), an empty edition, and local-time delivery through send_at."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from schedule_support import WEEKLY, scheduled_sample, utc, write_week
from send_support import SAMPLE_RECIPIENTS, FakeSendGrid, ledger_for, load, many_subscribers, sendgrid_toml

from digest.cli import main
from digest.store.runlock import RunLock
from digest.store.sqlite_ledger import SqliteLedger

SLOT = "2026-11-30T09:00"  # Monday, 09:00 GMT: edition 2026-W49


def digest(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def outbox(config: Path, edition: str) -> set[str]:
    return {p.name.removesuffix(".eml") for p in (config.parent / "outbox" / edition).glob("*.eml")}


def test_on_time_sends_the_slots_edition_and_a_rerun_sends_nothing(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path)
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-11-30T09:00:30")
    assert code == 0, out
    assert "edition 2026-W49 (slot Mon 2026-11-30 09:00 GMT): sent to 7 subscriber(s), on time" in out
    assert outbox(config, "2026-W49") == SAMPLE_RECIPIENTS
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-11-30T15:00")
    assert code == 0, out
    assert "nothing left to send (7 already sent or in flight)" in out
    with ledger_for(load(config)) as ledger:
        assert ledger.summary("2026-W49") == {"accepted": 7}


def test_before_the_slot_it_is_the_previous_slots_edition(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path)
    # Monday 08:59: the last slot is a week ago, long past the grace period
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-11-30T08:59")
    assert code == 1
    assert "edition 2026-W48 (slot Mon 2026-11-23 09:00 GMT) is 168 h late" in out
    assert "the next slot is Mon 2026-11-30 09:00 GMT (2026-W49)" in out


def test_late_within_grace_sends_what_the_slot_would_have(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path)
    # published after the slot: belongs to next week's edition, however late this run is
    (after, *_) = write_week(config, utc(2026, 11, 30, 12))
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-12-01T08:30")
    assert code == 0, out
    assert "sent to 7 subscriber(s), 23.5 h after the slot" in out
    with ledger_for(load(config)) as ledger:
        sent = {a for row in ledger.rows("2026-W49").values() for a in row.article_ids}
        assert all(
            row.selected_at == datetime.fromisoformat(SLOT + "+00:00") for row in ledger.rows("2026-W49").values()
        )
    assert sent and after not in sent


def test_past_the_grace_period_it_refuses_unless_forced(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path)
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-12-01T09:30")
    assert code == 1
    assert (
        "error: edition 2026-W49 (slot Mon 2026-11-30 09:00 GMT) is 24.5 h late, over the grace period of 24 h" in out
    )
    assert "Pass --force" in out
    assert outbox(config, "2026-W49") == set()
    code, out = digest(config, "send", "--scheduled", "--force", "--yes", "--at", "2026-12-01T09:30")
    assert code == 0, out
    assert outbox(config, "2026-W49") == SAMPLE_RECIPIENTS


def test_past_the_grace_period_an_edition_that_went_out_is_left_alone(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path)
    code, _ = digest(config, "send", "--scheduled", "--yes", "--limit", "3", "--at", "2026-11-30T09:00")
    assert code == 0
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-12-02T09:00")
    assert code == 0, out
    assert "went out to 3 subscriber(s); it is 48 h past its slot" in out
    assert len(outbox(config, "2026-W49")) == 3


def test_grace_hours_is_configurable(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path, WEEKLY + "grace_hours = 2\n")
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-11-30T11:30")
    assert code == 1 and "over the grace period of 2 h" in out
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-11-30T10:30")
    assert code == 0 and "sent to 7" in out


def test_an_edition_nobody_gets_an_article_in_sends_nothing_and_says_so(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path)
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2027-01-04T09:10")
    assert code == 0, out
    assert "edition 2027-W01 (slot Mon 2027-01-04 09:00 GMT): nobody gets an article this time; nothing sent" in out
    assert not (config.parent / "outbox").exists()


def test_dry_run_plans_the_slots_edition(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path)
    code, out = digest(config, "send", "--scheduled", "--dry-run", "--at", "2026-11-30T09:01")
    assert code == 0, out
    assert "dry run: edition 2026-W49" in out and "would send to 7 subscriber(s)" in out
    assert not (config.parent / "outbox").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--force"], "--force only applies with --scheduled"),
        (["--scheduled", "--edition", "x"], "no --edition or --sandbox"),
    ],
)
def test_flag_misuse_is_a_usage_error(tmp_path: Path, args: list[str], message: str) -> None:
    config = scheduled_sample(tmp_path)
    code, out = digest(config, "send", "--yes", "--at", SLOT, *args)
    assert code == 2 and message in out


def test_without_a_schedule_it_says_how_to_add_one(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path, "")
    code, out = digest(config, "send", "--scheduled", "--yes")
    assert code == 1 and 'add [schedule] weekly = "0 9 * * MON"' in out


# ---------------------------------------------------------------- two at once


@pytest.mark.slow  # two digest processes
def test_two_processes_at_once_send_each_subscriber_once(tmp_path: Path) -> None:
    with FakeSendGrid() as fake:
        config = scheduled_sample(tmp_path, WEEKLY + sendgrid_toml(fake.url, max_per_request=5))
        many_subscribers(config, 150)
        env = {**os.environ, "SENDGRID_API_KEY": fake.api_key}
        command = [sys.executable, "-m", "digest", "--config", str(config), "send", "--scheduled", "--yes"]
        runs = [
            subprocess.Popen(
                [*command, "--at", at], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for at in ("2026-11-30T09:00", "2026-11-30T09:02")
        ]
        outputs = [run.communicate(timeout=120)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        delivered = Counter(m.to_email for m in fake.messages)
    with ledger_for(load(config)) as ledger:
        accepted = ledger.summary("2026-W49")["accepted"]
    assert accepted > 50 and len(delivered) == accepted
    assert set(delivered.values()) == {1}


class _FinishesDuringRecovery:
    """The real ledger, with run A finishing (its rows settled, its lock released) right after the
    n-th time recovery reads the rows: the interleaving that made the test above fail now and
    then. Everything else is the real SqliteLedger."""

    def __init__(self, ledger: SqliteLedger, lock: RunLock, after_read: int):
        self._ledger, self._lock, self._after = ledger, lock, after_read
        self.reads = 0

    def rows(self, *args: object, **kwargs: object) -> dict:
        rows = self._ledger.rows(*args, **kwargs)  # type: ignore[arg-type]
        self.reads += 1
        if self.reads == self._after:
            self._ledger.settle("2026-W49", list(rows), "accepted", run_id="run-a")
            self._lock.release()
        return rows

    def __getattr__(self, name: str) -> object:
        return getattr(self._ledger, name)


@pytest.mark.parametrize("after_read", [1, 2])
def test_recovery_never_overwrites_what_a_finishing_run_settled(tmp_path: Path, after_read: int) -> None:
    """Why two runs at once sometimes exited non-zero: run B's recovery read run A's rows while A
    was alive, A then settled them and exited, and B, finding A's lock free, marked A's accepted
    rows ambiguous (exit 3). Recovery now decides who is dead before it reads the rows it settles,
    and only ever touches rows still claimed."""
    from digest.ledger import ClaimItem
    from digest.recovery import settle_dead_claims
    from digest.transports.outbox import OutboxTransport

    state = tmp_path / "state"
    lock = RunLock(state, "run-a")
    with SqliteLedger(state / "ledger.sqlite3") as ledger:
        items = [ClaimItem(f"r{i}@example.com", f"r{i}@example.com", ("a",), utc(2026, 11, 30, 9)) for i in range(5)]
        ledger.claim("2026-W49", "run-a", items, transport="outbox")
        racing = _FinishesDuringRecovery(ledger, lock, after_read)
        transport = OutboxTransport(tmp_path / "outbox", date=utc(2026, 11, 30, 9))
        settle_dead_claims(racing, transport, "2026-W49", lambda: 0.0)  # type: ignore[arg-type]
        assert racing.reads >= after_read
        assert ledger.summary("2026-W49") == {"accepted": 5}


# ---------------------------------------------------------------- local-time delivery


def test_local_time_delivery_holds_each_email_until_the_slot_in_the_subscribers_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeSendGrid() as fake:
        toml = WEEKLY + "local_time = true\n" + sendgrid_toml(fake.url)
        config = scheduled_sample(tmp_path, toml)
        at = utc(2026, 11, 30, 9, 5)
        fake.now = at.timestamp  # the fake checks send_at against its own clock
        monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
        code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-11-30T09:05")
        assert code == 0, out
        send_at = {m.to_email: m.send_at for m in fake.messages}
        bodies = fake.accepted
    assert set(send_at) == SAMPLE_RECIPIENTS
    # New York and Los Angeles are still before 09:00 local: held until then
    assert send_at["grace@example.org"] == utc(2026, 11, 30, 14).timestamp()
    assert send_at["sam.rivera@example.net"] == utc(2026, 11, 30, 17).timestamp()
    # London and Dublin (09:00 passed 5 minutes ago), Paris, Berlin, Shanghai: at once
    assert {e for e, t in send_at.items() if t is None} == SAMPLE_RECIPIENTS - {
        "grace@example.org",
        "sam.rivera@example.net",
    }
    # one request carries one send_at: held and immediate recipients never share one
    for body in bodies:
        held = {p["to"][0]["email"] for p in body["personalizations"]}
        assert held <= {"grace@example.org"} or held <= {"sam.rivera@example.net"} or "send_at" not in body
    with ledger_for(load(config)) as ledger:
        rows = ledger.rows("2026-W49")
    assert rows["grace@example.org"].send_at == int(utc(2026, 11, 30, 14).timestamp())
    assert rows["ada@example.com"].send_at is None


def test_local_time_delivery_late_in_the_day_sends_the_passed_zones_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeSendGrid() as fake:
        config = scheduled_sample(tmp_path, WEEKLY + "local_time = true\n" + sendgrid_toml(fake.url))
        fake.now = utc(2026, 11, 30, 15).timestamp
        monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
        code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-11-30T15:00")
        assert code == 0, out
        held = {m.to_email: m.send_at for m in fake.messages if m.send_at is not None}
    assert held == {"sam.rivera@example.net": utc(2026, 11, 30, 17).timestamp()}


def test_a_run_where_everything_fails_says_so_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSendGrid() as fake:
        config = scheduled_sample(tmp_path, WEEKLY + sendgrid_toml(fake.url))
        for address in SAMPLE_RECIPIENTS:
            fake.fail_for(address, 400)
        monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
        code, out = digest(config, "send", "--scheduled", "--yes", "--at", SLOT)
    assert code == 1
    assert "edition 2026-W49 (slot Mon 2026-11-30 09:00 GMT): nothing accepted: 7 failed, 0 ambiguous" in out


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")
