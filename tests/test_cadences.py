"""Cadences in the config and in time: a slot per cadence (the single `cron` kept as it was), edition
ids per cadence, who gets which edition, how far a window may reach back, and the clock changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import make_config

from digest.cadences import Cadences, cadence_for_send, longest_gap, when
from digest.errors import ConfigError, UsageError
from digest.models import Subscriber
from digest.schedule import Timetable, parse_cron

LONDON = ZoneInfo("Europe/London")
ALL = {"daily": "0 7 * * *", "weekly": "0 9 * * MON", "monthly": "0 9 1 * *"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def cadences(tmp_path: Path, **schedule: object) -> Cadences:
    return Cadences.from_config(make_config(tmp_path, schedule=schedule))


# ---------------------------------------------------------------- config


def test_a_slot_per_cadence_and_the_default(tmp_path: Path) -> None:
    c = cadences(tmp_path, **ALL)
    assert c.names == ("daily", "weekly", "monthly") and c.default == "weekly" and not c.legacy
    assert [t.cron.expr for t in c.tables] == list(ALL.values())
    assert cadences(tmp_path, **ALL, default="monthly").default == "monthly"
    # no weekly slot: the only cadence there is, or the one named
    assert cadences(tmp_path, daily="0 7 * * *").default == "daily"
    assert cadences(tmp_path, daily="0 7 * * *", monthly="0 9 1 * *", default="daily").default == "daily"


def test_a_single_cron_keeps_working_as_before(tmp_path: Path) -> None:
    """Every existing config: one slot for everyone, its ids by its shape, its messages unchanged."""
    for expr, first_id in (
        ("0 9 * * MON", "2026-W49"),
        ("0 9 * * MON,THU", "2026-11-26"),
        ("0 9 1 * *", "2026-12-01"),
        ("0 9,17 * * *", "2026-11-24T1700"),
    ):
        c = cadences(tmp_path, cron=expr)
        assert c.legacy and c.names == ("weekly",) and c.describe() == expr
        assert c.tables[0].next_slots(utc(2026, 11, 24, 10))[0].edition_id == first_id
        # whatever anyone chose, the one edition is theirs
        assert {c.cadence_of(Subscriber("a@x.org", frequency=f)) for f in ("daily", "monthly", None)} == {"weekly"}


def test_cron_beside_other_cadences_is_the_weekly_slot(tmp_path: Path) -> None:
    c = cadences(tmp_path, cron="0 9 * * MON", daily="0 7 * * *")
    assert c.names == ("daily", "weekly") and not c.legacy
    assert c.table("weekly").next_slots(utc(2026, 11, 24))[0].edition_id == "2026-W49"


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"daily": "0 7,19 * * *"}, "daily = '0 7,19 \\* \\* \\*' fires at more than one time of day: a daily edition"),
        ({"weekly": "0 9 * * MON,THU"}, "must fire on one day of the week: a weekly edition is named by its ISO week"),
        ({"monthly": "0 9 * * MON"}, "monthly = '0 9 \\* \\* MON' must fire on one day of the month"),
        ({"monthly": "0 9 1,15 * *"}, "must fire on one day of the month"),
        ({"cron": "0 9 * * MON", "weekly": "0 9 * * TUE"}, "cron is the older name of the weekly slot, keep one"),
        ({"daily": "0 7 * * *", "monthly": "0 9 1 * *"}, "default: name the cadence of subscribers who chose none"),
        ({"daily": "0 7 * * *", "default": "monthly"}, "default = 'monthly' has no slot: add monthly = "),
        ({"cron": "0 9 * * MON", "default": "daily"}, "the single `cron` is the weekly slot"),
        ({"weekly": "0 9 * * MON", "default": "hourly"}, "must be one of daily, weekly, monthly"),
        ({"daily": "0 7 * * FUNDAY"}, "schedule: daily: cron '0 7 \\* \\* FUNDAY': day of week field"),
        ({"monthly": "0 9 30 2 *"}, "schedule: monthly: cron '0 9 30 2 \\*' never fires"),
    ],
)
def test_a_slot_that_does_not_fit_its_cadence_is_refused_at_load(tmp_path: Path, schedule: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(tmp_path, schedule=schedule)


def test_which_cadence_a_manual_send_is(tmp_path: Path) -> None:
    assert cadence_for_send(make_config(tmp_path), None) is None  # no schedule: everyone, as before
    assert cadence_for_send(make_config(tmp_path, schedule={"cron": "0 9 * * MON"}), None) is None
    assert cadence_for_send(make_config(tmp_path, schedule={"daily": "0 7 * * *"}), None) == "daily"
    several = make_config(tmp_path, schedule=ALL)
    assert cadence_for_send(several, "monthly") == "monthly"
    with pytest.raises(UsageError, match="daily, weekly, monthly editions: name one with --cadence"):
        cadence_for_send(several, None)
    with pytest.raises(UsageError, match="there is no monthly edition: \\[schedule\\] has a slot for daily"):
        cadence_for_send(make_config(tmp_path, schedule={"daily": "0 7 * * *"}), "monthly")
    with pytest.raises(UsageError, match="defines no slots"):
        cadence_for_send(make_config(tmp_path), "daily")


# ---------------------------------------------------------------- who gets what


def test_each_subscriber_gets_their_own_cadence_or_the_default(tmp_path: Path) -> None:
    c = cadences(tmp_path, daily="0 7 * * *", weekly="0 9 * * MON")
    people = [
        Subscriber("d@x.org", frequency="daily"),
        Subscriber("w@x.org", frequency="weekly"),
        Subscriber("m@x.org", frequency="monthly"),  # no monthly slot: the default
        Subscriber("n@x.org"),  # chose none: the default
        Subscriber("gone@x.org", frequency="daily", status="unsubscribed"),
    ]
    assert [c.cadence_of(s) for s in people] == ["daily", "weekly", "weekly", "weekly", "daily"]
    assert [s.email for s in c.audience(people, "daily")] == ["d@x.org", "gone@x.org"]
    assert c.counts(people) == {"daily": 1, "weekly": 3}  # active ones
    assert c.unserved(people) == {"monthly": 1}


# ---------------------------------------------------------------- edition ids


def test_edition_ids_per_cadence(tmp_path: Path) -> None:
    c = cadences(tmp_path, **ALL)
    after = utc(2026, 11, 29, 12)
    slots = c.next_slots(after, 4)
    assert [(s.cadence, s.edition_id) for s in slots] == [
        ("daily", "2026-11-30"),
        ("weekly", "2026-W49"),
        ("daily", "2026-12-01"),
        ("monthly", "2026-12"),
    ]
    assert [s.at.astimezone(LONDON).hour for s in slots] == [7, 9, 7, 9]
    # a year of each: one id per slot, never two slots under one id
    for table in c.tables:
        ids = [s.edition_id for s in table.slots_between(utc(2026, 1, 1), utc(2027, 1, 1))]
        assert len(ids) == len(set(ids)) == {"daily": 365, "weekly": 52, "monthly": 12}[table.cadence]
    assert c.cadence_of_edition("2026-11-30") == "daily"
    assert c.cadence_of_edition("2026-W49") == "weekly"
    assert c.cadence_of_edition("2026-11") == "monthly"
    assert c.cadence_of_edition("spring-special") is None


def test_every_cadence_keeps_to_the_wall_clock_across_both_clock_changes(tmp_path: Path) -> None:
    c = cadences(tmp_path, daily="30 1 * * *", weekly="0 9 * * SUN", monthly="30 1 29 * *")
    daily = c.table("daily")
    # spring forward (29 March 2026): 01:30 does not exist; it fires once, at 02:30 BST, that day
    spring = daily.slots_between(utc(2026, 3, 28), utc(2026, 3, 31))
    assert [(s.edition_id, f"{s.at:%H:%M %Z}") for s in spring] == [
        ("2026-03-28", "01:30 GMT"),
        ("2026-03-29", "02:30 BST"),
        ("2026-03-30", "01:30 BST"),
    ]
    # fall back (25 October 2026): 01:30 happens twice; it fires once, at the first (BST)
    autumn = daily.slots_between(utc(2026, 10, 24), utc(2026, 10, 27))
    assert [(s.edition_id, s.utc.hour) for s in autumn] == [("2026-10-24", 0), ("2026-10-25", 0), ("2026-10-26", 1)]
    monthly = c.table("monthly").slots_between(utc(2026, 3, 1), utc(2026, 5, 1))
    assert [f"{s.at:%d %H:%M %Z}" for s in monthly] == ["29 02:30 BST", "29 01:30 BST"]
    weekly = c.table("weekly").slots_between(utc(2026, 3, 22), utc(2026, 4, 1))
    assert [s.utc.hour for s in weekly] == [9, 8]  # 09:00 GMT, then 09:00 BST


# ---------------------------------------------------------------- how far back a window may reach


def test_longest_gap_counts_real_time_across_a_clock_change() -> None:
    monthly = Timetable(parse_cron("0 9 1 * *"), LONDON, cadence="monthly", ids="month")
    # 1 October 09:00 BST to 1 November 09:00 GMT is 31 days and an hour
    assert longest_gap(monthly, utc(2026, 12, 1)) == timedelta(days=31, hours=1)
    daily = Timetable(parse_cron("0 7 * * MON-FRI"), LONDON, cadence="daily", ids="date")
    assert longest_gap(daily, utc(2026, 12, 1)) == timedelta(days=3, hours=1)


def test_a_switch_from_daily_to_monthly_is_not_cut_off_at_catch_up_days(tmp_path: Path) -> None:
    """28 days of catch-up do not cover a month: a daily reader who turned monthly right after
    their 1 November delivery waits until 1 December, and their window must reach back that far."""
    config = make_config(tmp_path, schedule={"daily": "0 10 * * *", "monthly": "0 9 1 * *", "default": "daily"})
    c = Cadences.from_config(config)
    at = c.table("monthly").next_slots(utc(2026, 11, 15))[0].at
    assert config.selection.catch_up_days == 28
    raised = c.selection_for(config, "monthly", at).selection.catch_up_days
    last_daily = datetime(2026, 11, 1, 10, tzinfo=LONDON)
    assert at - timedelta(days=raised) < last_daily
    # a cadence whose gaps are short leaves the setting alone
    weekly = make_config(tmp_path, schedule={"weekly": "0 9 * * MON"})
    assert Cadences.from_config(weekly).selection_for(weekly, "weekly", at) is weekly


def test_slots_are_described_for_readers() -> None:
    def table(expr: str) -> Timetable:
        return Timetable(parse_cron(expr), LONDON)

    assert when(table("0 7 * * *")) == "every day at 07:00 (Europe/London time)"
    assert when(table("0 9 * * MON")) == "Mondays at 09:00 (Europe/London time)"
    assert when(table("0 9 1 * *")) == "on the 1st of the month at 09:00 (Europe/London time)"
    assert when(table("30 8 22 * *")) == "on the 22nd of the month at 08:30 (Europe/London time)"
    assert when(table("0 7 * * MON-FRI")) == "cron 0 7 * * MON-FRI (Europe/London time)"
