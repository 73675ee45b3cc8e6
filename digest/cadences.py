"""Cadences: each subscriber's daily, weekly or monthly edition, and the slot each goes out at.

`[schedule]` names one slot per cadence, on the wall clock of one zone:

    daily = "0 7 * * *"        # one time of day: editions 2026-11-30
    weekly = "0 9 * * MON"     # one weekday: editions 2026-W49
    monthly = "0 9 1 * *"      # one day of the month: editions 2026-11
    default = "weekly"         # for subscribers who chose no cadence, or one without a slot

A subscriber gets the edition of their `frequency` (from the list, or chosen on the preferences
page and kept in the subscriber state) when the config has a slot for it, else the default one:
nobody is left without digests because the config offers fewer cadences than the list names.

A config with only `cron` (written before cadences) keeps working unchanged: its one slot is the
weekly slot and the default, so every subscriber gets it whatever their frequency, and its edition
ids still follow the expression's shape (schedule.py). Beside daily or monthly, `cron` is the
weekly slot's older name.

Windows need no cadence of their own: a subscriber's window starts at their own last delivery,
whatever edition brought it (selection.py), and articles that may have reached them in any edition
are never chosen again. What a cadence changes is how far back that can be: a monthly reader's last
delivery is a month old, and one who just switched from monthly to weekly may wait a month and a
week. `selection_for` raises `catch_up_days` for a run to the longest such gap (see `reach`), so
the window never cuts off an article that a switch or a long period left unsent.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from digest.config_schema import Config
from digest.errors import ConfigError, UsageError
from digest.flags import FREQUENCIES
from digest.models import Subscriber
from digest.schedule import Cron, CronError, IdScheme, Slot, Timetable, parse_cron, zone

CADENCES: tuple[str, ...] = FREQUENCIES  #: daily, weekly, monthly: the order they are shown in
#: How each cadence names its editions, and an example for messages.
IDS: dict[str, tuple[IdScheme, str]] = {
    "daily": ("date", "its date (2026-11-30)"),
    "weekly": ("week", "its ISO week (2026-W49)"),
    "monthly": ("month", "its month (2026-11)"),
}
EXAMPLES = {"daily": "0 7 * * *", "weekly": "0 9 * * MON", "monthly": "0 9 1 * *"}
#: How far back `longest_gap` looks for a cadence's slots. A slot that fires less than once in
#: this long counts as this gap.
LOOKBACK = timedelta(days=400)
_ID_PATTERNS: dict[IdScheme, re.Pattern[str]] = {
    "date": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "week": re.compile(r"\d{4}-W\d{2}"),
    "month": re.compile(r"\d{4}-\d{2}"),
    "datetime": re.compile(r"\d{4}-\d{2}-\d{2}T\d{4}"),
}


def shape_problem(cadence: str, cron: Cron) -> str:
    """Why `cron` cannot be the slot of `cadence` ("" if it can): an edition id names one period,
    so a slot that fires twice in a period would send its second edition to nobody."""
    if len(cron.minutes) * len(cron.hours) != 1:
        return "fires at more than one time of day"
    if cadence == "weekly" and not (cron.dow_restricted and not cron.dom_restricted and len(cron.weekdays) == 1):
        return "must fire on one day of the week"
    if cadence == "monthly" and not (cron.dom_restricted and not cron.dow_restricted and len(cron.days) == 1):
        return "must fire on one day of the month"
    return ""


def longest_gap(table: Timetable, before: datetime) -> timedelta:
    """The longest time between two consecutive slots of `table` in the `LOOKBACK` before `before`
    (a clock change included: 31 days and an hour for `0 9 1 * *` across one)."""
    slots = table.slots_between(before - LOOKBACK, before)
    if len(slots) < 2:
        return LOOKBACK
    # in UTC: two moments of one zone subtract by their wall clocks, blind to a clock change
    return max(b.utc - a.utc for a, b in pairwise(slots))


@dataclass(frozen=True)
class Cadences:
    """The cadences a config defines: one timetable each (same zone, same grace), and the default."""

    tables: tuple[Timetable, ...]  #: in CADENCES order
    default: str
    #: Only `cron`: one slot for everyone, edition ids by the expression's shape (as before cadences).
    legacy: bool = False

    # ---- from the config

    @classmethod
    def from_config(cls, config: Config) -> Cadences:
        """The config's cadences; a ConfigError saying how to add a schedule when it has none."""
        found = cls.of(config)
        if found is None:
            raise ConfigError(
                f'{config.source or "config"}: no schedule: add [schedule] weekly = "0 9 * * MON" '
                '(and daily = "0 7 * * *", monthly = "0 9 1 * *" for readers who chose those); '
                'a single cron = "0 9 * * MON" still works and sends one edition to everyone'
            )
        return found

    @classmethod
    def of(cls, config: Config) -> Cadences | None:
        """The config's cadences, or None when `[schedule]` names no slot. Raises ConfigError for a
        slot that does not parse, does not fit its cadence or never fires, or a bad default; the
        messages name the key (the caller adds the file)."""
        s = config.schedule
        named = {c: getattr(s, c) for c in CADENCES if getattr(s, c)}
        if not named and not s.cron:
            return None
        tz = zone(s.timezone or config.newsletter.timezone)
        grace = timedelta(hours=s.grace_hours)
        if s.cron and not named:
            table = Timetable(_parse("cron", s.cron), tz, grace, "weekly", None)
            _fires(table, "cron")
            default = s.default or "weekly"
            if default != "weekly":
                raise ConfigError(
                    f"default = {default!r} has no slot: the single `cron` is the weekly slot; "
                    f'add {default} = "{EXAMPLES.get(default, "...")}" or leave default out'
                )
            return cls((table,), "weekly", legacy=True)
        keys = {c: c for c in named}
        if s.cron:
            if "weekly" in named:
                raise ConfigError("cron and weekly are both set: cron is the older name of the weekly slot, keep one")
            named["weekly"], keys["weekly"] = s.cron, "cron"
        tables = []
        for cadence in CADENCES:
            if cadence not in named:
                continue
            key, expr = keys[cadence], named[cadence]
            cron = _parse(key, expr)
            problem = shape_problem(cadence, cron)
            if problem:
                scheme, names = IDS[cadence]
                raise ConfigError(
                    f"{key} = {expr!r} {problem}: a {cadence} edition is named by {names}, so its slot "
                    f'fires once in it (e.g. {cadence} = "{EXAMPLES[cadence]}")'
                )
            table = Timetable(cron, tz, grace, cadence, IDS[cadence][0])
            _fires(table, key)
            tables.append(table)
        return cls(tuple(tables), _default(s.default, [t.cadence for t in tables]))

    # ---- who gets what

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.cadence for t in self.tables)

    @property
    def tz(self) -> ZoneInfo:
        return self.tables[0].tz

    @property
    def grace(self) -> timedelta:
        return self.tables[0].grace

    def table(self, cadence: str) -> Timetable:
        for table in self.tables:
            if table.cadence == cadence:
                return table
        raise UsageError(f"there is no {cadence} edition: [schedule] has a slot for {', '.join(self.names)}")

    def cadence_of(self, subscriber: Subscriber) -> str:
        """The edition a subscriber gets: their frequency when it has a slot, else the default."""
        chosen = subscriber.frequency
        if chosen is None or self.legacy or chosen not in self.names:
            return self.default
        return chosen

    def audience(self, subscribers: Iterable[Subscriber], cadence: str) -> tuple[Subscriber, ...]:
        """The subscribers whose edition is `cadence`'s, in list order."""
        listed = tuple(subscribers)
        if len(self.tables) == 1:
            return listed if cadence == self.default else ()
        return tuple(s for s in listed if self.cadence_of(s) == cadence)

    def counts(self, subscribers: Iterable[Subscriber]) -> dict[str, int]:
        """Active subscribers per cadence (every defined cadence present, 0 included)."""
        counts = Counter(self.cadence_of(s) for s in subscribers if s.active)
        return {c: counts[c] for c in self.names}

    def unserved(self, subscribers: Iterable[Subscriber]) -> Counter[str]:
        """Active subscribers whose chosen cadence has no slot (they get the default), by cadence."""
        return Counter(
            s.frequency for s in subscribers if s.active and s.frequency and self.cadence_of(s) != s.frequency
        )

    def describe(self) -> str:
        """`0 9 * * MON` for a single cron; `daily 0 7 * * *, weekly 0 9 * * MON` otherwise."""
        if self.legacy:
            return self.tables[0].cron.expr
        return ", ".join(f"{t.cadence} {t.cron.expr}" for t in self.tables)

    def cadence_of_edition(self, edition_id: str) -> str | None:
        """Which cadence's edition an id names (by its form), or None (a manual `--edition`)."""
        for table in self.tables:
            if _ID_PATTERNS[table.scheme].fullmatch(edition_id):
                return table.cadence
        return None

    # ---- when

    def next_slots(self, after: datetime, count: int = 1) -> list[Slot]:
        """The first `count` slots of any cadence strictly after `after`, in time order (slots of
        two cadences at one moment both count)."""
        merged = sorted(
            (slot for table in self.tables for slot in table.next_slots(after, count)),
            key=lambda s: (s.at, CADENCES.index(s.cadence)),
        )
        return merged[:count]

    def reach(self, cadence: str, at: datetime) -> timedelta:
        """The longest a subscriber of `cadence` can have waited since their last delivery at a
        slot at `at`, articles permitting: a period of theirs, plus one of the slowest cadence
        they may have switched from just after its edition."""
        gaps = {t.cadence: longest_gap(t, at) for t in self.tables}
        return gaps[cadence] + max(gaps.values())

    def selection_for(self, config: Config, cadence: str, at: datetime) -> Config:
        """`config` with `selection.catch_up_days` raised to `reach` where it falls short, so a
        window that starts at a month-old delivery is never cut off at 28 days."""
        days = math.ceil(self.reach(cadence, at) / timedelta(days=1))
        if days <= config.selection.catch_up_days:
            return config
        return dataclasses.replace(config, selection=dataclasses.replace(config.selection, catch_up_days=days))


