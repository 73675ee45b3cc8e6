"""Feeds as a content source: `[content] feeds = [...]`, alone or beside the content folder.

RSS 0.9x/1.0/2.0 and Atom are read by feedparser, JSON Feed (1.0, 1.1) by its own spec. Every
entry becomes an `Article`: title, link, date, summary (HTML reduced to plain text: article text is
untrusted), categories as tags, author, and a cover from an image enclosure, `media:content`,
`media:thumbnail`, JSON Feed's `image`, or the first `<img>` of the entry.

Fetching is polite and bounded. Each response is kept in the state folder (`cache/feeds/`: the
body as it came, and a JSON file with its ETag/Last-Modified), so a weekly run makes one
conditional request per feed and usually gets a 304. A feed fetched less than
`feed_refresh_minutes` ago is not asked again (the preview rebuilds on every save). A feed that
fails (refused, timed out, too big, not a feed) is one warning and its last good copy is used. One
deadline covers the whole request, and the body is read in chunks up to `feed_max_mb` (compressed
bodies are counted after decompression), so a feed that streams forever, drips, or inflates to
gigabytes cannot hang a run or exhaust memory. feedparser never fetches anything itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import xml.sax
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import feedparser

from digest.config import Config
from digest.errors import FeedError
from digest.fetch import fetch
from digest.fields import is_web_url, normalise_terms, parse_date
from digest.models import Article, ContentIndex, Problem
from digest.text import SURROGATE_ESCAPE, body_to_text, clean_excerpt, cut_words, one_line, without_lone_surrogates
from digest.version import __version__

USER_AGENT = f"newsletter-digest/{__version__} (feed reader)"
ACCEPT = "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, */*;q=0.5"
#: How much of an entry's HTML is looked at for its summary text and first image.
SUMMARY_HTML_CHARS = 50_000
_IMG_SRC = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*["']([^"'>\s]+)""", re.I)
_UTC = ZoneInfo("UTC")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")


class BrokenFeed(FeedError):
    """The document came but is not a well-formed feed; `parsed` is what could be read of it."""

    def __init__(self, message: str, parsed: Parsed):
        super().__init__(message)
        self.parsed = parsed


# --- the response store --------------------------------------------------------------------------


@dataclass
class Stored:
    """The last good response of one feed: its body file and what a conditional GET needs."""

    url: str
    fetched_at: float  #: epoch seconds of the last 200 or 304
    etag: str = ""
    last_modified: str = ""
    content_type: str = ""
    final_url: str = ""  #: after redirects: the base for relative links
    #: entry id -> epoch seconds it was first seen: the date of an entry that has none (RSS 0.91)
    first_seen: dict[str, float] = field(default_factory=dict)


class FeedStore:
    """`<state>/cache/feeds/<key>.json` (JSON metadata) and `<key>.body` (the bytes as served).

    Plain data only: nothing read back from here can run code."""

    def __init__(self, folder: Path):
        self.folder = folder

    @staticmethod
    def key(url: str) -> str:
        return hashlib.sha256(url.encode("utf-8")).hexdigest()[:24]

    def load(self, url: str) -> tuple[Stored, bytes] | None:
        key = self.key(url)
        try:
            meta = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
            body = (self.folder / f"{key}.body").read_bytes()
            stored = Stored(**{k: meta[k] for k in Stored.__dataclass_fields__ if k in meta})
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            return None  # none yet, or unreadable: as if never fetched
        return (stored, body) if stored.url == url and _well_typed(stored) else None

    def save(self, stored: Stored, body: bytes | None) -> None:
        """Write the metadata (and the body, unless None: a 304 keeps the old one), atomically."""
        key = self.key(stored.url)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if body is not None:
                _write_atomic(self.folder / f"{key}.body", body)
            _write_atomic(self.folder / f"{key}.json", json.dumps(stored.__dict__, indent=1).encode("utf-8"))
        except OSError:
            pass  # a read-only state folder costs a full download next time, nothing else


