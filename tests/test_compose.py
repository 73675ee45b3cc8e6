"""Composition with real jinja2, mjml-python and premailer."""

from __future__ import annotations

import os
import re
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_AT, make_config, write_article

from digest.cli import main
from digest.compose import NUMBER_TOKEN, add_utm
from digest.config import load_config
from digest.errors import TemplateError
from digest.pipeline import open_run

GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("DIGEST_REGEN_GOLDEN") == "1"


@pytest.fixture
def run(sample_config):
    return open_run(sample_config, SAMPLE_AT)


def selection_for(run, email):
    return run.select(next(s for s in run.subscribers.subscribers if s.email == email))


def test_golden_render(run):
    """One sample digest, compared on disk. Refresh: DIGEST_REGEN_GOLDEN=1 pytest tests/test_compose.py"""
    email = run.email(selection_for(run, "grace@example.org"))
    for name, actual in (
        ("grace.html", email.html),
        ("grace.txt", email.text),
        ("grace.subject", email.subject + "\n"),
    ):
        path = GOLDEN / name
        if REGEN:
            path.write_text(actual, encoding="utf-8")
        assert actual == path.read_text(encoding="utf-8"), f"{name} differs from the golden copy"


def test_email_parts(run):
    email = run.email(selection_for(run, "chloe.dubois@example.net"))
    html, text = email.html, email.text
    assert "Hi Chloé," in html and "Hi Chloé," in text
    assert 'name="color-scheme"' in html
    assert "The Weekly Circuit, 12 Example Street" in html and "12 Example Street" in text
    assert "mailto:weekly@circuit.example.com?subject=unsubscribe" in html
    assert email.preheader and email.preheader.split(" · ")[0] in html  # mj-preview
    for article in selection_for(run, "chloe.dubois@example.net").articles:
        assert article.title.replace("&", "&amp;") in html or article.title in text
    # covers carry width and alt
    imgs = re.findall(r"<img [^>]*>", html)
    assert imgs and all('alt="' in i and 'width="' in i for i in imgs)
    # mobile media queries keep !important (premailer strips it by default)
    assert re.search(r"@media[^{]*max-width[^{]*\{[^}]*\{[^}]*!important", html)
    assert "fonts.googleapis" not in html
    # utm parameters on article links
    assert "utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=2026-W49" in html
    assert "utm_campaign=2026-W49" in text


def test_utm_can_be_turned_off(tmp_path, sample):
    text = sample.read_text() + "\n[tracking]\nutm = false\n"
    sample.write_text(text)
    run = open_run(load_config(sample), SAMPLE_AT)
    email = run.email(selection_for(run, "ada@example.com"))
    assert "utm_" not in email.html and "utm_" not in email.text


def test_add_utm_keeps_existing_query():
    url = add_utm("https://x.example/p?src=rss&utm_source=old", {"utm_source": "nl", "utm_medium": "email"})
    assert url == "https://x.example/p?src=rss&utm_source=nl&utm_medium=email"
    assert add_utm("mailto:a@b.c", {"utm_source": "x"}) == "mailto:a@b.c"


HOSTILE_TITLE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
HOSTILE_EXCERPT = "<b>bold</b> <img onerror=alert(2) src=y>"


def test_hostile_article_fields_arrive_as_text(tmp_path):
    write_article(
        tmp_path / "content",
        "evil.md",
        f"---\ntitle: '{HOSTILE_TITLE}'\ndate: 2026-11-29\nexcerpt: '{HOSTILE_EXCERPT}'\n"
        "author: '<i>Mallory</i>'\ntags: ['<svg onload=alert(3)>']\n"
        "coverImage: 'https://img.example.com/x.png\" onerror=\"alert(4)'\n---\nBody\n",
    )
    config = make_config(tmp_path, content={"path": "content"})
    run = open_run(config, SAMPLE_AT)
    email = run.email(run.select(personalize_sub()))
    html = email.html
    assert "<script" not in html and "<svg" not in html and "<i>Mallory" not in html
    tree = lxml.html.fromstring(html)
    assert not tree.xpath("//script | //svg | //b | //i")
    assert not [el for el in tree.iter() if any(k.startswith("on") for k in el.attrib)]
    # the quote in the cover URL stayed inside the src attribute
    (cover,) = [img.get("src") for img in tree.xpath("//img") if "img.example.com" in img.get("src")]
    assert cover.startswith('https://img.example.com/x.png"') and cover.endswith("alert(4)")
    assert '&lt;script&gt;alert("x")&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;' in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    # the plain-text part shows the text as written
    assert HOSTILE_TITLE in email.text


