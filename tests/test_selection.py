"""Choosing articles: properties over random pools, and the ordering rule."""

from __future__ import annotations

from datetime import timedelta

from factories import AT, article, subscriber
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.config import SelectionConfig
from digest.selection import History, candidate_pool, select

TAGS = ["ai", "AI", "Robotics", "climate", "space", "python"]

articles_st = st.lists(
    st.builds(
        lambda i, hours, tags, cats, draft: article(
            f"a{i}", date=AT - timedelta(hours=hours), tags=tuple(tags), categories=tuple(cats), draft=draft
        ),
        st.integers(0, 10_000),
        st.integers(-72, 24 * 40),  # some in the future, some older than the window
        st.lists(st.sampled_from(TAGS), max_size=3),
        st.lists(st.sampled_from(["Science", "Business"]), max_size=1),
        st.booleans(),
    ),
    max_size=25,
    unique_by=lambda a: a.id,
)
prefs_st = st.lists(st.sampled_from(TAGS), max_size=3)
settings_st = st.builds(
    lambda w, mx, mn: SelectionConfig(window_days=w, max_articles=mx, min_articles=min(mn, mx)),
    st.integers(1, 14),
    st.integers(1, 10),
    st.integers(0, 3),
)


@settings(max_examples=300, deadline=None)
@given(articles_st, prefs_st, st.lists(st.sampled_from(["Science", "Business"]), max_size=1), settings_st)
def test_selection_properties(articles, tags, categories, cfg):
    sub = subscriber(tags=tuple(tags), categories=tuple(categories))
    selection = select(sub, candidate_pool(articles, AT, cfg), AT, cfg)
    chosen = selection.articles
    assert len(chosen) <= cfg.max_articles
    for a in chosen:
        assert AT - timedelta(days=cfg.window_days) <= a.date <= AT, "outside the window"
        assert not a.draft
        if sub.has_preferences:
            assert (a.tag_keys & sub.tag_keys) or (a.category_keys & sub.category_keys), "non-matching article"
    if selection.gets_email:
        assert len(chosen) >= max(cfg.min_articles, 1)
    else:
        assert selection.skipped
    # ranked by match count, then newest first
    keys = [(-c.score, -c.article.date.timestamp()) for c in selection.choices]
    assert keys == sorted(keys)


def test_ranking_by_matches_then_newest_with_reasons():
    cfg = SelectionConfig()
    old_two = article("old-two", date=AT - timedelta(days=3), tags=("AI", "Robotics"))
    new_one = article("new-one", date=AT - timedelta(hours=1), tags=("Ai",))
    mid_one = article("mid-one", date=AT - timedelta(days=1), tags=("climate",))
    other = article("other", date=AT - timedelta(hours=2), tags=("space",))
    sub = subscriber(tags=("ai", "robotics", "climate"))
    selection = select(sub, candidate_pool([old_two, new_one, mid_one, other], AT, cfg), AT, cfg)
    assert [a.id for a in selection.articles] == ["old-two", "new-one", "mid-one"]
    assert selection.choices[0].reason == "matched: AI, Robotics"


def test_no_preferences_gets_the_newest_and_max_articles():
    cfg = SelectionConfig(max_articles=2)
    pool = [article(f"a{i}", date=AT - timedelta(hours=i)) for i in range(5)]
    selection = select(subscriber(), candidate_pool(pool, AT, cfg), AT, cfg)
    assert [a.id for a in selection.articles] == ["a0", "a1"]


def test_exclude_tags_drafts_and_future():
    cfg = SelectionConfig(exclude_tags=["Sponsored"])
    pool = candidate_pool(
        [
            article("ad", tags=("sponsored",)),
            article("draft", draft=True),
            article("future", date=AT + timedelta(minutes=1)),
            article("ok", date=AT - timedelta(days=1)),
        ],
        AT,
        cfg,
    )
    assert [a.id for a in pool] == ["ok"]


def test_too_few_articles_means_no_email_with_a_reason():
    cfg = SelectionConfig(min_articles=3)
    selection = select(subscriber(), candidate_pool([article("x")], AT, cfg), AT, cfg)
    assert not selection.gets_email and "fewer than min_articles=3" in selection.skipped


def test_inactive_subscriber_gets_nothing():
    selection = select(subscriber(status="bounced"), [article("x")], AT, SelectionConfig())
    assert selection.skipped == "status is bounced"


def test_history_narrows_window_and_never_resends():
    cfg = SelectionConfig(window_days=7)
    a_old = article("old", date=AT - timedelta(days=5))
    a_sent = article("sent", date=AT - timedelta(hours=5))
    a_new = article("new", date=AT - timedelta(hours=2))
    pool = candidate_pool([a_old, a_sent, a_new], AT, cfg)
    history = History(last_delivery=AT - timedelta(days=4), sent_article_ids=frozenset({"sent"}))
    assert [a.id for a in select(subscriber(), pool, AT, cfg, history).articles] == ["new"]


