"""Reading articles: every front-matter dialect of tests/data/content/, one file per case."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import DATA, make_config, write_article

from digest.content import load_articles, read_article
from digest.fields import parse_date
from digest.models import Article
from digest.text import clean_excerpt, cut_words

FIXTURES = DATA / "content"


@pytest.fixture(scope="module")
def index():
    config = make_config(
        FIXTURES.parent,
        content={"path": str(FIXTURES)},
        newsletter={"timezone": "Europe/London", "site_url": "https://blog.example.com"},
    )
    return load_articles(config)


def by_file(index, name: str) -> Article:
    matches = [a for a in index.articles if a.path.name == name]
    assert matches, f"{name} was not read: {[str(p) for p in index.problems]}"
    return matches[0]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # naive dates and times are in the newsletter's zone (London: GMT in November, BST in July)
        ("date_yaml_date.md", utc(2026, 11, 20)),
        ("date_yaml_datetime.md", utc(2026, 11, 24, 10, 30)),
        ("date_string_iso.md", utc(2026, 11, 21)),
        ("date_string_with_offset.md", utc(2026, 11, 22)),
        ("date_string_zulu_millis.md", utc(2026, 11, 23, 10)),
        ("date_string_long_form.md", utc(2026, 11, 24)),
        ("2026-11-21-date_from_filename.md", utc(2026, 11, 21)),
        ("2026-1-5-date_from_short_filename.md", utc(2026, 1, 5)),
    ],
)
def test_date_forms(index, name, expected):
    assert by_file(index, name).date == expected


@pytest.mark.parametrize("name", ["date_key_pubdate.md", "date_key_publishdate.md", "date_key_published.md"])
def test_date_keys(index, name):
    article = by_file(index, name)
    assert article.date.tzinfo is not None and article.date.year == 2026


def test_summer_naive_date_uses_zone_offset():
    from zoneinfo import ZoneInfo

    assert parse_date("2025-07-21", ZoneInfo("Europe/London")) == utc(2025, 7, 20, 23)
    assert parse_date("2023-12-25 00:00:00 +0000", ZoneInfo("Europe/London")) == utc(2023, 12, 25)
    assert parse_date("July 27, 2021", ZoneInfo("UTC")) == utc(2021, 7, 27)
    assert parse_date("not a date", ZoneInfo("UTC")) is None


def read_one(name: str) -> Article:
    """One fixture as read on its own (before the folder-wide spelling pass)."""
    config = make_config(FIXTURES.parent, content={"path": str(FIXTURES)})
    return read_article(FIXTURES / name, FIXTURES, config)


def test_tag_forms():
    assert read_one("tags_list.md").tags == ("Ai", "Robotics", "Climate")
    assert read_one("tags_single_string.md").tags == ("Python",)
    assert read_one("tags_comma_string.md").tags == ("ai", "Robotics", "climate")
    # None and numbers dropped
    assert read_one("tags_with_none_and_numbers.md").tags == ("Ai",)
    assert read_one("categories_list.md").categories == ("Science", "Space")


def test_jekyll_space_separated_terms_are_split_when_the_config_says_so(tmp_path):
    # Jekyll's own default post says `categories: jekyll update`: two categories. Elsewhere a
    # string is one term per comma ("Machine Learning" stays one tag).
    write_article(
        tmp_path / "content",
        "2026-11-23-welcome.md",
        "---\ntitle: Welcome\ndate: 2026-11-23\ncategories: jekyll update\ntags: Machine Learning, ai\n---\nBody\n",
    )
    cache = tmp_path / "cache"
    comma = load_articles(make_config(tmp_path, content={"path": "content"}), cache)
    assert comma.articles[0].categories == ("jekyll update",)
    assert comma.articles[0].tags == ("Machine Learning", "ai")
    # the same cache folder: an entry parsed under the other setting is never reused
    space = load_articles(make_config(tmp_path, content={"path": "content", "term_separator": "space"}), cache)
    assert space.articles[0].categories == ("jekyll", "update")
    assert space.articles[0].tags == ("Machine", "Learning", "ai")  # a stray comma is no part of a term


def test_one_spelling_per_tag_the_most_frequent(index):
    """`ai` in one file and `Ai` in dozens: every article shows `Ai` (selection folds case anyway)."""
    spellings: dict[str, set[str]] = {}
    for article in index.articles:
        for tag in article.tags:
            spellings.setdefault(tag.casefold(), set()).add(tag)
    assert all(len(forms) == 1 for forms in spellings.values()), spellings
    assert by_file(index, "tags_comma_string.md").tags[0] == "Ai"  # written `ai`, outnumbered


def test_spelling_ties_go_to_the_first_file_and_categories_are_separate(tmp_path):
    head = "---\ntitle: {0}\ndate: 2026-11-2{1}\ntags: [{2}]\ncategories: [{3}]\n---\nBody\n"
    write_article(tmp_path / "content", "a.md", head.format("A", 1, "open-source", "Security"))
    write_article(tmp_path / "content", "b.md", head.format("B", 2, "Open-Source", "security"))
    write_article(tmp_path / "content", "c.md", head.format("C", 3, "Security", "security"))
    index = load_articles(make_config(tmp_path, content={"path": "content"}))
    assert [a.tags for a in index.articles] == [("open-source",), ("open-source",), ("Security",)]
    # the tag `Security` does not decide how the category is spelled
    assert [a.categories for a in index.articles] == [("security",)] * 3


def test_tags_match_case_insensitively_but_display_as_written(index):
    article = by_file(index, "tags_list.md")
    assert "ai" in article.tag_keys and "AI".casefold() in article.tag_keys
    assert article.tags[0] == "Ai"


@pytest.mark.parametrize("name", ["excerpt_key_description.md", "excerpt_key_summary.md", "excerpt_key_spoiler.md"])
def test_excerpt_keys(index, name):
    assert by_file(index, name).excerpt  # taken from the key, not derived
    assert "Short body" not in by_file(index, name).excerpt


def test_excerpt_cut_midword_is_shown_cleanly(index):
    excerpt = by_file(index, "excerpt_cut_midword.md").excerpt
    assert excerpt.endswith("collaborations…")
    assert "ex..." not in excerpt and "..." not in excerpt


def test_excerpt_derived_from_markdown(index):
    excerpt = by_file(index, "excerpt_derived_from_markdown.md").excerpt
    assert excerpt.endswith("…") and len(excerpt) <= 281
    assert not any(mark in excerpt for mark in ("**", "](", "```", "# "))


def test_excerpt_derived_from_html_drops_script_and_decodes_entities(index):
    excerpt = by_file(index, "excerpt_derived_from_html.md").excerpt
    assert "alert(1)" not in excerpt and "<p>" not in excerpt
    assert "&amp;" not in excerpt and "&" in excerpt


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("cover_coverimage.md", "https://"),
        ("cover_heroimage.md", "https://"),
        ("cover_images_list.md", "https://"),
        ("cover_socialimage.md", "https://"),
        ("cover_cover.md", "https://"),
        ("cover_image_relative.md", "https://blog.example.com/img/rel.png"),
    ],
)
def test_cover_keys(index, name, url):
    article = by_file(index, name)
    assert article.cover_url.startswith(url)
    assert article.cover_alt  # falls back to the title


def test_bodies_and_extensions(index):
    assert by_file(index, "html_body.html").excerpt
    assert by_file(index, "markdown_body.markdown").excerpt
    assert by_file(index, "mdx_body.mdx").excerpt
    assert not any(a.path.suffix == ".txt" for a in index.articles)


def test_crlf_bom_and_non_ascii(index):
    assert by_file(index, "crlf_line_endings.md").tags
    bom = by_file(index, "utf8_bom.md")
    assert not bom.title.startswith("\ufeff") and bom.tags
    assert any(ord(ch) > 127 for ch in by_file(index, "non_ascii.md").title)


def test_draft_and_future_are_read_but_flagged(index):
    assert by_file(index, "draft.md").draft
    assert by_file(index, "future.md").date.year == 2030


def test_duplicate_counts_once_with_a_warning(index):
    dupes = [a for a in index.articles if a.title == "Duplicate article title"]
    assert len(dupes) == 1
    assert any("duplicate_b.md" in p.source and p.severity == "warning" for p in index.problems)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("broken_yaml.md", "not valid YAML"), ("no_title.md", "no title"), ("no_date.md", "no date")],
)
def test_bad_files_are_reported_and_skipped(index, name, reason):
    problems = [p for p in index.problems if p.source.endswith(name)]
    assert len(problems) == 1 and reason in problems[0].message and problems[0].severity == "error"
    assert not any(a.path.name == name for a in index.articles)


def test_yaml_error_names_a_line(index):
    problem = next(p for p in index.problems if p.source.endswith("broken_yaml.md"))
    assert problem.line is not None and problem.line >= 2
    assert str(problem).startswith(f"{problem.source}:{problem.line}: error:")


def test_every_fixture_is_accounted_for(index):
    """Nothing is silently dropped: each article file is read or reported."""
    files = {p.name for p in FIXTURES.iterdir() if p.suffix != ".txt"}
    read = {a.path.name for a in index.articles}
    reported = {Path(p.source).name for p in index.problems}
    assert files == read | reported


def test_article_url_pattern_and_fallbacks(tmp_path):
    folder = tmp_path / "content"
    write_article(folder, "2026-11-20-hello-world.md", "---\ntitle: Hello\n---\nBody\n")
    write_article(folder, "own.md", "---\ntitle: Own\ndate: 2026-11-20\nsource: https://elsewhere.example.org/x\n---\n")
    patterned = load_articles(
        make_config(tmp_path, content={"path": "content", "article_url": "https://ex.com/{year}/{slug}"})
    )
    assert {a.url for a in patterned.articles} == {"https://ex.com/2026/hello-world", "https://ex.com/2026/own"}
    plain = load_articles(make_config(tmp_path, content={"path": "content"}))
    assert {a.url for a in plain.articles} == {"https://example.com/hello-world", "https://elsewhere.example.org/x"}


def test_one_unreadable_file_does_not_stop_the_rest(tmp_path):
    folder = tmp_path / "content"
    write_article(folder, "good.md", "---\ntitle: Good\ndate: 2026-11-20\n---\n")
    (folder / "latin1.md").write_bytes("---\ntitle: caf\xe9\ndate: 2026-11-20\n---\n".encode("latin-1"))
    write_article(folder, "bad_date.md", "---\ntitle: Bad\ndate: someday\n---\n")
    index = load_articles(make_config(tmp_path, content={"path": "content"}))
    assert [a.title for a in index.articles] == ["Good"]
    messages = sorted(p.message for p in index.problems)
    assert (
        messages[0].startswith("date: cannot read 'someday'") and messages[1] == "not UTF-8 (byte 14)"
    )  # the é of "caf\\xe9"


def test_a_utf16_article_says_so(tmp_path):
    folder = tmp_path / "content"
    folder.mkdir()
    text = "---\ntitle: Wide\ndate: 2026-11-20\n---\n"
    (folder / "le.md").write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    (folder / "be.md").write_bytes(b"\xfe\xff" + text.encode("utf-16-be"))
    index = load_articles(make_config(tmp_path, content={"path": "content"}))
    assert not index.articles
    assert sorted(str(p) for p in index.problems) == [
        f"{folder / 'be.md'}: error: UTF-16, not UTF-8: save it as UTF-8",
        f"{folder / 'le.md'}: error: UTF-16, not UTF-8: save it as UTF-8",
    ]


def test_a_file_too_large_to_be_an_article_is_named_and_not_read_whole(tmp_path):
    from digest.content import MAX_ARTICLE_BYTES

    folder = tmp_path / "content"
    write_article(folder, "good.md", "---\ntitle: Good\ndate: 2026-11-20\n---\n")
    dump = write_article(folder, "dump.md", "---\ntitle: Dump\ndate: 2026-11-20\n---\n")
    with dump.open("r+b") as f:  # sparse: no disk used, but every byte reads back
        f.truncate(MAX_ARTICLE_BYTES + 1)
    edge = write_article(folder, "edge.md", "---\ntitle: Edge\ndate: 2026-11-21\n---\n")
    with edge.open("r+b") as f:
        f.truncate(MAX_ARTICLE_BYTES)  # exactly the limit: still read (NULs after the front matter)
    index = load_articles(make_config(tmp_path, content={"path": "content"}))
    assert sorted(a.title for a in index.articles) == ["Edge", "Good"]
    assert [str(p) for p in index.problems] == [f"{dump}: error: larger than 64 MB: not read as an article"]


def test_a_title_that_is_not_text_is_an_error_and_a_huge_one_is_cut(tmp_path):
    from digest.content import MAX_TITLE_CHARS

    folder = tmp_path / "content"
    write_article(folder, "list.md", "---\ntitle: [Robots, rule]\ndate: 2026-11-20\n---\n")
    write_article(folder, "map.md", "---\ntitle: {en: Robots}\ndate: 2026-11-20\n---\n")
    write_article(folder, "bin.md", "---\ntitle: !!binary aGVsbG8=\ndate: 2026-11-20\n---\n")
    write_article(folder, "year.md", "---\ntitle: 2026\ndate: 2026-11-20\n---\n")  # a number reads as text
    write_article(folder, "long.md", f"---\ntitle: {'word ' * 1000}\ndate: 2026-11-21\n---\n")
    index = load_articles(make_config(tmp_path, content={"path": "content"}))
    assert sorted((a.title[:10], len(a.title)) for a in index.articles) == [
        ("2026", 4),
        ("word word ", MAX_TITLE_CHARS),  # cut after the last whole word that fits, then "…"
    ]
    assert max(a.title for a in index.articles).endswith("word…")
    assert sorted((Path(p.source).name, p.severity, p.field, p.message) for p in index.problems) == [
        ("bin.md", "error", "title", "title: expected text, not binary data"),
        ("list.md", "error", "title", "title: expected text, not a list"),
        ("long.md", "warning", None, "title: longer than 2,000 characters; cut"),
        ("map.md", "error", "title", "title: expected text, not a mapping"),
    ]


def test_cut_words_and_clean_excerpt():
    assert cut_words("one two three four", 100) == "one two three four"
    assert cut_words("alpha beta gamma delta", 12) == "alpha beta…"
    assert clean_excerpt("word1 word2 fragm...", 100) == "word1 word2…"
    assert clean_excerpt("A finished sentence ...", 100) == "A finished sentence…"


def test_files_are_read_in_path_order_cold_and_warm(tmp_path):
    """The order decides which spelling wins a tie and which of two same-titled files counts: it is
    `sorted(Path ...)`'s, files and folders interleaved by name ('a/b.md' before 'a-c.md'), with
    hidden files and folders left out, whatever order the folder lists them in."""
    folder = tmp_path / "content"
    names = ["z/y/x.md", "a-c.md", "a/b.md", "ä.md", "a.md", "a/b/c.md", "a0.md", "A.md", "a b.md", "a!.md"]
    for n, rel in enumerate([*names, "b/.hidden.md", ".git/x.md"]):
        write_article(folder, rel, f"---\ntitle: T{n}\ndate: 2026-11-{n + 1:02d}\n---\n")
    want = [p for p in sorted(folder.rglob("*.md")) if not any(x.startswith(".") for x in p.relative_to(folder).parts)]
    assert len(want) == len(names)
    config = make_config(tmp_path, content={"path": "content"})
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # no cache, writing it, from it
        assert [a.path for a in load_articles(config, cache_dir=cache).articles] == want


def test_a_folder_linked_back_up_the_tree_is_read_once(tmp_path):
    # a symlink to an ancestor (a deploy script's `current -> ..`) must not be walked round and round
    import os

    folder = tmp_path / "content"
    write_article(folder, "posts/a.md", "---\ntitle: Alpha\ndate: 2026-11-20\n---\n")
    os.symlink(folder, folder / "posts" / "loop")
    os.symlink(folder / "posts", folder / "also")  # not a loop: read there too, as before
    index = load_articles(make_config(tmp_path, content={"path": "content"}))
    assert [a.path.relative_to(folder).as_posix() for a in index.articles] == ["also/a.md"]
    assert [p.message for p in index.problems] == [f"same title and date as {folder / 'also/a.md'}; counted once"]


def test_links_out_of_the_content_folder_are_reported_and_not_followed(tmp_path):
    # Content is untrusted: a link to / would walk the whole disk, a link to a home folder would
    # publish whatever .md files sit there. Links inside the folder are still followed.
    import os

    folder = tmp_path / "content"
    write_article(folder, "posts/a.md", "---\ntitle: Alpha\ndate: 2026-11-20\n---\n")
    secret = write_article(tmp_path / "home", "notes/private.md", "---\ntitle: Private\ndate: 2026-11-21\n---\n")
    os.symlink("/", folder / "root")
    os.symlink(secret.parent, folder / "notes")
    os.symlink(secret, folder / "posts" / "private.md")
    os.symlink(folder / "posts" / "a.md", folder / "alias.md")  # inside: read (and counted once)
    config = make_config(tmp_path, content={"path": "content"})
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):
        index = load_articles(config, cache_dir=cache)
        assert [a.title for a in index.articles] == ["Alpha"]
        outside = {p.source: p.message for p in index.problems if "outside" in p.message}
        assert outside == {
            str(folder / "notes"): f"symlink to {secret.parent}, outside the content folder: not followed",
            str(folder / "posts" / "private.md"): f"symlink to {secret}, outside the content folder: not followed",
            str(folder / "root"): "symlink to /, outside the content folder: not followed",
        }
        assert all(p.severity == "warning" for p in index.problems)
    from digest.content import iter_article_files

    assert [p.relative_to(folder).as_posix() for p in iter_article_files(folder)] == ["alias.md", "posts/a.md"]


def test_content_cache_reuses_unchanged_files_and_rereads_changed_ones(tmp_path):
    folder = tmp_path / "content"
    cache = tmp_path / "state" / "cache"
    a = write_article(folder, "a.md", "---\ntitle: Alpha\ndate: 2026-11-20\n---\n")
    write_article(folder, "b.md", "---\ntitle: Beta\ndate: 2026-11-20\n---\n")
    write_article(folder, "broken.md", "---\ntitle: 'x\n---\n")
    config = make_config(tmp_path, content={"path": "content"})
    first = load_articles(config, cache_dir=cache)
    assert sorted(x.title for x in first.articles) == ["Alpha", "Beta"] and len(first.problems) == 1

    # Same size and mtime: served from the cache without reading the file (the title proves it).
    st = a.stat()
    a.write_text("---\ntitle: Gamma\ndate: 2026-11-20\n---\n")
    import os

    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = load_articles(config, cache_dir=cache)
    assert sorted(x.title for x in second.articles) == ["Alpha", "Beta"]
    assert [p.message for p in second.problems] == [p.message for p in first.problems]  # still reported

    # A real edit (new mtime) is read again; a deleted file disappears.
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    (folder / "b.md").unlink()
    third = load_articles(config, cache_dir=cache)
    assert [x.title for x in third.articles] == ["Gamma"]


def test_content_cache_is_dropped_when_settings_change(tmp_path):
    folder = tmp_path / "content"
    cache = tmp_path / "cache"
    write_article(folder, "a.md", "---\ntitle: Alpha\ndate: 2026-11-20\nimage: /x.png\n---\n")
    one = load_articles(make_config(tmp_path, content={"path": "content"}), cache_dir=cache)
    assert one.articles[0].cover_url == "https://example.com/x.png"
    two = load_articles(
        make_config(tmp_path, content={"path": "content"}, newsletter={"site_url": "https://other.example.org"}),
        cache_dir=cache,
    )
    assert two.articles[0].cover_url == "https://other.example.org/x.png"
    (cache / "content-index.json").write_bytes(b"garbage")
    assert load_articles(make_config(tmp_path, content={"path": "content"}), cache_dir=cache).articles


@pytest.mark.parametrize(
    ("name", "field", "fallback"),
    [
        ("unsafe_link_javascript.md", "url", "https://blog.example.com/unsafe_link_javascript"),
        ("unsafe_link_javascript_tab.md", "link", "https://blog.example.com/unsafe_link_javascript_tab"),
        ("unsafe_link_data.md", "link", "https://blog.example.com/unsafe_link_data"),
        ("unsafe_link_vbscript.md", "canonical_url", "https://blog.example.com/unsafe_link_vbscript"),
        # a slug is a path on the site, never a scheme
        ("unsafe_link_from_slug.md", "slug", "https://blog.example.com/javascript:alert(1)"),
    ],
)
def test_unsafe_article_links_fall_back_to_the_site_with_a_warning(index, name, field, fallback):
    article = by_file(index, name)
    assert article.url == fallback
    warnings = [p for p in index.problems if p.source.endswith(name)]
    assert len(warnings) == 1 and warnings[0].severity == "warning" and warnings[0].field == field
    assert "not an http(s) URL" in warnings[0].message and warnings[0].message.startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("name", "field"), [("unsafe_cover_javascript.md", "coverImage"), ("unsafe_cover_data.md", "image")]
)
def test_unsafe_covers_are_dropped_with_a_warning(index, name, field):
    article = by_file(index, name)
    assert article.cover_url == ""
    assert article.url.startswith("https://blog.example.com/")
    warnings = [p for p in index.problems if p.source.endswith(name)]
    assert len(warnings) == 1 and warnings[0].severity == "warning" and warnings[0].field == field


def test_relative_links_resolve_against_the_site_without_a_warning(index):
    assert by_file(index, "link_relative.md").url == "https://blog.example.com/posts/relative-link"
    assert not [p for p in index.problems if p.source.endswith("link_relative.md")]
    # every kept link and cover is http(s)
    assert all(a.url.startswith(("https://", "http://")) for a in index.articles)
    assert all(a.cover_url.startswith(("https://", "http://")) for a in index.articles if a.cover_url)


def test_warnings_survive_the_content_cache(tmp_path):
    folder = tmp_path / "content"
    write_article(folder, "bad_link.md", "---\ntitle: Bad\ndate: 2026-11-20\nurl: 'javascript:alert(1)'\n---\n")
    config = make_config(tmp_path, content={"path": "content"})
    cache = tmp_path / "state" / "cache"
    first = load_articles(config, cache_dir=cache)
    second = load_articles(config, cache_dir=cache)
    assert [a.url for a in second.articles] == [a.url for a in first.articles] == ["https://example.com/bad_link"]
    assert [p.field for p in second.problems] == [p.field for p in first.problems] == ["url"]