def personalize_sub():
    from digest.models import Subscriber

    return Subscriber(email="o.brien@example.com", name='Chloé "Q" <O\'Brien> & co')


def test_recipient_fields_are_escaped_in_html_and_raw_in_text(sample_config):
    run = open_run(sample_config, SAMPLE_AT)
    sub = personalize_sub()
    email = run.email(run.select(sub))
    assert "Hi Chloé," in email.html  # first_name is the first word
    values = run.values(sub)
    values["first_name"] = '<b>"Q"</b> & co'
    email = run.prepared.email(run.select(sub), values)
    assert 'Hi &lt;b&gt;"Q"&lt;/b&gt; &amp; co,' in email.html
    assert 'Hi <b>"Q"</b> & co,' in email.text


def test_fast_path_is_byte_identical_to_direct_compile(run):
    """The per-article compile-once path equals rendering each subscriber from scratch, down to
    the articles each email is recorded as carrying."""
    assert run.prepared.fast
    for sub in run.subscribers.subscribers:
        selection = run.select(sub)
        if not selection.gets_email:
            continue
        values = run.values(sub)
        fast = run.prepared.email(selection, values)
        direct = run.composer.compose_direct(selection, run.edition, values)
        assert (fast.html, fast.text, fast.subject, fast.preheader) == (
            direct.html,
            direct.text,
            direct.subject,
            direct.preheader,
        ), sub.email
        # the whole email: addresses, headers and the articles the ledger records as sent
        assert fast == direct and direct.article_ids == selection.content_key, sub.email


def test_covers_as_mj_image_give_head_variants_and_stay_on_the_fast_path(sample):
    # A cover as an mj-image brings mj-image's CSS into the head only when a chosen article has a
    # cover (the shipped templates write covers as plain <img>, and have no logo by default): the
    # frame is compiled per head variant, and every digest stays assembled and exact.
    partial = sample.parent / "templates" / "partials" / "article.mjml.j2"
    partial.write_text(
        partial.read_text().replace(
            "<mj-column>",
            '<mj-column>{% if item.cover_url %}<mj-image src="{{ item.cover_url }}" alt="" />{% endif %}',
            1,
        )
    )
    sample.write_text(sample.read_text().replace('logo_url = "https://circuit.example.com/images/logo.png"\n', ""))
    run = open_run(load_config(sample), SAMPLE_AT)
    kinds = set()
    for sub in run.subscribers.subscribers:
        sel = run.select(sub)
        if sel.gets_email:
            kinds.add(tuple(sorted({bool(a.cover_url) for a in sel.articles})))
            values = run.values(sel.subscriber)
            assert run.prepared.email(sel, values).html == run.composer.compose_direct(sel, run.edition, values).html
    assert {(False,), (False, True)} <= kinds  # digests with and without covers
    assert run.prepared.fast and run.prepared.head_variants >= 2


def test_a_frame_depending_on_the_selection_is_compiled_whole_and_reported(sample):
    tpl = sample.parent / "templates" / "digest.mjml.j2"
    tpl.write_text(
        tpl.read_text().replace(
            "<mj-text>Hi {{ recipient.first_name }},</mj-text>",
            "<mj-text>Hi {{ recipient.first_name }}, {{ articles | length }} stories</mj-text>",
        )
    )
    run = open_run(load_config(sample), SAMPLE_AT)
    assert not run.prepared.fast
    assert "frame around the stories depends on which articles are chosen" in run.prepared.fast_path_off[0]
    for address in ("jo.mueller@example.com", "ada@example.com"):
        sel = selection_for(run, address)
        values = run.values(sel.subscriber)
        email = run.prepared.email(sel, values)
        assert email.html == run.composer.compose_direct(sel, run.edition, values).html
        assert f"{len(sel.articles)} stories" in email.html


