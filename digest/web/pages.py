"""What the preview pages show, computed from a `Snapshot`: plain data for the HTML templates.

Nothing here renders an email: every email comes from `Snapshot.email`, i.e. the run's composer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlencode

from digest.config import Config
from digest.errors import DigestError
from digest.models import Article, Email, Selection, Subscriber
from digest.personalize import escape_text
from digest.schedule import Slot
from digest.segments import Segment
from digest.web.live import Snapshot, _signature

#: Gmail cuts the HTML part at about 102 KB and hides the rest, unsubscribe link included.
GMAIL_CLIP_BYTES = 102_000


def subscriber_url(subscriber: Subscriber) -> str:
    return "/subscribers/" + quote(subscriber.email, safe="@+")


def preferences(subscriber: Subscriber) -> str:
    return ", ".join(subscriber.tags + subscriber.categories)


@dataclass(frozen=True)
class ArticleRow:
    article: Article
    date: datetime  #: in the newsletter's zone
    subscribers: int  #: how many get it this edition
    in_window: bool  #: inside the default window (older pool articles only reach catch-up readers)


@dataclass(frozen=True)
class SubscriberRow:
    subscriber: Subscriber
    selection: Selection
    url: str
    preferences: str
    cadence: str = ""  #: the edition they get (daily, weekly, monthly); "" without a schedule
    next_edition: Slot | None = None  #: that cadence's next slot

    @property
    def search_text(self) -> str:
        """What the page's own filter matches (the rows of this page), as the server's search does."""
        s = self.subscriber
        # lower(), not casefold(): the page filters with JavaScript's toLowerCase
        parts = [s.email, s.name, s.status, self.preferences, self.cadence, self.selection.skipped or ""]
        return " ".join(parts).lower()


def cadence_of(snap: Snapshot, subscriber: Subscriber) -> tuple[str, Slot | None]:
    """The subscriber's cadence and the next edition it brings them, as of the preview's moment."""
    if snap.cadences is None:
        return "", None
    cadence = snap.cadences.cadence_of(subscriber)
    return cadence, snap.next_editions.get(cadence)


#: Subscribers on one page of the index: a 100,000-subscriber list is searched and paged on the
#: server, never sent whole (it was a 37 MB page).
PAGE_SIZE = 100


@dataclass(frozen=True)
class SubscriberPage:
    """One page of the subscriber table: the rows, and where they sit in the (searched) list."""

    rows: list[SubscriberRow]
    query: str
    page: int  #: from 1
    pages: int
    matching: int  #: subscribers the query matches (all of them without one)
    total: int

    @property
    def first(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0

    def link(self, page: int) -> str:
        """The index at another page of the same search."""
        query = urlencode({"q": self.query, "page": page} if self.query else {"page": page})
        return f"/?{query}#subscribers"


def subscriber_page(snap: Snapshot, query: str = "", page: int = 1) -> SubscriberPage:
    """The subscribers whose text holds every word of `query` (all without one), page `page`."""
    words = query.lower().split()
    index = snap.search_index
    if words:
        index = [(text, sel) for text, sel in index if all(w in text for w in words)]
    pages = max(1, -(-len(index) // PAGE_SIZE))
    page = min(max(1, page), pages)
    shown = index[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    rows = [
        SubscriberRow(
            sel.subscriber,
            sel,
            subscriber_url(sel.subscriber),
            preferences(sel.subscriber),
            *cadence_of(snap, sel.subscriber),
        )
        for _, sel in shown
    ]
    return SubscriberPage(rows, query, page, pages, len(index), len(snap.selections))


def index_context(snap: Snapshot, query: str = "", page: int = 1) -> dict[str, object]:
    run = snap.run
    config = run.config
    tz = config.tz
    counts = snap.article_counts
    articles = [ArticleRow(a, a.date.astimezone(tz), counts[a.id], a.date >= run.window_start) for a in run.pool]
    cadence_rows = []
    if snap.cadences is not None:
        tally = snap.cadence_counts
        cadence_rows = [
            (t.cadence, t.cron.expr, tally[t.cadence], snap.next_editions[t.cadence]) for t in snap.cadences.tables
        ]
    return {
        "cadences": cadence_rows,
        "config": config,
        "edition": run.edition,
        "window_start": run.window_start.astimezone(tz),
        "at": run.at.astimezone(tz),
        "articles": articles,
        "subscribers": subscriber_page(snap, query, page),
        "total": len(snap.selections),
        "getting": snap.getting,
        "problems": sorted(snap.problems, key=lambda p: (p.severity != "error", p.source, p.line or 0)),
        "input_problems": [p for p in snap.problems if p.severity == "error"],
        "segments": segment_rows(snap),
        **past_editions(config, snap),
    }


_past_cache: dict[tuple[object, ...], dict[str, object]] = {}
_past_lock = threading.Lock()


def past_editions(config: Config, snap: Snapshot) -> dict[str, object]:
    """The "Past editions" panel's data: the last editions' aggregates and their charts.

    Read again only when the ledger or the state file (events, opt-outs) changed: at a hundred
    thousand subscribers it is about a second, and the index is reloaded on every edit.
    """
    from digest.ledger import LEDGER_NAME
    from digest.report import Trend, trend
    from digest.suppressions import STATE_NAME
    from digest.web.charts import charts

    state = config.state.path
    files = (LEDGER_NAME, f"{LEDGER_NAME}-wal", STATE_NAME, f"{STATE_NAME}-wal")
    key: tuple[object, ...] = (snap.token, str(state), *(_signature(state / name) for name in files))
    from digest.store import locate

    if locate(config).url:  # no file tells a change in PostgreSQL: read again at most every 30 s
        import time

        key = (*key, int(time.monotonic() // 30))
    with _past_lock:
        found = _past_cache.get(key)
    if found is None:
        try:
            past = trend(config, snap.run.subscribers.subscribers)
        except DigestError as exc:  # an unreadable state must not take the preview's index down
            return {"past": Trend(), "charts": [], "past_error": str(exc)}
        found = {"past": past, "charts": charts(past) if not past.empty else [], "past_error": ""}
        with _past_lock:
            _past_cache.clear()  # one newsletter per preview: the latest answer is all worth keeping
            _past_cache[key] = found
    return found


@dataclass(frozen=True)
class SegmentRow:
    segment: Segment
    members: tuple[Subscriber, ...]
    example: Selection | None  #: the member `digest test-send` renders for: the first who gets one

    @property
    def example_url(self) -> str:
        return subscriber_url(self.example.subscriber) if self.example else ""


def segment_rows(snap: Snapshot) -> list[SegmentRow]:
    """Each segment with its members and an example digest (that member's page); once per build."""
    cached = snap.__dict__.get("segment_rows")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    rows = []
    for segment in snap.run.segments:
        members = segment.members(snap.run.subscribers.subscribers)
        picks = (snap.selections.get(m.id) for m in members)
        example = next((s for s in picks if s is not None and s.gets_email), None)
        rows.append(SegmentRow(segment, members, example))
    snap.__dict__["segment_rows"] = rows
    return rows


@dataclass(frozen=True)
class Size:
    bytes: int
    limit: int  #: the config's max_html_kb, in bytes

    @property
    def kb(self) -> float:
        return self.bytes / 1000

    @property
    def percent_of_clip(self) -> float:
        return min(100.0, 100 * self.bytes / GMAIL_CLIP_BYTES)

    @property
    def over(self) -> bool:
        return self.bytes > min(self.limit, GMAIL_CLIP_BYTES)


class _Images(HTMLParser):
    """Images a screen reader cannot make sense of.

    An <img> with no alt at all (readers spell out the URL), and one with alt="" that is all a
    link shows, where the link stays in the accessibility tree: the link then has no name.
    alt="" elsewhere is a decorative image, as the templates' covers are (their title is the link).
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.without_alt: list[str] = []
        self.unnamed_links: list[str] = []
        self._links: list[dict[str, Any]] = []  # the <a> elements open around the current position

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a":
            named = bool((values.get("aria-label") or "").strip()) or values.get("aria-hidden") == "true"
            self._links.append({"named": named, "images": []})
        elif tag == "img":
            alt = values.get("alt")
            if alt is None:
                self.without_alt.append(values.get("src") or "")
            elif self._links and alt.strip():
                self._links[-1]["named"] = True
            elif self._links:
                self._links[-1]["images"].append(values.get("src") or "")

    def handle_data(self, data: str) -> None:
        if self._links and data.strip():
            self._links[-1]["named"] = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._links:
            link = self._links.pop()
            if not link["named"]:
                self.unnamed_links.extend(link["images"])


def warnings_for(email: Email, selection: Selection, config: Config) -> list[str]:
    """What an editor should fix before sending this subscriber's digest."""
    out: list[str] = []
    for choice in selection.choices:
        a = choice.article
        if not a.cover_url:
            out.append(f"“{a.title}” has no cover image ({a.path.name}).")
    # Alt text is checked in the HTML as sent: the reader's defaults and the templates both decide it.
    parser = _Images()
    parser.feed(email.html)
    for src in parser.without_alt:
        out.append(f"An image has no alt text: {src or '(no src)'}.")
    for src in parser.unnamed_links:
        out.append(f"A link shows only an image with empty alt text, so it has no name: {src or '(no src)'}.")
    limit = config.templates.max_subject_chars
    if len(email.subject) > limit:
        out.append(
            f"The subject is {len(email.subject)} characters, over templates.max_subject_chars = {limit}: "
            "mail apps will cut it."
        )
    postal = config.newsletter.postal_address.strip()
    if not postal:
        out.append("No postal address: set newsletter.postal_address (CAN-SPAM wants one in every email).")
    elif escape_text(postal) not in email.html:
        out.append("newsletter.postal_address is set but the HTML does not show it (check the footer template).")
    size = Size(email.html_bytes, config.templates.max_html_kb * 1000)
    if size.over:
        out.append(
            f"The HTML is {size.kb:.1f} KB: Gmail clips above about 102 KB and hides the rest, "
            "unsubscribe link included."
        )
    return out


def subscriber_context(snap: Snapshot, subscriber: Subscriber) -> dict[str, object]:
    """Everything about one subscriber; `email` is None when they get no digest this edition."""
    run = snap.run
    config = run.config
    selection = snap.selections[subscriber.id]
    index = snap.search_index
    i = snap.positions[subscriber.id]
    prev_sub = index[i - 1][1].subscriber if i > 0 else None
    next_sub = index[i + 1][1].subscriber if i + 1 < len(index) else None
    context: dict[str, object] = {
        "config": config,
        "edition": run.edition,
        "subscriber": subscriber,
        "selection": selection,
        "preferences": preferences(subscriber),
        "url": subscriber_url(subscriber),
        "prev": (prev_sub, subscriber_url(prev_sub)) if prev_sub else None,
        "next": (next_sub, subscriber_url(next_sub)) if next_sub else None,
        "window_start": selection.window_start.astimezone(config.tz),
        "at": run.at.astimezone(config.tz),
        "cadence": cadence_of(snap, subscriber),
        "email": None,
        "input_problems": [p for p in snap.problems if p.severity == "error"],
    }
    if selection.gets_email:
        email = snap.email(selection)
        context.update(
            email=email,
            size=Size(email.html_bytes, config.templates.max_html_kb * 1000),
            clip_kb=GMAIL_CLIP_BYTES / 1000,
            warnings=warnings_for(email, selection, config),
            subject_chars=len(email.subject),
        )
    return context