def _parse(key: str, expr: str) -> Cron:
    try:
        return parse_cron(expr)
    except CronError as exc:
        raise CronError(str(exc) if key == "cron" else f"{key}: {exc}") from None


def _fires(table: Timetable, key: str) -> None:
    try:
        table.next_slots(datetime(2000, 1, 1, tzinfo=UTC))
    except CronError as exc:
        raise CronError(str(exc) if key == "cron" else f"{key}: {exc}") from None


def _default(chosen: str, defined: list[str]) -> str:
    if chosen:
        if chosen not in CADENCES:
            raise ConfigError(f"default = {chosen!r} must be one of {', '.join(CADENCES)}")
        if chosen not in defined:
            raise ConfigError(
                f'default = {chosen!r} has no slot: add {chosen} = "{EXAMPLES[chosen]}" '
                f"or pick one of {', '.join(defined)}"
            )
        return chosen
    if "weekly" in defined:
        return "weekly"
    if len(defined) == 1:
        return defined[0]
    raise ConfigError(
        f"default: name the cadence of subscribers who chose none (one of {', '.join(defined)}): there is no weekly slot"
    )


def cadence_for_send(config: Config, cadence: str | None) -> str | None:
    """The cadence a manual `digest send` (or build) sends: the one named; with none named, the
    only one defined, or None (everyone, as before cadences) without a schedule or with a single
    `cron`. Naming none when the config defines several is a usage error: whose edition is it?"""
    cadences = Cadences.of(config)
    if cadence is not None:
        if cadences is None:
            raise UsageError(f'--cadence {cadence}: [schedule] defines no slots (e.g. {cadence} = "...")')
        cadences.table(cadence)  # raises for a cadence without a slot
        return cadence
    if cadences is None or cadences.legacy:
        return None
    if len(cadences.tables) == 1:
        return cadences.default
    raise UsageError(
        f"this newsletter has {', '.join(cadences.names)} editions: name one with --cadence "
        f"(or send what is due with --scheduled)"
    )