def test_check_names_a_template_off_the_fast_path_and_says_why(sample):
    tpl = sample.parent / "templates" / "digest.mjml.j2"
    result = CliRunner().invoke(main, ["--config", str(sample), "check", "--at", "2026-11-30T00:00"])
    assert result.exit_code == 0 and "not compiled once" not in result.output, result.output
    tpl.write_text(
        tpl.read_text().replace(
            "{{ edition.label }}</mj-text>", "{{ edition.label }}: {{ articles[0].title }}</mj-text>"
        )
    )
    result = CliRunner().invoke(main, ["--config", str(sample), "check", "--at", "2026-11-30T00:00"])
    assert result.exit_code == 0, result.output
    assert "warning: not compiled once per edition" in result.output
    assert "the frame around the stories depends on which articles are chosen" in result.output
    # and a dry run says so before anything is sent
    result = CliRunner().invoke(main, ["--config", str(sample), "send", "--dry-run", "--at", "2026-11-30T00:00"])
    assert result.exit_code == 0, result.output
    assert "note: " in result.output
    assert "the frame around the stories depends on which articles are chosen" in result.output


def test_a_block_depending_on_its_position_is_compiled_whole_and_reported(sample):
    tpl = sample.parent / "templates" / "digest.mjml.j2"
    divider = "{%- if not loop.last %}<mj-section><mj-column><mj-divider /></mj-column></mj-section>{% endif %}"
    include = '{%- include "partials/article.mjml.j2" %}'
    tpl.write_text(tpl.read_text().replace(include, include + divider))
    run = open_run(load_config(sample), SAMPLE_AT)
    assert "depends on its position or its neighbours" in " ".join(run.prepared.fast_path_off)
    sel = selection_for(run, "ada@example.com")
    values = run.values(sel.subscriber)
    html = run.prepared.email(sel, values).html
    assert html == run.composer.compose_direct(sel, run.edition, values).html
    # a divider between stories, none after the last
    last = html.rindex(sel.articles[-1].title.replace("&", "&amp;"))
    assert "border-top:solid 4px" in html[:last] and "border-top:solid 4px" not in html[last:]


def test_ten_article_digest_stays_under_the_clip_limit(run):
    email = run.email(selection_for(run, "ada@example.com"))
    assert len(email.article_ids) == 10
    assert email.html_bytes < 100_000


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_template_errors_name_file_and_line(sample):
    tpl = sample.parent / "templates" / "digest.mjml.j2"
    tpl.write_text(tpl.read_text().replace("<mj-title>{{ newsletter.name }}", "<mj-title>{{ newsletter.nam }}"))
    line = _line_of(tpl.read_text(), "newsletter.nam }}")
    run = open_run(load_config(sample), SAMPLE_AT)
    with pytest.raises(TemplateError) as caught:
        run.prepared  # noqa: B018
    assert str(caught.value) == f"{tpl}:{line}: 'dict object' has no attribute 'nam'"
    tpl.write_text("{% if %}")
    run = open_run(load_config(sample), SAMPLE_AT)
    with pytest.raises(TemplateError, match=r"digest\.mjml\.j2:1: "):
        run.prepared  # noqa: B018


def test_an_unknown_recipient_field_is_named_on_its_line_with_the_fields_there_are(sample):
    # an author's typo deep in the template (line ~70, after {%- if -%} blocks): the line is the
    # typo's own, and the message lists what `recipient` has rather than Python's "has no attribute"
    tpl = sample.parent / "templates" / "digest.mjml.j2"
    tpl.write_text(tpl.read_text().replace("Hi {{ recipient.first_name }}", "Hi {{ recipient.frist_name }}"))
    line = _line_of(tpl.read_text(), "recipient.frist_name")
    assert line > 60
    run = open_run(load_config(sample), SAMPLE_AT)
    with pytest.raises(TemplateError) as caught:
        run.prepared  # noqa: B018
    assert str(caught.value) == (
        f"{tpl}:{line}: recipient has no field 'frist_name' (fields: first_name, name, email, preferences, "
        "unsubscribe_url, preferences_url, click_token, attributes.<column>)"
    )


