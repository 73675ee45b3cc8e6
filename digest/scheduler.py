"""Scheduled sends: `digest send --scheduled` (for cron, systemd timers, CI), `digest schedule`
(what is coming) and `digest scheduler` (a foreground loop for hosts without cron).

All three share one decision, `send_scheduled`: for each cadence (daily, weekly, monthly; see
cadences.py), the edition of its most recent slot goes out to that cadence's subscribers through
the normal send path, whose ledger claims make it exactly once per subscriber however many runs (or
machines sharing the ledger) race for it. Lateness is measured from the slot: within
`schedule.grace_hours` the edition is sent, later it is refused unless forced, so a "weekly" never
goes out days late by accident. The edition's moment is the slot, not the run, so a late or
repeated run selects the same articles as a punctual one. Only the most recent slot of a cadence is
ever sent: a daily slot missed for two days sends one edition, whose windows reach back to each
reader's last delivery, not three.

The scheduler keeps no state of its own: on start it runs once for every cadence (a slot missed
while it was down goes out if still within grace), then sleeps until each slot and runs the
cadences whose slot came. Its clock and sleep are injectable.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from digest.cadences import Cadences
from digest.config import Config
from digest.errors import DigestError
from digest.ledger import EditionSummary
from digest.models import Subscriber
from digest.schedule import Slot, Timetable, describe, hours, resolve_local, zone
from digest.send import SendOptions, SendReport
from digest.store import ledger_exists, open_ledger
from digest.transports.sendgrid.limits import MAX_SEND_AT_AHEAD_SECONDS

#: SendGrid holds a mail at most 72 hours ahead (transports/sendgrid/limits.py).
MAX_SEND_AT_AHEAD = timedelta(seconds=MAX_SEND_AT_AHEAD_SECONDS)
#: A subscriber's local slot closer than this is treated as passed: they get it at once.
MIN_SEND_AT_LEAD = timedelta(minutes=1)
#: Reasons the send path gives for subscribers the ledger already covers.
_LEDGER_REASONS = ("already sent", "being sent", "claimed by another run")


class LateError(DigestError):
    """The most recent slot passed longer ago than the grace period and its edition never went out."""


#: What a scheduled slot came to (a transport's per-request answer is transports.base.Outcome).
SlotOutcome = Literal["sent", "nothing", "already", "failed"]


@dataclass(frozen=True)
class ScheduledResult:
    slot: Slot
    late: timedelta  #: how long after the slot the run happened
    #: sent: someone got it now; nothing: nobody gets an article; already: nothing left to send;
    #: failed: nothing accepted, something failed or is ambiguous (the report says what)
    outcome: SlotOutcome
    message: str
    report: SendReport | None = None


def send_scheduled(
    config: Config,
    now: datetime,
    options: SendOptions | None = None,
    *,
    force: bool = False,
    transport_name: str | None = None,
    confirm: Callable[[SendReport], bool] | None = None,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.time,
    cadence: str | None = None,
) -> ScheduledResult:
    """Send `cadence`'s edition (default: the default cadence's) of its most recent slot at or
    before `now` to that cadence's subscribers, if it is still due; LateError if it is not.

    `now` picks the slot and the lateness (and local-time send_at); `clock` is the live clock the
    send reads for every send_at and cancel decision. A moment frozen at the start would drift
    from the truth as the run goes on, and a cancel judged "in time" on it may come too late."""
    from digest.send import send

    cadences = Cadences.from_config(config)
    table = cadences.table(cadence or cadences.default)
    options = options or SendOptions.from_config(config)
    slot = table.last_slot(now)
    late = now - slot.at
    where = f"{_label(cadences, slot, 'edition ')}{slot.edition_id} (slot {describe(slot.at)})"
    if late > table.grace and not force:
        counts = _ledger_counts(config, slot.edition_id)
        if counts.get("accepted"):
            rest = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()) if state != "accepted")
            message = (
                f"{where} went out to {counts['accepted']} subscriber(s)"
                + (f" ({rest} not retried)" if rest else "")
                + f"; it is {hours(late)} past its slot, over the grace period of {hours(table.grace)}, "
                "so nothing more is sent (--force to send the rest)"
            )
            return ScheduledResult(slot, late, "already", message)
        if not cadences.legacy and not _has_audience(config, cadences, table.cadence):
            # nobody chose this cadence: a slot that passed unsent lost no one anything
            return ScheduledResult(slot, late, "nothing", f"{where}: no subscriber gets the {table.cadence} edition")
        upcoming = table.next_slots(now)[0]
        force_it = "--force" if cadences.legacy else f"--cadence {table.cadence} --force"
        raise LateError(
            f"{where} is {hours(late)} late, over the grace period of {hours(table.grace)}: not sent. "
            f"Pass {force_it} to send it anyway; the next slot is {describe(upcoming.at)} ({upcoming.edition_id})"
        )
    if config.schedule.local_time:
        from digest.audience import load_effective

        # the merged list (signups too), as the send itself will see it
        subscribers = load_effective(config).subscribers
        options = replace(options, send_at=local_send_times(subscribers, slot, now))
    report = send(
        config,
        slot.at,
        options,
        edition_id=slot.edition_id,
        transport_name=transport_name,
        confirm=confirm,
        progress=progress,
        now=clock,
        cadence=table.cadence,
    )
    return ScheduledResult(slot, late, *_outcome(report, where, late), report=report)


def _has_audience(config: Config, cadences: Cadences, cadence: str) -> bool:
    from digest.audience import load_effective

    subscribers = load_effective(config).subscribers
    return cadences.counts(subscribers)[cadence] > 0


def send_due(
    config: Config,
    now: datetime,
    options: SendOptions | None = None,
    *,
    cadences: tuple[str, ...] = (),
    since: datetime | None = None,
    **kwargs: Any,
) -> list[ScheduledResult | DigestError]:
    """`send_scheduled` for each cadence (or those named), one after the other, so each run reads
    what the one before it recorded. `since`: only cadences with a slot from then to `now` (the
    scheduler, woken by a slot). A cadence that is late, or whose run fails, is reported in the
    list, not raised: the others still go out. kwargs: those of `send_scheduled`."""
    schedule = Cadences.from_config(config)
    results: list[ScheduledResult | DigestError] = []
    for name in cadences or schedule.names:
        if since is not None and schedule.table(name).last_slot(now).at < since:
            continue
        try:
            results.append(send_scheduled(config, now, options, cadence=name, **kwargs))
        except DigestError as exc:
            results.append(exc)
    return results


def _label(cadences: Cadences, slot: Slot, noun: str = "") -> str:
    """How a slot's edition is named in messages: `weekly edition `, or only `edition ` when a
    single cron sends one edition to everyone (as before cadences)."""
    return noun if cadences.legacy else f"{slot.cadence} {noun}"


def _outcome(report: SendReport, where: str, late: timedelta) -> tuple[SlotOutcome, str]:
    timing = f"{hours(late)} after the slot" if late >= timedelta(minutes=1) else "on time"
    if report.accepted or (report.dry_run and report.recipients):
        verb = "would send to" if report.dry_run else "sent to"
        return "sent", f"{where}: {verb} {report.recipients} subscriber(s), {timing}"
    if report.failed or report.ambiguous:
        return "failed", f"{where}: nothing accepted: {len(report.failed)} failed, {len(report.ambiguous)} ambiguous"
    covered = sum(1 for _, why in report.skipped if why.startswith(_LEDGER_REASONS))
    if covered:
        return "already", f"{where}: nothing left to send ({covered} already sent or in flight)"
    return "nothing", f"{where}: nobody gets an article this time; nothing sent"


def _ledger_counts(config: Config, edition_id: str) -> dict[str, int]:
    """The edition's rows by state; no ledger yet means nothing sent (and none is created)."""
    if not ledger_exists(config):
        return {}
    with open_ledger(config, "read") as ledger:
        return dict(ledger.summary(edition_id))


