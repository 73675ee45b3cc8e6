"""A send run: select -> group -> compose -> claim -> dispatch -> record.

Exactly once per (edition, subscriber) rests on one order: a row is claimed in the ledger (one
SQLite transaction) *before* its request leaves, and settled after the answer. So:

- a rerun skips accepted rows, and retries rows known never to have left (failed);
- a row still claimed by a run that is gone (kill -9 between claim and answer) may or may not have
  been delivered: it becomes *ambiguous* and is skipped unless `--on-ambiguous=resend`;
- in scheduled mode the provider holds each request until `send_at`, so an ambiguous request is
  cancelled through its batch id and re-issued: exactly once even across a crash;
- two runs at once cannot both claim a row (BEGIN IMMEDIATE on SQLite, row locks on PostgreSQL);
  each holds a run lock while it lives, which is how a later run tells a crashed run's claims
  from a live one's.

Several senders share an edition through the ledger's queue (see ledger.py): each one plans,
enqueues what it may send, then takes windows of queued rows (an exclusive lease), composes them,
claims them and sends them. A lease is not a claim: nothing has left for a leased row, so a sender
that dies while composing leaves nothing ambiguous. Within a sender, each request is claimed by the
thread that sends it, right before it leaves, while the driving thread composes the next ones
(dispatch.py): a crash leaves at most the requests in flight ambiguous. `--workers N` forks N such
senders after one plan (POSIX), each with its own connection, run id and run lock.
"""

from __future__ import annotations

import bisect
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from digest.config import Config
from digest.db import explain
from digest.dispatch import Dispatcher, Tally, recipient, serialized, settled_state
from digest.errors import NotSentError, SendError
from digest.ledger import (
    ClaimItem,
    Delivery,
    EditionSummary,
    Ledger,
    State,
)
from digest.models import Edition, Selection
from digest.pipeline import Run
from digest.recovery import free_dead_leases, settle_dead_claims
from digest.selection import NO_HISTORY, History
from digest.timings import Timings, gc_frozen, gc_paused
from digest.transports import Batch, Outcome, Schedule, Transport, make_transport

#: Attempts of one batch in scheduled mode (each ambiguous try is cancelled before the next).
SCHEDULED_ATTEMPTS = 3


@dataclass(frozen=True)
class SendOptions:
    only: tuple[str, ...] = ()  #: --subscriber addresses
    segment: str = ""  #: --segment: only its members (each still gets their own overrides)
    limit: int | None = None
    dry_run: bool = False
    on_ambiguous: str = "skip"  #: skip | resend
    scheduled: bool = False
    send_at_delay: int = 15 * 60  #: seconds ahead of now, scheduled mode
    concurrency: int = 4  #: requests in flight at once (transports that allow it)
    #: Local-time delivery: subscriber id -> epoch seconds the provider holds their email until.
    send_at: Mapping[str, int] = field(default_factory=dict)
    #: --i-know-state-is-new: pair the ledger and the subscriber state as they are (statefiles.py)
    fresh_state: bool = False
    #: --workers: senders forked after planning, sharing the queue (1: this process alone)
    workers: int = 1

    @classmethod
    def from_config(cls, config: Config, **flags: Any) -> SendOptions:
        """The options a send runs with: the config's defaults (`sending.on_ambiguous` and
        `concurrency`, `sendgrid.scheduled_mode` and `send_at_delay_minutes`), then `flags`, the
        fields the caller sets (as `digest send`'s flags do); a flag given as None is not given."""
        options = cls(
            on_ambiguous=config.sending.on_ambiguous,
            scheduled=config.sendgrid.scheduled_mode,
            send_at_delay=config.sendgrid.send_at_delay_minutes * 60,
            concurrency=config.sending.concurrency,
        )
        return replace(options, **{name: value for name, value in flags.items() if value is not None})