def test_a_recipient_field_used_as_an_attribute_name_is_refused(sample):
    """`<a {{ recipient.first_name }}>`: lxml lower-cases the name, so no filling would recognise
    it and every email would carry a junk attribute spelling the process's token nonce."""
    from digest import personalize

    tpl = sample.parent / "templates" / "digest.mjml.j2"
    tpl.write_text(
        tpl.read_text().replace(
            "Hi {{ recipient.first_name }}", 'Hi <a href="https://x.example/" {{ recipient.first_name }}>you</a>'
        )
    )
    run = open_run(load_config(sample), SAMPLE_AT)
    with pytest.raises(TemplateError) as caught:
        run.prepared  # noqa: B018
    assert str(caught.value) == (
        f"{tpl}: a recipient field used as a name, not a value: "
        '<a href="https://x.example/" {{ recipient.first_name }} style="color:#1f4fd1">'
    )
    assert personalize.NONCE not in str(caught.value)


def test_mjml_that_does_not_compile_is_named_with_mjmls_reason(sample):
    # a closing tag lost in an edit: mjml-python's own words, after the template's name, one line
    tpl = sample.parent / "templates" / "digest.mjml.j2"
    tpl.write_text(tpl.read_text().replace("</mjml>", ""))
    run = open_run(load_config(sample), SAMPLE_AT)
    with pytest.raises(TemplateError) as caught:
        run.prepared  # noqa: B018
    assert str(caught.value) == "digest.mjml.j2: MJML does not compile: unexpected end of stream in root template"


def test_missing_markers_are_explained(sample):
    tpl = sample.parent / "templates" / "digest.mjml.j2"
    tpl.write_text(tpl.read_text().replace("{{ article_start }}", ""))
    run = open_run(load_config(sample), SAMPLE_AT)
    with pytest.raises(TemplateError, match="article_start"):
        run.prepared  # noqa: B018


@pytest.mark.parametrize("marker", ["{{ group_start }}", "{{ contents_item }}", "{{ contents_end }}"])
def test_missing_group_and_contents_markers_are_explained(sample, marker):
    sample.write_text(sample.read_text() + '\n[templates]\ngroup_by = "tag"\n')
    tpl = sample.parent / "templates" / "digest.mjml.j2"
    contents = sample.parent / "templates" / "partials" / "contents.mjml.j2"
    for path in (tpl, contents):
        path.write_text(path.read_text().replace(marker, ""))
    run = open_run(load_config(sample), SAMPLE_AT)
    with pytest.raises(TemplateError, match=r"digest\.mjml\.j2: .*group_start.*contents_item"):
        run.prepared  # noqa: B018


def test_subject_and_preheader_are_single_lines(run):
    email = run.email(selection_for(run, "ada@example.com"))
    assert "\n" not in email.subject and "\n" not in email.preheader
    assert email.subject.endswith("(+9 more)")


def test_composer_reuses_article_blocks(run):
    """Two subscribers sharing an article get the very same compiled block."""
    prepared = run.prepared
    a = selection_for(run, "chloe.dubois@example.net")
    b = selection_for(run, "sam.rivera@example.net")
    shared = set(a.content_key) & set(b.content_key)
    assert shared
    for article_id in shared:
        # the same block, with the story's number in that email filled in
        for selection in (a, b):
            number = selection.content_key.index(article_id) + 1
            block = prepared.blocks[article_id].replace(NUMBER_TOKEN, str(number))
            assert NUMBER_TOKEN in prepared.blocks[article_id] and block in prepared.content(selection).html


def test_tokens_never_leak_into_final_emails(run):
    for sub in run.subscribers.subscribers:
        sel = run.select(sub)
        if sel.gets_email:
            email = run.email(sel)
            assert "__DG" not in email.html + email.text + email.subject + email.preheader


def test_footer_links_to_the_preferences_page_when_one_is_served(sample, monkeypatch):
    monkeypatch.setenv("DIGEST_SECRET", "s" * 32)
    sample.write_text(sample.read_text() + '\n[sending]\nunsubscribe_url = "https://news.example.com/unsubscribe"\n')
    run = open_run(load_config(sample), SAMPLE_AT)
    email = run.email(selection_for(run, "grace@example.org"))
    assert 'href="https://news.example.com/preferences?token=' in email.html
    assert "Change your topics: https://news.example.com/preferences?token=" in email.text
    assert 'href="https://news.example.com/unsubscribe?token=' in email.html
    assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_no_preferences_link_without_a_served_page(run):
    email = run.email(selection_for(run, "grace@example.org"))
    assert "Change your topics" not in email.html + email.text