def local_send_times(subscribers: tuple[Subscriber, ...], slot: Slot, now: datetime) -> dict[str, int]:
    """Local-time delivery: subscriber id -> epoch seconds of the slot's wall-clock time in the
    subscriber's own `timezone`, for those whose local slot is still ahead. Everyone else (passed,
    no zone, an unknown zone) is absent, which means "send now"."""
    wall = slot.at.replace(tzinfo=None)
    out: dict[str, int] = {}
    for subscriber in subscribers:
        name = subscriber.attributes.get("timezone", "").strip()
        if not name:
            continue
        try:
            tz = zone(name)
        except DigestError:
            continue
        at = resolve_local(wall, tz)
        # Zones differ by at most 26 h, so this holds unless the run is early; never ask SendGrid
        # for more than it allows.
        if now + MIN_SEND_AT_LEAD < at <= now + MAX_SEND_AT_AHEAD:
            out[subscriber.id] = int(at.timestamp())
    return out


# ---------------------------------------------------------------- digest schedule


@dataclass(frozen=True)
class Outlook:
    """One cadence in `digest schedule`."""

    table: Timetable
    subscribers: int  #: active subscribers who get this cadence's edition
    next: Slot
    last: Slot
    last_counts: dict[str, int]
    recipients: tuple[str, ...]  #: who the next edition would go to, with today's content
    articles: tuple[tuple[datetime, str], ...]  #: (date, title) of every article in it
    no_email: int  #: of this cadence's subscribers


