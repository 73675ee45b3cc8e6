"""Compile once, assemble per subscriber: byte-identical to compiling each email whole.

The property the fast path rests on (issue 8): for random selections, orders and subscriber
fields, the assembled HTML, text, subject and preheader equal a full per-subscriber compile with
real jinja2, mjml-python and premailer.
"""

from __future__ import annotations

import shutil
from urllib.parse import quote

import pytest
from conftest import ROOT, SAMPLE_AT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import load_config
from digest.models import Choice, Selection, Subscriber
from digest.pipeline import open_run

TRICKY = ["Sam", "O'Brien", "Chloé", "李雷", "<b>x</b>", "A & B", 'Say "hi"', "", "  ", "Ωmega 🚀", "x]]>y", "&amp;"]


LOGO = 'logo_url = "https://circuit.example.com/images/logo.png"\n'


#: Edition-level and per-recipient links of issue 18: "View in browser" in the frame, and article
#: links through first-party click tracking (a per-recipient token inside every article block).
ENGAGEMENT = (
    '\n[sending]\nunsubscribe_url = "https://news.example.com/unsubscribe"\n'
    '[tracking]\nclicks = true\n[archive]\nbase_url = "https://news.example.com/archive/"\n'
)


@pytest.fixture(scope="module", params=["sample", "grouped-by-tag-no-logo", "clicks-and-web-version"])
def run(request, tmp_path_factory):
    """The sample as shipped, with `group_by = "tag"` and no logo (the default config's masthead),
    and with click tracking and a web archive link."""
    dest = tmp_path_factory.mktemp("sample")
    for name in ("content", "templates", "subscribers"):
        shutil.copytree(ROOT / name, dest / name)
    config_text = (ROOT / "digest.toml").read_text(encoding="utf-8")
    if request.param == "clicks-and-web-version":
        config_text += ENGAGEMENT
    elif request.param != "sample":
        assert LOGO in config_text
        config_text = config_text.replace(LOGO, "") + '\n[templates]\ngroup_by = "tag"\ncontents_min_articles = 3\n'
    (dest / "digest.toml").write_text(config_text, encoding="utf-8")
    # a long pool: the sample's week plus older articles
    config = load_config(dest / "digest.toml")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DIGEST_SECRET", "fast-path-secret-0123456789")  # signs the links
        run = open_run(config, SAMPLE_AT, earliest=SAMPLE_AT.replace(month=10))
        assert len(run.pool) > 15 and run.prepared.exact
        yield run


names = st.one_of(st.sampled_from(TRICKY), st.text(max_size=20))
# the sample's tags and categories in any case, so grouped layouts vary with the preferences
topics = st.sampled_from(["ai", "AI", "climate", "Hardware", "python", "Security", "space", "Startups", "Health"])
subscribers_st = st.builds(
    lambda email, name, tags, categories, company: Subscriber(
        email=email, name=name, tags=tags, categories=categories, attributes={"company": company}
    ),
    st.sampled_from(["a@example.com", "o'brien+x@example.org", "Li.Lei@Example.com"]),
    names,
    st.lists(st.one_of(topics, names), max_size=4).map(tuple),
    st.lists(topics, max_size=2).map(tuple),
    names,
)
# URLs land in href attributes; ours are built from URL-safe tokens
tokens_st = st.text(max_size=30).map(lambda t: "https://u.example.com/unsubscribe?token=" + quote(t, safe=""))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), sub=subscribers_st, unsubscribe_url=tokens_st)
def test_assembled_email_is_byte_identical_to_direct_compile(run, data, sub, unsubscribe_url):
    chosen = data.draw(st.lists(st.sampled_from(run.pool), min_size=1, max_size=10, unique_by=lambda a: a.id))
    selection = Selection(sub, tuple(Choice(a, "random") for a in chosen), SAMPLE_AT, SAMPLE_AT)
    values = run.values(sub) | {"unsubscribe_url": unsubscribe_url}
    fast = run.prepared.email(selection, values)
    direct = run.composer.compose_direct(selection, run.edition, values)
    assert fast.html == direct.html
    assert fast.text == direct.text
    assert fast.subject == direct.subject
    assert fast.preheader == direct.preheader


def test_property_covers_numbers_contents_and_groups(run):
    """Positions, the contents list and (grouped) the topic headings all vary with the selection."""
    sub = Subscriber(email="a@example.com", name="Zed", tags=("security", "ai"), categories=("Health",))
    chosen = [a for a in run.pool if a.tag_keys & {"security", "ai"} or a.category_keys & {"health"}][:6]
    selection = Selection(sub, tuple(Choice(a, "x") for a in chosen), SAMPLE_AT, SAMPLE_AT)
    html = run.prepared.email(selection, run.values(sub)).html
    assert "In this issue" in html and html.count("<li ") == 6
    layout = run.composer.layout(selection)
    if run.config.templates.group_by:
        assert len(layout.groups) >= 2 and all(f">{label}</h2>" in html for label, _ in layout.groups)
    assert [a.id for a in layout.articles] != [a.id for a in chosen] or not run.config.templates.group_by
    one = Selection(sub, (Choice(chosen[0], "x"),), SAMPLE_AT, SAMPLE_AT)
    assert "In this issue" not in run.prepared.email(one, run.values(sub)).html


def test_property_covers_every_recipient_field_in_the_template(run):
    """The property is only as strong as the fields the template prints: make sure they vary."""
    sub = Subscriber(email="a@example.com", name="Zed <Q>", tags=("T&U",), attributes={"company": "Co"})
    selection = Selection(sub, (Choice(run.pool[0], "x"),), SAMPLE_AT, SAMPLE_AT)
    html = run.prepared.email(selection, run.values(sub)).html
    assert "Hi Zed," in html and "T&amp;U" in html and "a@example.com" in html
    if run.config.tracking.clicks:
        # the click token is a per-recipient field inside the article block, the web link edition-level
        values = run.values(sub)
        assert values["click_token"] and f"?u={values['click_token']}" in html
        assert 'href="https://news.example.com/archive/2026-W49/"' in html and "View in browser" in html