# Token-looking text an article author could write: untagged, tagged for each context, content-level.
HOSTILE = "__DG_email__ __DGH_email__ __DGA_unsubscribe_url__ __DGP_first_name__ __DGC_preheader__"


def test_article_text_never_becomes_a_recipient_token(sample, monkeypatch):
    """An article cannot pull a recipient's address or unsubscribe link into its own text or URLs."""
    monkeypatch.setenv("DIGEST_SECRET", "s" * 32)
    sample.write_text(sample.read_text() + '\n[sending]\nunsubscribe_url = "https://news.example.com/unsubscribe"\n')
    robots = sample.parent / "content/2026/11/robot-dogs-learn-stairs.md"
    text = robots.read_text(encoding="utf-8")
    cover = "https://evil.example/p.png?e=__DG_email__&u=__DGA_unsubscribe_url__&f=__DGH_first_name__"
    slug = "stairs-__DG_email__-__DGA_unsubscribe_url__"  # the sample's links are built from slugs
    text = text.replace("title: Robot dogs finally learn to take the stairs", f'title: "Stairs {HOSTILE}"')
    text = text.replace("excerpt: A new", f"excerpt: {HOSTILE} A new")
    text = text.replace("coverImage: https://images.example.com/robotics/robot-dog-stairs.jpg?w=800&h=400&fit=crop", "")
    text = text.replace("slug: robot-dogs-learn-stairs", f"slug: {slug}\ncoverImage: {cover}")
    robots.write_text(text, encoding="utf-8")
    run = open_run(load_config(sample), SAMPLE_AT)
    received = 0
    for sub in run.subscribers.subscribers:
        selection = run.select(sub)
        if not any(a.id.endswith("robot-dogs-learn-stairs") for a in selection.articles):
            continue
        received += 1
        values = run.values(sub)
        email = run.email(selection)
        assert email.html == run.variant(sub).composer.compose_direct(selection, run.edition, values).html
        # the plain text folds long lines at spaces
        assert f"Stairs {HOSTILE}" in email.html and f"Stairs {HOSTILE}" in " ".join(email.text.split())
        assert f"{HOSTILE} A new" in email.html
        if selection.articles[0].id.endswith("robot-dogs-learn-stairs"):
            assert email.subject.startswith(f"Stairs {HOSTILE}")
        assert cover.replace("&", "&amp;") in email.html
        assert f"/{slug}?utm_source" in email.html and f"/{slug}" in email.text
        leaked = re.findall(r"evil\.example[^\"\s<>]*", email.html + email.text)
        assert leaked and not any(sub.email in u or "token" in u or "@" in u for u in leaked)
        # SendGrid substitutes its tokens anywhere in the body: none may be spelled like the article's text
        content = run.content_for(selection)
        assert content.tokens and not any(tok in HOSTILE or tok in cover or tok in slug for tok, _, _ in content.tokens)
    assert received


def test_blank_topics_read_as_all_topics():
    """A blank tag cell must not turn "Your topics: all topics" into an empty line (and the fast
    path, which fills values after tidying lines, must agree with a direct compile)."""
    from digest.models import Subscriber
    from digest.personalize import recipient_values

    blank = Subscriber(email="a@example.com", tags=("  ",), categories=("",))
    assert recipient_values(blank, default_name="there", unsubscribe_url="u")["preferences"] == "all topics"
    mixed = Subscriber(email="a@example.com", tags=(" AI ", " "), categories=("Climate",))
    assert recipient_values(mixed, default_name="there", unsubscribe_url="u")["preferences"] == "AI, Climate"


