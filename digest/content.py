"""Reading articles: any front-matter dialect -> `Article`.

Real content folders are messy (Jekyll, Hugo, Astro, Next.js and feed importers each spell dates,
tags and images their own way). Every reader problem becomes a `Problem` naming the file; the file
is skipped and the rest goes on.

Article links and covers end up as `href` and `src` in every email and on the preview pages, so
only http(s) URLs are kept (relative ones are resolved against the site URL first). Anything else
(`javascript:`, `data:`, `vbscript:`, ...) is replaced by the fallback, the article's page on the
site or no cover, and reported as a warning naming the file and field.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import frontmatter
import yaml
from frontmatter.default_handlers import YAMLHandler

from digest.config import Config
from digest.content_cache import ContentCache, scan
from digest.feeds import load_feeds
from digest.fields import (
    FILENAME_DATE,
    as_list,
    date_from_filename,
    is_ambiguous_date,
    is_web_url,
    normalise_terms,
    parse_date,
)
from digest.models import Article, ContentIndex, Problem, Skipped
from digest.text import BODY_HEAD_CHARS, clean_excerpt, cut_words, one_line, word_count
from digest.timings import gc_paused

ARTICLE_SUFFIXES = frozenset({".md", ".markdown", ".mdx", ".html", ".htm"})
DATE_KEYS = ("date", "pubDate", "publishDate", "published", "pubdate", "publish_date", "created")
EXCERPT_KEYS = ("excerpt", "description", "summary", "spoiler")
COVER_KEYS = ("coverImage", "heroImage", "image", "images", "socialImage", "cover", "cover_image")
COVER_ALT_KEYS = ("coverAlt", "coverImageAlt", "heroImageAlt", "imageAlt", "image_alt", "alt")
URL_KEYS = ("url", "source", "link", "canonical_url", "canonicalURL")
TAG_KEYS = ("tags",)
CATEGORY_KEYS = ("category", "categories")

# --- what is not an article on purpose (see classify_path and _classify_meta) ---
#: Layouts of list pages: Jekyll's `home`, Eleventy's `layouts/home.njk`, Next starters' `ListLayout`,
#: matched on the file name's letters and digits, lower-cased, with any `layout...` suffix.
LIST_LAYOUT = re.compile(
    r"^(list|home|index|blog|archives?|categor(y|ies)|tags?|posts|posts?list|pagelist|section|taxonomy|term"
    r"|paginate|pagination|feed)(layout\w*)?$"
)
#: Repository files that sit in content folders without front matter.
_REPO_FILES = frozenset({"readme", "license", "licence", "changelog", "contributing", "code_of_conduct"})
#: The longest title kept (a feed's titles are cut at the same length).
MAX_TITLE_CHARS = 2000
#: An article file larger than this is reported, not read: real posts (even HTML with inline
#: images) are a few MB, and a stray database dump or video named .md must not take the memory.
MAX_ARTICLE_BYTES = 64 * 1024 * 1024


class NotAnArticle(Exception):
    """Internal: the file is not an article on purpose (a list page, a draft). Becomes `Skipped`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class ArticleProblem(Exception):
    """Internal: why one file is not an article. Becomes a `Problem`, never escapes this module."""

    def __init__(self, message: str, line: int | None = None, field: str | None = None):
        super().__init__(message)
        self.line = line
        self.field = field


def iter_article_files(folder: Path) -> Iterator[Path]:
    """Article files under `folder`, sorted for a stable order; hidden files and folders are
    skipped, and so are symlinks that lead out of `folder` (the same walk as loading: `scan`)."""
    yield from (Path(f.path) for f in scan(folder, ARTICLE_SUFFIXES))


def load_articles(config: Config, cache_dir: Path | None = None, *, save: bool = True) -> ContentIndex:
    """Every article of the content folder and of the configured feeds (see feeds.py), the same
    title and date counted once. With feeds, the folder may be absent."""
    c = config.content
    if not c.feeds:
        return load_folder(config, cache_dir, save=save)
    if c.path.is_dir():
        index = load_folder(config, cache_dir, save=save)
    else:
        default = config.source is None or c.path == (config.source.parent / "content").resolve()
        missing = Problem(str(c.path), "content folder not found; reading the feeds only", severity="warning")
        index = ContentIndex((), () if default else (missing,))
    feeds = load_feeds(config, cache_dir / "feeds" if cache_dir is not None else None, save=save)
    articles = list(index.articles)
    problems = [*index.problems, *feeds.problems]
    seen = {_same_key(a): a.path for a in articles}
    for article in feeds.articles:
        key = _same_key(article)
        if key in seen:
            problems.append(
                Problem(article.url, f"same title and date as {seen[key]}; counted once", severity="warning")
            )
            continue
        seen[key] = article.path
        articles.append(article)
    return ContentIndex(tuple(articles), tuple(problems), index.skipped)