def test_missed_edition_catches_up_to_last_delivery():
    cfg = SelectionConfig(window_days=7, catch_up_days=28)
    ten_days = article("ten-days", date=AT - timedelta(days=10))
    history = History(last_delivery=AT - timedelta(days=14))
    # the pool reaches back to the oldest last delivery the ledger knows
    assert candidate_pool([ten_days], AT, cfg) == ()
    pool = candidate_pool([ten_days], AT, cfg, earliest=history.last_delivery)
    assert not select(subscriber(), pool, AT, cfg).gets_email  # a new subscriber: last 7 days only
    assert select(subscriber(), pool, AT, cfg, history).articles == (ten_days,)
    # never further back than catch_up_days
    far = candidate_pool([article("old", date=AT - timedelta(days=40))], AT, cfg, earliest=AT - timedelta(days=60))
    assert far == ()


def test_selector_memo_gives_each_subscriber_what_select_gives():
    from digest.selection import Selector

    cfg = SelectionConfig(max_articles=3)
    pool = candidate_pool(
        [article(f"a{i}", date=AT - timedelta(hours=i), tags=(TAGS[i % len(TAGS)],)) for i in range(12)], AT, cfg
    )
    selector = Selector(pool, AT, cfg)
    subs = [
        subscriber("a@example.com", tags=("ai",)),
        subscriber("b@example.com", tags=("AI",)),  # same key, other subscriber
        subscriber("c@example.com", tags=("space",)),
        subscriber("d@example.com", status="bounced", tags=("ai",)),
        subscriber("e@example.com"),
    ]
    histories = [History(), History(), History(), History(), History(sent_article_ids=frozenset({"a0"}))]
    for sub, history in zip(subs, histories, strict=True):
        memoised = selector(sub, history)
        assert memoised == select(sub, pool, AT, cfg, history)
        assert memoised.subscriber is sub


def test_an_empty_digest_says_when_the_articles_were_already_sent():
    """E.g. after an ambiguous send: its articles count as sent, the window has not moved."""
    cfg = SelectionConfig()
    a = article("a", date=AT - timedelta(days=1), tags=("ai",))
    history = History(sent_article_ids=frozenset({"a"}))
    pool = candidate_pool([a], AT, cfg)
    assert select(subscriber(), pool, AT, cfg, history).skipped == (
        "no new articles: those in the window went out (or may have) in an earlier digest"
    )
    assert select(subscriber(tags=("ai",)), pool, AT, cfg, history).skipped.startswith("no new matching articles")
    assert select(subscriber(tags=("space",)), pool, AT, cfg, history).skipped == "no matching articles in the window"


def _chosen(sub, *articles):
    from digest.models import Choice, Selection

    return Selection(sub, tuple(Choice(a, "x") for a in articles), AT, AT)


def test_topic_groups_follow_the_subscribers_topics_and_keep_the_ranking():
    from digest.selection import topic_groups

    a1 = article("a1", tags=("Robotics", "Ai"))
    a2 = article("a2", tags=("Climate",))
    a3 = article("a3", tags=("Ai",))
    a4 = article("a4", categories=("Health",))
    sub = subscriber(tags=("ai", "climate", "robotics"), categories=("health",))
    groups = topic_groups(_chosen(sub, a1, a2, a3, a4))
    # a1 goes under the first of the reader's topics it carries (ai, not robotics), in its spelling;
    # groups in the order of their best story, ranking kept inside: a3 moves up next to a1
    assert [(label, [a.id for a in arts]) for label, arts in groups] == [
        ("Ai", ["a1", "a3"]),
        ("Climate", ["a2"]),
        ("Health", ["a4"]),
    ]
    # one topic only, or no preferences: one unlabelled group, order untouched
    assert topic_groups(_chosen(sub, a1, a3)) == (("", (a1, a3)),)
    assert topic_groups(_chosen(subscriber(), a1, a2)) == (("", (a1, a2)),)


def test_one_group_per_topic_whatever_each_article_spells_it():
    """Authors spell a tag differently ("AI", "ai"): the reader still gets one group for the topic,
    headed by the best-ranked story's spelling."""
    from digest.selection import topic_groups

    a1 = article("a1", tags=("AI",))
    a2 = article("a2", categories=("Health",))
    a3 = article("a3", tags=("ai",))
    groups = topic_groups(_chosen(subscriber(tags=("Ai",), categories=("health",)), a1, a2, a3))
    assert [(label, [a.id for a in arts]) for label, arts in groups] == [("AI", ["a1", "a3"]), ("Health", ["a2"])]