def test_a_notice_text_keeps_the_authors_indents_and_one_blank_line_per_gap(tmp_path):
    """A signup confirmation's plain text as the newsletter's own template lays it out: indented
    lines keep their indent, trailing spaces go, and the blank lines an empty block leaves behind
    fold into one (the packaged theme fills the HTML part)."""
    from digest.models import Subscriber
    from digest.signup.notices import Notices

    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "confirm.txt.j2").write_text(
        "{{ newsletter.name }}   \n\n\n  1. Confirm:\n     {{ confirm_url }}\n"
        "{% if topics %}\nTopics: {{ topics | join(', ') }}\n{% endif %}\n\n  2. Or cancel:  \n     {{ cancel_url }}\n",
        encoding="utf-8",
    )
    config = make_config(tmp_path, templates={"path": str(templates)})
    email = Notices(config).confirmation(
        Subscriber(email="ada@example.com"),
        confirm_url="https://x.example/c",
        cancel_url="https://x.example/x",
        consent_text="I agree.",
    )
    assert email.text == (
        "Test Weekly\n\n  1. Confirm:\n     https://x.example/c\n\n  2. Or cancel:\n     https://x.example/x\n"
    )


def test_replies_go_to_the_newsletters_reply_to_address(run):
    """`reply_to` in [newsletter]: a reader's reply reaches the editors, not the sending address
    (the message as SMTP sends it and `digest build` writes it)."""
    from digest.message import to_mime

    msg = to_mime(run.email(selection_for(run, "ada@example.com")), date=SAMPLE_AT)
    assert msg["Reply-To"] == "editors@circuit.example.com"
    assert msg["From"] == "The Weekly Circuit <weekly@circuit.example.com>"


@pytest.mark.parametrize(
    ("minimum", "stories", "listed"),
    [(3, 2, False), (3, 3, True), (1, 1, True), (0, 10, False)],
    ids=["under", "exactly", "one-is-enough", "never"],
)
def test_a_digest_of_at_least_contents_min_articles_stories_opens_with_a_contents_list(
    sample, minimum, stories, listed
):
    """`contents_min_articles`: a digest with at least that many stories opens with "In this
    issue" (HTML and text alike); 1 lists even a single story; 0 never lists."""
    from dataclasses import replace

    sample.write_text(sample.read_text() + f"\n[templates]\ncontents_min_articles = {minimum}\n")
    run = open_run(load_config(sample), SAMPLE_AT)
    ten = selection_for(run, "ada@example.com")
    email = run.email(replace(ten, choices=ten.choices[:stories]))
    assert len(email.article_ids) == stories
    assert ("In this issue" in email.html, "In this issue:" in email.text) == (listed, listed)


def test_a_plain_text_partial_prints_values_as_written(sample):
    """A `.txt` file included by the text template is plain text like it: `&` and `<` stay as
    they are (only markup templates escape), while the HTML part escapes the same name."""
    sample.write_text(sample.read_text().replace('name = "The Weekly Circuit"', 'name = "Circuit & <Co>"', 1))
    templates = sample.parent / "templates"
    (templates / "sign-off.txt").write_text("Thanks for reading {{ newsletter.name }}.", encoding="utf-8")
    text_template = templates / "digest.txt.j2"
    text_template.write_text(text_template.read_text() + '\n{% include "sign-off.txt" %}\n', encoding="utf-8")
    run = open_run(load_config(sample), SAMPLE_AT)
    email = run.email(selection_for(run, "ada@example.com"))
    assert email.text.endswith("\nThanks for reading Circuit & <Co>.\n")
    assert "Circuit &amp; &lt;Co&gt;" in email.html and "Circuit & <Co>" not in email.html


def test_the_text_part_keeps_the_authors_indents_and_drops_trailing_spaces(sample):
    """A text template's indented lines (a quote, a list) keep their indent; spaces at a line's end
    (left by a block or a value) go, so no line ends in blanks."""
    text_template = sample.parent / "templates" / "digest.txt.j2"
    text_template.write_text(
        text_template.read_text() + "\n\n    Indented sign-off   \n  - a list item \n", encoding="utf-8"
    )
    run = open_run(load_config(sample), SAMPLE_AT)
    email = run.email(selection_for(run, "ada@example.com"))
    assert email.text.endswith("\n\n    Indented sign-off\n  - a list item\n")
    assert not any(line.endswith(" ") for line in email.text.splitlines())