_WEEKDAYS = ("Sundays", "Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays")


def when(table: Timetable) -> str:
    """A cadence's slot for readers: `every day at 07:00`, `Mondays at 09:00`, `on the 1st at 09:00`
    (with the zone); the cron expression itself for a shape that says no more simply."""
    cron = table.cron
    times = cron.times()
    every_month = len(cron.months) == 12
    zone_name = f" ({table.tz.key} time)"
    if len(times) != 1 or not every_month:
        return f"cron {cron.expr}{zone_name}"
    clock = f"{times[0]:%H:%M}"
    if not cron.dom_restricted and not cron.dow_restricted:
        return f"every day at {clock}{zone_name}"
    if cron.dow_restricted and not cron.dom_restricted and len(cron.weekdays) == 1:
        return f"{_WEEKDAYS[next(iter(cron.weekdays))]} at {clock}{zone_name}"
    if cron.dom_restricted and not cron.dow_restricted and len(cron.days) == 1:
        day = next(iter(cron.days))
        suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
        return f"on the {day}{suffix} of the month at {clock}{zone_name}"
    return f"cron {cron.expr}{zone_name}"


def offered(cadences: Cadences | None) -> list[dict[str, str]]:
    """The cadences a reader may pick (the preferences page, the signup form): one per slot, when
    there is more than one to pick; each with its name, label and when it goes out."""
    if cadences is None or cadences.legacy or len(cadences.tables) < 2:
        return []
    return [{"name": t.cadence, "label": t.cadence.capitalize(), "when": when(t)} for t in cadences.tables]
