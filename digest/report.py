"""`digest report` and `digest status`: what happened to each edition after the send.

Numbers come from three records, each kept by its own module:

- the send ledger (ledger.py): sent (every row of the edition but cancelled ones: a request was
  made for each) and accepted (the provider took it);
- the event store (events.py): delivered, bounced, deferred and dropped, unique opens (human, and
  machine-only: Apple Mail Privacy Protection opens every message itself, SendGrid flags those),
  unique clicks, clicks in all and the top articles by clicks. "Unique" counts subscribers;
- the subscriber state (suppressions.py): unsubscribes and complaints. One is attributed to the
  edition SendGrid's event names when there is one, else to the last edition the subscriber was
  sent before they left (a one-click unsubscribe names no edition). Opt-outs copied from
  SendGrid's lists by `digest sync` carry no moment of their own and are left out.

The click-through rate is unique clicks over delivered, or over accepted when no delivery events
came in (SMTP and the outbox, or a SendGrid account without the webhook).

Privacy: a report is aggregate. Who did what is listed only with `per_subscriber=True`
(`--per-subscriber`), and never in the preview.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from digest.config import Config
from digest.errors import DigestError
from digest.events import ArticleClicks, Counts, EditionRecord, EventLog
from digest.ledger import Ledger
from digest.models import Subscriber
from digest.store import ledger_exists, open_existing_events, open_existing_state, open_ledger

#: Opt-out reasons counted as unsubscribes / as complaints.
UNSUBSCRIBE_REASONS = frozenset({"unsubscribed", "group_unsubscribed"})
COMPLAINT_REASONS = frozenset({"complained"})
_EVENT_REASON = {"unsubscribe": "unsubscribe", "group_unsubscribe": "unsubscribe", "spamreport": "complaint"}


@dataclass(frozen=True)
class SubscriberLine:
    """One subscriber's part in an edition (only in a --per-subscriber report)."""

    email: str
    state: str  #: the ledger row's state
    message_id: str
    delivered: bool
    bounced: bool
    deferred: bool
    opened: str  #: "human", "machine" or ""
    clicks: int
    articles: tuple[str, ...]
    left: str  #: "unsubscribe", "complaint" or ""


@dataclass(frozen=True)
class EditionReport:
    edition: str
    label: str
    at: datetime | None  #: the edition's moment (None when only the ledger knows the edition)
    sent: int
    accepted: int
    failed: int
    ambiguous: int
    delivered: int
    bounced: int
    deferred: int
    dropped: int
    opens_human: int
    opens_machine: int
    clickers: int
    clicks: int
    unsubscribes: int
    complaints: int
    ctr: float | None  #: unique clicks / ctr_base; None when the base is 0
    ctr_base: str  #: "delivered" or "accepted"
    top_articles: tuple[ArticleClicks, ...] = ()
    subscribers: tuple[SubscriberLine, ...] = ()

    @property
    def heard_back(self) -> bool:
        """Whether anything came back after the send (events, or opt-outs attributed to it)."""
        counts = (self.delivered, self.bounced, self.deferred, self.dropped, self.opens_human, self.opens_machine)
        return any((*counts, self.clicks, self.unsubscribes, self.complaints))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat() if self.at else None
        data["top_articles"] = [asdict(a) for a in self.top_articles]
        data["subscribers"] = [asdict(s) for s in self.subscribers] if self.subscribers else None
        return data


