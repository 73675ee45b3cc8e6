"""Each subscriber's own window, whatever the pool reaches back to (issue 20).

The pool of an edition reaches back to the oldest last delivery among the subscribers (capped by
`catch_up_days`), so that someone who missed an edition loses nothing. That must never widen anyone
else's window: a subscriber with no history gets the last `window_days`, one with a history gets
what came after their last delivery (never more than `catch_up_days` back), and nobody gets an
article twice. The windows below are computed here from the documented rule, not by the code
under test.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from factories import AT, article, subscriber
from hypothesis import example, given, settings
from hypothesis import strategies as st

from digest.config import SelectionConfig
from digest.models import Article, Subscriber
from digest.selection import History, Selector, candidate_pool, select

TAGS = ["ai", "AI", "Robotics", "climate", "space"]
CATEGORIES = ["Science", "Business"]


def own_window(at: datetime, cfg: SelectionConfig, history: History) -> datetime:
    """docs/selection.md: the last `window_days`; after a delivery, from that delivery on, but never
    more than `catch_up_days` back."""
    if history.last_delivery is None:
        return at - timedelta(days=cfg.window_days)
    return max(history.last_delivery, at - timedelta(days=cfg.catch_up_days))


def matches(a: Article, sub: Subscriber) -> int:
    return sum(t.casefold() in sub.tag_keys for t in a.tags) + sum(
        c.casefold() in sub.category_keys for c in a.categories
    )


def expected(
    sub: Subscriber, articles: list[Article], at: datetime, cfg: SelectionConfig, history: History
) -> list[str]:
    """The documented rule, spelt out: in the own window, published, not excluded, not sent before,
    matching a preference when there are any; ranked by matches, then newest, then id."""
    start = own_window(at, cfg, history)
    excluded = {t.casefold() for t in cfg.exclude_tags}
    eligible = [
        a
        for a in articles
        if start <= a.date <= at
        and not a.draft
        and not (a.tag_keys & excluded)
        and a.id not in history.sent_article_ids
        and (not sub.has_preferences or matches(a, sub))
    ]
    eligible.sort(key=lambda a: (-matches(a, sub) if sub.has_preferences else 0, -a.date.timestamp(), a.id))
    chosen = eligible[: cfg.max_articles]
    return [a.id for a in chosen] if sub.active and len(chosen) >= max(cfg.min_articles, 1) else []


@st.composite
def editions(draw):
    """A config, subscribers with random histories, and articles dated on and around every edge."""
    cfg = SelectionConfig(
        window_days=draw(st.integers(1, 14)),
        catch_up_days=draw(st.integers(0, 40)),
        max_articles=draw(st.integers(1, 6)),
        min_articles=draw(st.integers(0, 3)),
        exclude_tags=draw(st.lists(st.sampled_from(["space", "Sponsored"]), max_size=1)),
    )
    deliveries = draw(st.lists(st.one_of(st.none(), st.integers(0, 50 * 24)), min_size=1, max_size=4))
    # the instants where a window starts or ends, and a second either side of each
    edges = [AT, AT - timedelta(days=cfg.window_days), AT - timedelta(days=cfg.catch_up_days)]
    edges += [AT - timedelta(hours=h) for h in deliveries if h is not None]
    when = st.one_of(
        st.builds(lambda e, s: e + timedelta(seconds=s), st.sampled_from(edges), st.sampled_from([-1, 0, 1])),
        st.builds(lambda h: AT - timedelta(hours=h), st.integers(-48, 24 * 45)),
    )
    articles = draw(
        st.lists(
            st.builds(
                lambda i, date, tags, cats, draft: article(
                    f"a{i}", date=date, tags=tuple(tags), categories=tuple(cats), draft=draft
                ),
                st.integers(0, 500),
                when,
                st.lists(st.sampled_from(TAGS + ["space"]), max_size=3, unique=True),
                st.lists(st.sampled_from(CATEGORIES), max_size=1),
                st.sampled_from([False, False, False, True]),  # a draft now and then
            ),
            max_size=25,
            unique_by=lambda a: a.id,
        )
    )
    ids = [a.id for a in articles]
    people = []
    for n, hours in enumerate(deliveries):
        sent = frozenset(draw(st.lists(st.sampled_from(ids), max_size=5))) if ids else frozenset()
        last = AT - timedelta(hours=hours) if hours is not None else None
        history = History(
            last_delivery=last, sent_article_ids=sent if last is not None or draw(st.booleans()) else frozenset()
        )
        sub = subscriber(
            f"s{n}@example.com",
            status=draw(st.sampled_from(["active", "active", "active", "paused"])),
            tags=tuple(draw(st.lists(st.sampled_from(TAGS), max_size=2))),
            categories=tuple(draw(st.lists(st.sampled_from(CATEGORIES), max_size=1))),
        )
        people.append((sub, history))
    return cfg, articles, people


@settings(max_examples=400, deadline=None)
@given(editions())
@example(
    # issue 20: another subscriber missed an edition, so the pool reaches back 14 days; a subscriber
    # with no history must still get the last 7 days only (the `window_days + 1` slip gave 7.5)
    (
        SelectionConfig(window_days=7, catch_up_days=28),
        [article("old", date=AT - timedelta(days=7, hours=12)), article("new", date=AT - timedelta(days=1))],
        [
            (subscriber("missed@example.com"), History(last_delivery=AT - timedelta(days=14))),
            (subscriber("new@example.com"), History()),
        ],
    )
)
def test_every_chosen_article_lies_in_that_subscribers_own_window(edition) -> None:
    cfg, articles, people = edition
    deliveries = [h.last_delivery for _, h in people if h.last_delivery is not None]
    pool = candidate_pool(articles, AT, cfg, earliest=min(deliveries) if deliveries else None)
    selector = Selector(pool, AT, cfg)
    for sub, history in people:
        selection = select(sub, pool, AT, cfg, history)
        start = own_window(AT, cfg, history)
        for a in selection.articles:
            assert start <= a.date <= AT, f"{a.id} ({a.date}) outside {sub.email}'s window from {start}"
            assert a.id not in history.sent_article_ids, f"{a.id} sent to {sub.email} twice"
        assert [a.id for a in selection.articles] == expected(sub, articles, AT, cfg, history)
        assert (selection.at, selection.window_start) == (AT, start)
        # why each was chosen, as the preview shows it, and how many of the reader's topics it matched
        for choice in selection.choices:
            if sub.has_preferences:
                terms = [t for t in choice.article.tags if t.casefold() in sub.tag_keys]
                terms += [c for c in choice.article.categories if c.casefold() in sub.category_keys]
                assert (choice.reason, choice.score) == ("matched: " + ", ".join(terms), len(terms))
            else:
                assert choice.reason == "newest (no preferences)"
        assert selection.gets_email == bool(selection.articles) and (selection.skipped is None) == bool(
            selection.articles
        )
        # the memoised selector (what a send uses) gives each subscriber the same
        assert selector(sub, history) == selection


def test_a_subscriber_without_history_never_gets_what_the_pool_reached_back_for() -> None:
    cfg = SelectionConfig(window_days=7, catch_up_days=28)
    half_day_out = article("half-day-out", date=AT - timedelta(days=7, hours=12))
    edge = article("edge", date=AT - timedelta(days=7))
    pool = candidate_pool([half_day_out, edge], AT, cfg, earliest=AT - timedelta(days=14))
    assert [a.id for a in pool] == ["edge", "half-day-out"]  # reached back for someone else
    assert [a.id for a in select(subscriber(), pool, AT, cfg).articles] == ["edge"]
    missed = History(last_delivery=AT - timedelta(days=14))
    assert [a.id for a in select(subscriber(), pool, AT, cfg, missed).articles] == ["edge", "half-day-out"]
