"""Feeds as a content source, served for real from a local HTTP server (tests/feed_server.py):
one real-world-shaped file per format, a broken one, 304s, and feeds that misbehave."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_AT, make_config
from feed_server import FeedServer, Route

from digest.cli import main
from digest.config import load_config
from digest.content import load_articles
from digest.errors import ConfigError
from digest.feeds import load_feeds
from digest.pipeline import open_run

FORMATS = {
    "/wordpress_rss2.xml": "application/rss+xml; charset=UTF-8",
    "/jekyll_atom.xml": "application/atom+xml",
    "/movabletype_rss1.rdf": "application/rdf+xml",
    "/userland_rss091.xml": "text/xml",
    "/microblog_feed.json": "application/feed+json",
}


@pytest.fixture
def server():
    with FeedServer() as srv:
        for path, content_type in FORMATS.items():
            srv.routes[path] = Route.file(path[1:], content_type=content_type)
        yield srv


def feed_config(tmp_path: Path, *urls: str, **content: object):
    return make_config(
        tmp_path, content={"feeds": list(urls), "feed_refresh_minutes": 0, **content}, state={"path": "state"}
    )


def load(config, tmp_path: Path, **kwargs):
    return load_feeds(config, tmp_path / "state" / "cache" / "feeds", **kwargs)


def by_title(index):
    return {a.title: a for a in index.articles}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_rss2_wordpress(server, tmp_path):
    index = load(feed_config(tmp_path, server.url("/wordpress_rss2.xml")), tmp_path)
    articles = by_title(index)
    garlic = articles["Planting garlic before the frost"]
    assert garlic.url == "https://allotment.example.org/2026/11/27/planting-garlic/"
    assert garlic.date == utc(2026, 11, 27, 17, 45)
    assert garlic.author == "Margaret Oduya"
    assert garlic.tags == ("Garden", "garlic", "Autumn")  # categories become tags
    assert garlic.summary.startswith("Cloves in by the end of November and they will thank you in July.")
    # no enclosure or media: the first <img> of the content
    assert garlic.cover_url == "https://allotment.example.org/wp-content/uploads/2026/11/garlic-1024x683.jpg"
    seeds = articles["Seed catalogue season & what I’m ordering"]  # entities decoded once
    assert seeds.cover_url == "https://cdn.example.org/catalogues.jpg"  # media:content
    compost = articles["Compost thermometer"]
    assert compost.cover_url.endswith("/compost.png")  # an image enclosure
    # the one entry with a javascript: link is one warning, not an article
    (problem,) = index.problems
    assert problem.severity == "warning" and "no http(s) link; skipped" in problem.message
    assert len(index.articles) == 3


def test_hostile_html_in_a_feed_is_reduced_to_text(server, tmp_path):
    compost = by_title(load(feed_config(tmp_path, server.url("/wordpress_rss2.xml")), tmp_path))["Compost thermometer"]
    assert compost.summary == "Hot heaps work faster."
    for text in (compost.title, compost.summary):
        for bad in ("<", ">", "script", "alert", "onclick", "onerror", "steal", "cookie", "display", "iframe"):
            assert bad not in text


def test_atom_jekyll_feed(server, tmp_path):
    articles = by_title(load(feed_config(tmp_path, server.url("/jekyll_atom.xml")), tmp_path))
    station = articles["A soldering station that fits in a drawer"]
    assert station.date == utc(2026, 11, 25, 21, 30)
    assert station.summary == "Twenty euros of parts & one afternoon."
    assert station.tags == ("hardware", "Electronics") and station.author == "Sam Okafor"
    assert station.cover_url == "https://tinkerer.example.org/log/assets/img/soldering.jpg"
    assert articles["Welcome to Jekyll!"].tags == ("jekyll", "update")


def test_rss1_rdf(server, tmp_path):
    articles = by_title(load(feed_config(tmp_path, server.url("/movabletype_rss1.rdf")), tmp_path))
    pens = articles["Fountain pens for left-handers"]
    assert pens.date == utc(2026, 11, 24, 14, 30) and pens.tags == ("Writing",) and pens.author == "Ruth Adeyemi"
    assert pens.summary == "Smudge-free, mostly."


def test_rss091_entries_without_dates_are_dated_when_first_seen(server, tmp_path):
    config = feed_config(tmp_path, server.url("/userland_rss091.xml"))
    first = by_title(load(config, tmp_path, now=1_795_000_000.0))
    assert first["RSS at thirty"].date == datetime.fromtimestamp(1_795_000_000, UTC)
    assert (
        first["Outlines are the web's native format"].summary == "It's even worth noting that a café runs on outlines."
    )
    # a week later the same entries keep the date they were first seen (kept in the store)
    later = by_title(load(config, tmp_path, now=1_795_000_000.0 + 7 * 86400))
    assert later["RSS at thirty"].date == datetime.fromtimestamp(1_795_000_000, UTC)


def test_json_feed_by_its_spec(server, tmp_path):
    index = load(feed_config(tmp_path, server.url("/microblog_feed.json")), tmp_path)
    articles = by_title(index)
    birding = articles["Winter birding, week one"]
    assert birding.date == utc(2026, 11, 27, 16, 12)
    assert birding.tags == ("Birds", "winter") and birding.author == "Lena Park"  # the feed's authors
    assert birding.cover_url == "https://notes.example.com/uploads/2026/heron.jpg"  # relative <img> resolved
    # a titleless micro-post: its text stands in for the title; a relative url resolves on home_page_url
    note = articles["Frost on the car this morning. First of the year."]
    assert note.url == "https://notes.example.com/2026/11/26/note.html"
    strap = articles["New camera strap"]
    assert strap.author == "Guest Writer" and strap.summary == "Leather, sturdy."
    assert strap.cover_url == "https://notes.example.com/uploads/strap.jpg"
    (problem,) = index.problems  # the undated item; the non-object item is ignored
    assert "no readable date ('whenever'); skipped" in problem.message


def test_conditional_get_gets_a_304_and_keeps_the_articles(server, tmp_path):
    url = server.url("/jekyll_atom.xml")
    config = feed_config(tmp_path, url)
    first = load(config, tmp_path)
    second = load(config, tmp_path)
    assert [a.id for a in second.articles] == [a.id for a in first.articles] and len(first.articles) == 2
    one, two = server.hits("/jekyll_atom.xml")
    assert one.status == 200 and "if-none-match" not in one.headers
    assert two.status == 304
    assert two.headers["if-none-match"] == server.routes["/jekyll_atom.xml"].etag
    assert two.headers["if-modified-since"] == server.routes["/jekyll_atom.xml"].last_modified
    # the store is plain data: JSON metadata beside the body as served
    store = tmp_path / "state" / "cache" / "feeds"
    (meta_file,) = store.glob("*.json")
    meta = json.loads(meta_file.read_text())
    assert meta["url"] == url and meta["etag"] == server.routes["/jekyll_atom.xml"].etag
    assert (store / meta_file.name.replace(".json", ".body")).read_bytes() == server.routes["/jekyll_atom.xml"].body


def test_last_modified_alone_is_used_when_there_is_no_etag(server, tmp_path):
    config = feed_config(tmp_path, server.url("/jekyll_atom.xml"))
    load(config, tmp_path)
    store = tmp_path / "state" / "cache" / "feeds"
    (meta_file,) = store.glob("*.json")
    meta = json.loads(meta_file.read_text())
    meta["etag"] = ""  # as if the server had sent none
    meta_file.write_text(json.dumps(meta))
    load(config, tmp_path)
    second = server.hits("/jekyll_atom.xml")[-1]
    assert "if-none-match" not in second.headers and second.status == 304


def test_a_recent_copy_is_not_asked_for_again(server, tmp_path):
    config = feed_config(tmp_path, server.url("/jekyll_atom.xml"), feed_refresh_minutes=10)
    load(config, tmp_path, now=1_000_000.0)
    again = load(config, tmp_path, now=1_000_000.0 + 9 * 60)
    assert len(server.hits("/jekyll_atom.xml")) == 1 and len(again.articles) == 2
    load(config, tmp_path, now=1_000_000.0 + 11 * 60)
    assert len(server.hits("/jekyll_atom.xml")) == 2


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        (Route(mode="status", status=500), "feed: HTTP 500"),
        (Route.file("broken_truncated_rss2.xml"), "feed: not well-formed XML (31:78: unclosed CDATA section)"),
        (Route(body=b"<html><body>Bad gateway</body></html>", content_type="text/html"), "not an RSS, Atom or JSON"),
        (Route(mode="status", status=404), "feed: HTTP 404"),
    ],
)
def test_a_failing_feed_is_one_warning_and_the_last_good_copy_is_used(server, tmp_path, route, reason):
    config = feed_config(tmp_path, server.url("/wordpress_rss2.xml"))
    good = load(config, tmp_path, now=1_795_000_000.0)
    server.routes["/wordpress_rss2.xml"] = route
    index = load(config, tmp_path, now=1_795_000_000.0 + 86400)
    assert [a.id for a in index.articles] == [a.id for a in good.articles]
    feed_warnings = [p for p in index.problems if p.message.startswith("feed:")]
    assert len(feed_warnings) == 1 and feed_warnings[0].severity == "warning"
    assert reason in feed_warnings[0].message and "using the copy from 2026-11-18 11:06" in feed_warnings[0].message


def test_a_broken_feed_without_an_earlier_copy(server, tmp_path):
    server.routes["/broken.xml"] = Route.file("broken_truncated_rss2.xml")
    server.routes["/down.xml"] = Route(mode="status", status=503)
    index = load(feed_config(tmp_path, server.url("/broken.xml"), server.url("/down.xml")), tmp_path)
    messages = sorted(p.message for p in index.problems)
    assert messages == [
        "feed: HTTP 503; no earlier copy, so no articles from it",
        "feed: not well-formed XML (31:78: unclosed CDATA section); 1 entries read anyway, no earlier copy",
    ]
    assert [a.title for a in index.articles] == ["Planting garlic before the frost"]


def test_an_endless_feed_stops_at_the_size_cap(server, tmp_path):
    server.routes["/endless.xml"] = Route(mode="forever")
    started = time.monotonic()
    index = load(feed_config(tmp_path, server.url("/endless.xml"), feed_max_mb=1), tmp_path)
    assert time.monotonic() - started < 10
    (problem,) = index.problems
    assert problem.message == "feed: larger than 1 MB; no earlier copy, so no articles from it"


def test_a_dripping_feed_stops_at_the_deadline(server, tmp_path):
    server.routes["/drip.xml"] = Route(mode="drip")
    started = time.monotonic()
    index = load(feed_config(tmp_path, server.url("/drip.xml"), feed_timeout=1.0), tmp_path)
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 5, elapsed  # each byte would reset a plain socket timeout: the watchdog ends it
    (problem,) = index.problems
    assert problem.message == "feed: timed out; no earlier copy, so no articles from it"


def test_a_feed_dripping_its_headers_stops_at_the_deadline(server, tmp_path):
    server.routes["/slow-headers.xml"] = Route(mode="drip_headers")
    started = time.monotonic()
    index = load(feed_config(tmp_path, server.url("/slow-headers.xml"), feed_timeout=1.0), tmp_path)
    assert time.monotonic() - started < 5
    (problem,) = index.problems
    assert problem.message == "feed: timed out; no earlier copy, so no articles from it"


def test_a_gzip_bomb_is_refused_at_the_cap_after_decompression(server, tmp_path):
    server.routes["/bomb.xml"] = Route(mode="gzip_bomb")
    index = load(feed_config(tmp_path, server.url("/bomb.xml"), feed_max_mb=1), tmp_path)
    (problem,) = index.problems
    assert problem.message == "feed: larger than 1 MB; no earlier copy, so no articles from it"


def test_gzip_and_redirects_are_followed(server, tmp_path):
    server.routes["/jekyll_atom.xml"].gzip = True
    server.routes["/old-feed"] = Route(mode="redirect", status=301, location="/jekyll_atom.xml")
    index = load(feed_config(tmp_path, server.url("/old-feed")), tmp_path)
    assert len(index.articles) == 2 and not index.problems
    (hit,) = server.hits("/jekyll_atom.xml")
    assert hit.status == 200 and "gzip" in hit.headers["accept-encoding"]


def test_a_redirect_to_another_scheme_is_refused(server, tmp_path):
    server.routes["/sneaky"] = Route(mode="redirect", status=302, location="file:///etc/passwd")
    (problem,) = load(feed_config(tmp_path, server.url("/sneaky")), tmp_path).problems
    assert "not an http(s) URL: 'file:///etc/passwd'" in problem.message


def test_a_refused_connection_is_one_warning(server, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        (problem,) = load(feed_config(tmp_path, f"http://127.0.0.1:{port}/feed.xml"), tmp_path).problems
    assert problem.message == "feed: connection refused; no earlier copy, so no articles from it"


def test_entity_expansion_does_not_explode(server, tmp_path):
    lol = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode() for i in range(1, 10)
        )
        + b']><rss version="2.0"><channel><title>&lol9;</title><item><title>&lol9;</title>'
        b"<link>https://x.example/a</link><pubDate>Mon, 23 Nov 2026 10:00:00 +0000</pubDate></item></channel></rss>"
    )
    server.routes["/lol.xml"] = Route(body=lol)
    started = time.monotonic()
    index = load(feed_config(tmp_path, server.url("/lol.xml")), tmp_path)
    assert time.monotonic() - started < 5
    assert all(len(a.title) < 10_000 for a in index.articles)


def test_a_damaged_store_reads_as_no_copy(server, tmp_path):
    config = feed_config(tmp_path, server.url("/jekyll_atom.xml"))
    load(config, tmp_path)
    (meta_file,) = (tmp_path / "state" / "cache" / "feeds").glob("*.json")
    for damage in (
        "{not json",
        json.dumps({"url": 5}),
        json.dumps({"url": server.url("/jekyll_atom.xml"), "first_seen": []}),
    ):
        meta_file.write_text(damage)
        index = load(config, tmp_path)
        assert len(index.articles) == 2 and not index.problems
        assert server.hits("/jekyll_atom.xml")[-1].status == 200  # asked afresh, unconditionally


def test_a_dry_run_writes_no_store(server, tmp_path):
    index = load(feed_config(tmp_path, server.url("/jekyll_atom.xml")), tmp_path, save=False)
    assert len(index.articles) == 2
    assert not (tmp_path / "state").exists()


def test_feeds_beside_a_folder_count_the_same_article_once(server, tmp_path):
    (tmp_path / "content").mkdir()
    (tmp_path / "content" / "station.md").write_text(
        "---\ntitle: A soldering station that fits in a drawer\ndate: 2026-11-25T16:30:00-05:00\n---\nBody\n"
    )
    config = feed_config(tmp_path, server.url("/jekyll_atom.xml"), path="content")
    index = load_articles(config, tmp_path / "state" / "cache")
    assert sorted(a.title for a in index.articles) == [
        "A soldering station that fits in a drawer",
        "Welcome to Jekyll!",
    ]
    assert [a.path.name for a in index.articles if a.title.startswith("A soldering")] == ["station.md"]
    (dup,) = index.problems
    assert "same title and date as" in dup.message and dup.severity == "warning"


def test_feed_urls_must_be_http(tmp_path):
    with pytest.raises(ConfigError, match="content.feeds: 'file:///etc/passwd' is not an http"):
        make_config(tmp_path, content={"feeds": ["file:///etc/passwd"]})
    with pytest.raises(ConfigError, match="feed_timeout > 0"):
        make_config(tmp_path, content={"feeds": [], "feed_timeout": 0})


def test_a_feed_url_alone_makes_a_digest(server, tmp_path):
    """No content folder at all: `[content] feeds` is the whole source; build and check succeed."""
    (tmp_path / "subscribers.csv").write_text("email,name,tags\nreader@example.com,Reader,\n")
    config_path = tmp_path / "digest.toml"
    config_path.write_text(
        '[newsletter]\nname = "Feed Weekly"\nsite_url = "https://allotment.example.org"\ntimezone = "Europe/London"\n'
        f'[content]\nfeeds = ["{server.url("/wordpress_rss2.xml")}", "{server.url("/microblog_feed.json")}"]\n'
        '[subscribers]\npath = "subscribers.csv"\n'
    )
    at = SAMPLE_AT.strftime("%Y-%m-%dT%H:%M")
    result = CliRunner().invoke(main, ["--config", str(config_path), "check", "--at", at], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.output
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["--config", str(config_path), "build", "--at", at, "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    (eml,) = out.glob("*.eml")
    raw = eml.read_bytes().decode("utf-8", "replace")
    assert "Planting garlic before the frost" in raw and "Winter birding, week one" in raw
    run = open_run(load_config(config_path), SAMPLE_AT)
    assert {a.title for a in run.pool} >= {"Planting garlic before the frost", "Winter birding, week one"}
    assert (tmp_path / "state" / "cache" / "feeds").is_dir()  # responses kept in the state folder


def test_a_json_feed_spelling_half_a_surrogate_pair_loads_with_replacement_characters(server, tmp_path):
    """`"\\ud800"` is valid JSON; the decoder keeps it, and it crashed hashing the entry's id (and
    would fail every email showing it). It reads as U+FFFD; a pair spelt as two escapes is kept."""
    items = [
        {
            "id": "\\ud800",
            "url": "/a",
            "title": "Robots \\udfff rule",
            "date_published": "2026-11-28T10:00:00Z",
            "tags": ["ai\\udc00"],
            "authors": [{"name": "Ada \\ud800"}],
        },
        {"id": "2", "url": "/b", "title": "Smile \\ud83d\\ude00", "date_published": "2026-11-28T11:00:00Z"},
    ]
    body = json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "title": "T", "home_page_url": "https://x.org/", "items": items}
    ).replace("\\\\u", "\\u")  # json.dumps escaped our backslashes: these are JSON's own escapes
    server.routes["/surrogates.json"] = Route(body.encode(), content_type="application/feed+json")
    index = load(feed_config(tmp_path, server.url("/surrogates.json")), tmp_path)
    robots, smile = sorted(index.articles, key=lambda a: a.url)
    assert (robots.title, robots.tags, robots.author) == ("Robots \ufffd rule", ("ai\ufffd",), "Ada \ufffd")
    assert smile.title == "Smile \U0001f600" and not index.problems
    assert robots.id != smile.id and robots.url == "https://x.org/a"
