"""Each cadence's edition to the readers who chose it, from the seed site's own subscriber file (its
exact JSON shape: `isActive`, `preferences.frequency`), through the real sendgrid client to the
capture server: one delivery per reader per due edition, none to anyone who left."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
from cadence_support import CADENCES, by_cadence, deliveries, seed_categories, seed_items, seed_newsletter, write_news
from click.testing import CliRunner
from schedule_support import utc
from send_support import FakeSendGrid, ledger_for, load, sendgrid_toml

from digest.cli import main

# Monday 1 June 2026, 09:30 BST: the daily slot (07:00), the weekly (09:00) and the monthly (09:00 on
# the 1st) all passed within the grace period, so one run sends all three editions.
ALL_DUE = "2026-06-01T09:30"
EDITIONS = {"daily": "2026-06-01", "weekly": "2026-W23", "monthly": "2026-06"}


def digest(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def mixed_items() -> list[dict]:
    """The seed file with every third active weekly reader turned monthly, and every seventh reader's
    frequency left out (the default, weekly); inactive readers of every kind stay."""
    items = copy.deepcopy(seed_items())
    weekly_seen = 0
    for n, item in enumerate(items):
        prefs = item["preferences"]
        if prefs["frequency"] == "weekly":
            weekly_seen += 1
            if weekly_seen % 3 == 0:
                prefs["frequency"] = "monthly"
        if n % 7 == 0:
            del prefs["frequency"]
    return items


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    with FakeSendGrid() as server:
        monkeypatch.setenv("SENDGRID_API_KEY", server.api_key)
        yield server


def test_each_reader_gets_the_edition_of_the_cadence_they_chose_and_inactive_readers_nothing(
    tmp_path: Path, fake: FakeSendGrid
) -> None:
    items = mixed_items()
    config = seed_newsletter(tmp_path, CADENCES + sendgrid_toml(fake.url), items)
    for days in (1, 3, 6, 12, 20):
        write_news(config, utc(2026, 6, 1, 5) - timedelta(days=days))
    active, inactive = by_cadence(items), by_cadence(items, active=False)
    assert set(active) == {"daily", "weekly", "monthly", None} and set(inactive) >= {"daily", "weekly", "monthly"}

    code, out = digest(config, "send", "--scheduled", "--yes", "--at", ALL_DUE)
    assert code == 0, out
    expected = {
        "daily": active["daily"],
        "weekly": active["weekly"] | active[None],  # no frequency: the default
        "monthly": active["monthly"],
    }
    assert deliveries(fake.messages) == {(EDITIONS[c], a): 1 for c, people in expected.items() for a in people}
    everyone_inactive = set().union(*inactive.values())
    assert not everyone_inactive & {m.to_email for m in fake.messages}
    for cadence, people in expected.items():
        assert (
            f"{cadence} edition {EDITIONS[cadence]} (slot Mon 2026-06-01 {'07' if cadence == 'daily' else '09'}:00 BST)"
            f": sent to {len(people)} subscriber(s)"
        ) in out
    with ledger_for(load(config)) as ledger:
        for cadence, edition in EDITIONS.items():
            rows = ledger.rows(edition)
            assert set(rows) == {a.casefold() for a in expected[cadence]}
            # inactive readers are never claimed, in any edition
            assert not {r.email for r in rows.values()} & everyone_inactive

    # a second run (cron fired again, another machine): nothing more to anyone
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-06-01T10:00")
    assert code == 0, out
    assert out.count("nothing left to send") == 3
    assert sum(deliveries(fake.messages).values()) == sum(len(p) for p in expected.values())


def test_daily_and_weekly_editions_never_repeat_an_article_to_anyone(tmp_path: Path, fake: FakeSendGrid) -> None:
    """A week of dailies and the weekly in it: each reader gets each article they follow exactly
    once, in their own cadence's editions; one published after the weekly slot waits for the next
    weekly but reaches daily readers the next morning."""
    items = seed_items()
    config = seed_newsletter(tmp_path, CADENCES + sendgrid_toml(fake.url), items, max_articles=100)
    moments = [utc(2026, 5, 25, 12) + timedelta(hours=13 * n) for n in range(13)] + [utc(2026, 6, 1, 10)]
    categories: dict[str, str] = {}  # article id -> its category
    for moment in moments:
        categories.update(zip(write_news(config, moment), seed_categories(), strict=True))
    for day in range(8):  # 09:30 BST, 26 May to 2 June: eight dailies, and 1 June's weekly
        at = utc(2026, 5, 26, 8, 30) + timedelta(days=day)
        # as two cron entries would run it: the daily one every day, everything due on Mondays
        # (a daily run that asked for every cadence would report the weekly of 25 May, which
        # this new newsletter never sent, as late: see test_a_missed_slot_...)
        only = [] if at.weekday() == 0 else ["--cadence", "daily"]
        code, out = digest(config, "send", "--scheduled", "--yes", "--at", at.isoformat(), *only)
        assert code == 0, out
    got: dict[str, list[str]] = {}
    rows: set[tuple[str, str]] = set()
    with ledger_for(load(config)) as ledger:
        for summary in ledger.editions(20):
            for row in ledger.rows(summary.edition).values():
                assert row.state == "accepted"
                got.setdefault(row.email, []).extend(row.article_ids)
                rows.add((row.edition, row.email))
    late = {i for i in categories if i.startswith("news/20260601-1000")}
    groups = by_cadence(items)
    for item in items:
        address = item["email"]
        if not item["isActive"]:
            assert address not in got
            continue
        mine = got[address]
        assert len(mine) == len(set(mine)), f"{address} got an article twice"
        matching = {i for i, c in categories.items() if c in item["preferences"]["categories"]}
        expected = matching if address in groups["daily"] else matching - late
        assert set(mine) == expected, address
    # the capture server saw exactly one message per ledger row: 8 dailies and one weekly
    assert deliveries(fake.messages) == {row: 1 for row in rows}
    assert {e for e, _ in rows} == {f"2026-05-{d}" for d in range(26, 32)} | {"2026-06-01", "2026-06-02", "2026-W23"}


def test_a_manual_send_names_its_cadence(tmp_path: Path) -> None:
    items = seed_items()
    config = seed_newsletter(tmp_path, CADENCES, items)
    write_news(config, utc(2026, 5, 31, 12))
    code, out = digest(config, "send", "--yes", "--at", "2026-06-01T12:00")
    assert code == 2 and "this newsletter has daily, weekly, monthly editions: name one with --cadence" in out
    code, out = digest(config, "send", "--yes", "--cadence", "daily", "--at", "2026-06-01T12:00")
    assert code == 0, out
    assert "edition 2026-06-01 via outbox" in out
    sent = {p.name.removesuffix(".eml") for p in (config.parent / "outbox" / "2026-06-01").glob("*.eml")}
    assert sent == {a.casefold() for a in by_cadence(items)["daily"]}
    weekly_reader = sorted(by_cadence(items)["weekly"])[0]
    code, out = digest(config, "send", "--yes", "--cadence", "daily", "--subscriber", weekly_reader)
    assert code == 1 and f"not in the daily edition: {weekly_reader} (gets weekly)" in out
    # build writes one cadence's digests too
    code, out = digest(
        config, "build", "--cadence", "monthly", "--at", "2026-06-01T12:00", "--out", str(tmp_path / "m")
    )
    assert code == 0 and "edition 2026-06:" in out and "built 0 digest(s)" in out


def test_a_missed_slot_of_one_cadence_is_reported_while_the_others_go_out(tmp_path: Path, fake: FakeSendGrid) -> None:
    items = seed_items()
    config = seed_newsletter(tmp_path, CADENCES + sendgrid_toml(fake.url), items)
    write_news(config, utc(2026, 5, 24, 12))
    # Tuesday 26 May 09:30: Monday's weekly slot passed 24.5 h ago, unsent (the host was off)
    code, out = digest(config, "send", "--scheduled", "--yes", "--at", "2026-05-26T09:30")
    assert code == 1
    assert "daily edition 2026-05-26 (slot Tue 2026-05-26 07:00 BST): sent to 64 subscriber(s)" in out
    assert (
        "error: weekly edition 2026-W22 (slot Mon 2026-05-25 09:00 BST) is 24.5 h late, over the grace period "
        "of 24 h: not sent. Pass --cadence weekly --force to send it anyway" in out
    )
    # nobody chose monthly: its passed slot is no one's loss, and no error
    assert "monthly edition 2026-05 (slot Fri 2026-05-01 09:00 BST): no subscriber gets the monthly edition" in out
    assert {e for e, _ in deliveries(fake.messages)} == {"2026-05-26"}
    code, out = digest(
        config, "send", "--scheduled", "--yes", "--at", "2026-05-26T09:30", "--cadence", "weekly", "--force"
    )
    assert code == 0, out
    assert deliveries(fake.messages) == {("2026-05-26", a): 1 for a in by_cadence(items)["daily"]} | {
        ("2026-W22", a): 1 for a in by_cadence(items)["weekly"]
    }
