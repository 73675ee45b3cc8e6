"""`digest archive --out site/`: a static web archive of the editions sent.

One page per edition, an index and an Atom feed of editions, deployable to any static host. Each
page is the edition's *generic* version: what a reader with no stated topics would have got at the
edition's moment (the newest articles of its window), rendered by the real composer with the real
templates, marked as the web version (`web_version` is true in the templates: the footer names no
reader and offers no unsubscribe link). Nothing personal is in it: no name, address, token or
per-reader link, whatever the list holds (tests scan every file for them).

Editions are the ones the ledger shows as sent (an accepted row), at the moment they were
selected for; their articles come from the content folder as it is now. `[archive] base_url` is
where this folder is published: each email's "View in browser" link points at its edition's page
there (links.web_version_url), and the feed's links are absolute.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from digest import personalize
from digest.cadences import Cadences
from digest.compose import Composer
from digest.config import Config
from digest.content import load_articles
from digest.errors import DigestError
from digest.links import edition_slug, web_version_url
from digest.models import Article, Edition, Subscriber
from digest.schedule import edition_for
from digest.selection import History, candidate_pool, select
from digest.store import ledger_exists, open_ledger

ATOM = "http://www.w3.org/2005/Atom"
FEED_NAME = "feed.xml"

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("digest.web", "templates"),
    autoescape=True,  # article titles are untrusted
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class ArchivedEdition:
    edition: Edition
    slug: str
    articles: tuple[Article, ...]
    url: str  #: absolute with base_url, else relative to the archive's root


@dataclass(frozen=True)
class ArchiveReport:
    out: Path
    editions: tuple[ArchivedEdition, ...]
    skipped: tuple[tuple[str, str], ...]  #: (edition, why): no page written
    files: tuple[Path, ...]


#: Who the generic version is rendered for: nobody. No address, no name, no topics.
_NOBODY = Subscriber(email="")


def _archive_config(config: Config) -> Config:
    # The web version links straight to articles: no first-party click links (they would count
    # a stranger's click, and carry no reader anyway).
    return dataclasses.replace(config, tracking=dataclasses.replace(config.tracking, clicks=False))


def sent_editions(config: Config) -> list[tuple[str, datetime]]:
    """(edition id, moment) of every edition sent, newest first (as many as `[archive] editions`)."""
    if not ledger_exists(config):
        return []
    with open_ledger(config, "read") as ledger:
        found = sorted(ledger.sent_editions().items(), key=lambda item: (item[1], item[0]), reverse=True)
    limit = config.archive.editions
    return found[:limit] if limit else found


def write_archive(config: Config, out: Path | None = None) -> ArchiveReport:
    """Write the archive into `out` (default `[archive] path`); returns what was written."""
    try:
        return _write_archive(config, out)
    except OSError as exc:
        raise DigestError(f"{exc.filename or out}: cannot write the archive: {exc.strerror or exc}") from None


def _write_archive(config: Config, out: Path | None) -> ArchiveReport:
    out = (out or config.archive.path).resolve()
    if out == config.state.path.resolve() or config.state.path.resolve() in out.parents:
        raise DigestError(f"{out}: refusing to write the public archive inside the state folder")
    editions = sent_editions(config)
    if not editions:
        raise DigestError("nothing to archive: the ledger shows no edition sent yet")
    config = _archive_config(config)
    content = load_articles(config, cache_dir=config.state.path / "cache")
    composer = Composer(config)
    composer.env.globals["web_version"] = True
    values = personalize.recipient_values(_NOBODY, default_name=config.newsletter.default_name, unsubscribe_url="")
    archived: list[ArchivedEdition] = []
    skipped: list[tuple[str, str]] = []
    files: list[Path] = []
    previous = _previous_of_same_cadence(config, editions)
    for edition_id, at in editions:
        edition = edition_for(at, config.tz, edition_id)
        # The page holds what its period brought: since the same cadence's previous edition, so
        # daily pages do not repeat each other and a monthly page covers its whole month.
        history = History(last_delivery=previous.get(edition_id))
        pool = candidate_pool(content.articles, at, config.selection, earliest=history.last_delivery)
        selection = select(_NOBODY, pool, at, config.selection, history)
        if not selection.gets_email:
            skipped.append((edition_id, selection.skipped or "no articles"))
            continue
        email = composer.compose_direct(selection, edition, values)
        slug = edition_slug(edition_id)
        page = out / slug / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(email.html, encoding="utf-8")
        files.append(page)
        archived.append(ArchivedEdition(edition, slug, selection.articles, _page_url(config, edition_id, slug)))
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    index.write_text(_index(config, archived), encoding="utf-8")
    feed = out / FEED_NAME
    feed.write_bytes(atom_feed(config, archived))
    files += [index, feed]
    return ArchiveReport(out, tuple(archived), tuple(skipped), tuple(files))


def _previous_of_same_cadence(config: Config, editions: Sequence[tuple[str, datetime]]) -> dict[str, datetime]:
    """Edition id -> the moment of the previous sent edition of the same cadence (daily, weekly,
    monthly; one cadence when the config has a single `cron` or none)."""
    cadences = Cadences.of(config)
    last: dict[str | None, datetime] = {}
    previous: dict[str, datetime] = {}
    for edition_id, at in sorted(editions, key=lambda item: (item[1], item[0])):
        cadence = cadences.cadence_of_edition(edition_id) if cadences is not None else None
        if cadence in last:
            previous[edition_id] = last[cadence]
        last[cadence] = at
    return previous


def _page_url(config: Config, edition_id: str, slug: str) -> str:
    return web_version_url(config, edition_id) or f"{slug}/"


def _index(config: Config, editions: Sequence[ArchivedEdition]) -> str:
    n = config.newsletter
    return _templates.get_template("archive_index.html").render(
        name=n.name,
        language=n.language,
        site_url=n.site_url,
        site_host=urlsplit(n.site_url).hostname or n.site_url,
        intro=n.intro,
        editions=editions,
        feed_url=_feed_url(config),
    )


def _feed_url(config: Config) -> str:
    base = config.archive.base_url
    return f"{base.rstrip('/')}/{FEED_NAME}" if base else FEED_NAME


def _tag(config: Config, edition: Edition | None = None) -> str:
    """A stable id (RFC 4151 tag URI) when there is no base URL to make one from."""
    host = urlsplit(config.newsletter.site_url).hostname or "localhost"
    if edition is None:
        return f"tag:{host},2000:digest-archive"
    return f"tag:{host},{edition.at.astimezone(UTC).year}:edition:{edition_slug(edition.id)}"


def atom_feed(config: Config, editions: Sequence[ArchivedEdition]) -> bytes:
    """An Atom 1.0 feed (RFC 4287) of the editions, newest first, built as XML (never by string
    pasting: titles are untrusted)."""
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    n = config.newsletter
    base = config.archive.base_url
    feed = ET.Element(f"{{{ATOM}}}feed")
    sub(feed, "title", n.name)
    sub(feed, "id", f"{base.rstrip('/')}/" if base else _tag(config))
    latest = max((e.edition.at for e in editions), default=datetime.now(UTC))
    sub(feed, "updated", _stamp(latest))
    sub(feed, "link", rel="self", href=_feed_url(config))
    sub(feed, "link", rel="alternate", type="text/html", href=f"{base.rstrip('/')}/" if base else "./")
    author = sub(feed, "author")
    sub(author, "name", n.name)
    for archived in editions:
        edition = archived.edition
        entry = sub(feed, "entry")
        sub(entry, "title", f"{n.name} · {edition.label}")
        sub(entry, "id", archived.url if base else _tag(config, edition))
        sub(entry, "updated", _stamp(edition.at))
        sub(entry, "link", rel="alternate", type="text/html", href=archived.url)
        sub(entry, "summary", " · ".join(a.title for a in archived.articles), type="text")
    data: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return data


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
