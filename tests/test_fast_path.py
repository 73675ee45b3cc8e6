"""Compile once, assemble per subscriber: byte-identical to compiling each email whole.

The property the fast path rests on (issue 8): for random selections, orders and subscriber
fields, the assembled HTML, text, subject and preheader equal a full per-subscriber compile with
real jinja2, mjml-python and premailer.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import timedelta
from urllib.parse import quote

import pytest
from conftest import ROOT, SAMPLE_AT, make_config
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from digest.assembly import PreparedEdition
from digest.config import load_config
from digest.models import Article, Choice, Selection, Subscriber
from digest.personalize import recipient_values
from digest.pipeline import open_run
from digest.schedule import edition_for
from digest.segments import Overrides

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
        assert len(run.pool) > 15 and run.prepared.fast
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


# ---------------------------------------------------------------- random configs and templates

#: Parts an article block may hold, some only for some articles: articles then bring different
#: component CSS into the <head>, which is what makes head variants necessary.
BLOCK_PARTS = {
    "cover": '{%- if item.cover_url %}<mj-image src="{{ item.cover_url }}" alt="{{ item.cover_alt }}" '
    'href="{{ item.link }}" width="552px" />{%- endif %}',
    "title": '<mj-text css-class="headline"><a href="{{ item.link }}">{{ item.title }}</a></mj-text>',
    "number": "<mj-text>{{ item.number }}. {{ item.date_label }}</mj-text>",
    "excerpt": "<mj-text>{{ item.excerpt }}</mj-text>",
    "button": '<mj-button href="{{ item.link }}">Read more</mj-button>',
    "divider": '<mj-divider border-color="#e6e7ea" />',
    "spacer": '<mj-spacer height="8px" />',
    "table": "<mj-table><tr><td>{{ item.author }}</td><td>{{ item.date_label }}</td></tr></mj-table>",
    "tags": '{%- if item.tags %}<mj-text css-class="tags">{{ item.tags | join(" · ") }}</mj-text>{%- endif %}',
    "social_if_ai": '{%- if "ai" in item.tags | map("lower") %}<mj-social><mj-social-element name="x" '
    'href="{{ item.link }}">Share</mj-social-element></mj-social>{%- endif %}',
    "accordion_if_author": "{%- if item.author %}<mj-accordion><mj-accordion-element><mj-accordion-title>By"
    "</mj-accordion-title><mj-accordion-text>{{ item.author }}</mj-accordion-text></mj-accordion-element>"
    "</mj-accordion>{%- endif %}",
}
#: How the parts sit in a section: one column, or two whose widths differ per article.
LAYOUTS = {
    "column": "<mj-section><mj-column>{parts}</mj-column></mj-section>",
    "split": '<mj-section><mj-column width="{{{{ "33%" if item.cover_url else "50%" }}}}">{first}</mj-column>'
    "<mj-column>{rest}</mj-column></mj-section>",
    "wrapper": '<mj-wrapper border="1px solid #ddd"><mj-section><mj-column>{parts}</mj-column></mj-section></mj-wrapper>',
}
FRAME_PARTS = {
    "logo": '{%- if newsletter.logo_url %}<mj-image src="{{ newsletter.logo_url }}" alt="{{ newsletter.logo_alt }}" '
    'width="200px" />{%- endif %}',
    "navbar": '<mj-navbar><mj-navbar-link href="{{ newsletter.site_url }}">Home</mj-navbar-link></mj-navbar>',
    "intro": "{%- if newsletter.intro %}<mj-text>{{ newsletter.intro }}</mj-text>{%- endif %}",
    "greeting": "<mj-text>Hi {{ recipient.first_name }},</mj-text>",
    "web": '{%- if web_url %}<mj-text><a href="{{ web_url }}">View in browser</a></mj-text>{%- endif %}',
}


CONTENTS = {
    "list": "<mj-section><mj-column><mj-text><ol>{%- for item in articles %}{{ contents_item }}"
    "<li>{{ item.number }}. {{ item.title }}</li>{% endfor %}{{ contents_end }}</ol></mj-text></mj-column></mj-section>",
    "divided": "<mj-section><mj-column><mj-divider /><mj-text>In this issue<ul>{%- for item in articles %}"
    "{{ contents_item }}<li>{{ item.title }}</li>{% endfor %}{{ contents_end }}</ul></mj-text></mj-column></mj-section>",
}
GROUPS = {
    "text": "<mj-section><mj-column><mj-text><h2>{{ group.label }}</h2></mj-text></mj-column></mj-section>",
    "button_for_ai": '<mj-section><mj-column>{%- if group.label | lower == "ai" %}<mj-button href="https://x.example">'
    "AI</mj-button>{%- endif %}<mj-text><h2>{{ group.label }}</h2></mj-text></mj-column></mj-section>",
}


def mjml_template(frame_parts: list[str], layout: str, parts: list[str], style: bool, contents: str, group: str) -> str:
    block = LAYOUTS[layout].format(
        parts="".join(BLOCK_PARTS[p] for p in parts),
        first="".join(BLOCK_PARTS[p] for p in parts[:1]) or "<mj-text>.</mj-text>",
        rest="".join(BLOCK_PARTS[p] for p in parts[1:]) or "<mj-text>.</mj-text>",
    )
    head = "<mj-title>{{ newsletter.name }}</mj-title><mj-preview>{{ preheader }}</mj-preview>"
    if style:
        head += (
            '<mj-attributes><mj-all font-family="Arial" /></mj-attributes><mj-style>a { color: #1f4fd1; }</mj-style>'
        )
    return (
        f"<mjml><mj-head>{head}</mj-head><mj-body>"
        f"<mj-section><mj-column>{''.join(FRAME_PARTS[p] for p in frame_parts)}</mj-column></mj-section>"
        "{%- if contents %}{{ contents_start }}" + CONTENTS[contents] + "{%- endif %}"
        "{%- for group in groups %}{%- if group.label %}{{ group_start }}" + GROUPS[group] + "{%- endif %}"
        "{%- for item in group.articles %}{{ article_start }}" + block + "{%- endfor %}{%- endfor %}{{ articles_end }}"
        '<mj-section><mj-column><mj-text><a href="{{ recipient.unsubscribe_url }}">Unsubscribe</a> '
        "{{ recipient.email }}</mj-text></mj-column></mj-section></mj-body></mjml>"
    )


TAGS = ["AI", "ai", "Space", "Climate", "Security"]
article_st = st.builds(
    lambda i, title, cover, author, tags, hours: Article(
        id=f"post-{i}",
        path=ROOT / "content" / f"post-{i}.md",
        title=title,
        date=SAMPLE_AT - timedelta(hours=hours),
        url=f"https://blog.example.com/post-{i}?ref=feed&x=1",
        author=author,
        tags=tuple(dict.fromkeys(tags)),
        cover_url=f"https://img.example.com/{i}.png?w=600&h=300" if cover else "",
        cover_alt=title,
        summary=f"{title}: the short version & more.",
    ),
    st.integers(0, 10**6),
    st.sampled_from([*TRICKY[:8], "A plain title", "Ωmega 🚀 launch"]).map(lambda t: t.strip() or "Untitled"),
    st.booleans(),
    st.sampled_from(["", "Ada", "O'Brien & co"]),
    st.lists(st.sampled_from(TAGS), max_size=3),
    st.integers(1, 150),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    data=st.data(),
    logo=st.booleans(),
    intro=st.booleans(),
    utm=st.booleans(),
    engagement=st.booleans(),
    frame_parts=st.lists(st.sampled_from(sorted(FRAME_PARTS)), unique=True),
    layout=st.sampled_from(sorted(LAYOUTS)),
    parts=st.lists(st.sampled_from(sorted(BLOCK_PARTS)), min_size=1, max_size=6, unique=True),
    style=st.booleans(),
    subject_override=st.sampled_from([None, "{{ articles[0].title }} (+{{ articles | length - 1 }})"]),
    contents=st.sampled_from(sorted(CONTENTS)),
    contents_min=st.sampled_from([0, 2, 4]),
    group=st.sampled_from(sorted(GROUPS)),
    group_by=st.sampled_from(["", "tag"]),
    pool=st.lists(article_st, min_size=1, max_size=7, unique_by=lambda a: a.id),
    sub=subscribers_st,
)
def test_any_config_and_template_assembles_byte_identical_to_a_whole_compile(
    tmp_path_factory,
    data,
    logo,
    intro,
    utm,
    engagement,
    frame_parts,
    layout,
    parts,
    style,
    subject_override,
    contents,
    contents_min,
    group,
    group_by,
    pool,
    sub,
):
    """Logo on or off, covers on some articles or none, a segment's own template and subject, any
    mix of MJML components (some only in some articles, columns whose width varies per article), a
    contents list or not, grouped by topic or not, first-party click links (a per-recipient token in
    every article block) and a "View in browser" link or not: every assembled digest equals its
    whole compile, whatever the head variants turn out to be."""
    folder = tmp_path_factory.mktemp("templates")
    shutil.copytree(ROOT / "templates", folder, dirs_exist_ok=True)
    template = mjml_template(frame_parts, layout, parts, style, contents, group)
    (folder / "segment.mjml.j2").write_text(template, encoding="utf-8")
    newsletter = {"name": "Random Weekly", "intro": "This week & more." if intro else ""}
    if logo:
        newsletter["logo_url"] = "https://img.example.com/logo.png"
    templates = {"path": str(folder), "group_by": group_by, "contents_min_articles": contents_min}
    sections: dict[str, dict] = {}
    if engagement:
        sections = {
            "sending": {"unsubscribe_url": "https://news.example.com/unsubscribe"},
            "archive": {"base_url": "https://news.example.com/archive/"},
        }
    config = make_config(tmp_path_factory.mktemp("site"), newsletter=newsletter, templates=templates, **sections)
    config = replace(config, tracking=replace(config.tracking, utm=utm, clicks=engagement))
    composer = Overrides(subject=subject_override, template="segment.mjml.j2").composer(config)
    edition = edition_for(SAMPLE_AT, config.tz)
    pool = sorted(pool, key=lambda a: (-a.date.timestamp(), a.id))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DIGEST_SECRET", "fast-path-secret-0123456789")  # signs the click links
        prepared = PreparedEdition.compile(composer, pool, edition)
        assert prepared.fast, prepared.fast_path_off
        for _ in range(3):
            chosen = data.draw(
                st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique_by=lambda a: a.id)
            )
            selection = Selection(sub, tuple(Choice(a, "random") for a in chosen), SAMPLE_AT, SAMPLE_AT)
            values = recipient_values(
                sub,
                default_name="there",
                unsubscribe_url="https://u.example.com/u?token=t%22x",
                click_token="v2.reader-token" if engagement else "",
            )
            fast = prepared.email(selection, values)
            direct = composer.compose_direct(selection, edition, values)
            assert (fast.html, fast.text, fast.subject, fast.preheader) == (
                direct.html,
                direct.text,
                direct.subject,
                direct.preheader,
            )
            if engagement and {"title", "button"} & set(parts):
                assert "?u=v2.reader-token" in fast.html  # tracked links, the reader's token filled in
            if engagement and "web" in frame_parts:
                assert 'href="https://news.example.com/archive/2026-W49/"' in fast.html
    # ...assembled, not compiled whole: no variant fell back after comparing with a whole compile
    assert prepared.fast, prepared.fast_path_off
    event(f"head variants: {prepared.head_variants}")
