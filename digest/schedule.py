"""Editions, moments and slots: which edition a moment belongs to, parsing `--at`, and the cron
schedule (`[schedule]`) whose slots decide when an edition goes out and what it is called.

Slots are computed on the wall clock of the schedule's zone, so `0 9 * * MON` in Europe/London
is 09:00 local all year: 09:00 UTC in winter, 08:00 UTC in summer. Two rules for the local times a
clock change makes odd (one test each):

- a local time that does not exist (spring forward; 01:30 on the last Sunday of March in London)
  fires at the instant the clock would have shown it without the change: moved forward by the
  gap (02:30 BST). Should that instant also be a slot, it fires once.
- a local time that happens twice (fall back; 01:30 on the last Sunday of October) fires once, at
  its first occurrence (01:30 BST, fold=0).

Edition ids derive from the slot's local time. A cadence's slot (`[schedule] daily`, `weekly`,
`monthly`; see cadences.py) names its editions by its period: the local date (`2026-11-30`), the
ISO week (`2026-W49`), the month (`2026-11`). The single `cron` of a config without cadences names
them by its shape (see `Cron.cadence`): the ISO week when it fires on one weekday at one time; the
local date when it fires at most once a day; the local date and time (`2026-11-30T0900`) when it
fires more often.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import ConfigError, UsageError
from digest.models import Edition


def parse_at(text: str | None, tz: ZoneInfo, *, now: datetime | None = None) -> datetime:
    """`--at` as an aware datetime; a naive value is in the newsletter's zone; None means now."""
    if not text:
        return now or datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--at {text!r} is not an ISO date or date-time (e.g. 2026-11-30T09:00)") from None
    if not AT_YEARS[0] <= value.year <= AT_YEARS[1]:
        # windows and schedules reach days and months either side: near the year 1 or 9999 that
        # is past the end of the calendar
        raise UsageError(f"--at {text!r} is out of range: use a year from {AT_YEARS[0]} to {AT_YEARS[1]}")
    return value if value.tzinfo else value.replace(tzinfo=tz)


#: The years `--at` may name.
AT_YEARS = (1900, 9000)


def edition_for(at: datetime, tz: ZoneInfo, edition_id: str | None = None) -> Edition:
    """By default the ISO week of `at` in the newsletter's zone, e.g. 2026-W48."""
    local = at.astimezone(tz)
    year, week, _ = local.isocalendar()
    return Edition(
        id=edition_id or f"{year}-W{week:02d}",
        label=f"{local.day} {local:%B %Y}",
        at=at,
    )


# ---------------------------------------------------------------- cron expressions

MONTHS = {name: i for i, name in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
WEEKDAYS = {name: i for i, name in enumerate("SUN MON TUE WED THU FRI SAT".split())}
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: (name, lowest, highest, names) of the five fields; day of week 7 is Sunday too.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, WEEKDAYS),
)
Cadence = Literal["weekly", "daily", "intraday"]
#: How a timetable names its editions: by local date, ISO week, month, or date and time.
IdScheme = Literal["date", "week", "month", "datetime"]
_SCHEME_OF_SHAPE: dict[Cadence, IdScheme] = {"weekly": "week", "daily": "date", "intraday": "datetime"}


class CronError(ConfigError):
    """A cron expression that does not parse, or never fires."""


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression: minute hour day-of-month month day-of-week."""

    expr: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  #: 0 = Sunday
    #: A day field is restricted unless it starts with `*` (as in Vixie cron, so `*/2` is not).
    dom_restricted: bool
    dow_restricted: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        # Standard cron: when both day fields are restricted, either one matching is enough.
        if self.dom_restricted and self.dow_restricted:
            return dom or dow
        return dom and dow

    def times(self) -> list[time]:
        return [time(h, m) for h in self.hours for m in self.minutes]

    @property
    def cadence(self) -> Cadence:
        """How edition ids are formed: weekly only when no two slots can share an ISO week."""
        if len(self.minutes) * len(self.hours) > 1:
            return "intraday"
        if self.dow_restricted and not self.dom_restricted and len(self.weekdays) == 1:
            return "weekly"
        return "daily"


def parse_cron(expr: str) -> Cron:
    """Parse `expr` (5 fields, `*`, lists, ranges, steps, JAN-DEC and SUN-SAT names, or a macro
    such as @weekly); raises CronError with the offending field."""
    text = MACROS.get(expr.strip().lower(), expr.strip())
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"cron {expr!r} must have 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    values = [_parse_field(part, *spec, expr=expr) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(0 if d == 7 else d for d in values[4])
    return Cron(
        expr=expr.strip(),
        minutes=tuple(sorted(values[0])),
        hours=tuple(sorted(values[1])),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        dom_restricted=not parts[2].startswith("*"),
        dow_restricted=not parts[4].startswith("*"),
    )


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int], *, expr: str) -> set[int]:
    def bad(why: str) -> CronError:
        return CronError(f"cron {expr!r}: {name} field {text!r}: {why}")

    def number(token: str) -> int:
        key = token.upper()
        if key in names:
            return names[key]
        if not token.isdigit():
            raise bad(f"{token!r} is not a number" + (f" or a name ({', '.join(names)})" if names else ""))
        value = int(token)
        if not low <= value <= high:
            raise bad(f"{value} is outside {low}-{high}")
        return value

    out: set[int] = set()
    for item in text.split(","):
        if not item:
            raise bad("empty list item")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise bad(f"step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise bad(f"range {base} runs backwards")
        else:
            start = number(base)
            # `5/15` means 5, 20, 35, 50 (as in Vixie cron): a start with a step runs to the end.
            end = high if step_text else start
        out.update(range(start, end + 1, step))
    return out


# ---------------------------------------------------------------- slots


def resolve_local(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive wall-clock time in `tz` as an aware moment, by the module's DST rules: a time in
    the spring-forward gap moves forward by the gap, a repeated one is its first occurrence."""
    # fold=0 gives exactly both rules (PEP 495); the UTC round trip names the real local time.
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)


