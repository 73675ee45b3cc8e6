"""`digest init [FOLDER]`: start a newsletter for the blog in a folder.

It recognises the generator and the content folder (blogs.py), reads a sample of the posts as the
digest will, and writes a commented `digest.toml` plus an example subscriber list; with
`--templates` an editable copy of the packaged theme too. The private files (subscribers, state,
outbox) go into `_newsletter/`: a leading underscore keeps Jekyll (and most generators) from
publishing them. It never overwrites anything: if any file it would write exists, it writes none.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from digest.blogs import Blog, Survey, detect, site_host, survey
from digest.config import DEFAULT_CONFIG_NAME, load_config, parse_config
from digest.errors import InitError

PRIVATE = "_newsletter"
SUBSCRIBERS = f"{PRIVATE}/subscribers.csv"
TEMPLATES = f"{PRIVATE}/templates"


@dataclass(frozen=True)
class FeedProbe:
    url: str
    title: str = ""
    link: str = ""
    entries: int = 0
    problem: str = ""


@dataclass(frozen=True)
class InitReport:
    blog: Blog
    survey: Survey | None
    feeds: tuple[FeedProbe, ...]
    written: tuple[Path, ...]
    next_commands: tuple[str, ...]
    newest: datetime | None  #: the newest article found, when it is older than a digest's window
    notes: tuple[str, ...] = field(default=())


def init(
    folder: Path,
    *,
    templates: bool = False,
    content: Path | None = None,
    feeds: tuple[str, ...] = (),
    now: datetime | None = None,
) -> InitReport:
    folder = folder.resolve()
    if not folder.is_dir():
        raise InitError(f"{folder}: not a folder")
    if content is not None and not content.resolve().is_dir():
        raise InitError(f"--content {content}: not a folder")
    blog = detect(folder, content.resolve() if content is not None else None)
    if blog.content is None and not feeds:
        raise InitError(
            f"{folder}: found no folder of articles (.md, .markdown, .mdx, .html); pass --content FOLDER, "
            "or --feed URL for a blog that only has a feed"
        )
    targets = [folder / DEFAULT_CONFIG_NAME, folder / SUBSCRIBERS] + ([folder / TEMPLATES] if templates else [])
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing:
        raise InitError(f"{existing[0]} already exists; digest init never overwrites (move it away first)")

    probes = tuple(_probe(url) for url in feeds)
    blog = _with_feed_facts(blog, probes)
    config_for_survey = parse_config(
        {"newsletter": {"timezone": blog.timezone or "UTC", "site_url": blog.site_url or "https://example.com"}},
        base=folder,
    )
    found = survey(blog.content, config_for_survey) if blog.content is not None else None

    config_text = render_config(blog, found, feeds, with_templates=templates)
    written: list[Path] = []
    (folder / PRIVATE).mkdir(exist_ok=True)
    written.append(_create(folder / DEFAULT_CONFIG_NAME, config_text))
    written.append(_create(folder / SUBSCRIBERS, example_subscribers(found)))
    if templates:
        from digest.theme import copy_theme

        copy_theme(folder / TEMPLATES)
        written.append(folder / TEMPLATES)

    newest = _newest_if_old(folder / DEFAULT_CONFIG_NAME, now or datetime.now().astimezone())
    return InitReport(
        blog=blog,
        survey=found,
        feeds=probes,
        written=tuple(written),
        next_commands=next_commands(folder, newest),
        newest=newest,
        notes=blog.notes + (_gitignore_note(folder),),
    )


def _create(path: Path, text: str) -> Path:
    # "x": fail rather than overwrite, even if the file appeared since the check above
    try:
        with path.open("x", encoding="utf-8", newline="\n") as f:
            f.write(text)
    except FileExistsError:
        raise InitError(f"{path} already exists; digest init never overwrites (move it away first)") from None
    return path


def _probe(url: str) -> FeedProbe:
    """Fetch a feed once to name the newsletter after it and say how many entries it has."""
    from digest.errors import FeedError
    from digest.feeds import ACCEPT, USER_AGENT, parse_feed
    from digest.fetch import fetch

    if not url.startswith(("http://", "https://")):
        raise InitError(f"--feed {url!r}: not an http(s) URL")
    try:
        response = fetch(url, {"User-Agent": USER_AGENT, "Accept": ACCEPT}, timeout=20.0, max_bytes=10_000_000)
    except FeedError as exc:
        return FeedProbe(url, problem=str(exc))
    parsed = parse_feed(response.body, response.url, response.headers.get("content-type", ""))
    return FeedProbe(url, parsed.title, parsed.link, len(parsed.entries), parsed.broken)


def _with_feed_facts(blog: Blog, probes: tuple[FeedProbe, ...]) -> Blog:
    from dataclasses import replace

    if not probes or blog.content is not None:
        return blog
    first = next((p for p in probes if not p.problem), None)
    if first is None:
        return blog
    link = first.link if first.link.startswith(("http://", "https://")) else ""
    return replace(blog, name=first.title or blog.name, site_url=link or blog.site_url, generator="feed")


def _newest_if_old(config_path: Path, now: datetime) -> datetime | None:
    """The newest article's date when it is older than the selection window: a `--at` just after
    it shows a real digest instead of an empty one."""
    from digest.content import load_articles

    config = load_config(config_path)
    index = load_articles(config, save=False)
    dates = [a.date for a in index.articles if not a.draft]
    if not dates:
        return None
    newest = max(dates)
    return newest if newest < now - timedelta(days=config.selection.window_days) else None


def next_commands(folder: Path, newest: datetime | None) -> tuple[str, ...]:
    try:
        rel = os.path.relpath(folder)
    except ValueError:
        rel = str(folder)
    prefix = "digest" if rel == "." else f"digest --config {Path(rel) / DEFAULT_CONFIG_NAME}"
    at = f" --at {(newest + timedelta(days=1)):%Y-%m-%d}T00:00" if newest is not None else ""
    return (f"{prefix} check{at}", f"{prefix} preview{at}", f"{prefix} send --dry-run{at}")


def _gitignore_note(folder: Path) -> str:
    return (
        f"{SUBSCRIBERS}, {PRIVATE}/state/ and {PRIVATE}/outbox/ hold your readers' addresses: keep them out of "
        "a public repository (add them to .gitignore)."
    )


# --- the files -----------------------------------------------------------------------------------


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as is."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_config(blog: Blog, found: Survey | None, feeds: tuple[str, ...], *, with_templates: bool) -> str:
    q = toml_string
    site = blog.site_url or "https://example.com"
    host = site_host(site) or "example.com"
    source = f" (from {', '.join(blog.found_in)})" if blog.found_in else ""
    what = (
        "the site in this folder" if blog.generator in ("plain folder", "feed") else f"the {blog.generator} site here"
    )
    lines = [
        f"# digest.toml: written by `digest init` for {what}.",
        "# Every option is described in the configuration reference (docs/configuration.md).",
        "# Relative paths are relative to this file. Secrets never go here: they come from the environment.",
        "",
        "[newsletter]",
        f"name = {q(blog.name or 'My Newsletter')}{'  # guessed' + source if blog.name else ''}",
        f"site_url = {q(site)}  # relative links and covers resolve against it"
        + ("" if blog.site_url else "; none found: set yours"),
        f"from_email = {q('newsletter@' + host)}  # a guess: an address of your domain, with SPF/DKIM/DMARC",
        f"timezone = {q(blog.timezone or 'UTC')}  # dates without a zone in your posts are in this one",
        '# reply_to = "you@' + host + '"',
        '# postal_address = "Your name, street, city, country"  # CAN-SPAM wants one in every footer',
        '# logo_url = "https://' + host + '/logo.png"  # about 600x120; none: a text masthead',
        "",
        "[content]",
    ]
    if blog.content is not None:
        rel = os.path.relpath(blog.content, blog.root)
        count = f"{found.total} article file(s)" if found is not None else ""
        lines.append(f"path = {q(Path(rel).as_posix())}  # {blog.generator}: {count}")
    else:
        lines.append('# path = "content"  # no folder of articles: the feeds below are the whole source')
    if blog.article_url:
        lines += [
            f"# guessed from {blog.generator}'s usual post URLs: open one link in `digest preview` to check",
            f"article_url = {q(blog.article_url)}",
        ]
    else:
        lines.append(
            '# article_url = "'
            + site.rstrip("/")
            + "/posts/{slug}/\"  # empty: each post's own url, else site_url/slug"
        )
    if blog.generator == "Jekyll":
        lines.append('term_separator = "space"  # Jekyll reads `categories: a b` as two categories')
    if feeds:
        lines.append("feeds = [" + ", ".join(q(f) for f in feeds) + "]")
    elif blog.feed_path and blog.site_url:
        lines.append(
            f"# feeds = [{q(site.rstrip('/') + '/' + blog.feed_path)}]  # read the site's feed too (or instead)"
        )
    else:
        lines.append(
            '# feeds = ["https://' + host + '/feed.xml"]  # RSS, Atom or JSON Feed, beside or instead of the folder'
        )
    lines += [
        "",
        "[subscribers]",
        f"path = {q(SUBSCRIBERS)}  # an example list: replace it with your readers",
        "",
        "[state]",
        f"path = {q(PRIVATE + '/state')}  # the send ledger and caches: private, back it up",
        "",
        "[output]",
        f"path = {q(PRIVATE + '/outbox')}  # `digest build` writes .eml files here",
        "",
        "[templates]",
    ]
    if with_templates:
        lines.append(f"path = {q(TEMPLATES)}  # your copy of the theme: each file here replaces the packaged one")
    else:
        lines.append(f"# path = {q(TEMPLATES)}  # `digest init --templates` copies the packaged theme there to edit")
    lines += [
        "",
        "[selection]",
        "window_days = 7  # how far back articles are considered",
        "max_articles = 10",
        "",
        "[sending]",
        'transport = "outbox"  # writes .eml files and sends nothing; "sendgrid" or "smtp" to send for real',
        "",
    ]
    return "\n".join(lines)


def example_subscribers(found: Survey | None) -> str:
    """Two example rows on reserved example domains (nothing can be delivered to them): one reader
    who gets the newest posts, one who follows the blog's most common tag."""
    tag = found.tags.most_common(1)[0][0] if found is not None and found.tags else ""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "tags", "categories", "status"])
    writer.writerow(["reader@example.com", "Example Reader", "", "", "active"])
    writer.writerow(["fan@example.org", "Topic Fan", tag, "", "active"])
    return out.getvalue()
