"""`digest scheduler` and `digest schedule`: a test clock walks the loop through weeks of slots
(both 2026 clock changes in London, late and repeated runs, restarts), and a real process stops
on SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from schedule_support import WEEKLY, FakeClock, scheduled_sample, utc, write_week
from send_support import SAMPLE_RECIPIENTS, FakeSendGrid, ledger_for, load, sendgrid_toml

from digest.cli import main
from digest.scheduler import ScheduledResult, Scheduler

LONDON = ZoneInfo("Europe/London")


def digest(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def test_weeks_of_slots_across_both_clock_changes_send_each_edition_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The done-when test: one edition per slot to each eligible subscriber, none after grace."""
    clock = FakeClock(utc(2026, 3, 16, 6))
    with FakeSendGrid() as fake:
        fake.now = lambda: clock.timestamp
        monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
        config_path = scheduled_sample(tmp_path, WEEKLY + sendgrid_toml(fake.url))
        # a few articles every Friday of the walk, dated relative to the simulated clock
        for start in (utc(2026, 3, 13, 12), utc(2026, 10, 9, 12)):
            for week in range(6):
                write_week(config_path, start + timedelta(weeks=week))
        config = load(config_path)
        logs: list[str] = []

        # Spring, across 29 March: on time, on time, 5 h late (host asleep), 30 h late (host off), on time.
        clock.jumps = {utc(2026, 3, 30, 8): 5 * 3600, utc(2026, 4, 6, 8): 30 * 3600}
        spring = Scheduler(config, clock=clock, sleep=clock.sleep, log=logs.append)
        spring.run(until=utc(2026, 4, 14))
        # cron fires too, a minute after the scheduler: it finds nothing left to send
        clock.now = utc(2026, 4, 13, 8, 1)
        code, out = digest(config_path, "send", "--scheduled", "--yes", "--at", clock.now.isoformat())
        assert code == 0 and "nothing left to send" in out

        # Autumn, across 25 October: started 2 h after a slot (within grace: it goes out at once),
        # restarted right after the next slot, then run on.
        clock.now = utc(2026, 10, 19, 10)
        Scheduler(config, clock=clock, sleep=clock.sleep, log=logs.append).run(until=utc(2026, 10, 26, 9, 30))
        clock.now = utc(2026, 10, 26, 9, 30)
        restarted = Scheduler(config, clock=clock, sleep=clock.sleep, log=logs.append)
        restarted.run(until=utc(2026, 11, 10))

        sent = Counter((m.custom_args["edition"], m.to_email) for m in fake.messages)

    editions = ["2026-W12", "2026-W13", "2026-W14", "2026-W16", "2026-W43", "2026-W44", "2026-W45", "2026-W46"]
    assert sent == Counter({(e, address): 1 for e in editions for address in SAMPLE_RECIPIENTS})
    # W15's slot passed while the host was off for longer than the grace period: never sent
    assert any("error: edition 2026-W15 (slot Mon 2026-04-06 09:00 BST) is 30 h late" in line for line in logs)
    assert any(
        "edition 2026-W14 (slot Mon 2026-03-30 09:00 BST): sent to 7 subscriber(s), 5 h after" in line for line in logs
    )
    assert any(
        "edition 2026-W43 (slot Mon 2026-10-19 09:00 BST): sent to 7 subscriber(s), 2 h after" in line for line in logs
    )
    # the restart found its slot's edition already out
    assert isinstance(restarted.runs[0], ScheduledResult) and restarted.runs[0].outcome == "already"
    with ledger_for(config) as ledger:
        moments = {e: {row.selected_at for row in ledger.rows(e).values()} for e in editions}
        assert ledger.rows("2026-W15") == {}
    # every edition's moment is 09:00 in London: 09:00 UTC in winter, 08:00 UTC in summer
    assert all(len(m) == 1 and next(iter(m)).astimezone(LONDON).hour == 9 for m in moments.values())
    assert {e: next(iter(m)).astimezone(LONDON).utcoffset() for e, m in moments.items()} == {
        e: timedelta(hours=1 if e in ("2026-W14", "2026-W16", "2026-W43") else 0) for e in editions
    }
    # the loop slept, never longer than a nap, and logged every run
    assert clock.slept and max(clock.slept) <= 300
    assert sum("next slot" in line for line in logs) >= 8 and logs[-1].endswith("scheduler stopped")


def test_stop_during_a_sleep_ends_the_loop_without_another_run(tmp_path: Path) -> None:
    config = load(scheduled_sample(tmp_path))
    clock = FakeClock(utc(2026, 11, 30, 12))
    logs: list[str] = []
    scheduler = Scheduler(config, clock=clock, log=logs.append)

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.slept) == 3:
            scheduler.stop()

    scheduler.sleep = sleep
    scheduler.run()
    assert len(scheduler.runs) == 1  # the start-up run only
    assert logs[-1] == "2026-11-30T12:15:00Z scheduler stopped"


@pytest.mark.slow  # a real scheduler process
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_scheduler_process_stops_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    config = scheduled_sample(tmp_path)
    command = [sys.executable, "-m", "digest", "--config", str(config), "scheduler"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:  # the start-up run, then it sleeps until the next slot
            lines.append(line)
            if "next slot" in line:
                break
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, lines + [rest]
    assert "scheduler started: 0 9 * * MON (Europe/London), grace 24 h" in lines[0]
    assert rest.strip().endswith("scheduler stopped")


def test_schedule_shows_slots_in_local_time_and_utc_and_the_next_edition(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path)
    write_week(config, utc(2026, 3, 27, 12))
    code, out = digest(config, "schedule", "--at", "2026-03-20T12:00", "-n", "3")
    assert code == 0, out
    assert "schedule: 0 9 * * MON (Europe/London), grace 24 h" in out
    assert "2026-W13         Mon 2026-03-23 09:00 GMT  = 2026-03-23 09:00 UTC" in out
    assert "2026-W14         Mon 2026-03-30 09:00 BST  = 2026-03-30 08:00 UTC" in out
    assert "2026-W15         Mon 2026-04-06 09:00 BST  = 2026-04-06 08:00 UTC" in out
    assert "last slot: 2026-W12 Mon 2026-03-16 09:00 GMT: nothing sent" in out
    # the next slot's window (16-23 March) is empty; the articles of the 27th wait for W14
    assert "next edition 2026-W13 with today's content: 0 recipient(s), 0 article(s), no email for 10" in out
    code, out = digest(config, "schedule", "--at", "2026-03-24T12:00", "-n", "1")
    assert "next edition 2026-W14 with today's content: 7 recipient(s), 5 article(s)" in out
    assert "News on python for 27 March 2026" in out
    assert not (config.parent / "outbox").exists() and not (config.parent / "state" / "ledger.sqlite3").exists()


def test_schedule_knows_what_the_ledger_says(tmp_path: Path) -> None:
    config = scheduled_sample(tmp_path)
    digest(config, "send", "--scheduled", "--yes", "--at", "2026-11-30T09:00")
    code, out = digest(config, "schedule", "--at", "2026-12-01T09:00")
    assert code == 0, out
    assert "last slot: 2026-W49 Mon 2026-11-30 09:00 GMT: accepted 7" in out
    # everything in the window went out in W49: nobody would get W50 with today's content
    assert "next edition 2026-W50 with today's content: 0 recipient(s)" in out
