"""What the compiled HTML and text must keep for mail clients (issue 13), read from the real pipeline
output (jinja2 -> mjml-python -> premailer): Outlook's pixel widths, the styles premailer must not
strip, the hidden preheader, the masthead, the footer, reading times and the 78-column text part.
How it looks in a browser is tests/test_email_browser.py."""

from __future__ import annotations

import re

import lxml.html
import pytest
from conftest import SAMPLE_AT, make_config, write_article

from digest.config import load_config
from digest.errors import ConfigError
from digest.models import Subscriber
from digest.pipeline import open_run
from digest.text import TEXT_WIDTH, reading_minutes, word_count, wrap

SPACER = "\u034f\u200c\u00a0"  # &#847;&zwnj;&nbsp; as lxml writes them


def sample_emails(config_path):
    run = open_run(load_config(config_path), SAMPLE_AT)
    emails = [run.email(s) for s in run.selections() if s.gets_email]
    assert len(emails) == 7
    return run, emails


@pytest.fixture
def emails(sample):
    return sample_emails(sample)[1]


def test_images_keep_pixel_width_attributes_after_inlining(emails):
    """Outlook desktop sizes images from `width`; premailer would copy CSS `width:100%` over it."""
    imgs = [img for e in emails for img in lxml.html.fromstring(e.html).iter("img")]
    assert len(imgs) > 20
    assert all(re.fullmatch(r"\d+", img.get("width", "")) for img in imgs), {img.get("width") for img in imgs}
    assert {img.get("width") for img in imgs} == {"552", "200"}  # covers and logos
    assert not any(img.get("height") == "auto" for img in imgs)


def test_important_media_queries_and_dark_mode_styles_survive_inlining(emails):
    html = emails[0].html
    styles = [s.text or "" for s in lxml.html.fromstring(html).iter("style")]
    mobile = [s for s in styles if "max-width: 480px" in s]
    assert mobile and "font-size: 20px !important" in mobile[0]
    (dark,) = [s for s in styles if "prefers-color-scheme: dark" in s]
    (outlook,) = [s for s in styles if "[data-ogsc]" in s]
    # separate blocks: a client that rejects one selector syntax drops only that block
    assert dark != outlook and "[data-ogs" not in dark and "prefers-color-scheme" not in outlook
    assert dark.count("!important") >= 10 and outlook.count("!important") >= 10
    assert "[data-ogsb]" in outlook
    assert 'data-premailer="ignore"' not in html  # premailer's own marker is removed
    assert 'name="color-scheme" content="light dark"' in html


def test_preheader_is_hidden_the_robust_way_and_adds_to_the_subject(emails):
    for email in emails:
        tree = lxml.html.fromstring(email.html)
        (div,) = tree.find_class("preheader")
        style = div.get("style").replace(" ", "")
        for rule in ("display:none", "max-height:0", "overflow:hidden", "mso-hide:all"):
            assert rule in style, (rule, style)
        text = div.text_content()
        assert text.startswith(email.preheader) and text[len(email.preheader) :] == SPACER * 60
        # first thing in the body: the preview never starts with the masthead's text
        body_text = " ".join(tree.body.text_content().split())
        assert body_text.startswith(" ".join(email.preheader.split()))
        # the preview is the line after the subject in the inbox: it must add to it
        assert email.preheader != email.subject
        first_title = email.subject.split(" (+")[0]
        assert not email.preheader.startswith(first_title), (email.subject, email.preheader)


def test_one_article_preheader_is_its_excerpt(sample):
    run, emails = sample_emails(sample)
    (one,) = [e for e in emails if len(e.article_ids) == 1]
    article = next(a for a in run.pool if a.id == one.article_ids[0])
    assert one.subject == article.title and one.preheader == article.excerpt[: len(one.preheader)]


def test_masthead_is_the_logo_or_the_name_never_both(sample):
    _, emails = sample_emails(sample)
    (h1,) = lxml.html.fromstring(emails[0].html).iter("h1")
    assert not h1.text_content().strip()  # no wordmark next to the logo
    assert [img.get("alt") for img in h1.iter("img")] == ["The Weekly Circuit", "The Weekly Circuit"]
    assert [img.get("class") for img in h1.iter("img")] == ["logo-light", "logo-dark"]
    text = sample.read_text(encoding="utf-8")
    sample.write_text(re.sub(r"logo(_dark)?_url = .*\n", "", text), encoding="utf-8")
    _, emails = sample_emails(sample)
    (h1,) = lxml.html.fromstring(emails[0].html).iter("h1")
    assert h1.text_content().strip() == "The Weekly Circuit" and not list(h1.iter("img"))


def test_no_dark_logo_without_logo_dark_url(sample):
    sample.write_text(re.sub(r"logo_dark_url = .*\n", "", sample.read_text(encoding="utf-8")), encoding="utf-8")
    _, emails = sample_emails(sample)
    (h1,) = lxml.html.fromstring(emails[0].html).iter("h1")
    assert [img.get("class") for img in h1.iter("img")] == ["logo-light"]


def test_language_comes_from_the_config(sample):
    _, emails = sample_emails(sample)
    assert emails[0].html.startswith('<html lang="en" ')
    sample.write_text(sample.read_text().replace("[newsletter]\n", '[newsletter]\nlanguage = "fr-CA"\n'))
    _, emails = sample_emails(sample)
    assert emails[0].html.startswith('<html lang="fr-CA" ')
    sample.write_text(sample.read_text().replace('"fr-CA"', '"en\\" onload=\\"x"'))
    with pytest.raises(ConfigError, match="newsletter.language must be a language tag"):
        load_config(sample)


