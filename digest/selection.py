"""Choosing each subscriber's articles. Pure functions: no I/O, no clock.

Ordering rule: a subscriber with preferences gets only articles matching at least one of them,
ranked by how many they match, then newest first, then by id (so ties are stable across runs).
One without preferences gets the newest. With `rank = "engagement"` the same articles are eligible
and each match also weighs by the subscriber's recent clicks (ranking.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digest.config import SelectionConfig
from digest.models import Article, Choice, Selection, Subscriber
from digest.ranking import Clicked, clicked_score, explain_clicked, explain_stated, stated_score, topic_weights


@dataclass(frozen=True)
class History:
    """What one subscriber already got, as the ledger knows it."""

    last_delivery: datetime | None = None
    sent_article_ids: frozenset[str] = field(default_factory=frozenset)
    #: What they clicked in earlier editions (read only with rank = "engagement").
    clicks: tuple[Clicked, ...] = ()


NO_HISTORY = History()


def candidate_pool(
    articles: Iterable[Article], at: datetime, settings: SelectionConfig, earliest: datetime | None = None
) -> tuple[Article, ...]:
    """Articles any subscriber could get at `at`: published, not drafts, not excluded, recent enough.

    Computed once per edition, newest first. `earliest` is the oldest last delivery among the
    subscribers (the ledger knows it); it reaches back no further than `catch_up_days`, and
    without it the pool is the default window. `select` narrows it per subscriber.
    """
    limit = at - timedelta(days=max(settings.window_days, settings.catch_up_days))
    default = at - timedelta(days=settings.window_days)
    earliest = max(limit, min(earliest, default)) if earliest is not None else default
    excluded = {t.casefold() for t in settings.exclude_tags}
    pool = [a for a in articles if not a.draft and earliest <= a.date <= at and not (a.tag_keys & excluded)]
    pool.sort(key=lambda a: (-a.date.timestamp(), a.id))
    return tuple(pool)


def history_horizon(at: datetime, settings: SelectionConfig) -> datetime:
    """How far back a subscriber's history can matter at `at`: no candidate is older, so neither
    is any delivery that could shape a window or hold an article that is still a candidate."""
    return at - timedelta(days=max(settings.window_days, settings.catch_up_days))


def window_start(at: datetime, settings: SelectionConfig, history: History) -> datetime:
    """The default window is the last `window_days`; after a missed edition it reaches back to the
    subscriber's last delivery (never past `catch_up_days`), so nobody silently loses a week."""
    start = at - timedelta(days=settings.window_days)
    if history.last_delivery is not None:
        start = max(history.last_delivery, at - timedelta(days=settings.catch_up_days))
    return start


def match(article: Article, subscriber: Subscriber) -> tuple[str, ...]:
    """The article's tags and categories that the subscriber asked for, in display form."""
    if not (article.tag_keys & subscriber.tag_keys or article.category_keys & subscriber.category_keys):
        return ()  # the common answer, decided on the case-folded sets
    return tuple(t for t in article.tags if t.casefold() in subscriber.tag_keys) + tuple(
        c for c in article.categories if c.casefold() in subscriber.category_keys
    )


def select(
    subscriber: Subscriber,
    pool: Sequence[Article],
    at: datetime,
    settings: SelectionConfig,
    history: History = NO_HISTORY,
) -> Selection:
    """One subscriber's articles at one moment. `pool` comes from `candidate_pool` (newest first)."""
    start = window_start(at, settings, history)
    if not subscriber.active:
        return Selection(subscriber, (), at, start, skipped=f"status is {subscriber.status}")
    in_window = [a for a in pool if start <= a.date <= at and not a.draft]
    fresh = [a for a in in_window if a.id not in history.sent_article_ids]
    choices: list[Choice]
    if settings.rank == "engagement":
        choices = _engaged(subscriber, fresh, settings, history)
    elif subscriber.has_preferences:
        scored = [(m, a) for a in fresh if (m := match(a, subscriber))]
        # pool is newest first and sort is stable: equal scores stay newest first
        scored.sort(key=lambda pair: -len(pair[0]))
        choices = [Choice(a, "matched: " + ", ".join(m), len(m)) for m, a in scored]
    else:
        choices = [Choice(a, "newest (no preferences)") for a in fresh]
    choices = choices[: settings.max_articles]
    if len(choices) < max(settings.min_articles, 1):
        if not choices:
            kind = "matching articles" if subscriber.has_preferences else "articles"
            sent_before = [a for a in in_window if a.id in history.sent_article_ids]
            if sent_before and (not subscriber.has_preferences or any(match(a, subscriber) for a in sent_before)):
                # say so: "nothing in the window" would be wrong, and editors ask why
                why = f"no new {kind}: those in the window went out (or may have) in an earlier digest"
            else:
                why = f"no {kind} in the window"
        else:
            why = f"only {len(choices)} matching article(s), fewer than min_articles={settings.min_articles}"
        return Selection(subscriber, (), at, start, skipped=why)
    return Selection(subscriber, tuple(choices), at, start)