@dataclass
class _Sources:
    """The three records, opened read-only as far as they exist (a report creates nothing)."""

    ledger: Ledger | None
    events: EventLog | None
    config: Config
    _left: dict[tuple[str, str], str] | None = field(default=None, repr=False)

    def close(self) -> None:
        for store in (self.ledger, self.events):
            if store is not None:
                store.close()

    def known(self) -> dict[str, EditionRecord]:
        return {e.edition: e for e in self.events.editions()} if self.events else {}

    def editions(self, limit: int) -> list[str]:
        """The editions sent (an accepted row), newest first by the moment they were selected for."""
        if self.ledger is None:
            return []
        newest_first = list(reversed(self.ledger.sent_editions()))
        return newest_first[:limit] if limit else newest_first

    def attributed(self) -> dict[tuple[str, str], str]:
        """(subscriber, "unsubscribe"/"complaint") -> the edition it is attributed to (module doc)."""
        if self._left is not None:
            return self._left
        attributed: dict[tuple[str, str], str] = {}
        if self.events is not None:
            for subscriber, kind, edition, _at in self.events.opt_out_events():
                attributed.setdefault((subscriber, _EVENT_REASON[kind]), edition)
        state = open_existing_state(self.config)
        optouts = {}
        if state is not None:
            with state:
                optouts = state.optouts()
        wanted: dict[tuple[str, str], datetime] = {}
        for subscriber, rows in optouts.items():
            for o in rows:
                if o.reason not in UNSUBSCRIBE_REASONS | COMPLAINT_REASONS or o.source.startswith("sync:"):
                    continue
                key = (subscriber, "unsubscribe" if o.reason in UNSUBSCRIBE_REASONS else "complaint")
                if key not in attributed:
                    wanted[key] = min(o.at, wanted.get(key, o.at))
        if wanted and self.ledger is not None:
            sent = self.ledger.accepted_for([s for s, _ in wanted])
            for (subscriber, reason), at in wanted.items():
                # opt-outs are stamped to the second: an unsubscribe within the second the
                # edition was settled still comes after it
                before = [e for e, when in sent.get(subscriber, []) if when.replace(microsecond=0) <= at]
                if before:
                    attributed[(subscriber, reason)] = before[-1]
        self._left = attributed
        return attributed

    def left(self, edition: str) -> Counter[str]:
        """{"unsubscribe": n, "complaint": n} attributed to the edition, distinct subscribers."""
        return Counter(reason for (_s, reason), e in self.attributed().items() if e == edition)

    def left_by(self, edition: str) -> dict[str, str]:
        """subscriber -> "unsubscribe"/"complaint" for one edition (per-subscriber reports only)."""
        out: dict[str, str] = {}
        for (subscriber, reason), e in sorted(self.attributed().items()):
            if e == edition:
                out[subscriber] = "complaint" if "complaint" in (out.get(subscriber), reason) else reason
        return out


def _open(config: Config) -> _Sources:
    ledger = open_ledger(config, "read") if ledger_exists(config) else None
    return _Sources(ledger, open_existing_events(config), config)


def edition_report(sources: _Sources, edition: str, *, per_subscriber: bool = False, top: int = 5) -> EditionReport:
    ledger_counts: Counter[str] = sources.ledger.summary(edition) if sources.ledger else Counter()
    counts = sources.events.counts(edition) if sources.events else Counts()
    record = sources.known().get(edition)
    kinds = counts.by_kind
    delivered = kinds.get("delivered", 0)
    accepted = ledger_counts.get("accepted", 0)
    base, denominator = ("delivered", delivered) if delivered else ("accepted", accepted)
    left = sources.left(edition)
    report = EditionReport(
        edition=edition,
        label=record.label if record else "",
        at=record.at if record else None,
        sent=sum(n for state, n in ledger_counts.items() if state != "cancelled"),
        accepted=accepted,
        failed=ledger_counts.get("failed", 0),
        ambiguous=ledger_counts.get("ambiguous", 0),
        delivered=delivered,
        bounced=kinds.get("bounce", 0),
        deferred=kinds.get("deferred", 0),
        dropped=kinds.get("dropped", 0),
        opens_human=counts.human_opens,
        opens_machine=counts.machine_opens,
        clickers=counts.clickers,
        clicks=counts.clicks,
        unsubscribes=left.get("unsubscribe", 0),
        complaints=left.get("complaint", 0),
        ctr=counts.clickers / denominator if denominator else None,
        ctr_base=base,
        top_articles=tuple(sources.events.article_clicks(edition)[:top]) if sources.events and top else (),
    )
    if per_subscriber:
        report = _with_subscribers(sources, report)
    return report


def _with_subscribers(sources: _Sources, report: EditionReport) -> EditionReport:
    from dataclasses import replace

    rows = sources.ledger.rows(report.edition) if sources.ledger else {}
    activity = sources.events.activity(report.edition) if sources.events else {}
    left = sources.left_by(report.edition)
    lines = []
    for subscriber in sorted(set(rows) | set(activity)):
        row, act = rows.get(subscriber), activity.get(subscriber)
        kinds = act.kinds if act else frozenset()
        lines.append(
            SubscriberLine(
                email=row.email if row else subscriber,
                state=row.state if row else "",
                message_id=row.message_id if row else (act.message_ids[0] if act and act.message_ids else ""),
                delivered="delivered" in kinds,
                bounced="bounce" in kinds,
                deferred="deferred" in kinds,
                opened="human" if act and act.human_open else "machine" if act and act.machine_open else "",
                clicks=act.clicks if act else 0,
                articles=act.articles if act else (),
                left=left.get(subscriber, ""),
            )
        )
    return replace(report, subscribers=tuple(lines))


def reports(
    config: Config, edition: str | None = None, *, limit: int = 10, per_subscriber: bool = False
) -> list[EditionReport]:
    """One edition's report, or the last `limit` editions' (newest first). Empty when nothing was sent."""
    sources = _open(config)
    try:
        if edition and (sources.ledger is None or not sources.ledger.summary(edition)):
            raise DigestError(f"edition {edition!r} is not in the send ledger (digest status lists the editions)")
        editions = [edition] if edition else sources.editions(limit)
        return [edition_report(sources, e, per_subscriber=per_subscriber) for e in editions]
    finally:
        sources.close()


