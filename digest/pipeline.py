"""One run of the pipeline at one moment: load, select, compose. Shared by build, send and preview.

Data flows one way: content + subscribers -> selection -> composition. Side effects (writing
files, sending) belong to the callers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from pathlib import Path

from digest import personalize
from digest.assembly import PreparedEdition
from digest.audience import load_effective
from digest.cadences import Cadences
from digest.compose import Composer, Content
from digest.config import Config
from digest.content import load_articles
from digest.errors import SubscriberError
from digest.events import click_histories
from digest.ledger import Ledger
from digest.links import Links
from digest.message import eml_name, to_bytes
from digest.models import Article, ContentIndex, Edition, Email, Problem, Selection, Subscriber
from digest.ranking import Clicked
from digest.schedule import edition_for
from digest.segments import NO_SEGMENTS, Overrides, Segments, SegmentSummary, load_segments, summarize
from digest.selection import NO_HISTORY, History, Selector, candidate_pool, history_horizon, window_start
from digest.store import open_existing_events
from digest.subscribers import SubscriberList


@dataclass
class Run:
    """Everything loaded for one edition. Build with `open_run`; compiles lazily."""

    config: Config
    edition: Edition
    content: ContentIndex
    subscribers: SubscriberList
    pool: tuple[Article, ...]
    composer: Composer
    #: False for runs that must write nothing (preview, check, test-send): links then use the
    #: opaque ids that exist and a throwaway id for anyone who has none yet (links.py).
    persist_links: bool = True
    #: The edition of one cadence: only its subscribers are in it (cadences.py). None: everyone.
    cadence: str | None = None
    cadences: Cadences | None = None

    @property
    def at(self) -> datetime:
        return self.edition.at

    @property
    def window_start(self) -> datetime:
        """Start of the default window (a subscriber's own may reach back to their last delivery)."""
        return window_start(self.at, self.config.selection, NO_HISTORY)

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.content.problems + self.subscribers.problems

    @cached_property
    def prepared(self) -> PreparedEdition:
        return PreparedEdition.compile(self.composer, self.pool, self.edition)

    @cached_property
    def links(self) -> Links:
        """Signed unsubscribe/preferences links (opaque ids, minted in one batch: see links.py)."""
        return Links(self.config, self.subscribers.subscribers, persist=self.persist_links)

    def unsubscribe_url(self, subscriber: Subscriber) -> str:
        """The signed one-click URL when an endpoint is configured, else a mailto to the sender."""
        return self.links.unsubscribe_url(subscriber)

    def preferences_url(self, subscriber: Subscriber) -> str:
        """The signed preferences page URL (its own token purpose), or '' without an endpoint."""
        return self.links.preferences_url(subscriber)

    def values(self, subscriber: Subscriber) -> dict[str, str]:
        return personalize.recipient_values(
            subscriber,
            default_name=self.config.newsletter.default_name,
            unsubscribe_url=self.unsubscribe_url(subscriber),
            preferences_url=self.preferences_url(subscriber),
            click_token=self.links.click_token(subscriber),
        )

    @cached_property
    def selector(self) -> Selector:
        return Selector(self.pool, self.at, self.config.selection)

    def select(self, subscriber: Subscriber, history: History = NO_HISTORY) -> Selection:
        return self.variant(subscriber).selector(subscriber, self._with_clicks(subscriber, history))

    def select_shared(self, subscriber: Subscriber, history: History = NO_HISTORY) -> Selection:
        """`select`, as shared by everyone with the same preferences (see `Selector.shared`)."""
        return self.variant(subscriber).selector.shared(subscriber, self._with_clicks(subscriber, history))

    def _with_clicks(self, subscriber: Subscriber, history: History) -> History:
        clicks = self.clicks.get(subscriber.id) if self.config.selection.rank == "engagement" else None
        return replace(history, clicks=clicks) if clicks else history

    @cached_property
    def clicks(self) -> Mapping[str, tuple[Clicked, ...]]:
        """rank = "engagement": what each subscriber clicked in the last editions (events.py)."""
        store = open_existing_events(self.config)
        if store is None:
            return {}
        with store:
            return click_histories(store, self.edition.id, self.at, self.config.selection.engagement_editions)

    def selections(
        self,
        only: Iterable[str] = (),
        history: Callable[[Subscriber], History] = lambda s: NO_HISTORY,
    ) -> Iterator[Selection]:
        """Each subscriber's selection, in list order; `only` restricts to those addresses."""
        for subscriber in self.subscribers_for(only):
            yield self.select(subscriber, history(subscriber))

    def subscribers_for(self, only: Iterable[str] = (), segment: str = "") -> tuple[Subscriber, ...]:
        """The list, or the addresses in `only`, or (and) the members of `segment`."""
        wanted = {e.casefold() for e in only}
        everyone = self.subscribers.subscribers
        listed = self.segments.members(segment, everyone) if segment else everyone
        if self.cadence is not None and self.cadences is not None:
            others = listed
            listed = self.cadences.audience(listed, self.cadence)
        if not wanted:
            return listed
        found = tuple(s for s in listed if s.id in wanted)
        missing = wanted - {s.id for s in found}
        if missing:
            where = f"segment {segment!r}" if segment else str(self.config.subscribers.path)
            if self.cadence is not None and self.cadences is not None:
                elsewhere = {s.id: self.cadences.cadence_of(s) for s in others if s.id in missing}
                if elsewhere:
                    raise SubscriberError(
                        f"not in the {self.cadence} edition: "
                        + ", ".join(f"{a} (gets {c})" for a, c in sorted(elsewhere.items()))
                    )
            raise SubscriberError(f"not in {where}: {', '.join(sorted(missing))}")
        return found

    def reaching_back(self, earliest: datetime | None) -> Run:
        """This run with a candidate pool that reaches back to `earliest` (within catch_up_days)."""
        if earliest is None:
            return self
        return replace(self, pool=candidate_pool(self.content.articles, self.at, self.config.selection, earliest))

    def with_history(self, ledger: Ledger | None) -> tuple[Run, Mapping[str, History]]:
        """What the ledger tells this run: each subscriber's history (deliveries of other editions
        since `history_horizon`: nothing older can shape a window or hold a candidate), and this
        run with its pool reaching back to the oldest last delivery among them, so a reader whose
        window starts before `window_days` still finds the articles since. The one place the
        history is read: `digest send`, `test-send` and the schedule's outlook all go through it.
        No ledger yet (None): no history, and the run as it is."""
        if ledger is None:
            return self, {}
        edition = self.edition.id
        since = history_horizon(self.at, self.config.selection)  # the run's: a cadence may reach further
        histories = ledger.histories(edition, since=since)
        return self.reaching_back(ledger.oldest_last_delivery(edition, since=since)), histories

    def email(self, selection: Selection, values: Mapping[str, str] | None = None) -> Email:
        """The subscriber's email; `values`: their fields if already computed (a send has them in
        each `Recipient`: signing their links again would double the per-recipient cost)."""
        if values is None:
            values = self.values(selection.subscriber)
        return self.variant(selection.subscriber).prepared.email(selection, values)

    def content_for(self, selection: Selection) -> Content:
        """The content shared by everyone with this selection's articles and segment overrides."""
        return self.variant(selection.subscriber).prepared.content(selection)

    def group_key(self, selection: Selection) -> tuple[str, ...]:
        """Who may share one request: the same articles (and groups, with group_by) AND the same segment overrides."""
        overrides = self.segments.overrides_for(selection.subscriber) if self.segments.segments else None
        # grouped by topic, two subscribers with the same articles can still get different emails
        key = self.composer.layout(selection).key if self.config.templates.group_by else selection.content_key
        return (f"\0{overrides.describe()}", *key) if overrides else key

    @cached_property
    def segments(self) -> Segments:
        return load_segments(self.config.subscribers.segments)

    @cached_property
    def _variants(self) -> dict[Overrides, Run]:
        return {}

    def variant(self, subscriber: Subscriber) -> Run:
        """This run as `subscriber` gets it: their segments' overrides applied (see segments.py)."""
        if not self.segments.segments:
            return self  # the common case, asked once or twice per subscriber
        overrides = self.segments.overrides_for(subscriber)
        return self.with_overrides(overrides) if overrides else self

    def with_overrides(self, overrides: Overrides) -> Run:
        """This run with a config copy and the one composer configured by `overrides`; made once
        per distinct overrides, so each compiles its frame once per edition."""
        run = self._variants.get(overrides)
        if run is None:
            config = overrides.config(self.config)
            run = self._variants[overrides] = replace(self, config=config, composer=overrides.composer(config))
            # the variant must not look up overrides again: it IS the overridden run
            run.__dict__["segments"] = NO_SEGMENTS
            # overrides never touch sending or state: one set of ids (one batch) for every variant
            run.__dict__["links"] = self.links
        return run


def open_run(
    config: Config,
    at: datetime,
    edition_id: str | None = None,
    content: ContentIndex | None = None,
    earliest: datetime | None = None,
    *,
    persist_links: bool = True,
    cadence: str | None = None,
) -> Run:
    """Load everything for the edition at `at`.

    `earliest`: the oldest last delivery among the subscribers (from the ledger), so the candidate
    pool covers every subscriber's catch-up window; None means the default window.
    `persist_links=False`: a run that writes nothing (see `Run.persist_links`).
    `cadence`: the edition of that cadence (daily, weekly, monthly): its subscribers only, its
    edition id for `at` unless `edition_id` names one, and a catch-up reach its gaps need.
    """
    content = content if content is not None else load_articles(config, cache_dir=config.state.path / "cache")
    cadences = None
    edition = edition_for(at, config.tz, edition_id)
    if cadence is not None:
        cadences = Cadences.from_config(config)
        table = cadences.table(cadence)
        edition = edition_for(at, config.tz, edition_id or table.slot(at).edition_id)
        config = cadences.selection_for(config, cadence, at)
    return Run(
        config=config,
        edition=edition,
        content=content,
        # Opt-outs, pauses and topic changes from the state folder override the list (never rewritten).
        subscribers=load_effective(config),
        pool=candidate_pool(content.articles, at, config.selection, earliest),
        composer=Composer(config),
        persist_links=persist_links,
        cadence=cadence,
        cadences=cadences,
    )


@dataclass(frozen=True)
class BuildReport:
    edition: Edition
    written: tuple[Path, ...]
    no_email: tuple[Selection, ...]
    problems: tuple[Problem, ...]
    oversized: tuple[tuple[str, int], ...]  #: (address, bytes) over the HTML limit


def build(run: Run, out_dir: Path, only: Iterable[str] = ()) -> BuildReport:
    """Write each subscriber's digest as the .eml it would be sent as."""
    out_dir.mkdir(parents=True, exist_ok=True)
    limit = run.config.templates.max_html_kb * 1000
    written: list[Path] = []
    no_email: list[Selection] = []
    oversized: list[tuple[str, int]] = []
    for selection in run.selections(only):
        if not selection.gets_email:
            no_email.append(selection)
            continue
        email = run.email(selection)
        if email.html_bytes > limit:
            oversized.append((email.subscriber.email, email.html_bytes))
        path = out_dir / eml_name(email.subscriber)
        path.write_bytes(to_bytes(email, date=run.at, edition_id=run.edition.id))
        written.append(path)
    return BuildReport(run.edition, tuple(written), tuple(no_email), run.problems, tuple(oversized))


def list_segments(config: Config, at: datetime) -> tuple[Segments, list[SegmentSummary]]:
    """`digest segments`: each segment with its member count and an example member, over the
    subscriber list exactly as a send at `at` would read it."""
    run = open_run(config, at)
    return run.segments, summarize(run.segments, run.subscribers.subscribers)
