"""`digest scheduler` driving daily, weekly and monthly slots over six simulated weeks that include
the spring clock change and a host that was off for two days: each due edition reaches each of its
readers once (counted by the capture server), a missed daily sends one catch-up edition, and no
reader ever gets an article twice."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cadence_support import CADENCES, by_cadence, deliveries, seed_categories, seed_items, seed_newsletter, write_news
from schedule_support import FakeClock, utc
from send_support import FakeSendGrid, ledger_for, load, sendgrid_toml

from digest.scheduler import Scheduler

LONDON = ZoneInfo("Europe/London")


def readers() -> list[dict]:
    """40 of the seed site's readers (inactive ones among them), a third of the weekly ones monthly."""
    items = copy.deepcopy(seed_items()[:40])
    for n, item in enumerate(i for i in items if i["preferences"]["frequency"] == "weekly"):
        if n % 3 == 0:
            item["preferences"]["frequency"] = "monthly"
    return items


def dates(start: tuple[int, int, int], end: tuple[int, int, int]) -> list[str]:
    day, last, out = utc(*start).date(), utc(*end).date(), []
    while day <= last:
        out.append(f"{day:%Y-%m-%d}")
        day += timedelta(days=1)
    return out


@pytest.mark.slow  # ~60 scheduled sends through the real sendgrid client
def test_daily_weekly_and_monthly_slots_over_six_weeks_with_a_clock_change_and_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = readers()
    clock = FakeClock(utc(2026, 3, 2, 8, 30))  # Monday 08:30 GMT
    with FakeSendGrid() as fake:
        fake.now = lambda: clock.timestamp
        monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
        # a month of four categories is over a hundred articles: room for all of them
        config_path = seed_newsletter(tmp_path, CADENCES + sendgrid_toml(fake.url), items, max_articles=200)
        published: dict[str, tuple[datetime, str]] = {}  # article id -> (moment, category)
        for day in range(52):  # every category, every day at 12:00 UTC, 22 February to 14 April
            moment = utc(2026, 2, 22, 12) + timedelta(days=day)
            published.update(
                (i, (moment, c)) for i, c in zip(write_news(config_path, moment), seed_categories(), strict=True)
            )
        config = load(config_path)
        logs: list[str] = []
        # The host sleeps from 6 April 05:00 UTC for 50 hours: the dailies of 6 and 7 April and the
        # weekly of 6 April pass while it is off; it wakes at 07:00 UTC on the 8th, an hour after
        # that day's daily slot.
        clock.jumps = {utc(2026, 4, 6, 5): 50 * 3600}
        Scheduler(config, clock=clock, sleep=clock.sleep, log=logs.append).run(until=utc(2026, 4, 14, 12))
        sent = deliveries(fake.messages)

    groups = by_cadence(items)
    daily = set(dates((2026, 3, 2), (2026, 4, 14))) - {"2026-04-06", "2026-04-07"}
    weekly = {"2026-W10", "2026-W11", "2026-W12", "2026-W13", "2026-W14", "2026-W16"}
    monthly = {"2026-03", "2026-04"}
    expected = (
        {(e, a) for e in daily for a in groups["daily"]}
        | {(e, a) for e in weekly for a in groups["weekly"]}
        | {(e, a) for e in monthly for a in groups["monthly"]}
    )
    # the done-when: one delivery per reader per due edition, none to a reader who left
    assert sent == Counter({row: 1 for row in expected})
    assert not {a for a in set().union(*by_cadence(items, active=False).values())} & {a for _, a in sent}

    # started 23.5 h after the monthly slot of 1 March: within grace, so it went out; the weekly of
    # 23 February (before this newsletter ran) is reported late; so is the one the outage took
    assert any("monthly edition 2026-03 (slot Sun 2026-03-01 09:00 GMT): sent to" in line for line in logs)
    assert any(
        "error: weekly edition 2026-W09 (slot Mon 2026-02-23 09:00 GMT) is 167.5 h late" in line for line in logs
    )
    assert any("error: weekly edition 2026-W15 (slot Mon 2026-04-06 09:00 BST) is 47 h late" in line for line in logs)
    assert any(
        "daily edition 2026-04-08 (slot Wed 2026-04-08 07:00 BST): sent to" in line and "1 h after the slot" in line
        for line in logs
    )

    with ledger_for(config) as ledger:
        rows = [r for s in ledger.editions(100) for r in ledger.rows(s.edition).values()]
    assert {r.state for r in rows} == {"accepted"}
    # every slot's moment is its wall-clock time in London, before and after 29 March
    for row in rows:
        local = row.selected_at.astimezone(LONDON)
        assert (local.hour, local.minute) == ((7, 0) if len(row.edition) == 10 else (9, 0)), row.edition
        assert local.utcoffset() == timedelta(hours=1 if local.date() >= utc(2026, 3, 29).date() else 0)
    # nobody ever got an article twice, across editions and cadences
    per_reader: dict[str, list[str]] = {}
    for row in rows:
        per_reader.setdefault(row.email, []).extend(row.article_ids)
    assert all(len(ids) == len(set(ids)) for ids in per_reader.values())
    # the catch-up edition of 8 April holds what 6 and 7 April would have: everything since the 5th's
    reader = sorted(groups["daily"])[0]
    catch_up = next(r for r in rows if r.edition == "2026-04-08" and r.email == reader)
    days = {published[i][0].date().isoformat() for i in catch_up.article_ids}
    assert days == {"2026-04-05", "2026-04-06", "2026-04-07"}
    # and every article a reader follows, published before their last edition, reached them once
    categories = {i["email"]: set(i["preferences"]["categories"]) for i in items}
    last_edition = {"daily": utc(2026, 4, 14, 6), "weekly": utc(2026, 4, 13, 8), "monthly": utc(2026, 4, 1, 8)}
    first_window = {"daily": utc(2026, 2, 23, 7), "weekly": utc(2026, 2, 23, 9), "monthly": utc(2026, 2, 22, 9)}
    for cadence, people in groups.items():
        for address in people:
            wanted = {
                i
                for i, (moment, category) in published.items()
                if category in categories[address] and first_window[cadence] <= moment <= last_edition[cadence]
            }
            assert set(per_reader[address]) == wanted, (cadence, address)


def test_a_slot_that_passes_during_another_cadences_send_is_sent_next(tmp_path: Path) -> None:
    """Daily at 09:00, weekly at 09:05: a daily send that takes ten minutes must not make the loop
    look for slots after it ended, past the weekly's."""
    items = seed_items()[:12]
    path = seed_newsletter(tmp_path, '[schedule]\ndaily = "0 9 * * *"\nweekly = "5 9 * * MON"\n', items)
    write_news(path, utc(2026, 5, 31, 12))
    config = load(path)
    clock = FakeClock(utc(2026, 6, 1, 7, 30))  # Monday 08:30 BST
    logs: list[str] = []

    def log(line: str) -> None:
        logs.append(line)
        if "daily edition 2026-06-01" in line and "sent to" in line:
            clock.now += timedelta(minutes=10)  # the daily send took ten minutes

    Scheduler(config, clock=clock, sleep=clock.sleep, log=log).run(until=utc(2026, 6, 1, 9))
    weekly = by_cadence(items)["weekly"]
    assert any(
        f"weekly edition 2026-W23 (slot Mon 2026-06-01 09:05 BST): sent to {len(weekly)} subscriber(s), 5 min after"
        in line
        for line in logs
    ), logs
    sent = {p.name.removesuffix(".eml") for p in (config.output.path / "2026-W23").glob("*.eml")}
    assert sent == {a.casefold() for a in weekly}
