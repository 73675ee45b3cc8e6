"""What happened after the send: delivery and engagement events, per edition, message and subscriber.

Two sources write here: SendGrid's Event Webhook (processed, delivered, deferred, bounce, dropped,
open, click, and the opt-out events, all signed) and `digest serve`'s first-party click redirect
(`/r/...`, for SMTP and the outbox). Each event is one row keyed by its event id (SendGrid's
`sg_event_id`), inserted with ON CONFLICT DO NOTHING: SendGrid delivers at least once and retries
for a day, and the unique key makes a repeat a no-op however two requests interleave.

An event belongs to an edition and a subscriber through the custom_args our SendGrid transport
sends with every personalization (`edition`, `subscriber`): SendGrid copies them into each event.
Events without them are mail digest did not send (another stream on the same account) and are not
kept. Each event also keeps the request's X-Message-Id (the part of `sg_message_id` before the
first dot), which the send ledger holds for every row it settled as accepted.

Each real send records its edition's articles (`record_edition`) before anything leaves: a click's
URL is matched to an article by its canonical link (no utm_* parameters, no fragment), and the
first-party redirect only ever sends a reader to a URL recorded for that edition.

The records and the `EventLog` interface live here, and what a SendGrid event becomes in
transports/sendgrid/webhook.py (`from_sendgrid`); the SQLite tables and queries in
store/events_sql.py, the SQL both engines share (with the subscriber state: its SQLite file, or
the PostgreSQL database); opening the store on its engine in store/__init__.py (`open_events`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from digest.errors import LedgerError
from digest.models import Article
from digest.ranking import Clicked


class EventsError(LedgerError):
    """The event store is unusable."""


@dataclass(frozen=True)
class Event:
    """One delivery or engagement event, as kept."""

    event_id: str  #: SendGrid's sg_event_id, or `digest:<random>` for a first-party click
    source: str  #: "sendgrid" or "redirect"
    kind: str  #: SendGrid's event name (transports/sendgrid/webhook.py's KINDS); a first-party click is "click"
    edition: str
    subscriber: str  #: Subscriber.id; "" for a first-party click that named no reader
    at: int  #: when it happened, epoch seconds
    message_id: str = ""  #: the request's X-Message-Id
    machine: bool = False  #: an open Apple Mail Privacy Protection made, not a person
    url: str = ""  #: click: the link as clicked (never stored as such: see `stored_link`)
    article: str = ""  #: click: the article id, when the source knows it
    detail: str = ""  #: bounce: type and status; dropped: SendGrid's reason


@dataclass(frozen=True)
class EditionArticle:
    """An article as it went out in one edition."""

    edition: str
    article: str
    url: str  #: the link as the email carried it (UTM included): where a first-party click goes
    link: str  #: canonical: what clicks are matched on
    title: str
    tags: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class EditionRecord:
    edition: str
    label: str
    at: datetime


@dataclass(frozen=True)
class Counts:
    """One edition's events, counted in distinct subscribers (clicks also in total)."""

    by_kind: Mapping[str, int] = field(default_factory=dict)  #: kind -> distinct subscribers
    human_opens: int = 0  #: subscribers with at least one open not flagged as a machine's
    machine_opens: int = 0  #: subscribers whose only opens were a machine's (Apple MPP)
    clicks: int = 0  #: every click, repeats included
    clickers: int = 0  #: subscribers with at least one click


@dataclass(frozen=True)
class ArticleClicks:
    article: str
    title: str
    clicks: int
    clickers: int


@dataclass(frozen=True)
class SubscriberActivity:
    """What one subscriber did with one edition (only for `--per-subscriber` reports)."""

    subscriber: str
    kinds: frozenset[str]
    human_open: bool
    machine_open: bool
    clicks: int
    articles: tuple[str, ...]  #: clicked, in first-click order
    message_ids: tuple[str, ...]


@dataclass(frozen=True)
class Click:
    """A click of one subscriber on an article of one edition (what engagement ranking reads)."""

    edition: str
    subscriber: str
    tags: tuple[str, ...]
    categories: tuple[str, ...]


class EventLog(Protocol):
    """What the webhook, the redirect, reports, the archive and ranking need from an event store."""

    def record(self, events: Iterable[Event]) -> int: ...

    def record_edition(self, edition: EditionRecord, articles: Sequence[EditionArticle]) -> None: ...

    def edition_url(self, edition: str, article: str) -> str | None: ...

    def editions(self) -> list[EditionRecord]: ...

    def articles(self, edition: str) -> list[EditionArticle]: ...

    def counts(self, edition: str) -> Counts: ...

    def article_clicks(self, edition: str) -> list[ArticleClicks]: ...

    def activity(self, edition: str) -> dict[str, SubscriberActivity]: ...

    def opt_out_events(self) -> list[tuple[str, str, str, int]]: ...

    def clicks(self, editions: Sequence[str]) -> list[Click]: ...

    def tag_clicks(self, editions: Sequence[str]) -> Counter[str]: ...

    def forget(self, subscriber: str, pseudonym: str) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> EventLog: ...

    def __exit__(self, *exc: object) -> None: ...


# ---------------------------------------------------------------- links


def canonical_link(url: str) -> str:
    """A link as articles are matched on: scheme and host lower-cased, utm_* parameters and the
    fragment gone, the rest of the query kept (some sites name posts by `?p=123`)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return ""
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.lower().startswith("utm_")]
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", urlencode(query), ""))


def bare_link(url: str) -> str:
    """A link that is not an article's, as kept: no query and no fragment, which is where
    unsubscribe and preferences links carry their tokens."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return ""
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", "", ""))


# ---------------------------------------------------------------- the store


def click_histories(log: EventLog, edition: str, at: datetime, editions: int) -> dict[str, tuple[Clicked, ...]]:
    """Per subscriber: the articles they clicked in the `editions` editions before `edition` (by
    moment), each with its age (0: the latest). What engagement ranking reads."""
    earlier = [e for e in log.editions() if e.edition != edition and e.at < at][-editions:]
    age = {e.edition: len(earlier) - 1 - i for i, e in enumerate(earlier)}
    out: dict[str, list[Clicked]] = {}
    for click in log.clicks(list(age)):
        out.setdefault(click.subscriber, []).append(Clicked(age[click.edition], click.tags + click.categories))
    return {s: tuple(sorted(clicks)) for s, clicks in out.items()}


def edition_articles(edition: str, articles: Iterable[Article], link: Callable[[Article], str]) -> list[EditionArticle]:
    """What `record_edition` keeps of each candidate article; `link` is the URL as emailed (UTM)."""
    return [
        EditionArticle(edition, a.id, link(a), canonical_link(a.url), a.title, a.tags, a.categories) for a in articles
    ]
