"""`[selection] rank = "engagement"`: stated topics weighed by recent clicks.

Properties over random pools, preferences and click histories (hypothesis), then the whole loop
for real: an outbox send with first-party click tracking, clicks through `digest serve`'s /r/, and
the next edition's preview explaining its order ("matched: AI (stated, clicked 3x)").
"""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import timedelta
from pathlib import Path

import pytest
from engagement_support import newsletter, public_client, send_edition
from factories import AT, article, subscriber
from hypothesis import given, settings
from hypothesis import strategies as st
from public_support import SECRET, Signer, token_id
from send_support import AT_DT

from digest.config import SelectionConfig, load_config
from digest.ranking import Clicked, topic_weights
from digest.selection import History, candidate_pool, select
from digest.tokens import make_link_token, make_token
from digest.web.live import PreviewState
from digest.web.preview import get_page

TAGS = ["ai", "AI", "Robotics", "climate", "space", "python", "Gossip"]
CATEGORIES = ["Science", "Business"]

articles_st = st.lists(
    st.builds(
        lambda i, hours, tags, cats, draft: article(
            f"a{i}", date=AT - timedelta(hours=hours), tags=tuple(tags), categories=tuple(cats), draft=draft
        ),
        st.integers(0, 10_000),
        st.integers(-72, 24 * 40),  # some in the future, some older than any window
        st.lists(st.sampled_from(TAGS), max_size=3),
        st.lists(st.sampled_from(CATEGORIES), max_size=1),
        st.booleans(),
    ),
    max_size=25,
    unique_by=lambda a: a.id,
)
clicks_st = st.lists(
    st.builds(
        lambda age, terms: Clicked(age, tuple(terms)),
        st.integers(0, 12),
        st.lists(st.sampled_from([*TAGS, *CATEGORIES]), min_size=1, max_size=3),
    ),
    max_size=12,
)
settings_st = st.builds(
    lambda w, mx, n, decay, excluded: SelectionConfig(
        window_days=w,
        max_articles=mx,
        min_articles=1,
        rank="engagement",
        engagement_editions=n,
        engagement_decay=decay,
        exclude_tags=excluded,
    ),
    st.integers(1, 14),
    st.integers(1, 10),
    st.integers(1, 8),
    st.floats(0.05, 1.0),
    st.lists(st.sampled_from(["Gossip", "space"]), max_size=1),
)


@settings(max_examples=300, deadline=None)
@given(
    articles_st,
    st.lists(st.sampled_from(TAGS), max_size=3),
    st.lists(st.sampled_from(CATEGORIES), max_size=1),
    clicks_st,
    settings_st,
    st.integers(0, 2**32),
)
def test_engagement_ranking_properties(articles, tags, categories, clicks, cfg, seed):
    sub = subscriber(tags=tuple(tags), categories=tuple(categories))
    sent_before = frozenset(a.id for a in articles[::4])
    history = History(sent_article_ids=sent_before, clicks=tuple(clicks))
    pool = candidate_pool(articles, AT, cfg)
    selection = select(sub, pool, AT, cfg, history)
    plain = select(sub, pool, AT, dataclasses.replace(cfg, rank="match"), History(sent_article_ids=sent_before))
    eligible = {a.id for a in plain.articles} if len(plain.choices) < cfg.max_articles else None
    excluded = {t.casefold() for t in cfg.exclude_tags}
    for a in selection.articles:
        # never outside the window, never sent before, never a draft
        assert AT - timedelta(days=cfg.window_days) <= a.date <= AT and a.id not in sent_before and not a.draft
        # never an opted-out topic: excluded tags, and (with stated topics) anything not stated,
        # however often it was clicked
        assert not (a.tag_keys & excluded)
        if sub.has_preferences:
            assert (a.tag_keys & sub.tag_keys) or (a.category_keys & sub.category_keys)
        if eligible is not None:
            assert a.id in eligible  # the same articles are allowed as without engagement
    # deterministic for a given history, in whatever order the clicks come
    shuffled = list(clicks)
    random.Random(seed).shuffle(shuffled)
    again = select(sub, pool, AT, cfg, dataclasses.replace(history, clicks=tuple(shuffled)))
    assert [(c.article.id, c.reason) for c in again.choices] == [(c.article.id, c.reason) for c in selection.choices]
    # clicks older than the last `engagement_editions` editions change nothing
    recent = tuple(c for c in clicks if c.age < cfg.engagement_editions)
    only_recent = select(sub, pool, AT, cfg, dataclasses.replace(history, clicks=recent))
    assert [c.article.id for c in only_recent.choices] == [c.article.id for c in selection.choices]
    # with no clicks at all, the order is the plain match order
    if not recent:
        assert [c.article.id for c in selection.choices] == [c.article.id for c in plain.choices]


