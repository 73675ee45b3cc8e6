"""Cron parsing, slots in the schedule's zone (DST included), edition ids, and `[schedule]` config."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import LONDON, make_config

from digest.cadences import Cadences
from digest.config import Config
from digest.errors import ConfigError, UsageError
from digest.schedule import CronError, Timetable, edition_for, parse_at, parse_cron, resolve_local

NEW_YORK = ZoneInfo("America/New_York")


def table(expr: str, tz: ZoneInfo = LONDON) -> Timetable:
    return Timetable(parse_cron(expr), tz)


def default_timetable(config: Config) -> Timetable:
    """The timetable of the default cadence (the only one of a config with a single `cron`)."""
    cadences = Cadences.from_config(config)
    return cadences.table(cadences.default)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("expr", "field", "expected"),
    [
        ("0 9 * * MON", "weekdays", {1}),
        ("0 9 * * mon-fri", "weekdays", {1, 2, 3, 4, 5}),
        ("0 9 * * 0,7", "weekdays", {0}),  # 7 is Sunday too
        ("0 9 * * SUN", "weekdays", {0}),
        ("*/15 * * * *", "minutes", (0, 15, 30, 45)),
        ("5/20 * * * *", "minutes", (5, 25, 45)),
        ("0 8-18/5 * * *", "hours", (8, 13, 18)),
        ("0,30 9,17 * * *", "hours", (9, 17)),
        ("0 9 1,15 * *", "days", {1, 15}),
        ("0 9 * JAN,jul-AUG *", "months", {1, 7, 8}),
        ("0 9 * */3 *", "months", {1, 4, 7, 10}),
        ("@weekly", "weekdays", {0}),
    ],
)
def test_fields_parse(expr: str, field: str, expected: object) -> None:
    value = getattr(parse_cron(expr), field)
    assert (set(value) if isinstance(expected, set) else value) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 9 * *", "5 fields"),
        ("0 9 * * MON extra", "5 fields"),
        ("60 9 * * *", "minute field '60': 60 is outside 0-59"),
        ("0 24 * * *", "hour field"),
        ("0 9 0 * *", "day of month field '0'"),
        ("0 9 * 13 *", "month field"),
        ("0 9 * * FUNDAY", "not a number or a name"),
        ("0 9 * * 5-1", "runs backwards"),
        ("*/0 9 * * *", "step '0'"),
        ("0 9 1,,2 * *", "empty list item"),
        ("0 9 * * 8", "outside 0-7"),
    ],
)
def test_bad_expressions_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("(", r"\(")):
        parse_cron(expr)


def test_both_day_fields_restricted_means_either_matches() -> None:
    cron = parse_cron("0 9 13 * FRI")
    assert cron.matches_day(date(2026, 11, 13))  # the 13th (a Friday too)
    assert cron.matches_day(date(2026, 12, 13))  # the 13th, a Sunday
    assert cron.matches_day(date(2026, 12, 4))  # a Friday, not the 13th
    assert not cron.matches_day(date(2026, 12, 5))


def test_a_starred_day_field_does_not_widen_the_other() -> None:
    assert not parse_cron("0 9 13 * *").matches_day(date(2026, 12, 4))  # a Friday but not the 13th
    assert not parse_cron("0 9 */2 * MON").matches_day(date(2026, 11, 24))  # */2 starts with *: AND


# ---------------------------------------------------------------- slots


def test_weekly_slots_in_winter_and_summer_keep_local_time() -> None:
    slots = table("0 9 * * MON").next_slots(utc(2026, 3, 20), 3)
    assert [s.at.replace(tzinfo=None) for s in slots] == [
        datetime(2026, 3, 23, 9),
        datetime(2026, 3, 30, 9),
        datetime(2026, 4, 6, 9),
    ]
    # GMT before the last Sunday of March, BST after it
    assert [s.utc for s in slots] == [utc(2026, 3, 23, 9), utc(2026, 3, 30, 8), utc(2026, 4, 6, 8)]
    autumn = table("0 9 * * MON").next_slots(utc(2026, 10, 20), 2)
    assert [s.utc for s in autumn] == [utc(2026, 10, 26, 9), utc(2026, 11, 2, 9)]
    assert all(s.at.hour == 9 for s in autumn)


def test_a_local_time_in_the_spring_gap_moves_forward_by_the_gap() -> None:
    # 01:30 does not exist in London on 2026-03-29: it fires at 02:30 BST (01:30 UTC)
    (slot,) = table("30 1 * * SUN").next_slots(utc(2026, 3, 28), 1)
    assert slot.utc == utc(2026, 3, 29, 1, 30)
    assert (slot.at.hour, slot.at.minute, slot.at.tzname()) == (2, 30, "BST")
    assert slot.edition_id == "2026-W13"


def test_a_gap_time_and_the_time_it_moves_to_fire_once() -> None:
    slots = table("30 1,2 29 3 *").next_slots(utc(2026, 3, 28), 2)
    assert slots[0].utc == utc(2026, 3, 29, 1, 30)  # 01:30 and 02:30 are the same instant that day
    assert slots[1].utc == utc(2027, 3, 29, 0, 30)


def test_a_repeated_local_time_fires_once_at_its_first_occurrence() -> None:
    # 01:30 happens twice in London on 2026-10-25 (BST, then GMT)
    slots = table("30 1 * * *").next_slots(utc(2026, 10, 24, 12), 2)
    assert slots[0].utc == utc(2026, 10, 25, 0, 30) and slots[0].at.tzname() == "BST"
    assert slots[1].utc == utc(2026, 10, 26, 1, 30)
    # and an hourly schedule has 24 slots that day, not 25
    hourly = table("30 * * * *")
    day = [s for s in hourly.next_slots(utc(2026, 10, 24, 22), 30) if s.at.date() == date(2026, 10, 25)]
    assert len(day) == 24 and len({s.utc for s in day}) == 24


def test_resolve_local_in_new_york() -> None:
    assert resolve_local(datetime(2026, 3, 8, 2, 30), NEW_YORK).utcoffset() == timedelta(hours=-4)
    assert resolve_local(datetime(2026, 11, 1, 1, 30), NEW_YORK).utcoffset() == timedelta(hours=-4)


def test_last_slot_is_at_or_before() -> None:
    weekly = table("0 9 * * MON")
    assert weekly.last_slot(utc(2026, 11, 30, 9)).edition_id == "2026-W49"  # exactly at the slot
    assert weekly.last_slot(utc(2026, 11, 30, 8, 59)).edition_id == "2026-W48"
    assert weekly.last_slot(utc(2026, 12, 6, 23)).at == datetime(2026, 11, 30, 9, tzinfo=LONDON)
    # summer: 09:00 BST is 08:00 UTC, so 08:30 UTC is after the slot
    assert weekly.last_slot(utc(2026, 6, 1, 8, 30)).edition_id == "2026-W23"


def test_next_slots_are_strictly_after() -> None:
    weekly = table("0 9 * * MON")
    assert weekly.next_slots(utc(2026, 11, 30, 9))[0].edition_id == "2026-W50"


def test_a_cron_that_never_fires_is_refused() -> None:
    with pytest.raises(CronError, match="never fires"):
        table("0 9 30 2 *").next_slots(utc(2026, 1, 1))


# ---------------------------------------------------------------- edition ids


def test_edition_ids_follow_the_cadence() -> None:
    assert table("0 9 * * MON").next_slots(utc(2026, 11, 24))[0].edition_id == "2026-W49"
    assert table("0 9 * * 1").last_slot(utc(2027, 1, 4, 10)).edition_id == "2027-W01"
    assert table("0 9 * * MON,THU").next_slots(utc(2026, 11, 24))[0].edition_id == "2026-11-26"
    assert table("0 9 1 * *").next_slots(utc(2026, 11, 24))[0].edition_id == "2026-12-01"
    assert table("0 9,17 * * *").next_slots(utc(2026, 11, 24, 10))[0].edition_id == "2026-11-24T1700"


def test_weekly_ids_match_a_manual_send_of_the_same_moment() -> None:
    weekly = table("0 9 * * MON")
    for slot in weekly.next_slots(utc(2026, 1, 1), 60):
        assert slot.edition_id == edition_for(slot.at, LONDON).id
    # and the ids of consecutive slots never repeat, across both clock changes and the year end
    ids = [s.edition_id for s in weekly.next_slots(utc(2026, 1, 1), 60)]
    assert len(set(ids)) == 60


def test_a_late_evening_slot_belongs_to_its_local_date() -> None:
    # 23:30 in New York is the next day in UTC; the id follows the schedule's zone
    slot = table("30 23 * * *", NEW_YORK).next_slots(utc(2026, 11, 24, 12))[0]
    assert slot.edition_id == "2026-11-24" and slot.utc.date() == date(2026, 11, 25)


def test_parse_at_and_edition_for_still_work() -> None:
    at = parse_at("2026-11-30T09:00", LONDON)
    assert at == datetime(2026, 11, 30, 9, tzinfo=LONDON)
    assert edition_for(at, LONDON).id == "2026-W49"


# ---------------------------------------------------------------- config


def test_schedule_config_defaults_and_timezone(tmp_path: Path) -> None:
    config = make_config(tmp_path, schedule={"cron": "0 9 * * MON", "timezone": "America/New_York"})
    t = default_timetable(config)
    assert t.tz.key == "America/New_York" and t.grace == timedelta(hours=24)
    config = make_config(tmp_path, schedule={"cron": "0 9 * * MON", "grace_hours": 6})
    t = default_timetable(config)
    assert t.tz.key == "Europe/London" and t.grace == timedelta(hours=6)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "0 9 * * FUNDAY"}, "schedule: cron '0 9 \\* \\* FUNDAY'"),
        ({"cron": "0 9 30 2 *"}, "never fires"),
        ({"cron": "0 9 * * MON", "timezone": "Mars/Olympus"}, "not an IANA time zone"),
        ({"cron": "0 9 * * MON", "grace_hours": 0}, "grace_hours must be more than 0"),
        ({"cron": "0 9 * * MON", "local_time": True}, "local_time needs sending.transport"),
    ],
)
def test_bad_schedule_config_is_refused_at_load(tmp_path: Path, schedule: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(tmp_path, schedule=schedule)


def test_no_cron_means_no_schedule(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"add \[schedule\] weekly = .*a single cron = .* still works"):
        default_timetable(make_config(tmp_path))


# ---------------------------------------------------------------- corners (issue 20: mutation testing)

NUUK = ZoneInfo("America/Nuuk")  # springs forward at 23:00 local: the gap runs past midnight


def test_a_gap_time_moved_past_midnight_onto_the_next_days_slot_fires_once() -> None:
    """23:30 on 28 March 2026 does not exist in Nuuk; moved forward by the gap it is 00:30 on the
    29th, itself a slot: one firing, not two (the module's rule, across a date line)."""
    slots = table("30 0,23 * * *", NUUK).next_slots(datetime(2026, 3, 28, 12, tzinfo=NUUK), 3)
    assert [s.at.isoformat() for s in slots] == [
        "2026-03-29T00:30:00-01:00",
        "2026-03-29T23:30:00-01:00",
        "2026-03-30T00:30:00-01:00",
    ]


def test_a_repeated_local_time_is_its_first_occurrence_whatever_fold_it_comes_with() -> None:
    first = resolve_local(datetime(2026, 10, 25, 1, 30, fold=1), LONDON)
    assert first.utcoffset() == timedelta(hours=1) and first.fold == 0


def test_a_one_value_range_parses() -> None:
    assert parse_cron("0 9 * * 5-5").weekdays == {5}
    assert parse_cron("0 9-9 1-1 * *").hours == (9,)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 x * * *", "cron '0 x * * *': hour field 'x': 'x' is not a number"),
        (
            "0 9 * * FUNDAY",
            "cron '0 9 * * FUNDAY': day of week field 'FUNDAY': 'FUNDAY' is not a number or a name "
            "(SUN, MON, TUE, WED, THU, FRI, SAT)",
        ),
        ("0 9 1,,2 * *", "cron '0 9 1,,2 * *': day of month field '1,,2': empty list item"),
        (
            "0 9 * * 1-2-3",
            "cron '0 9 * * 1-2-3': day of week field '1-2-3': '2-3' is not a number or a name "
            "(SUN, MON, TUE, WED, THU, FRI, SAT)",
        ),  # fmt: skip
        ("0 9 * * 5-1", "cron '0 9 * * 5-1': day of week field '5-1': range 5-1 runs backwards"),
    ],
)
def test_a_bad_expression_is_one_exact_line(expr: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert str(info.value) == message


def test_last_slot_of_a_cron_that_never_fires_says_so() -> None:
    with pytest.raises(CronError) as info:
        table("0 9 30 2 *").last_slot(utc(2026, 1, 1))
    assert str(info.value) == "cron '0 9 30 2 *' never fires"


def test_no_schedule_names_the_config_file(tmp_path: Path) -> None:
    from digest.config import load_config

    (tmp_path / "digest.toml").write_text('[newsletter]\nname = "N"\n', encoding="utf-8")
    config = load_config(tmp_path / "digest.toml")
    advice = "no schedule: add [schedule] "
    with pytest.raises(ConfigError) as info:
        default_timetable(config)
    assert str(info.value).startswith(f"{config.source}: {advice}") and str(tmp_path) in str(info.value)
    with pytest.raises(ConfigError) as info:
        default_timetable(make_config(tmp_path))  # made in code: no file to name
    assert str(info.value).startswith(f"config: {advice}")


def test_a_slots_edition_has_the_slots_id_and_local_date() -> None:
    # 23:30 in New York is already the next day in UTC: the label follows the schedule's zone
    daily = table("30 23 * * *", NEW_YORK)
    slot = daily.next_slots(utc(2026, 11, 24, 12))[0]
    edition = daily.edition(slot)
    assert (edition.id, edition.label, edition.at) == ("2026-11-24", "24 November 2026", slot.at)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=12), "12 min"),
        (timedelta(minutes=59), "59 min"),
        (timedelta(hours=1), "1 h"),
        (timedelta(minutes=90), "1.5 h"),
        (timedelta(hours=30), "30 h"),
    ],
)
def test_durations_read_as_people_write_them(delta: timedelta, text: str) -> None:
    from digest.schedule import hours

    assert hours(delta) == text