#: Longest search for a slot: 8 years and a day covers every pattern, 29 February included; a
#: cron that finds nothing in that span never fires (e.g. `0 9 30 2 *`).
_SEARCH_DAYS = 8 * 366 + 1


@dataclass(frozen=True)
class Slot:
    """One moment the schedule fires, and the edition it sends."""

    at: datetime  #: aware, in the schedule's zone
    edition_id: str
    cadence: str = "weekly"  #: whose edition it is: daily, weekly or monthly

    @property
    def utc(self) -> datetime:
        return self.at.astimezone(UTC)


@dataclass(frozen=True)
class Timetable:
    """The `[schedule]` of a newsletter: a cron expression on the wall clock of a zone, and how
    late a run may still send a slot's edition."""

    cron: Cron
    tz: ZoneInfo
    grace: timedelta = timedelta(hours=24)
    #: The subscribers' cadence this timetable sends (daily, weekly or monthly).
    cadence: str = "weekly"
    #: How edition ids are formed; None: from the cron's shape (a config's single `cron`).
    ids: IdScheme | None = None

    @property
    def scheme(self) -> IdScheme:
        return self.ids or _SCHEME_OF_SHAPE[self.cron.cadence]

    def slots_on(self, day: date) -> list[datetime]:
        """The day's slots (local wall-clock date in the schedule's zone), in order, deduplicated."""
        if not self.cron.matches_day(day):
            return []
        return sorted({resolve_local(datetime.combine(day, t), self.tz) for t in self.cron.times()})

    def slot(self, at: datetime) -> Slot:
        """`at` (a slot moment, or any moment: a manual send names its edition so) with its edition id."""
        local = at.astimezone(self.tz)
        scheme = self.scheme
        if scheme == "week":
            year, week, _ = local.isocalendar()
            edition_id = f"{year}-W{week:02d}"
        elif scheme == "date":
            edition_id = f"{local:%Y-%m-%d}"
        elif scheme == "month":
            edition_id = f"{local:%Y-%m}"
        else:
            edition_id = f"{local:%Y-%m-%dT%H%M}"
        return Slot(local, edition_id, self.cadence)

    def slots_between(self, start: datetime, end: datetime) -> list[Slot]:
        """Every slot in [start, end], in order."""
        found: list[Slot] = []
        day = start.astimezone(self.tz).date() - timedelta(days=1)
        last = end.astimezone(self.tz).date() + timedelta(days=1)
        while day <= last:
            for at in self.slots_on(day):
                if start <= at <= end and (not found or at > found[-1].at):
                    found.append(self.slot(at))
            day += timedelta(days=1)
        return found

    def next_slots(self, after: datetime, count: int = 1) -> list[Slot]:
        """The first `count` slots strictly after `after`."""
        found: list[Slot] = []
        start = after.astimezone(self.tz).date() - timedelta(days=1)
        for offset in range(_SEARCH_DAYS):
            for at in self.slots_on(start + timedelta(days=offset)):
                if at > after and (not found or at > found[-1].at):
                    found.append(self.slot(at))
                    if len(found) == count:
                        return found
        if not found:
            raise CronError(f"cron {self.cron.expr!r} never fires")
        return found

    def last_slot(self, at: datetime) -> Slot:
        """The most recent slot at or before `at`."""
        start = at.astimezone(self.tz).date() + timedelta(days=1)
        for offset in range(_SEARCH_DAYS):
            for slot_at in reversed(self.slots_on(start - timedelta(days=offset))):
                if slot_at <= at:
                    return self.slot(slot_at)
        raise CronError(f"cron {self.cron.expr!r} never fires")

    def edition(self, slot: Slot) -> Edition:
        return edition_for(slot.at, self.tz, slot.edition_id)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name!r} is not an IANA time zone (e.g. Europe/London)") from None


def validate_schedule(cron: str, timezone: str) -> None:
    """Config-time check: the expression parses, the zone exists and the schedule fires at all."""
    Timetable(parse_cron(cron), zone(timezone)).next_slots(datetime(2000, 1, 1, tzinfo=UTC))


def describe(at: datetime) -> str:
    """A slot for people: `Mon 2026-11-30 09:00 GMT`."""
    return f"{at:%a %Y-%m-%d %H:%M %Z}"


def hours(delta: timedelta) -> str:
    """A duration for people: `30 h`, `1.5 h`, and `12 min` under an hour."""
    value = delta.total_seconds() / 3600
    if value < 1:
        return f"{delta.total_seconds() / 60:.0f} min"
    value = round(value, 1)
    return f"{value:.0f} h" if value == int(value) else f"{value:.1f} h"