# ---------------------------------------------------------------- the preview's "Past editions"


@dataclass(frozen=True)
class Trend:
    """The last editions, oldest first, for the preview's charts (aggregates only)."""

    editions: tuple[EditionReport, ...] = ()
    #: per edition: signups since the edition before (from the list's subscribed_at), or where the
    #: list has no such dates, subscribers the edition reached for the first time
    new_readers: tuple[int, ...] = ()
    tags: tuple[tuple[str, int], ...] = ()  #: top tags by clicks over those editions
    new_means: str = "signups"  #: "signups" or "first reached": what new_readers counts

    @property
    def empty(self) -> bool:
        return not self.editions


def trend(config: Config, subscribers: Sequence[Subscriber] = (), limit: int = 8, top_tags: int = 6) -> Trend:
    """The last `limit` editions for the preview's panel. `subscribers`: the list, whose
    subscribed_at dates (where it has them) count the signups between editions."""
    if not ledger_exists(config):
        return Trend()
    sources = _open(config)
    try:
        moments = sources.ledger.sent_editions() if sources.ledger else {}
        names = list(moments)[-limit:]
        editions = tuple(edition_report(sources, e, top=0) for e in names)
        tags = sources.events.tag_clicks(names).most_common(top_tags) if sources.events else []
        joined = [s.subscribed_at for s in subscribers if s.subscribed_at is not None]
        if joined:
            new, means = signups(joined, list(moments.values()))[-len(names) :] if names else [], "signups"
        else:
            first = sources.ledger.first_editions() if sources.ledger else Counter()
            new, means = [first.get(e, 0) for e in names], "first reached"
        return Trend(editions, tuple(new), tuple(tags), means)
    finally:
        sources.close()


def signups(joined: Sequence[datetime], moments: Sequence[datetime]) -> list[int]:
    """Per edition moment (oldest first): how many joined after the one before and by this one
    (the first edition counts everyone who joined by then)."""
    ordered = sorted(joined)
    counts, before = [], 0
    for moment in moments:
        upto = bisect.bisect_right(ordered, moment)
        counts.append(upto - before)
        before = upto
    return counts


# ---------------------------------------------------------------- text


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def describe(report: EditionReport) -> list[str]:
    """The report as lines of text (`digest report`)."""
    title = f"edition {report.edition}" + (f" ({report.label})" if report.label else "")
    lines = [
        title,
        f"  sent {report.sent}, accepted {report.accepted} (failed {report.failed}, ambiguous {report.ambiguous})",
        f"  delivered {report.delivered}, bounced {report.bounced}, deferred {report.deferred}, "
        f"dropped {report.dropped}",
        f"  unique opens: {report.opens_human} human, {report.opens_machine} machine only "
        "(Apple Mail Privacy Protection)",
        f"  unique clicks: {report.clickers}, click-through rate {percent(report.ctr)} of {report.ctr_base}; "
        f"{report.clicks} click(s) in all",
        f"  unsubscribes {report.unsubscribes}, complaints {report.complaints}",
    ]
    if report.top_articles:
        lines.append("  top articles by clicks:")
        for a in report.top_articles:
            lines.append(f"    {a.clicks:4} click(s), {a.clickers} reader(s)  {a.title}")
    if report.subscribers:
        lines.append("  per subscriber:")
        for s in report.subscribers:
            did = [
                flag
                for flag, on in (("delivered", s.delivered), ("bounced", s.bounced), ("deferred", s.deferred))
                if on
            ]
            if s.opened:
                did.append(f"opened ({s.opened})")
            if s.clicks:
                did.append(f"{s.clicks} click(s): {', '.join(s.articles) or 'other links'}")
            if s.left:
                did.append(s.left)
            lines.append(f"    {s.email} [{s.state or 'not in the ledger'}] {'; '.join(did) or '-'}")
    return lines


def summary_line(report: EditionReport) -> str:
    """One line for `digest status`."""
    if not report.heard_back:
        return "after the send: no events yet (SendGrid's Event Webhook, or [tracking] clicks: see digest report)"
    return (
        f"after the send: delivered {report.delivered}, bounced {report.bounced}, deferred {report.deferred}; "
        f"opens {report.opens_human} human + {report.opens_machine} machine; clicks {report.clickers} "
        f"({percent(report.ctr)} of {report.ctr_base}); unsubscribes {report.unsubscribes}, "
        f"complaints {report.complaints}"
    )


def status_reports(config: Config, editions: list[str]) -> dict[str, EditionReport]:
    """Reports for `digest status`'s editions; nothing when the state has no events at all."""
    if not ledger_exists(config):
        return {}
    sources = _open(config)
    try:
        return {e: edition_report(sources, e, top=3) for e in editions}
    finally:
        sources.close()