@dataclass(frozen=True)
class Upcoming:
    """What `digest schedule` shows."""

    cadences: Cadences
    slots: tuple[Slot, ...]  #: the next slots of every cadence, in time order
    outlooks: tuple[Outlook, ...]  #: one per cadence, in CADENCES order
    unserved: Counter[str]  #: chosen cadences without a slot -> subscribers (who get the default)


def upcoming(config: Config, now: datetime, count: int = 5) -> Upcoming:
    """The next `count` slots of every cadence, and per cadence: its subscribers, its last slot's
    state, and what its next edition would hold if it were selected now (the pipeline's run and
    selection; nothing is sent or written)."""
    from digest.content import load_articles

    cadences = Cadences.from_config(config)
    content = load_articles(config, cache_dir=config.state.path / "cache", save=False)
    outlooks = []
    everyone: tuple[Subscriber, ...] = ()
    for name in cadences.names:
        outlook, everyone = _outlook(config, cadences, name, now, content)
        outlooks.append(outlook)
    return Upcoming(cadences, tuple(cadences.next_slots(now, count)), tuple(outlooks), cadences.unserved(everyone))


def _outlook(
    config: Config, cadences: Cadences, cadence: str, now: datetime, content: Any
) -> tuple[Outlook, tuple[Subscriber, ...]]:
    from digest.pipeline import open_run
    from digest.selection import NO_HISTORY

    table = cadences.table(cadence)
    nxt = table.next_slots(now)[0]
    last = table.last_slot(now)
    run = open_run(config, nxt.at, nxt.edition_id, content=content, cadence=cadence, persist_links=False)
    if ledger_exists(config):
        with open_ledger(config, "read") as ledger:
            run, histories = run.with_history(ledger)
    else:
        run, histories = run.with_history(None)
    selections = list(run.selections(history=lambda s: histories.get(s.id, NO_HISTORY)))
    chosen = [s for s in selections if s.gets_email]
    articles = {a.id: a for s in chosen for a in s.articles}
    everyone = run.subscribers.subscribers
    outlook = Outlook(
        table=table,
        subscribers=cadences.counts(everyone)[cadence],
        next=nxt,
        last=last,
        last_counts=_ledger_counts(config, last.edition_id),
        recipients=tuple(s.subscriber.email for s in chosen),
        articles=tuple(sorted(((a.date, a.title) for a in articles.values()), reverse=True)),
        no_email=len(selections) - len(chosen),
    )
    return outlook, everyone


# ---------------------------------------------------------------- digest status


@dataclass(frozen=True)
class CadenceState:
    """One cadence in `digest status`."""

    table: Timetable
    subscribers: int  #: active subscribers who get its edition
    next: Slot
    last: EditionSummary | None  #: its most recent edition in the ledger


@dataclass(frozen=True)
class CadenceStatus:
    cadences: Cadences
    states: tuple[CadenceState, ...]
    unserved: Counter[str]  #: chosen cadences without a slot -> subscribers (who get the default)


#: Editions `digest status` looks through for each cadence's last one: a month of dailies and more.
_RECENT_EDITIONS = 60