def _well_typed(stored: Stored) -> bool:
    """A metadata file edited by hand or cut short must not crash a run: wrong types read as none."""
    texts = (stored.url, stored.etag, stored.last_modified, stored.content_type, stored.final_url)
    return (
        all(isinstance(t, str) for t in texts)
        and isinstance(stored.fetched_at, int | float)
        and isinstance(stored.first_seen, dict)
        and all(isinstance(k, str) and isinstance(v, int | float) for k, v in stored.first_seen.items())
    )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One feed item, whatever the format, before it becomes an `Article`."""

    guid: str
    title: str  #: may hold HTML (Atom type="html")
    link: str
    date: datetime | None
    date_text: str  #: as written, for a message when it cannot be read
    summary_html: str
    tags: tuple[str, ...] = ()
    author: str = ""
    cover: str = ""
    extra_images: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Parsed:
    entries: tuple[Entry, ...]
    broken: str = ""  #: why the document is not a (well-formed) feed; '' when it is
    title: str = ""  #: the feed's own title and site link (`digest init --feed` names the newsletter so)
    link: str = ""


def parse_feed(body: bytes, url: str, content_type: str = "") -> Parsed:
    """The entries of an RSS/Atom/JSON Feed document; `broken` says what is wrong with it."""
    head = body[:200].lstrip()
    if "json" in content_type.lower() or head.startswith(b"{"):
        return _parse_json_feed(body, url)
    try:
        parsed = feedparser.parse(body, response_headers={"content-location": url, "content-type": content_type})
    except Exception as exc:  # noqa: BLE001 - feedparser on hostile bytes: any failure is "broken"
        return Parsed((), f"cannot be parsed ({type(exc).__name__})")
    entries = tuple(_feedparser_entry(e) for e in parsed.entries)
    if not parsed.get("version") and not entries:
        return Parsed((), "not an RSS, Atom or JSON feed")
    # feedparser falls back to a lenient parser and reads what it can; other bozo reasons (an
    # encoding that differs from the declared one) are harmless
    error = parsed.get("bozo_exception")
    broken = ""
    if isinstance(error, xml.sax.SAXException):
        broken = f"not well-formed XML ({one_line(str(error)).removeprefix('<unknown>:')[:80]})"
    channel = parsed.get("feed") or {}
    return Parsed(entries, broken, html_to_text(channel.get("title") or "", 2000), str(channel.get("link") or ""))


def _feedparser_entry(e: Any) -> Entry:
    struct = e.get("published_parsed") or e.get("updated_parsed")
    date = datetime(*struct[:6]).replace(tzinfo=UTC) if struct else None  # feedparser normalises to UTC
    content = e.get("content") or []
    summary = e.get("summary") or (content[0].get("value") if content else "") or ""
    # the full content is the better place to find an image when the summary is short
    html_for_image = (content[0].get("value") if content else "") or summary
    author = (e.get("author_detail") or {}).get("name") or e.get("author") or ""
    return Entry(
        guid=str(e.get("id") or e.get("link") or e.get("title") or ""),
        title=e.get("title") or "",
        link=e.get("link") or "",
        date=date,
        date_text=e.get("published") or e.get("updated") or "",
        summary_html=summary,
        tags=tuple(t.get("term") or t.get("label") or "" for t in e.get("tags") or []),
        author=author,
        cover=_feedparser_cover(e),
        extra_images=tuple(_first_img(html_for_image)),
    )


def _feedparser_cover(e: Any) -> str:
    for media in e.get("media_content") or []:
        url = media.get("url") or ""
        kind = (media.get("type") or "").lower()
        if url and (media.get("medium") == "image" or kind.startswith("image/") or _looks_like_image(url)):
            return str(url)
    for thumb in e.get("media_thumbnail") or []:
        if thumb.get("url"):
            return str(thumb["url"])
    for enclosure in e.get("enclosures") or []:
        if (enclosure.get("type") or "").lower().startswith("image/") and enclosure.get("href"):
            return str(enclosure["href"])
    image = e.get("image")
    if isinstance(image, Mapping) and image.get("href"):
        return str(image["href"])
    return ""


def _looks_like_image(url: str) -> bool:
    return urlsplit(url).path.lower().endswith(_IMAGE_SUFFIXES)


def _first_img(html: str) -> Iterator[str]:
    match = _IMG_SRC.search(html[:SUMMARY_HTML_CHARS])
    if match:
        yield match.group(1).replace("&amp;", "&")


def _parse_json_feed(body: bytes, url: str) -> Parsed:
    """JSON Feed 1.0/1.1 (https://jsonfeed.org/version/1.1): `items` with id, url, title,
    content_html/content_text, summary, image, date_published, authors/author, tags."""
    try:
        text = body.decode("utf-8-sig")
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Parsed((), f"not valid JSON ({type(exc).__name__})")
    if SURROGATE_ESCAPE.search(text):  # half a surrogate pair would crash hashing its id, or its email
        doc, _ = without_lone_surrogates(doc)
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/"):
        return Parsed((), "not a JSON Feed (no jsonfeed.org version)")
    items = doc.get("items")
    if not isinstance(items, list):
        return Parsed((), "JSON Feed without an items list")
    base = str(doc.get("home_page_url") or url)
    feed_authors = _json_authors(doc)
    entries = []
    for item in items:
        if not isinstance(item, dict):
            continue
        text = _json_str(item, "content_text")
        summary = _json_str(item, "summary") or _json_str(item, "content_html") or _escape_text(text)
        date_text = _json_str(item, "date_published") or _json_str(item, "date_modified")
        tags = item.get("tags")
        entries.append(
            Entry(
                guid=str(item.get("id") or item.get("url") or ""),
                title=_json_str(item, "title"),
                link=urljoin(base, _json_str(item, "url") or _json_str(item, "external_url")),
                date=parse_date(date_text, _UTC) if date_text else None,  # RFC 3339: always with a zone
                date_text=date_text,
                summary_html=summary,
                tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
                author=_json_authors(item) or feed_authors,
                cover=_json_str(item, "image") or _json_str(item, "banner_image"),
                extra_images=tuple(_first_img(_json_str(item, "content_html"))),
            )
        )
    return Parsed(
        tuple(entries), title=html_to_text(_json_str(doc, "title"), 2000), link=_json_str(doc, "home_page_url")
    )


def _json_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _json_authors(obj: dict[str, Any]) -> str:
    authors = obj.get("authors")
    if not isinstance(authors, list):
        authors = [obj.get("author")]
    return ", ".join(a["name"] for a in authors if isinstance(a, dict) and isinstance(a.get("name"), str))


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def html_to_text(html: str, max_chars: int = SUMMARY_HTML_CHARS) -> str:
    """Untrusted feed HTML -> one line of plain text: tags and their attributes (event handlers
    included) are gone, script/style contents dropped, entities decoded."""
    # a closing tag becomes a space: 'work <a>faster</a>.' must not read 'work faster .'
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", one_line(body_to_text(html, is_html=True, max_chars=max_chars)))


_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:!?)])")


def entry_article(entry: Entry, feed_url: str, config: Config, first_seen: datetime | None = None) -> Article:
    """One entry as an `Article`; raises `FeedError` (one warning) when it has no usable link or
    date. An entry without a date of its own (RSS 0.91 has none) is dated when it was first seen."""
    link = urljoin(feed_url, entry.link.strip()) if entry.link.strip() else ""
    if not is_web_url(link):
        raise FeedError(f"entry {cut_words(entry.guid or entry.title, 60)!r}: no http(s) link; skipped")
    published = entry.date or (parse_date(entry.date_text, config.tz) if entry.date_text else None)
    if published is None and not entry.date_text:
        published = first_seen
    if published is None:
        raise FeedError(f"entry {link}: no readable date ({entry.date_text[:40]!r}); skipped")
    limit = config.content.excerpt_chars
    summary_text = html_to_text(entry.summary_html)
    # a micro-post has no title: its first words stand in for one
    title = html_to_text(entry.title, 2000) or cut_words(summary_text, 80) or link
    parts = urlsplit(link)
    slug = parts.path.rstrip("/").rsplit("/", 1)[-1] or parts.hostname or "entry"
    cover = next((u for u in (urljoin(link, c) for c in (entry.cover, *entry.extra_images) if c) if is_web_url(u)), "")
    return Article(
        id=f"feeds/{parts.hostname}/{hashlib.sha256((entry.guid or link).encode()).hexdigest()[:16]}",
        path=Path("feeds", parts.hostname or "feed", slug),
        title=title,
        date=published,
        url=link,
        summary=clean_excerpt(summary_text, limit) if summary_text else "",
        body_head="",
        excerpt_chars=limit,
        slug=slug,
        author=one_line(html_to_text(entry.author, 500)),
        tags=normalise_terms([html_to_text(t, 500) for t in entry.tags]),
        cover_url=cover,
        cover_alt=title,
    )


# --- loading -------------------------------------------------------------------------------------


def load_feeds(config: Config, store_dir: Path | None, *, save: bool = True, now: float | None = None) -> ContentIndex:
    """Every configured feed's entries as articles. `store_dir` keeps the responses (None: no
    conditional requests, no last good copy); `save=False` reads it but writes nothing (dry runs)."""
    store = FeedStore(store_dir) if store_dir is not None else None
    articles: list[Article] = []
    problems: list[Problem] = []
    for url in dict.fromkeys(config.content.feeds):
        found, feed_problems = _load_feed(url, config, store, save=save, now=time.time() if now is None else now)
        articles.extend(found)
        problems.extend(feed_problems)
    return ContentIndex(tuple(articles), tuple(problems))


def _load_feed(
    url: str, config: Config, store: FeedStore | None, *, save: bool, now: float
) -> tuple[list[Article], list[Problem]]:
    c = config.content
    previous = store.load(url) if store is not None else None

    def warn(message: str) -> Problem:
        return Problem(url, message, severity="warning")

    if previous is not None and now - previous[0].fetched_at < c.feed_refresh_minutes * 60:
        return _articles(previous[0], previous[1], config)
    headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT, "Accept-Encoding": "gzip"}
    if previous is not None:
        if previous[0].etag:
            headers["If-None-Match"] = previous[0].etag
        if previous[0].last_modified:
            headers["If-Modified-Since"] = previous[0].last_modified
    try:
        response = fetch(url, headers, timeout=c.feed_timeout, max_bytes=c.feed_max_mb * 1_000_000)
        if response.status == 304:
            if previous is None:
                raise FeedError("HTTP 304 for a request that was not conditional")
            stored, body = previous
            stored.fetched_at = now
            if store is not None and save:
                store.save(stored, None)
            return _articles(stored, body, config)
        stored = Stored(
            url,
            now,
            etag=response.headers.get("etag", ""),
            last_modified=response.headers.get("last-modified", ""),
            content_type=response.headers.get("content-type", ""),
            final_url=response.url,
        )
        parsed = parse_feed(response.body, response.url, stored.content_type)
        if parsed.broken:
            raise BrokenFeed(parsed.broken, parsed)
        seen = previous[0].first_seen if previous is not None else {}
        stored.first_seen = {e.guid: seen.get(e.guid, now) for e in parsed.entries if e.guid}
        if store is not None and save:
            store.save(stored, response.body)
        return _from_parsed(parsed, stored, config)
    except FeedError as exc:
        if previous is not None:
            when = datetime.fromtimestamp(previous[0].fetched_at, UTC).astimezone(config.tz)
            found, problems = _articles(previous[0], previous[1], config)
            return found, [warn(f"feed: {exc}; using the copy from {when:%Y-%m-%d %H:%M}"), *problems]
        if isinstance(exc, BrokenFeed) and exc.parsed.entries:
            stored = Stored(url, now, final_url=url, first_seen={e.guid: now for e in exc.parsed.entries})
            found, problems = _from_parsed(exc.parsed, stored, config)
            return found, [warn(f"feed: {exc}; {len(found)} entries read anyway, no earlier copy"), *problems]
        return [], [warn(f"feed: {exc}; no earlier copy, so no articles from it")]


def _articles(stored: Stored, body: bytes, config: Config) -> tuple[list[Article], list[Problem]]:
    return _from_parsed(parse_feed(body, stored.final_url or stored.url, stored.content_type), stored, config)


def _from_parsed(parsed: Parsed, stored: Stored, config: Config) -> tuple[list[Article], list[Problem]]:
    articles: list[Article] = []
    problems: list[Problem] = []
    for entry in parsed.entries:
        seen = stored.first_seen.get(entry.guid)
        first_seen = datetime.fromtimestamp(seen, UTC) if seen is not None else None
        try:
            articles.append(entry_article(entry, stored.final_url or stored.url, config, first_seen))
        except FeedError as exc:
            problems.append(Problem(stored.url, str(exc), severity="warning"))
    return articles, problems