def _engaged(
    subscriber: Subscriber, fresh: Sequence[Article], settings: SelectionConfig, history: History
) -> list[Choice]:
    """`rank = "engagement"`: the articles `match` would allow, ordered by stated topics weighed
    with clicks (see ranking.py). Sorting is stable, so ties stay newest first."""
    weights = topic_weights(history.clicks, settings.engagement_decay, settings.engagement_editions)
    if subscriber.has_preferences:
        scored = [(stated_score(m, weights), m, a) for a in fresh if (m := match(a, subscriber))]
        scored.sort(key=lambda row: -row[0])
        return [Choice(a, explain_stated(m, weights), len(m)) for _, m, a in scored]
    ranked = [(clicked_score((*a.tags, *a.categories), weights), a) for a in fresh]
    ranked.sort(key=lambda row: -row[0])
    return [Choice(a, explain_clicked((*a.tags, *a.categories), weights)) for _, a in ranked]


class Selector:
    """`select` for one edition, memoised by everything that decides a selection.

    100,000 subscribers share a few thousand preference sets; selecting once per set instead of
    once per subscriber is the difference between seconds and a minute. Still pure: the memo key
    holds every input that varies between subscribers.
    """

    MAX_MEMO = 200_000  #: entries kept before the memo starts over (bounds memory on huge lists)

    def __init__(self, pool: Sequence[Article], at: datetime, settings: SelectionConfig):
        self.pool = pool
        self.at = at
        self.settings = settings
        self._memo: dict[tuple[object, ...], Selection] = {}

    def __call__(self, subscriber: Subscriber, history: History = NO_HISTORY) -> Selection:
        # reasons name the article's tags that match the key's preferences: shareable as they are
        return self.shared(subscriber, history).for_subscriber(subscriber)

    def shared(self, subscriber: Subscriber, history: History = NO_HISTORY) -> Selection:
        """The selection every subscriber with these preferences and this history gets, as made
        for the first of them (its `subscriber` may be someone else: `for_subscriber` fixes that).
        A send keeps these instead of a selection per subscriber."""
        key = (
            subscriber.active,
            subscriber.status,
            subscriber.tag_keys,
            subscriber.category_keys,
            history.last_delivery,
            history.sent_article_ids,
            history.clicks,
        )
        hit = self._memo.get(key)
        if hit is None:
            if len(self._memo) >= self.MAX_MEMO:
                self._memo.clear()
            hit = self._memo[key] = select(subscriber, self.pool, self.at, self.settings, history)
        return hit


def topic_groups(selection: Selection) -> tuple[tuple[str, tuple[Article, ...]], ...]:
    """The selection's articles under the subscriber's topics they matched, for a grouped digest.

    Each article goes under the first of the subscriber's own tags (then categories), in the
    order they listed them, that the article carries; the label is the article's spelling of it.
    Groups come in the order of their best-ranked article and keep the ranking inside, so the top
    story stays first. Fewer than two groups (or no preferences): one unlabelled group.
    """
    subscriber = selection.subscriber
    articles = selection.articles
    if not subscriber.has_preferences:
        return (("", articles),)
    terms = [("tag", t.casefold()) for t in subscriber.tags] + [
        ("category", c.casefold()) for c in subscriber.categories
    ]
    groups: dict[tuple[str, str], tuple[str, list[Article]]] = {}
    for article in articles:
        found: tuple[tuple[str, str], str] = (("", ""), "")
        for kind, key in terms:
            own = article.tags if kind == "tag" else article.categories
            label = next((t for t in own if t.casefold() == key), "")
            if label:
                found = ((kind, key), label)
                break
        groups.setdefault(found[0], (found[1], []))[1].append(article)
    if len(groups) < 2:
        return (("", articles),)
    return tuple((label, tuple(group)) for label, group in groups.values())