def _same_key(article: Article) -> tuple[str, datetime]:
    return " ".join(article.title.casefold().split()), article.date


def load_folder(config: Config, cache_dir: Path | None = None, *, save: bool = True) -> ContentIndex:
    """Read every article of the configured content folder.

    With `cache_dir`, each file's result (article, problem or skipped page) is kept keyed by path,
    size and mtime (see content_cache.py), so an unchanged 12,000-article folder loads without
    parsing any YAML. `save=False` reads the cache but never writes it (a dry run writes nothing).
    """
    folder = config.content.path
    if not folder.is_dir():
        return ContentIndex((), (Problem(str(folder), "content folder not found"),))
    with gc_paused():
        return _load_folder(config, folder, cache_dir, save)


def _load_folder(config: Config, folder: Path, cache_dir: Path | None, save: bool) -> ContentIndex:
    links_out: list[tuple[str, str]] = []
    files = scan(folder, ARTICLE_SUFFIXES, links_out)
    cache = ContentCache.open(cache_dir, config, files=len(files)) if cache_dir is not None else None
    articles: list[Article] = []
    problems: list[Problem] = [
        Problem(link, f"symlink to {target}, outside the content folder: not followed", severity="warning")
        for link, target in links_out
    ]
    skipped: list[Skipped] = []
    seen: dict[tuple[str, datetime], str] = {}
    for file in files:
        cached = cache.get(file, config) if cache is not None else None
        if cached is None:
            path = Path(file.path)
            warnings: list[Problem] = []
            try:
                cached = (read_article(path, folder, config, warnings), tuple(warnings))
            except ArticleProblem as exc:
                cached = (Problem(str(path), str(exc), line=exc.line, field=exc.field), ())
            except NotAnArticle as exc:
                cached = (Skipped(str(path), exc.reason, exc.detail), ())
            if cache is not None:
                cache.put(file, cached)
        result, file_warnings = cached
        problems.extend(file_warnings)
        if isinstance(result, Problem):
            problems.append(result)
            continue
        if isinstance(result, Skipped):
            skipped.append(result)
            continue
        article = result
        key = _same_key(article)
        if key in seen:
            problems.append(Problem(file.path, f"same title and date as {seen[key]}; counted once", severity="warning"))
            continue
        seen[key] = file.path
        articles.append(article)
    if cache is not None and save:
        cache.save()
    return ContentIndex(canonical_spellings(articles), tuple(problems), tuple(skipped))