def test_footer_says_why_and_offers_a_way_out(emails):
    for email in emails:
        tree = lxml.html.fromstring(email.html)
        footer = " ".join(tree.find_class("dm-footer")[0].text_content().split())
        assert "because you subscribed at circuit.example.com as " + email.subscriber.email in footer
        assert "Your topics:" in footer and "12 Example Street" in footer
        links = {a.text_content().strip(): a.get("href") for a in tree.find_class("dm-footer")[0].iter("a")}
        assert links["Unsubscribe"].startswith("mailto:")


def test_plain_text_is_wrapped_at_78_columns_except_urls(sample):
    # a long title and a long intro, so the wrapping has something to do in every part
    config = sample.read_text(encoding="utf-8")
    sample.write_text(config.replace('intro = "', 'intro = "' + "A long introduction. " * 8), encoding="utf-8")
    robots = sample.parent / "content/2026/11/robot-dogs-learn-stairs.md"
    robots.write_text(
        robots.read_text(encoding="utf-8").replace(
            "title: Robot dogs finally learn to take the stairs",
            "title: Robot dogs finally learn to take the stairs, and the escalators, and the ladders too",
        ),
        encoding="utf-8",
    )
    _, emails = sample_emails(sample)
    long_lines = 0
    for email in emails:
        for line in email.text.splitlines():
            if "://" in line or "mailto:" in line:
                long_lines += len(line) > TEXT_WIDTH
            else:
                assert len(line) <= TEXT_WIDTH, line
    assert long_lines  # tracked links run past 78 columns and are kept whole
    for email in emails:
        for article_id in email.article_ids:
            slug = article_id.rsplit("/", 1)[-1].removeprefix("2026-11-28-")
            assert f"Read more: https://circuit.example.com/posts/{slug}?utm_source=" in email.text
    assert "Robot dogs finally learn to take the stairs, and the escalators, and the\nladders too" in "".join(
        e.text for e in emails
    )


def test_wrap_never_breaks_a_url():
    url = "https://example.com/" + "x" * 90
    assert wrap(f"Read more: {url} now") == f"Read more:\n{url}\nnow"
    assert wrap("short\n\nlines stay") == "short\n\nlines stay"
    lines = wrap("a-b " * 30).splitlines()  # never broken at a hyphen either
    assert len(lines) == 2 and all(len(line) <= 78 and set(line.split()) == {"a-b"} for line in lines)
    assert all(len(line) <= 78 for line in wrap("word " * 100).splitlines())


def test_reading_time_from_the_body(tmp_path):
    body = ("word " * 1150).strip()
    write_article(tmp_path / "content", "long.md", f"---\ntitle: Long\ndate: 2026-11-29\n---\n{body}\n")
    write_article(tmp_path / "content", "short.md", "---\ntitle: Short\ndate: 2026-11-28\n---\nTiny.\n")
    write_article(tmp_path / "content", "zh.md", "---\ntitle: 中文\ndate: 2026-11-27\n---\n" + "读" * 2500 + "\n")
    config = make_config(tmp_path, content={"path": "content"})
    run = open_run(config, SAMPLE_AT)
    email = run.email(run.select(Subscriber(email="r@example.com")))
    assert [a.reading_minutes for a in run.pool] == [5, 1, 5]
    assert "5 min read" in email.html and "1 min read" in email.html
    assert "29 Nov 2026 · 5 min read" in email.text


def test_word_count_estimates():
    assert word_count("") == 0 and word_count("one") == 1
    assert word_count("one two\nthree") == 3
    assert word_count("读" * 500) == 231  # 500 ideographs read like 230 words
    assert reading_minutes(0) == 1 and reading_minutes(345) == 2


def test_contents_list_from_the_configured_size(sample):
    run, emails = sample_emails(sample)
    with_contents = {e.subscriber.email for e in emails if "In this issue" in e.html}
    assert with_contents == {e.subscriber.email for e in emails if len(e.article_ids) >= 5}
    ada = next(e for e in emails if e.subscriber.email == "ada@example.com")
    assert "In this issue:\n1. " in ada.text and "\n10. " in ada.text
    sample.write_text(sample.read_text() + "\n[templates]\ncontents_min_articles = 0\n")
    _, emails = sample_emails(sample)
    assert not any("In this issue" in e.html + e.text for e in emails)


def test_grouped_by_tag_emails_differ_by_preferences_and_never_share_a_request(sample):
    """Two readers with the same stories but different topics get differently grouped emails: the
    fast path's cache and the send batches must tell them apart."""
    sample.write_text(sample.read_text() + '\n[templates]\ngroup_by = "tag"\n')
    run = open_run(load_config(sample), SAMPLE_AT)
    ai_first = Subscriber(email="a@example.com", name="A", tags=("ai", "climate"))
    climate_first = Subscriber(email="c@example.com", name="C", tags=("climate", "ai"))
    a, c = run.select(ai_first), run.select(climate_first)
    assert a.content_key == c.content_key  # the same stories...
    assert run.group_key(a) != run.group_key(c)  # ...never in one request
    html_a, html_c = run.email(a).html, run.email(c).html
    assert html_a != html_c
    both = next(x for x in run.pool if x.tag_keys >= {"ai", "climate"})  # filed under the reader's first topic
    assert "AI labs sign long-term deals" in both.title
    for html, first in ((html_a, "Ai"), (html_c, "Climate")):
        current, under = "", {}
        for h2 in lxml.html.fromstring(html).iter("h2"):
            text = " ".join(h2.text_content().split())
            if text in ("Ai", "Climate"):
                current = text
            else:
                under[text.split(". ", 1)[1]] = current
        assert under[both.title] == first
    for sub in (ai_first, climate_first):
        email = run.email(run.select(sub))
        direct = run.variant(sub).composer.compose_direct(run.select(sub), run.edition, run.values(sub))
        assert (email.html, email.text) == (direct.html, direct.text)