def test_next_slots_gives_as_many_as_asked_and_one_by_default() -> None:
    weekly = table("0 9 * * MON")
    assert len(weekly.next_slots(utc(2026, 11, 24))) == 1
    assert [s.edition_id for s in weekly.next_slots(utc(2026, 11, 24), 3)] == ["2026-W49", "2026-W50", "2026-W51"]


def test_a_manual_sends_edition_is_named_in_the_newsletters_zone_not_the_machines() -> None:
    # 03:00 UTC on Monday 30 November is still Sunday 29 November in New York: week 48
    edition = edition_for(utc(2026, 11, 30, 3), NEW_YORK)
    assert (edition.id, edition.label) == ("2026-W48", "29 November 2026")


def test_a_bad_at_is_one_line_with_an_example() -> None:
    with pytest.raises(UsageError) as info:
        parse_at("next monday", LONDON)
    assert str(info.value) == "--at 'next monday' is not an ISO date or date-time (e.g. 2026-11-30T09:00)"


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-23:00", "0001-01-01T00:00+05:00", "1899-12-31", "9001-01-01"])
def test_an_at_near_the_ends_of_the_calendar_is_one_line_not_an_internal_error(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_at(text, LONDON)
    assert str(info.value) == f"--at {text!r} is out of range: use a year from 1900 to 9000"


@pytest.mark.parametrize("text", ["1900-01-01", "9000-12-31T23:59"])
def test_the_first_and_last_years_at_takes_plan_an_edition(text: str) -> None:
    at = parse_at(text, LONDON)
    assert at.year in (1900, 9000) and edition_for(at, LONDON).id.startswith(str(at.year)[:3])