def cadence_status(config: Config, now: datetime) -> CadenceStatus | None:
    """Each cadence's slot, subscribers, next slot and last edition; None without a schedule.
    Reads the list (as the next send will see it) and, if there is one, the ledger."""
    from digest.audience import load_effective

    cadences = Cadences.of(config)
    if cadences is None:
        return None
    subscribers = load_effective(config).subscribers
    counts = cadences.counts(subscribers)
    recent = []
    if ledger_exists(config):
        with open_ledger(config, "read") as ledger:
            recent = ledger.editions(_RECENT_EDITIONS)
    states = tuple(
        CadenceState(
            table,
            counts[table.cadence],
            table.next_slots(now)[0],
            next((e for e in recent if cadences.cadence_of_edition(e.edition) == table.cadence), None),
        )
        for table in cadences.tables
    )
    return CadenceStatus(cadences, states, cadences.unserved(subscribers))


# ---------------------------------------------------------------- digest scheduler


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Scheduler:
    """The foreground loop: run once at start, then sleep until each slot and run
    `send_scheduled` (the code path of `send --scheduled --yes`). Stop with `stop()`."""

    config: Config
    clock: Callable[[], datetime] = utc_now
    #: Waits up to the given seconds; the default returns early when stopped.
    sleep: Callable[[float], Any] | None = None
    log: Callable[[str], None] = print
    #: Longest single nap, so a suspended host or a changed clock is noticed within this long.
    max_nap: float = 300.0
    runs: list[ScheduledResult | DigestError] = field(default_factory=list)
    # A plain flag, not a threading.Event: stop() runs in a signal handler, and Event.set() takes
    # a lock the interrupted main thread may be holding inside Event.wait(): a deadlock.
    _stop_requested: bool = False

    def stop(self) -> None:
        self._stop_requested = True

    def _nap(self, seconds: float) -> None:
        """Sleep in slices of at most a second, so a stop request is seen within one."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(1.0, left))

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def run(self, until: datetime | None = None) -> None:
        """Loop until stopped (or, for tests and one-off catch-ups, until the next slot is after `until`)."""
        cadences = Cadences.from_config(self.config)
        sleep = self.sleep or self._nap
        self._log(f"scheduler started: {cadences.describe()} ({cadences.tz.key}), grace {hours(cadences.grace)}")
        # Slots are looked for after the moment the last run began, not after it ended: a slot that
        # comes while a long send of another cadence runs is sent next, not skipped.
        checked = self.clock()
        self.fire()
        while not self.stopping:
            coming = cadences.next_slots(checked, len(cadences.tables))
            at = coming[0].at
            if until is not None and at > until:
                break
            names = ", ".join(_label(cadences, s) + s.edition_id for s in coming if s.at == at)
            self._log(f"next slot {describe(at)} = {coming[0].utc:%Y-%m-%d %H:%M} UTC ({names})")
            while not self.stopping and (left := (at - self.clock()).total_seconds()) > 0:
                sleep(min(left, self.max_nap))
            if not self.stopping:
                checked = self.clock()
                self.fire(since=at)
        self._log("scheduler stopped")

    def fire(self, since: datetime | None = None) -> list[ScheduledResult | DigestError]:
        """One run, as `send --scheduled --yes` would do it now (`since`: only the cadences with a
        slot since then); every outcome is logged and kept in `runs`."""
        results: list[ScheduledResult | DigestError]
        try:
            results = list(send_due(self.config, self.clock(), since=since, clock=lambda: self.clock().timestamp()))
        except DigestError as exc:  # one bad run (a locked ledger, a broken list ...) must not end the loop
            results = [exc]
        for result in results:
            if isinstance(result, DigestError):
                self._log(f"error: {result}")
                continue
            self._log(result.message)
            report = result.report
            if report is not None and (report.failed or report.ambiguous):
                self._log(f"  failed: {len(report.failed)}, ambiguous: {len(report.ambiguous)} (see `digest status`)")
        self.runs.extend(results)
        return results

    def _log(self, message: str) -> None:
        self.log(f"{self.clock().astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} {message}")


def stop_on_signals(scheduler: Scheduler) -> None:
    """SIGINT and SIGTERM end the loop after the current run (a send is never cut in half)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: scheduler.stop())
