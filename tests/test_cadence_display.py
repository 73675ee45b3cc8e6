"""What the commands show about cadences: `digest schedule` and `digest status` (each cadence's slot,
subscribers, next and last edition), `digest check` (readers whose cadence has no slot) and
`digest preview` (each subscriber's cadence and next edition)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from cadence_support import by_cadence, seed_items, seed_newsletter, write_news
from click.testing import CliRunner
from schedule_support import utc

from digest.cli import main

DAILY_WEEKLY = '[schedule]\ndaily = "0 7 * * *"\nweekly = "0 9 * * MON"\n'


def digest(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


@pytest.fixture
def items() -> list[dict]:
    """The seed readers, four of the active weekly ones turned monthly (which has no slot here)."""
    items = copy.deepcopy(seed_items())
    weekly = [i for i in items if i["isActive"] and i["preferences"]["frequency"] == "weekly"]
    for item in weekly[:4]:
        item["preferences"]["frequency"] = "monthly"
    return items


@pytest.fixture
def config(tmp_path: Path, items: list[dict]) -> Path:
    path = seed_newsletter(tmp_path, DAILY_WEEKLY, items)
    write_news(path, utc(2026, 5, 31, 12))
    return path


def test_schedule_shows_each_cadence_its_subscribers_and_next_edition(config: Path, items: list[dict]) -> None:
    code, out = digest(config, "schedule", "--at", "2026-06-01T06:00", "-n", "3")
    assert code == 0, out
    assert "schedule (Europe/London), grace 24 h; subscribers without a cadence of their own get weekly" in out
    active = by_cadence(items)
    assert f"  daily    0 7 * * *        {len(active['daily'])} subscriber(s)" in out
    assert f"  weekly   0 9 * * MON      {len(active['weekly']) + 4} subscriber(s)" in out
    assert "  daily    2026-06-01       Mon 2026-06-01 07:00 BST  = 2026-06-01 06:00 UTC" in out
    assert "  weekly   2026-W23         Mon 2026-06-01 09:00 BST  = 2026-06-01 08:00 UTC" in out
    assert "  daily    2026-06-02       Tue 2026-06-02 07:00 BST  = 2026-06-02 06:00 UTC" in out
    assert "daily last slot: 2026-05-31 Sun 2026-05-31 07:00 BST: nothing sent" in out
    assert f"daily next edition 2026-06-01 with today's content: {len(active['daily'])} recipient(s)" in out
    assert f"weekly next edition 2026-W23 with today's content: {len(active['weekly']) + 4} recipient(s)" in out
    assert "note: 4 subscriber(s) chose monthly, which has no slot: they get the weekly edition" in out


def test_status_shows_each_cadence_and_its_last_edition(config: Path, items: list[dict]) -> None:
    code, out = digest(config, "status", "--at", "2026-06-01T08:00")
    assert code == 0 and "the ledger is empty: nothing sent yet" in out
    assert "cadences (Europe/London, grace 24 h, default weekly):" in out
    assert "next 2026-06-02 Tue 2026-06-02 07:00 BST; last nothing sent yet" in out
    digest(config, "send", "--scheduled", "--yes", "--cadence", "daily", "--at", "2026-06-01T08:00")
    code, out = digest(config, "status", "--at", "2026-06-01T08:00")
    daily = len(by_cadence(items)["daily"])
    assert f"  daily    0 7 * * *        {daily} subscriber(s); next 2026-06-02 Tue 2026-06-02 07:00 BST; " in out
    assert f"last 2026-06-01: accepted {daily}" in out
    assert "  weekly   0 9 * * MON      " in out and "next 2026-W23 Mon 2026-06-01 09:00 BST; last nothing sent" in out
    assert "note: 4 subscriber(s) chose monthly, which has no slot: they get the weekly edition" in out


def test_a_single_cron_shows_as_before_with_its_subscribers(tmp_path: Path) -> None:
    path = seed_newsletter(tmp_path, '[schedule]\ncron = "0 9 * * MON"\n')
    code, out = digest(path, "status", "--at", "2026-06-01T08:00")
    assert "cadences (Europe/London, grace 24 h, one slot for everyone):" in out
    assert "  weekly   0 9 * * MON      189 subscriber(s); next 2026-W23" in out
    # the daily readers get the one edition, and say so
    assert "note: 64 subscriber(s) chose daily, which has no slot: they get the weekly edition" in out
    code, out = digest(path, "schedule", "--at", "2026-06-01T08:00", "-n", "1")
    assert "schedule: 0 9 * * MON (Europe/London), grace 24 h" in out
    assert "  2026-W23         Mon 2026-06-01 09:00 BST  = 2026-06-01 08:00 UTC" in out


def test_check_warns_of_readers_whose_cadence_has_no_slot(config: Path) -> None:
    code, out = digest(config, "check", "--at", "2026-06-01T08:00")
    assert (
        "seed.json: warning: 4 subscriber(s) chose monthly, which [schedule] has no slot for: they get the "
        "weekly edition (add schedule.monthly to send theirs)" in out
    )


def test_preview_shows_each_subscribers_cadence_and_next_edition(config: Path, items: list[dict]) -> None:
    code, out = digest(config, "preview", "--at", "2026-06-01T08:00", "--get", "/")
    assert code == 0, out
    assert '<table id="cadence-table">' in out
    daily = len(by_cadence(items)["daily"])
    assert f'<td><b>daily</b></td><td><code>0 7 * * *</code></td><td class="num">{daily}</td>' in out
    assert "2026-06-02 <span" in out and "2026-W23 <span" in out  # the next daily is tomorrow's
    reader = sorted(by_cadence(items)["daily"])[0]
    # the subscriber table is paged (100 a page): the reader is found by the server's search
    code, out = digest(config, "preview", "--at", "2026-06-01T08:00", "--get", f"/?q={reader}")
    assert code == 0, out
    row = out[out.index(f">{reader}<") :]
    row = row[: row.index("</tr>")]
    assert '<td class="cadence">daily<br><span class="muted">next 2026-06-02, Tue 02 Jun 07:00</span>' in row
    monthly = next(i["email"] for i in items if i["preferences"]["frequency"] == "monthly")
    code, page = digest(config, "preview", "--at", "2026-06-01T08:00", "--get", f"/subscribers/{monthly}")
    assert code == 0, page
    assert '<dd id="cadence">weekly <span class="muted">(chose monthly: no slot)</span>' in page
    assert "next edition 2026-W23, Mon 01 Jun 2026 09:00 BST" in page