def test_weights_decay_per_edition_and_count_each_topic_once_per_article():
    clicks = [Clicked(0, ("AI", "ai", "Robotics")), Clicked(1, ("AI",)), Clicked(2, ("AI",)), Clicked(3, ("AI",))]
    weights = topic_weights(clicks, decay=0.5, editions=3)
    assert weights["ai"].value == 1 + 0.5 + 0.25 and weights["ai"].clicks == 3  # age 3 is outside
    assert weights["robotics"].value == 1 and set(weights) == {"ai", "robotics"}


def test_clicked_topics_lead_among_stated_ones_and_reasons_say_why():
    cfg = SelectionConfig(rank="engagement", engagement_decay=0.5)
    newest, older, oldest = (
        article(n, date=AT - timedelta(hours=h), tags=t)
        for n, h, t in (
            ("climate", 1, ("Climate",)),
            ("robots", 2, ("Robotics", "AI")),
            ("gossip", 3, ("Gossip", "AI")),
        )
    )
    sub = subscriber(tags=("ai", "climate", "robotics"))
    clicks = (Clicked(0, ("AI", "Robotics")), Clicked(0, ("AI",)), Clicked(1, ("AI", "Gossip")))
    selection = select(sub, (newest, older, oldest), AT, cfg, History(clicks=clicks))
    assert [c.article.id for c in selection.choices] == ["robots", "gossip", "climate"]
    assert selection.choices[0].reason == "matched: Robotics (stated, clicked 1x), AI (stated, clicked 3x)"
    assert selection.choices[2].reason == "matched: Climate (stated)"
    # Gossip was clicked but never stated: it adds nothing to the gossip article's score
    assert selection.choices[1].reason == "matched: AI (stated, clicked 3x)"
    # without stated topics, clicked topics lead and the rest follow newest first
    anyone = select(subscriber(), (newest, older, oldest), AT, cfg, History(clicks=clicks))
    # robots: Robotics 1 + AI (1 + 1 + 0.5) = 3.5; gossip: Gossip 0.5 + AI 2.5 = 3; climate: 0
    assert [c.article.id for c in anyone.choices] == ["robots", "gossip", "climate"]
    assert anyone.choices[1].reason == "clicked: Gossip (1x), AI (3x)"
    assert anyone.choices[2].reason == "newest (no preferences)"


def test_clicks_through_serve_reorder_the_next_edition_and_the_preview_explains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = newsletter(tmp_path, monkeypatch, extra="\n[tracking]\nclicks = true\n")
    send_edition(config)  # 2026-W49, recorded with its articles
    client = public_client(config, Signer(), 1_790_000_000)
    reader = make_token(token_id(config, "chloe.dubois@example.net"), SECRET.encode(), "click")
    for clicked in ("2026/11/robot-dogs-learn-stairs", "ai/small-models-on-phones", "ai/datacentre-energy-deal"):
        link = make_link_token("2026-W49", clicked, SECRET.encode())
        assert client.get(f"/r/{link}?u={reader}").status_code == 302
    # next week: three new stories, the climate one newest
    folder = config.content.path / "2026" / "12"
    folder.mkdir(parents=True, exist_ok=True)
    for slug, hour, tag in (("ai-weekly", 9, "AI"), ("robot-arms", 10, "Robotics"), ("glaciers", 11, "Climate")):
        (folder / f"{slug}.md").write_text(
            f"---\ntitle: {slug}\ndate: 2026-12-03T{hour:02d}:00:00Z\nslug: {slug}\ntags: [{tag}]\n---\nText.\n",
            encoding="utf-8",
        )
    toml = config.source.read_text(encoding="utf-8").replace("[selection]\n", '[selection]\nrank = "engagement"\n', 1)
    config.source.write_text(toml, encoding="utf-8")
    assert load_config(config.source).selection.rank == "engagement"
    at = (AT_DT + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    status, body = get_page(PreviewState(config.source, at), "/subscribers/chloe.dubois@example.net")
    page = body.decode("utf-8")
    assert status == 200
    # the content spells the tag "Ai" (one spelling per tag: the most frequent)
    assert "matched: Ai (stated, clicked 3x)" in page, re.findall(r"(?:matched|newest|clicked)[^<]*", page)
    assert page.index(">ai-weekly<") < page.index(">robot-arms<") < page.index(">glaciers<")
    assert "matched: Climate (stated, clicked 1x)" in page  # the datacentre piece is tagged Climate too