def read_article(path: Path, folder: Path, config: Config, warnings: list[Problem] | None = None) -> Article:
    """Parse one file into an `Article`, or raise `ArticleProblem` saying why not.

    What was read but not kept as written (an unsafe link, say) is appended to `warnings`. A file
    that is not an article on purpose (a list page, a draft) raises `NotAnArticle`."""
    classify_path(path.relative_to(folder))
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_ARTICLE_BYTES + 1)  # a bound, not a stat: the file may grow meanwhile
    except OSError as exc:
        raise ArticleProblem(f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_ARTICLE_BYTES:
        raise ArticleProblem(f"larger than {MAX_ARTICLE_BYTES // (1024 * 1024)} MB: not read as an article")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # what Windows editors call "Unicode"
            raise ArticleProblem("UTF-16, not UTF-8: save it as UTF-8") from None
        raise ArticleProblem(f"not UTF-8 (byte {exc.start})") from None
    meta, body = parse_front_matter(text.replace("\r\n", "\n").replace("\r", "\n"))
    if not meta:
        if path.stem.lower() in _REPO_FILES:
            raise NotAnArticle("non-article file", path.name)
        raise ArticleProblem("no front matter (expected a '---' YAML block with title and date)")
    return _build_or_skip(meta, body, path, folder, config, warnings)


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(metadata, body) of a file's text: YAML between `---` lines, or Hugo's TOML between `+++`.
    No front matter gives an empty mapping; invalid front matter raises `ArticleProblem`."""
    if text.startswith("+++"):
        return _toml_front_matter(text)
    try:
        post = frontmatter.loads(text, handler=_front_matter_handler(text))
    except RecursionError:
        raise ArticleProblem("front matter is nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # +1: marks are 0-based, and the YAML text starts with the rest of the opening '---' line
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ArticleProblem(f"front matter is not valid YAML: {reason}", line=line) from None
    return (post.metadata if isinstance(post.metadata, dict) else {}), post.content


def _toml_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """`+++` fenced TOML front matter (Hugo's default) -> (metadata, body)."""
    parts = _TOML_FENCE.split(text, 2)
    if len(parts) < 3 or parts[0].strip():
        raise ArticleProblem("front matter opened with '+++' is never closed", line=1)
    try:
        return tomllib.loads(parts[1]), parts[2]
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+)", str(exc))
        reason = str(exc).split(" (at line")[0]
        # tomllib's line numbers are the file's: the text it reads starts at the end of the '+++' line
        raise ArticleProblem(
            f"front matter is not valid TOML: {reason}", line=int(found[1]) if found else None
        ) from None


_TOML_FENCE = re.compile(r"^\+{3}[ \t]*$", re.MULTILINE)


def _build_or_skip(
    meta: dict[str, Any], body: str, path: Path, folder: Path, config: Config, warnings: list[Problem] | None
) -> Article:
    _classify_meta(meta)
    try:
        return build_article(meta, body, path, folder, config, warnings)
    except ArticleProblem as exc:
        # a draft may lack its title or date yet: that is work in progress, not a broken article
        if _truthy(meta.get("draft")) or meta.get("published") is False:
            raise NotAnArticle("draft", str(exc)) from None
        raise


# --- list pages and other non-articles -----------------------------------------------------------


def classify_path(rel: Path) -> None:
    """Raise `NotAnArticle` for a file that its name alone shows is a list page: Hugo's section
    pages (`_index.md`), pagination pages (`page/2/index.html`, `blog/page/3.md`)."""
    if rel.stem.lower() == "_index":
        raise NotAnArticle("list page", f"{rel.name}: a Hugo section page")
    parts = [*rel.parts[:-1], rel.stem]
    for first, second in zip(parts, parts[1:], strict=False):
        if first.lower() == "page" and second.isdigit():
            raise NotAnArticle("pagination page", f"{first}/{second}")


def _classify_meta(meta: dict[str, Any]) -> None:
    """Raise `NotAnArticle` for front matter that declares a list page or a non-page."""
    layout = meta.get("layout")
    if isinstance(layout, str):
        # layouts/home.njk -> home, ListLayoutWithTags -> listlayoutwithtags
        name = re.sub(r"[^a-z0-9]", "", layout.strip().rsplit("/", 1)[-1].split(".", 1)[0].lower())
        if LIST_LAYOUT.match(name):
            raise NotAnArticle("list page", f"layout: {layout.strip()}")
    for key in ("pagination", "paginate"):  # Eleventy, jekyll-paginate-v2
        value = meta.get(key)
        if isinstance(value, dict) and value.get("enabled", True) not in (False, "false"):
            raise NotAnArticle("list page", f"{key}: ...")
        if value is True or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise NotAnArticle("list page", f"{key}: {value}")
    if meta.get("headless") is True:  # a Hugo bundle of resources, never rendered as a page
        raise NotAnArticle("non-article file", "headless: true")


#: libyaml's safe loader when PyYAML has it (python-frontmatter's choice too), else PyYAML's own.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SafeYAMLHandler(YAMLHandler):
    """python-frontmatter's YAML handler, refusing aliases (`*name`).

    Nested anchors expand exponentially (a 13-line "billion laughs" file grows past gigabytes as
    soon as anything walks it), and no front matter needs them. The event stream is scanned first,
    which costs a linear pass and expands nothing.
    """

    def load(self, fm: str, **kwargs: object) -> Any:
        if "*" in fm:  # no alias without one: most front matter skips the scan
            for event in yaml.parse(fm, Loader=_YAML_LOADER):
                if isinstance(event, yaml.AliasEvent):
                    mark: Any = event.start_mark  # the C and pure-Python loaders' marks: both read alike
                    raise yaml.composer.ComposerError(
                        None, None, f"aliases (*{event.anchor}) are not allowed in front matter", mark
                    )
        return yaml.load(fm, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader


def _front_matter_handler(text: str) -> Any:
    """python-frontmatter's own choice of format, with YAML read by `_NoAliasLoader`."""
    handler = frontmatter.detect_format(text, frontmatter.handlers)
    return _SafeYAMLHandler() if isinstance(handler, YAMLHandler) else handler


def build_article(
    meta: dict[str, Any], body: str, path: Path, folder: Path, config: Config, warnings: list[Problem] | None = None
) -> Article:
    warn = warnings.append if warnings is not None else (lambda _problem: None)
    tz = config.tz
    site = config.newsletter.site_url
    title = meta.get("title")
    if title is None or not str(title).strip():
        raise ArticleProblem("no title", field="title")
    if isinstance(title, list | dict | bytes):  # `title: [a, b]` would read "['a', 'b']"
        raise ArticleProblem(f"title: expected text, not {_kind(title)}", field="title")
    title = one_line(str(title))
    if len(title) > MAX_TITLE_CHARS:
        # every email that shows it carries it (subject, heading, alt texts): cut, as feeds are
        warn(Problem(str(path), f"title: longer than {MAX_TITLE_CHARS:,} characters; cut", severity="warning"))
        title = cut_words(title, MAX_TITLE_CHARS)

    rel = path.relative_to(folder)
    stem = rel.stem
    if stem.lower() == "index" and len(rel.parts) > 1:  # Hugo/Astro page bundles: folder/index.md
        stem = rel.parts[-2]
    date_key = next((k for k in DATE_KEYS if meta.get(k) not in (None, "", False, True)), None)
    if date_key is not None:
        published = parse_date(meta[date_key], tz)
        if published is None:
            value = meta[date_key]
            hint = (
                " (day and month could be swapped: write it as YYYY-MM-DD)"
                if isinstance(value, str) and is_ambiguous_date(value)
                else ""
            )
            if isinstance(value, date):  # YAML read it as a date, but it has no instant in UTC
                hint = " (no such moment in UTC: before the year 1 or after 9999)"
                value = value.isoformat()
            raise ArticleProblem(f"{date_key}: cannot read {value!r} as a date{hint}", field=date_key)
    else:
        published = date_from_filename(stem, tz)
        if published is None:
            raise ArticleProblem("no date (no date/pubDate/publishDate/published, no YYYY-MM-DD file name)")

    match = FILENAME_DATE.match(stem)
    slug = str(meta.get("slug") or (match.group(4) if match and match.group(4) else stem)).strip("/")

    draft = _truthy(meta.get("draft")) or meta.get("published") is False
    sep = config.content.term_separator
    tags = normalise_terms(meta.get("tags"), sep)
    categories = normalise_terms([*as_list(meta.get("category"), sep), *as_list(meta.get("categories"), sep)])

    excerpt_raw = next((meta[k] for k in EXCERPT_KEYS if isinstance(meta.get(k), str) and meta[k].strip()), None)
    limit = config.content.excerpt_chars
    summary = clean_excerpt(excerpt_raw, limit) if excerpt_raw is not None else ""

    cover_url, cover_alt, cover_key = _cover(meta, site)
    if cover_url and not is_web_url(cover_url):
        warn(_unsafe(path, cover_key, cover_url, "the article is shown without a cover"))
        cover_url = ""
    if not cover_alt:
        cover_alt = title

    url, url_key = _article_url(meta, config, slug, published, rel)
    if not is_web_url(url):
        fallback = _site_link(site, slug)
        warn(_unsafe(path, url_key, url, f"linking to {fallback} instead"))
        url = fallback
    return Article(
        id=rel.with_suffix("").as_posix(),
        path=path,
        title=title,
        date=published,
        url=url,
        summary=summary,
        # a derived excerpt is only computed for articles that are shown (see Article.excerpt)
        body_head="" if summary else body[:BODY_HEAD_CHARS],
        body_is_html=path.suffix.lower() in (".html", ".htm"),
        excerpt_chars=limit,
        words=word_count(body),
        slug=slug,
        author=_author(meta.get("author")),
        tags=tags,
        categories=categories,
        cover_url=cover_url,
        cover_alt=cover_alt,
        draft=draft,
    )


# --- tags, authors, links ------------------------------------------------------------------------


def canonical_spellings(articles: list[Article]) -> tuple[Article, ...]:
    """The same tag (or category) spelled one way everywhere: its most frequent spelling.

    Real folders spell one tag `AI`, `Ai` and `ai`; selection already folds case, and readers
    should not see "Open-Source" next to "open-source". Ties go to the spelling met first (files
    are read in path order), so the choice is stable from run to run.

    The articles are respelled where they are: `articles` holds only what this load has just made
    (file or cache), which nobody else has seen yet, and copying most of a folder's articles for a
    new spelling was a tenth of a warm start. Every other `Article` stays as it was made.
    """
    tag_canon = _canon(Counter(itertools.chain.from_iterable(a.tags for a in articles)))
    category_canon = _canon(Counter(itertools.chain.from_iterable(a.categories for a in articles)))
    if tag_canon or category_canon:
        fix_tags, fix_categories = _respeller(tag_canon), _respeller(category_canon)
        for article in articles:
            tags, categories = fix_tags(article.tags), fix_categories(article.categories)
            if tags != article.tags:
                object.__setattr__(article, "tags", tags)
            if categories != article.categories:
                object.__setattr__(article, "categories", categories)
    return tuple(articles)


def _respeller(canon: dict[str, str]) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    """Terms -> the same terms in their canonical spelling, each distinct list respelled once."""
    memo: dict[tuple[str, ...], tuple[str, ...]] = {}

    def fix(terms: tuple[str, ...]) -> tuple[str, ...]:
        fixed = memo.get(terms)
        if fixed is None:
            fixed = memo[terms] = tuple(canon.get(t.casefold(), t) for t in terms) if canon else terms
        return fixed

    return fix


def _canon(counts: Counter[str]) -> dict[str, str]:
    """casefolded term -> its most frequent spelling, for terms spelled more than one way; a tie
    goes to the spelling met first (a Counter keeps first-met order)."""
    best: dict[str, tuple[str, int]] = {}
    spelled: Counter[str] = Counter()
    for term, count in counts.items():
        key = term.casefold()
        spelled[key] += 1
        if key not in best or count > best[key][1]:
            best[key] = (term, count)
    return {key: term for key, (term, _) in best.items() if spelled[key] > 1}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def _author(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("name", "")
    if isinstance(value, list):
        return ", ".join(_author(v) for v in value if v)
    return one_line(str(value)) if value else ""


def _unsafe(path: Path, key: str, url: str, consequence: str) -> Problem:
    shown = url if len(url) <= 60 else url[:59] + "…"
    return Problem(str(path), f"{key}: {shown!r} is not an http(s) URL; {consequence}", severity="warning", field=key)


def _site_link(site_url: str, slug: str) -> str:
    """The article's page on the site; './' keeps a slug like 'javascript:x' a path, never a scheme."""
    site = site_url.rstrip("/") + "/"
    url = urljoin(site, slug)
    return url if is_web_url(url) else urljoin(site, "./" + slug)


def _cover(meta: dict[str, Any], site: str) -> tuple[str, str, str]:
    """(resolved URL, alt, the key it came from); the URL is '' when there is none."""
    alt = next((one_line(meta[k]) for k in COVER_ALT_KEYS if isinstance(meta.get(k), str)), "")
    for key in COVER_KEYS:
        value = meta.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, dict):  # Astro/Hugo: {src: ..., alt: ...}; Hugo PaperMod: [cover] image = ...
            alt = alt or one_line(str(value.get("alt") or ""))
            value = value.get("src") or value.get("url") or value.get("image")
        if isinstance(value, str) and value.strip():
            return urljoin(site.rstrip("/") + "/", value.strip()), alt, key
    return "", alt, ""


def _article_url(meta: dict[str, Any], config: Config, slug: str, published: datetime, rel: Path) -> tuple[str, str]:
    """(URL, the front-matter key it came from, for a warning)."""
    site = config.newsletter.site_url.rstrip("/") + "/"
    pattern = config.content.article_url
    if pattern:
        local = published.astimezone(config.tz)
        url = pattern.format(
            slug=slug,
            year=f"{local.year:04d}",
            month=f"{local.month:02d}",
            day=f"{local.day:02d}",
            path=rel.with_suffix("").as_posix(),
        )
        return url, "slug"
    own_key = next((k for k in URL_KEYS if isinstance(meta.get(k), str) and meta[k].strip()), None)
    if own_key is not None:
        return urljoin(site, meta[own_key].strip()), own_key
    return urljoin(site, slug), "slug"


def _kind(value: object) -> str:
    kinds: dict[type, str] = {list: "a list", dict: "a mapping", bytes: "binary data"}
    return kinds.get(type(value), type(value).__name__)
