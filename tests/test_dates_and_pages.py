"""Free-form dates (dateutil after the strict forms), TOML front matter, and the pages of a real
blog that are not articles: list pages, pagination pages and drafts are skipped and counted, never errors."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import DATA, make_config, write_article

from digest.content import load_articles
from digest.fields import parse_date

PAGES = DATA / "pages"
LONDON = ZoneInfo("Europe/London")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Jekyll's documented form: single-digit hour, numeric zone after a space
        ("2024-03-21 4:00:00 +0000", utc(2024, 3, 21, 4)),
        ("2024-03-28 16:30:00 -0500", utc(2024, 3, 28, 21, 30)),
        # RFC 2822 (RSS), with and without the weekday
        ("Thu, 21 Mar 2024 10:00:00 +0100", utc(2024, 3, 21, 9)),
        ("21 Mar 2024 10:00:00 GMT", utc(2024, 3, 21, 10)),
        # long forms, Astro's `Jul 08 2022`
        ("July 27, 2021", utc(2021, 7, 26, 23)),  # naive: London, BST
        ("Jul 08 2022", utc(2022, 7, 7, 23)),
        ("Tuesday, July 27, 2021 10:00 AM PDT", utc(2021, 7, 27, 17)),
        ("27th July 2021", utc(2021, 7, 26, 23)),
        # ISO without seconds, with and without a zone
        ("2021-07-27T10:00", utc(2021, 7, 27, 9)),
        ("2021-07-27T10:00+02:00", utc(2021, 7, 27, 8)),
        ("2021-07-27 10:00 CEST", utc(2021, 7, 27, 8)),
        ("2021-07-27 10:00:00 UTC", utc(2021, 7, 27, 10)),
        # unambiguous numeric forms
        ("12/25/2021", utc(2021, 12, 25)),
        ("25.12.2021", utc(2021, 12, 25)),
        ("04/04/2021", utc(2021, 4, 3, 23)),
    ],
)
def test_free_form_dates(text, expected):
    assert parse_date(text, LONDON) == expected


@pytest.mark.parametrize(
    "text",
    [
        "March 2021",  # no day: dateutil would fill today's
        "10:00",  # no date at all
        "2021",
        "soon",
        "03/04/2021",  # March 4th or April 3rd: refused, not guessed
        "2021-02-30",
        "x" * 200,
    ],
)
def test_incomplete_ambiguous_or_bogus_dates_are_refused(text):
    assert parse_date(text, LONDON) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1764500000, utc(2025, 11, 30, 10, 53, 20)),  # epoch seconds
        (1764500000.5, datetime(2025, 11, 30, 10, 53, 20, 500000, tzinfo=UTC)),
        (1764500000000, utc(2025, 11, 30, 10, 53, 20)),  # milliseconds (JavaScript's Date.now())
        (10**8, None),  # too small to be a real post's date: a number that is something else
        (10**8 + 1, utc(1973, 3, 3, 9, 46, 41)),
        (10**11, datetime.fromtimestamp(10**11, UTC)),  # seconds: the year 5138, as written
        (10**11 + 1000, datetime.fromtimestamp(10**8 + 1, UTC)),  # beyond: milliseconds
        (10**20, None),  # past the year 9999 either way: refused, not a crash
        (float("inf"), None),
        (float("nan"), None),
        (True, None),
    ],
)
def test_epoch_numbers_in_seconds_or_milliseconds(value, expected):
    assert parse_date(value, LONDON) == expected


@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59-23:00", "0001-01-01T00:00:00+05:00", "Fri, 31 Dec 9999 23:59:59 -2300", "0001-01-01"],
)
def test_a_date_with_no_instant_in_utc_is_refused_not_a_crash(value):
    # "0001-01-01" is midnight in the newsletter's zone, here east of UTC: the year 0 in UTC
    assert parse_date(value, ZoneInfo("Asia/Tokyo")) is None


def test_strict_forms_still_come_first():
    # fromisoformat reads this; dateutil would too, but the strict reader decides
    assert parse_date("2023-12-25 00:00:00 +0000", LONDON) == utc(2023, 12, 25)
    assert parse_date("2025-07-21", LONDON) == utc(2025, 7, 20, 23)


def test_an_ambiguous_date_says_how_to_fix_it(tmp_path):
    write_article(tmp_path / "c", "a.md", "---\ntitle: A\ndate: 03/04/2021\n---\n")
    index = load_articles(make_config(tmp_path, content={"path": "c"}))
    (problem,) = index.problems
    assert "cannot read '03/04/2021' as a date (day and month could be swapped: write it as YYYY-MM-DD)" in str(problem)


def test_hugo_toml_front_matter(tmp_path):
    write_article(
        tmp_path / "c",
        "my-first-post.md",
        "+++\ntitle = 'My First Post'\ndate = 2024-01-15T10:00:00-07:00\ndraft = false\ntags = ['Go', 'hugo']\n"
        "[cover]\nimage = '/images/cover.png'\n+++\nHello from Hugo.\n",
    )
    write_article(tmp_path / "c", "bad.md", "+++\ntitle = 'Bad'\ndate = \n+++\n")
    write_article(tmp_path / "c", "unclosed.md", "+++\ntitle = 'Never closed'\n")
    index = load_articles(make_config(tmp_path, content={"path": "c"}))
    (article,) = index.articles
    assert article.title == "My First Post" and article.date == utc(2024, 1, 15, 17) and article.tags == ("Go", "hugo")
    problems = {p.source.rsplit("/", 1)[-1]: p for p in index.problems}
    assert problems["bad.md"].line == 3 and "front matter is not valid TOML" in problems["bad.md"].message
    assert "never closed" in problems["unclosed.md"].message


@pytest.fixture(scope="module")
def pages():
    config = make_config(PAGES.parent, content={"path": str(PAGES)}, newsletter={"site_url": "https://b.example"})
    return load_articles(config)


def rel(source: str) -> str:
    return source.removeprefix(str(PAGES) + "/")


def test_list_pages_pagination_and_drafts_are_skipped_not_errors(pages):
    skipped = {rel(s.source): s.reason for s in pages.skipped}
    assert skipped == {
        "section/_index.md": "list page",
        "tags/_index.md": "list page",
        "home/index.md": "list page",
        "eleventy_home/index.md": "list page",
        "next_list/index.md": "list page",
        "archive_paginated/index.md": "list page",
        "paginated/page/2/index.html": "pagination page",
        "headless/index.md": "non-article file",
        "README.md": "non-article file",
        "draft_without_date.md": "draft",
        "draft_toml_without_title.md": "draft",
        "unpublished_jekyll_without_date.md": "draft",
    }
    # only the really broken file is an error
    assert [rel(p.source) for p in pages.problems] == ["broken_without_date.md"]
    articles = {rel(str(a.path)): a for a in pages.articles}
    assert set(articles) == {"post_with_layout_post.md", "real_bundle/index.md", "draft_with_everything.md"}
    assert articles["draft_with_everything.md"].draft  # a complete draft is read, flagged, never selected
    assert articles["post_with_layout_post.md"].date == utc(2024, 3, 21, 4)


def test_skipped_pages_say_why(pages):
    lines = {rel(str(s)) for s in pages.skipped}
    assert "home/index.md: skipped: list page (layout: home)" in lines
    assert "section/_index.md: skipped: list page (_index.md: a Hugo section page)" in lines
    assert "paginated/page/2/index.html: skipped: pagination page (page/2)" in lines
    assert (
        "draft_without_date.md: skipped: draft (no date (no date/pubDate/publishDate/published, no YYYY-MM-DD file name))"
        in lines
    )


def test_skipped_pages_survive_the_content_cache(tmp_path):
    config = make_config(PAGES.parent, content={"path": str(PAGES)}, newsletter={"site_url": "https://b.example"})
    cold = load_articles(config, cache_dir=tmp_path)
    warm = load_articles(config, cache_dir=tmp_path)
    assert warm.skipped == cold.skipped and len(warm.skipped) == 12
    assert warm.problems == cold.problems


def test_check_verbose_counts_what_was_skipped(tmp_path):
    from click.testing import CliRunner

    from digest.cli import main

    config = tmp_path / "digest.toml"
    (tmp_path / "subscribers.csv").write_text("email\nreader@example.com\n")
    config.write_text(f'[content]\npath = "{PAGES}"\n[subscribers]\npath = "subscribers.csv"\n')
    quiet = CliRunner().invoke(main, ["--config", str(config), "check"])
    assert "skipped" not in quiet.output and "list page" not in quiet.output
    # the one broken file is the only error: list pages and drafts are not problems
    assert "broken_without_date.md: error: no date" in quiet.output
    assert sum("error:" in line for line in quiet.output.splitlines()) == 1

    result = CliRunner().invoke(main, ["--config", str(config), "check", "--verbose"])
    lines = result.output.splitlines()
    assert "skipped on purpose: 6 list page(s), 4 draft(s), 2 non-article file(s), 1 pagination page(s)" in lines
    assert f"  {PAGES}/home/index.md: skipped: list page (layout: home)" in lines
    assert f"  {PAGES}/draft_with_everything.md: draft (read, never sent)" in lines
    assert "content: 3 article(s) from " + str(PAGES) + " (0 from feeds)" in lines
    assert "templates: the packaged theme (no folder at " + str(tmp_path / "templates") + ")" in lines