@dataclass(frozen=True)
class SendReport:
    edition: Edition
    run_id: str
    transport: str
    dry_run: bool
    recipients: int  #: planned (dry run) or attempted
    contents: int  #: distinct contents among them
    requests: int  #: requests planned or made
    first: tuple[str, ...]  #: the first few planned recipients
    accepted: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  #: (address, why)
    failed: tuple[tuple[str, str], ...] = ()
    ambiguous: tuple[tuple[str, str], ...] = ()
    #: Templates off the fast path and why (see compose.py): exact, but compiled whole per content.
    notes: tuple[str, ...] = ()
    timings: str = ""  #: where the time went (Timings.describe)

    @property
    def exit_code(self) -> int:
        """0 only when nothing failed; 3 when the only trouble is ambiguous rows (a decision)."""
        if self.failed:
            return 1
        return 3 if self.ambiguous else 0


# ---------------------------------------------------------------- planning


@dataclass
class _Plan:
    #: (content, send_at): one request carries one content and one send_at.
    groups: dict[tuple[tuple[str, ...], int | None], list[Selection]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ambiguous: list[tuple[str, str]] = field(default_factory=list)

    @property
    def selections(self) -> list[Selection]:
        return [s for group in self.groups.values() for s in group]

    def chunks(self, size: int) -> Iterator[list[Selection]]:
        for group in self.groups.values():
            for i in range(0, len(group), size):
                yield group[i : i + size]


def _plan(run: Run, ledger: Ledger, options: SendOptions, histories: Mapping[str, History] | None) -> _Plan:
    plan = _Plan()
    edition = run.edition.id
    if histories is None:  # not read by the caller (`send` reads them with the run's reach-back)
        histories = run.with_history(ledger)[1]
    # every row's state, and the run and error of the claimed and ambiguous ones, in ONE read: a
    # second read could miss a row another process settled in between
    states = ledger.row_states(edition)
    seen: set[str] = set()
    eligible: list[Selection] = []
    for subscriber in run.subscribers_for(options.only, options.segment):
        if subscriber.id in seen:  # one row per address in the ledger, one email per address
            plan.skipped.append((subscriber.email, "duplicate address in the subscriber list"))
            continue
        seen.add(subscriber.id)
        row = states.get(subscriber.id)
        if row is not None and row.state == "accepted":
            plan.skipped.append((subscriber.email, "already sent in this edition"))
            continue
        if row is not None and row.state == "claimed":
            plan.skipped.append((subscriber.email, f"being sent by another run ({row.run_id})"))
            continue
        if row is not None and row.state == "ambiguous" and options.on_ambiguous != "resend":
            plan.ambiguous.append((subscriber.email, row.error or "may have been sent"))
            continue
        selection = run.select(subscriber, histories.get(subscriber.id, NO_HISTORY))
        if not selection.gets_email:
            plan.skipped.append((subscriber.email, selection.skipped or "nothing to send"))
            continue
        eligible.append(selection)
    if options.limit is not None:
        for selection in eligible[options.limit :]:
            plan.skipped.append((selection.subscriber.email, f"over --limit {options.limit}"))
        eligible = eligible[: options.limit]
    for selection in eligible:
        key = (run.group_key(selection), options.send_at.get(selection.subscriber.id))
        plan.groups.setdefault(key, []).append(selection)
    return plan


# ---------------------------------------------------------------- sending


def _send_chunk(
    run: Run,
    ledger: Ledger,
    transport: Transport,
    run_id: str,
    chunk: list[Selection],
    options: SendOptions,
    now: Callable[[], float],
    tally: Tally,
) -> None:
    edition = run.edition.id
    # Everything that can fail on our side (a template, a missing DIGEST_SECRET) runs before
    # anything is claimed: a claim is only made for a request that is ready to leave.
    content = run.content_for(chunk[0])
    by_id = {s.subscriber.id: s for s in chunk}
    ready = {sid: recipient(run, s) for sid, s in by_id.items()}
    also_from: tuple[State, ...] = ("ambiguous",) if options.on_ambiguous == "resend" else ()
    items = [ClaimItem(s.subscriber.id, s.subscriber.email, s.content_key, run.at) for s in chunk]
    attempts = SCHEDULED_ATTEMPTS if options.scheduled else 1
    for attempt in range(attempts):
        schedule = None
        deliver_at = options.send_at.get(chunk[0].subscriber.id)  # the same for the whole chunk
        if options.scheduled or deliver_at is not None:
            earliest = int(now()) + options.send_at_delay if options.scheduled else 0
            schedule = Schedule(transport.new_batch(), max(earliest, deliver_at or 0))
        claimed = ledger.claim(
            edition,
            run_id,
            items,
            transport=transport.name,
            also_from=also_from,
            batch_id=schedule.batch_id if schedule else "",
            send_at=schedule.send_at if schedule else None,
        )
        if attempt == 0:
            for item in items:
                if item.subscriber not in claimed:
                    tally.skipped.append((item.email, "claimed by another run"))
        if not claimed:
            return
        recipients = tuple(ready[sid] for sid in claimed)
        batch = Batch(edition, content, recipients, lambda r: run.email(r.selection, r.values), schedule)
        tally.requests += 1
        try:
            outcome = transport.send(batch)
        except NotSentError as exc:
            # A 401 means the request was refused before anything was queued.
            ledger.settle(edition, claimed, "failed", run_id=run_id, error=str(exc))
            raise
        except BaseException as exc:
            # A bug or an interrupt mid-request: we cannot know whether it left.
            ledger.settle(edition, claimed, "ambiguous", run_id=run_id, error=f"interrupted: {type(exc).__name__}")
            raise
        emails = [by_id[sid].subscriber.email for sid in claimed]
        if outcome.kind == "ambiguous" and schedule is not None and _cancelled(transport, schedule, now):
            # Held by the provider and now cancelled: nothing will be delivered, so try again.
            ledger.settle(edition, claimed, "cancelled", run_id=run_id, error=outcome.error)
            items = [i for i in items if i.subscriber in claimed]
            also_from = ()
            if attempt + 1 < attempts:
                continue
            tally.failed.extend((e, f"{outcome.error} (cancelled; will be retried)") for e in emails)
            return
        _record(ledger, edition, run_id, claimed, emails, outcome, tally)
        return


def _cancelled(transport: Transport, schedule: Schedule, now: Callable[[], float]) -> bool:
    """Whether a scheduled request was cancelled in time. Within the transport's cut-off (SendGrid:
    10 minutes before send_at) a cancel may be accepted and the mail delivered anyway, so a
    confirmation then proves nothing: too late is not cancelled, and the request stays ambiguous
    (as recovery decides for a crashed run)."""
    if schedule.send_at - now() <= transport.cancel_cutoff:
        return False
    return transport.cancel(schedule.batch_id)


def _record(
    ledger: Ledger,
    edition: str,
    run_id: str,
    claimed: tuple[str, ...],
    emails: list[str],
    outcome: Outcome,
    tally: Tally,
) -> None:
    ledger.settle(
        edition, claimed, settled_state(outcome), run_id=run_id, message_id=outcome.message_id, error=outcome.error
    )
    tally.add(emails, outcome)


def queue_key(group: tuple[tuple[str, ...], int | None]) -> str:
    """The queue order of a request group: the same in every sender for the same group."""
    return hashlib.sha1(repr(group).encode("utf-8")).hexdigest()[:16]


def _queue_items(run: Run, plan: _Plan) -> tuple[list[ClaimItem], dict[str, tuple[str, Selection]]]:
    items: list[ClaimItem] = []
    by_id: dict[str, tuple[str, Selection]] = {}
    for group, selections in plan.groups.items():
        key = queue_key(group)
        for s in selections:
            items.append(ClaimItem(s.subscriber.id, s.subscriber.email, s.content_key, run.at, key))
            by_id[s.subscriber.id] = (key, s)
    return items, by_id


class _Leases:
    """How many queued rows the next lease takes: enough for `window` requests, no more.

    A lease is rows no other sender may take, so it is sized in requests, not rows: with a fixed
    number of rows (it was `window * max_batch`, 8,000 on SendGrid) a sender holding a lease of a
    hundred requests kept sending alone after the others had found the queue empty (three senders
    on one edition were 1.3x one). Every sender plans the same groups under the same queue keys,
    so the rows the next `window` requests span are known from the plan: what is left of the group
    the last lease ended in, then the groups after it in queue order. Rows another sender took are
    skipped by `take`, which then returns fewer: never more requests than asked for.
    """

    def __init__(self, by_id: Mapping[str, tuple[str, Selection]], max_batch: int, window: int):
        self._size = Counter(key for key, _ in by_id.values())
        self._keys = sorted(self._size)
        self._max_batch = max(1, max_batch)
        self._window = max(1, window)
        self._got: Counter[str] = Counter()  #: rows of each group this run has leased

    def took(self, taken: list[tuple[str, str]]) -> None:
        self._got.update(key for key, _ in taken)

    def rows(self, after: tuple[str, str], requests: int | None = None) -> int:
        wanted = self._window if requests is None else requests
        rows = made = 0
        left = self._size[after[0]] - self._got[after[0]] if after[0] else 0
        if left > 0:  # the last lease ended inside a group (or others took some of it)
            rows, made = left, -(-left // self._max_batch)
        if made < wanted:
            for key in self._keys[bisect.bisect_right(self._keys, after[0]) :]:
                size = self._size[key]
                rows += size
                made += -(-size // self._max_batch)
                if made >= wanted:
                    break
        return max(1, min(rows, wanted * self._max_batch))


def _drain(
    run: Run,
    ledger: Ledger,
    transport: Transport,
    run_id: str,
    by_id: Mapping[str, tuple[str, Selection]],
    options: SendOptions,
    now: Callable[[], float],
    tally: Tally,
    progress: Callable[[int], None] | None,
    pool: ThreadPoolExecutor,
    timings: Timings | None = None,
) -> set[str]:
    """Take windows of the queue until it is empty; returns the subscribers this run took.

    A window's rows are leased (`take`), composed, and handed to the sender threads, each of which
    claims its request right before sending it (dispatch.py); the driving thread meanwhile takes
    and composes the next window. What is never claimed stays leased: the caller releases it. At
    the end of the queue, leases of senders that are gone are freed and the queue is walked once
    more from the top for them.
    """
    edition = run.edition.id
    ledger = serialized(ledger)  # the sender threads share it
    timings = timings or Timings()
    scheduled = bool(options.scheduled or options.send_at)
    workers = max(1, options.concurrency) if getattr(transport, "concurrent", False) else 1
    # two requests per worker: the senders stay busy while the driving thread composes; transports
    # that send one recipient per request (outbox, SMTP) still lease in bulk
    window = max(2 * workers, 50 // max(1, transport.max_batch))
    also_from: tuple[State, ...] = ("ambiguous",) if options.on_ambiguous == "resend" else ()
    dispatcher = Dispatcher(
        run,
        ledger,
        transport,
        run_id,
        pool,
        workers=workers,
        also_from=also_from,
        tally=tally,
        timings=timings,
        progress=progress,
    )
    leases = _Leases(by_id, transport.max_batch, window)
    # The first window is one request, answered before anything else is claimed: a refused key or
    # a broken config stops the run after one request. Scheduled mode sends one request at a time
    # (each may be cancelled and re-issued before the next).
    size = leases.rows(("", ""), 1)
    after, swept, first = ("", ""), False, True
    taken_by_me: set[str] = set()
    # one state connection for the link ids of every lease (links.py)
    with run.links.by_lease():
        try:
            while True:
                with timings.stage("ledger"):
                    taken = ledger.take(edition, run_id, size, after)
                if not taken:
                    if swept:
                        dispatcher.settle_all()
                        return taken_by_me
                    with timings.stage("ledger"):
                        free_dead_leases(ledger, edition)
                    # what is left is scattered (freed by runs that died): the plan's order says
                    # nothing about it any more
                    after, swept = ("", ""), True
                    size = transport.max_batch if scheduled else window * transport.max_batch
                    continue
                chunks = _chunks([by_id[sub] for _, sub in taken], transport.max_batch)
                if first and not scheduled and len(chunks) > 1:
                    # one request first (see above): the rest of the window goes back to the queue
                    keep = {s.subscriber.id for s in chunks[0]}
                    ledger.release(edition, run_id, [sub for _, sub in taken if sub not in keep])
                    taken, chunks = [t for t in taken if t[1] in keep], chunks[:1]
                with timings.stage("compose"):
                    run.links.prefetch([sub for _, sub in taken])  # this lease's link ids, one read
                after = taken[-1]
                leases.took(taken)
                if not swept:
                    size = leases.rows(after, 1 if scheduled else None)
                taken_by_me.update(sub for _, sub in taken)
                if scheduled:
                    for chunk in chunks:
                        _send_chunk(run, ledger, transport, run_id, chunk, options, now, tally)
                        if progress is not None:
                            progress(len(chunk))
                else:
                    for chunk in chunks:
                        dispatcher.submit(chunk)
                    if first:
                        dispatcher.settle_all()
                first = False
        finally:
            dispatcher.close()  # what is in flight is recorded; what never started stays leased


def _chunks(taken: list[tuple[str, Selection]], size: int) -> list[list[Selection]]:
    """Taken rows in queue order -> requests: one group (content, send_at) each, at most `size`."""
    out: list[list[Selection]] = []
    current = ""
    for key, selection in taken:
        if not out or key != current or len(out[-1]) >= size:
            out.append([])
            current = key
        out[-1].append(selection)
    return out


def send_edition(
    run: Run,
    ledger: Ledger,
    transport: Transport,
    options: SendOptions,
    *,
    now: Callable[[], float] = time.time,
    confirm: Callable[[SendReport], bool] | None = None,
    progress: Callable[[int], None] | None = None,
    run_id: str | None = None,
    recover: bool = True,
    reopen: Callable[[], tuple[Ledger, Transport]] | None = None,
    timings: Timings | None = None,
    histories: Mapping[str, History] | None = None,
) -> SendReport:
    """Send the edition to every eligible subscriber not yet sent it. See the module docstring.

    `now`: the real clock (send_at and cancel decisions), never the edition's moment.
    `recover=False` (a sandbox send): leave other runs' claims alone; recovery cancels real
    scheduled batches through the real API, which a run that records nothing must never do.
    `reopen`: a fresh ledger and transport, for each of `options.workers` forked senders.
    `timings`: where the stages' seconds are added up (the report's `timings`).
    `histories`: what `run.with_history(ledger)` read for this run (None: read here).
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    edition = run.edition.id
    timings = timings or Timings()
    if (options.scheduled or options.send_at) and not transport.can_schedule:
        raise SendError(f"scheduled mode needs the sendgrid transport, not {transport.name}")
    try:
        lock = None if options.dry_run else ledger.run_lock(run_id)
    except OSError as exc:
        raise SendError(f"{ledger}: cannot create this run's lock file: {explain(exc)} (nothing was sent)") from None
    try:
        if recover and not options.dry_run:
            with timings.stage("ledger"):
                settle_dead_claims(ledger, transport, edition, now)
        with timings.stage("plan"), gc_paused():
            plan = _plan(run, ledger, options, histories)
        selections = plan.selections
        planned = SendReport(
            edition=run.edition,
            run_id=run_id,
            transport=transport.name,
            dry_run=True,
            recipients=len(selections),
            contents=len({content for content, _ in plan.groups}),
            requests=sum(1 for _ in plan.chunks(transport.max_batch)),
            first=tuple(s.subscriber.email for s in selections[:10]),
            skipped=tuple(plan.skipped),
            ambiguous=tuple(plan.ambiguous),
        )
        if options.dry_run or not selections:
            if options.dry_run and selections:
                with timings.stage("compose"):
                    planned = _replace(planned, notes=tuple(_fast_path_notes(run, plan)))
            return _replace(planned, dry_run=options.dry_run, timings=timings.describe())
        if confirm is not None and not confirm(planned):
            raise SendError("send cancelled: nothing was sent")
        # What fails on our side for every email (a template, a missing DIGEST_SECRET) fails
        # here, before the ledger holds anything of this run.
        run.content_for(selections[0])
        run.links.prefetch([selections[0].subscriber.id])  # a send reads link ids lease by lease
        recipient(run, selections[0])
        also_from: tuple[State, ...] = ("ambiguous",) if options.on_ambiguous == "resend" else ()
        # From here on the edition's objects (articles, subscribers, plan) are done growing: no
        # garbage collection needs to walk them again (see gc_frozen).
        with gc_frozen():
            with timings.stage("ledger"):
                items, by_id = _queue_items(run, plan)
                ledger.enqueue(edition, items, also_from=also_from)
                del items  # what is queued is in by_id too: at a million rows, 80 MB less to hold
            tally = Tally()
            if options.workers > 1:
                from digest.workers import send_in_workers

                def drain(  # one worker's loop: its own ledger, transport, run id and tally
                    its_ledger: Ledger,
                    its_transport: Transport,
                    its_id: str,
                    its_tally: Tally,
                    its_progress: Callable[[int], None] | None,
                    pool: ThreadPoolExecutor,
                ) -> set[str]:
                    return _drain(
                        run, its_ledger, its_transport, its_id, by_id, options, now, its_tally, its_progress, pool
                    )

                mine = send_in_workers(
                    edition,
                    list(by_id),
                    ledger,
                    transport,
                    run_id,
                    drain,
                    workers=options.workers,
                    concurrency=options.concurrency,
                    now=now,
                    tally=tally,
                    progress=progress,
                    reopen=reopen,
                )
            else:
                try:
                    threads = max(1, options.concurrency) if getattr(transport, "concurrent", False) else 1
                    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="send") as pool:
                        mine = _drain(
                            run, ledger, transport, run_id, by_id, options, now, tally, progress, pool, timings
                        )
                finally:
                    ledger.release(edition, run_id)
        others = _by_others(
            ledger, edition, [(sub, s.subscriber.email) for sub, (_, s) in by_id.items() if sub not in mine]
        )
        return _replace(
            planned,
            dry_run=False,
            requests=tally.requests,
            accepted=tuple(tally.accepted),
            skipped=tuple(plan.skipped + tally.skipped + others),
            failed=tuple(tally.failed),
            ambiguous=tuple(plan.ambiguous + tally.ambiguous),
            notes=tuple(_fast_path_notes(run, plan, check=False)),
            timings=timings.describe(),
        )
    finally:
        if lock is not None:
            lock.release()


def _fast_path_notes(run: Run, plan: _Plan, *, check: bool = True) -> list[str]:
    """Why a template is off the fast path. A dry run assembles one digest per head variant the
    plan needs (and compares it with a whole compile, as the send would); a send reports what it
    met."""
    from digest.check import FAST_PATH_OFF, check_fast_path

    if check:
        return [p.message for p in check_fast_path(run, [group[0] for group in plan.groups.values()])]
    variants = {id(v): v for v in (run.variant(group[0].subscriber) for group in plan.groups.values())}
    return [f"{FAST_PATH_OFF}: {why}" for v in variants.values() for why in v.prepared.fast_path_off]


def _by_others(ledger: Ledger, edition: str, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Why planned rows this run never took, as (subscriber, email), were not its to send:
    another sender had them."""
    if not items:
        return []
    states = ledger.row_states(edition)
    why = {
        "accepted": "sent by another run",
        "claimed": "being sent by another run",
        "queued": "taken by another run that is still sending",
        "ambiguous": "may have been sent by another run (ambiguous)",
        "failed": "failed in another run",
        "cancelled": "cancelled in another run",
    }
    return [
        (email, why.get(row.state if (row := states.get(sub)) else "", "no longer in the ledger"))
        for sub, email in items
    ]


def _replace(report: SendReport, **changes: Any) -> SendReport:
    import dataclasses

    return dataclasses.replace(report, **changes)


# ---------------------------------------------------------------- the library calls behind the CLI


def send(
    config: Config,
    at: Any,
    options: SendOptions,
    *,
    edition_id: str | None = None,
    transport_name: str | None = None,
    sandbox: bool = False,
    confirm: Callable[[SendReport], bool] | None = None,
    progress: Callable[[int], None] | None = None,
    now: Callable[[], float] = time.time,
    cadence: str | None = None,
) -> SendReport:
    """`digest send`: open the run, the ledger and the transport, and send the edition.

    `now`: the real clock for send_at and cancel decisions (injectable for tests); `at` is the
    edition's moment, for selection only. `cadence`: that cadence's edition, to its subscribers
    (None: everyone, as a newsletter without cadences does)."""
    from digest.check import one_click_problem
    from digest.content import load_articles
    from digest.pipeline import open_run
    from digest.statefiles import guard_send, note_sent
    from digest.store import ledger_exists, locate, open_ledger
    from digest.sync import sync_before_send

    problem = one_click_problem(config, transport_name)
    if problem:  # before anything is read, synced or sent
        raise SendError(problem)
    # A missing, emptied, replaced or stale ledger or state must stop the send, not read as
    # "nobody opted out" or "nobody was sent anything".
    # On PostgreSQL both stores are one database: neither can be lost, emptied or replaced alone,
    # and an empty (unmigrated) database is refused when the ledger opens.
    on_postgresql = bool(locate(config).url)
    if not on_postgresql:
        guard_send(config.state.path, fresh=options.fresh_state, records=not (options.dry_run or sandbox))
    timings = Timings()
    with timings.stage("load"):
        # Before the run loads the list: SendGrid's suppressions must be in the state it reads.
        sync_before_send(config, transport_name, dry_run=options.dry_run, sandbox=sandbox)
        # A dry run writes nothing: it reads the content cache but does not save it.
        cache = config.state.path / "cache"
        content = load_articles(config, cache_dir=cache, save=False) if options.dry_run else None
        run = open_run(config, at, edition_id, content=content, cadence=cadence)
        transport = make_transport(config, at=at, name=transport_name, sandbox=sandbox, dry_run=options.dry_run)
    try:
        # A sandbox send validates the requests a real send would make (so it reads the real
        # history) but must not mark anyone as sent: it records into a scratch copy. A dry run
        # before the first send must not create the state folder either.
        scratch = sandbox or (options.dry_run and not ledger_exists(config))
        ledger = open_ledger(config, "scratch" if scratch else "write")

        def reopen() -> tuple[Ledger, Transport]:
            return open_ledger(config), make_transport(config, at=at, name=transport_name, sandbox=sandbox)

        with ledger:
            with timings.stage("plan"), gc_paused():
                run, histories = run.with_history(ledger)
            if not (sandbox or options.dry_run):
                with timings.stage("ledger"):
                    _record_edition(run)
            try:
                return send_edition(
                    run,
                    ledger,
                    transport,
                    options,
                    confirm=confirm,
                    progress=progress,
                    now=now,
                    recover=not sandbox,
                    reopen=None if sandbox else reopen,
                    timings=timings,
                    histories=histories,
                )
            finally:
                if not (sandbox or options.dry_run or on_postgresql):
                    note_sent(config.state.path, ledger)  # type: ignore[arg-type]
    finally:
        transport.close()


def _record_edition(run: Run) -> None:
    """The edition's articles, for reports and first-party click links (events.py)."""
    from digest.compose import add_utm
    from digest.store import record_sent_edition

    utm = run.composer.utm(run.edition)
    record_sent_edition(run.config, run.edition, run.pool, lambda a: add_utm(a.url, utm))


@dataclass(frozen=True)
class StatusReport:
    edition: str | None
    counts: dict[str, int]
    rows: tuple[Delivery, ...]  #: the edition's rows needing attention (failed, ambiguous, claimed)
    recent: tuple[EditionSummary, ...]


def status(config: Config, edition_id: str | None = None) -> StatusReport:
    """`digest status`: an edition's counts (default: the latest) and the last editions. With no
    ledger yet, nothing was sent: say so without creating the state folder or an empty ledger."""
    from digest.store import ledger_exists, open_ledger

    if not ledger_exists(config):
        return StatusReport(edition_id, {}, (), ())
    with open_ledger(config, "read") as ledger:
        recent = tuple(ledger.editions(5))
        edition = edition_id or (recent[0].edition if recent else None)
        if edition is None:
            return StatusReport(None, {}, (), recent)
        attention = tuple(ledger.rows(edition, states=("failed", "ambiguous", "claimed", "queued")).values())
        return StatusReport(edition, dict(ledger.summary(edition)), attention, recent)
