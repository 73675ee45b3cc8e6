"""Recognising a blog for `digest init`: its generator, content folder, name, URL and time zone,
the link pattern of its posts, and the front matter its files use.

Read-only and safe: a generator's config is parsed as data (TOML, YAML through `safe_load`, JSON)
or searched with regular expressions (JavaScript and TypeScript configs are never executed), and
every file is read up to a size cap.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from digest import content as reader
from digest.content import ArticleProblem, NotAnArticle, iter_article_files, parse_front_matter
from digest.fields import date_from_filename

MAX_CONFIG_BYTES = 512 * 1024
SAMPLE_SIZE = 40
#: Folders never searched for posts: build output, dependencies, theme internals.
SKIP_DIRS = frozenset(
    {"node_modules", "_site", "public", "dist", "build", "out", "vendor", "themes", "layouts", "_layouts",
     "_includes", "_data", "static", "assets", "resources", "archetypes", "_newsletter", "state", "outbox",
     "templates", "i18n", "data-cache", "coverage"}
)  # fmt: skip


@dataclass(frozen=True)
class Generator:
    name: str
    markers: tuple[str, ...]  #: files or folders whose presence says "this generator"
    content: tuple[str, ...]  #: likely content folders, most specific first
    npm: str = ""  #: the package.json dependency that says it too
    feed: str = ""  #: where its usual feed plugin publishes


GENERATORS = (
    Generator(
        "Hugo",
        ("hugo.toml", "hugo.yaml", "hugo.yml", "hugo.json", "config/_default/hugo.toml", "config/_default/config.toml"),
        ("content/posts", "content/post", "content/blog", "content/articles", "content"),
        feed="index.xml",
    ),
    Generator("Jekyll", ("_config.yml", "_config.yaml"), ("_posts",), feed="feed.xml"),
    Generator(
        "Astro",
        ("astro.config.mjs", "astro.config.js", "astro.config.ts", "astro.config.mts", "astro.config.cjs"),
        (
            "src/content/blog",
            "src/content/posts",
            "src/content/post",
            "src/data/blog",
            "src/pages/blog",
            "src/pages/posts",
            "content/blog",
        ),
        npm="astro",
        feed="rss.xml",
    ),  # fmt: skip
    Generator(
        "Gatsby",
        ("gatsby-config.js", "gatsby-config.ts", "gatsby-config.mjs"),
        ("content/blog", "content/posts", "src/posts", "src/pages/blog", "blog", "posts", "content"),
        npm="gatsby",
        feed="rss.xml",
    ),
    Generator(
        "Next.js",
        ("next.config.js", "next.config.mjs", "next.config.ts", "next.config.cjs"),
        ("_posts", "data/blog", "content/blog", "content/posts", "posts", "blog", "src/content/blog", "content"),
        npm="next",
        feed="feed.xml",
    ),
    Generator(
        "Eleventy",
        (".eleventy.js", "eleventy.config.js", "eleventy.config.mjs", "eleventy.config.cjs", "eleventy.config.ts"),
        ("content/blog", "src/posts", "src/blog", "posts", "blog", "content/posts", "src/content/posts", "content"),
        npm="@11ty/eleventy",
        feed="feed/feed.xml",
    ),
)
PLAIN = Generator("plain folder", (), ("posts", "blog", "content", "_posts", "articles", "."))


@dataclass(frozen=True)
class Blog:
    """What `digest init` found in a folder."""

    root: Path
    generator: str
    content: Path | None  #: None: no folder of articles found
    name: str = ""
    site_url: str = ""
    timezone: str = ""
    article_url: str = ""  #: a guessed `[content] article_url`, '' when none can be
    feed_path: str = ""  #: where the generator's feed usually is, relative to site_url
    found_in: tuple[str, ...] = ()  #: the files the name, URL and zone came from
    notes: tuple[str, ...] = ()


def detect(root: Path, content: Path | None = None) -> Blog:
    """The blog in `root`; `content` overrides the content folder it would pick."""
    generator = _generator(root)
    folder = content if content is not None else _content_folder(root, generator)
    facts = _facts(root, generator.name)
    site_url = facts.get("site_url", "")
    if not re.match(r"^https?://[^/\s]+", site_url) or site_host(site_url) in _CODE_HOSTS:
        site_url = ""  # Hugo's `baseURL = "/"`, a package.json homepage on GitHub: not the site
    zone = facts.get("timezone", "")
    try:
        ZoneInfo(zone) if zone else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = ""
    blog = Blog(
        root=root,
        generator=generator.name,
        content=folder,
        name=facts.get("name", "") or _humanise(facts.get("npm_name", "")) or _humanise(root.resolve().name),
        site_url=site_url,
        timezone=zone,
        feed_path=generator.feed,
        found_in=tuple(s for s in dict.fromkeys(facts.get("sources", "").split("|")) if s),
        notes=_notes(generator.name),
    )
    return _with_link_pattern(blog, facts)


# --- which generator, which folder ---------------------------------------------------------------


def _generator(root: Path) -> Generator:
    deps = _npm_dependencies(root)
    for gen in GENERATORS:
        if any((root / marker).exists() for marker in gen.markers) or (gen.npm and gen.npm in deps):
            return gen
    # Hugo's older config name is shared with other tools: only a Hugo key makes it Hugo's
    for name in ("config.toml", "config.yaml", "config.yml"):
        data = _read_data(root / name)
        if isinstance(data, dict) and {"baseURL", "baseurl"} & set(data) and (root / "content").is_dir():
            return GENERATORS[0]
    # a _posts folder alone (Next's blog starter has one too, so only after the others)
    if (root / "_posts").is_dir() or "jekyll" in _read_text_or_empty(root / "Gemfile"):
        return GENERATORS[1]
    return PLAIN


def _read_text_or_empty(path: Path) -> str:
    try:
        return _read_text(path)
    except OSError:
        return ""


def _humanise(name: str) -> str:
    """`my-cool_blog` -> `My Cool Blog`: a last-resort newsletter name."""
    words = re.sub(r"[-_.@/]+", " ", name).split()
    return " ".join(w[:1].upper() + w[1:] for w in words)


_CODE_HOSTS = frozenset({"github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "npmjs.com"})


def _npm_dependencies(root: Path) -> set[str]:
    data = _read_data(root / "package.json")
    if not isinstance(data, dict):
        return set()
    deps: set[str] = set()
    for key in ("dependencies", "devDependencies"):
        if isinstance(data.get(key), dict):
            deps |= set(data[key])
    return deps


def _content_folder(root: Path, generator: Generator) -> Path | None:
    for rel in generator.content:
        folder = (root / rel).resolve() if rel != "." else root.resolve()
        if folder.is_dir() and _count_articles(folder, limit=1, shallow=rel == "."):
            return folder
    # anywhere else: the folder (four levels deep at most) holding the most article files
    best: tuple[int, Path] | None = None
    for folder in _candidate_folders(root, depth=4):
        n = _count_articles(folder, limit=10_000, shallow=True)
        if n and (best is None or n > best[0]):
            best = (n, folder)
    return best[1] if best else None


def _candidate_folders(root: Path, depth: int) -> Iterable[Path]:
    base = len(root.parts)
    for current, dirs, _files in os.walk(root):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        if len(here.parts) - base >= depth:
            dirs[:] = []
        yield here


def _count_articles(folder: Path, *, limit: int, shallow: bool = False) -> int:
    """Article files under `folder` (only its own files when `shallow`), stopping at `limit`.
    READMEs do not count: a repository's root is not a blog because it has one."""
    n = 0
    files = (p for p in folder.iterdir() if p.is_file()) if shallow else iter_article_files(folder)
    for path in files:
        if path.suffix.lower() in reader.ARTICLE_SUFFIXES and path.stem.lower() not in (
            "readme",
            "license",
            "changelog",
        ):
            n += 1
            if n >= limit:
                break
    return n


# --- name, URL, zone: from the generator's own config, read as data --------------------------------


def _facts(root: Path, generator: str) -> dict[str, str]:
    """name / site_url / timezone / permalink / npm_name from the first files that have them, and
    `sources`: the files name, site_url and timezone came from, '|'-joined."""
    found: dict[str, str] = {}

    def take(source: str, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, str) and value.strip() and key not in found:
                found[key] = value.strip()
                if key in ("name", "site_url", "timezone"):  # the facts init reports, with their file
                    found["sources"] = found.get("sources", "") + "|" + source

    for source, read in _fact_readers(root, generator):
        try:
            values = read()
        except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError, RecursionError):
            continue  # a broken or hostile file is no help, never a crash
        if values:
            take(source, values)
    return found


def _fact_readers(root: Path, generator: str) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    def data(name: str, keys: dict[str, tuple[str, ...]]) -> tuple[str, Callable[[], dict[str, Any]]]:
        def read() -> dict[str, Any]:
            doc = _read_data(root / name)
            if not isinstance(doc, dict):
                return {}
            out = {}
            for field_name, candidates in keys.items():
                value = _dig(doc, candidates)
                if value is not None:
                    out[field_name] = value
            return out

        return name, read

    def script(name: str, keys: dict[str, tuple[str, ...]]) -> tuple[str, Callable[[], dict[str, Any]]]:
        def read() -> dict[str, Any]:
            text = _read_text(root / name)
            return {k: v for k, cands in keys.items() if (v := _js_value(text, cands)) is not None}

        return name, read

    hugo = {"name": ("title",), "site_url": ("baseURL", "baseurl"), "timezone": ("timeZone", "timezone")}
    hugo_links = {"permalink": ("permalinks",)}
    readers: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if generator == "Hugo":
        for name in ("hugo.toml", "hugo.yaml", "hugo.yml", "hugo.json", "config/_default/hugo.toml",
                     "config/_default/config.toml", "config.toml", "config.yaml", "config.yml"):  # fmt: skip
            readers.append(data(name, {**hugo, **hugo_links}))
    elif generator == "Jekyll":
        readers.append(_jekyll_reader(root))
    elif generator == "Astro":
        for name in ("astro.config.mjs", "astro.config.js", "astro.config.ts", "astro.config.mts"):
            readers.append(script(name, {"site_url": ("site",)}))
        for name in ("src/consts.ts", "src/consts.js", "src/config.ts", "src/site.config.ts"):
            readers.append(script(name, {"name": ("SITE_TITLE", "title"), "site_url": ("SITE_URL", "website")}))
    elif generator == "Next.js":
        for name in ("data/siteMetadata.js", "data/siteMetadata.ts", "data/siteMetadata.mjs", "site.config.js",
                     "lib/constants.ts", "lib/constants.js"):  # fmt: skip
            readers.append(script(name, {"name": ("title", "CMS_NAME"), "site_url": ("siteUrl", "SITE_URL")}))
    elif generator == "Gatsby":
        for name in ("gatsby-config.js", "gatsby-config.ts", "gatsby-config.mjs"):
            readers.append(script(name, {"name": ("title",), "site_url": ("siteUrl",)}))
    elif generator == "Eleventy":
        for name in ("_data/metadata.json", "src/_data/metadata.json", "_data/site.json", "src/_data/site.json"):
            readers.append(data(name, {"name": ("title", "name"), "site_url": ("url",)}))
        for name in ("_data/metadata.js", "_data/metadata.mjs", "_data/metadata.cjs", "src/_data/metadata.js",
                     "_data/site.js", "src/_data/site.js"):  # fmt: skip
            readers.append(script(name, {"name": ("title", "name"), "site_url": ("url",)}))
    readers.append(data("package.json", {"site_url": ("homepage",), "npm_name": ("name",)}))
    return readers


def _jekyll_reader(root: Path) -> tuple[str, Callable[[], dict[str, Any]]]:
    name = "_config.yml" if (root / "_config.yml").exists() else "_config.yaml"

    def read() -> dict[str, Any]:
        doc = _read_data(root / name)
        if not isinstance(doc, dict):
            return {}
        url = str(doc["url"]) if isinstance(doc.get("url"), str) else ""
        base = str(doc["baseurl"]) if isinstance(doc.get("baseurl"), str) else ""
        out: dict[str, Any] = {"name": doc.get("title"), "timezone": doc.get("timezone")}
        if url:
            out["site_url"] = url.rstrip("/") + ("/" + base.strip("/") if base.strip("/") else "")
        out["permalink"] = doc.get("permalink") if isinstance(doc.get("permalink"), str) else "date"
        return out

    return name, read


def _dig(doc: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = doc.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, dict):  # Hugo [permalinks]: a table of section -> pattern
            return json.dumps(value)
    return None


def _read_text(path: Path) -> str:
    with path.open("rb") as f:
        raw = f.read(MAX_CONFIG_BYTES)
    return raw.decode("utf-8-sig", errors="replace")


def _read_data(path: Path) -> Any:
    """TOML, YAML or JSON as plain data; None if the file is absent, too big or unreadable."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        text = _read_text(path)
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yml", ".yaml"):
            return _safe_yaml(text)
        if path.suffix == ".json":
            return json.loads(text)
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return None
    return None


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors/aliases: a config that expands into billions of nodes is refused."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases are not read here")
        return super().compose_node(parent, index)


def _safe_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


_JS_STRING = r"""(?:"((?:[^"\\\n]|\\.){1,300})"|'((?:[^'\\\n]|\\.){1,300})'|`([^`$\n]{1,300})`)"""


def _js_value(text: str, keys: tuple[str, ...]) -> str | None:
    """The first string literal assigned to one of `keys` (`key: "..."`, `KEY = '...'`), found by
    pattern, never by running the file. A template literal with `${...}` is no literal: skipped."""
    for key in keys:
        match = re.search(rf"(?<![\w$.]){re.escape(key)}\s*[:=]\s*{_JS_STRING}", text)
        if match:
            value = next(g for g in match.groups() if g is not None)
            return value.replace("\\'", "'").replace('\\"', '"')
    return None


# --- link patterns -------------------------------------------------------------------------------

#: Jekyll's named permalink styles (https://jekyllrb.com/docs/permalinks/)
_JEKYLL_STYLES = {
    "date": "/:categories/:year/:month/:day/:title:output_ext",
    "pretty": "/:categories/:year/:month/:day/:title/",
    "none": "/:categories/:title:output_ext",
}
_TOKENS = {":year": "{year}", ":month": "{month}", ":day": "{day}", ":title": "{slug}", ":slug": "{slug}",
           ":output_ext": ".html", ":filename": "{slug}", ":contentbasename": "{slug}"}  # fmt: skip


def _with_link_pattern(blog: Blog, facts: dict[str, str]) -> Blog:
    """Guess `article_url` from the generator's default (or configured) post URLs."""
    from dataclasses import replace

    site = blog.site_url.rstrip("/")
    if not site or blog.content is None:
        return blog
    section = blog.content.name
    pattern = ""
    if blog.generator == "Jekyll":
        style = facts.get("permalink", "date")
        pattern = _JEKYLL_STYLES.get(style, style)
        # posts without categories drop that segment; a folder whose posts have them cannot be guessed
        if ":categories" in pattern and not _any_key(blog.content, ("categories", "category")):
            pattern = pattern.replace("/:categories", "")
    elif blog.generator == "Hugo":
        permalinks = facts.get("permalink", "")
        try:
            table = json.loads(permalinks) if permalinks else {}
        except ValueError:
            table = {}
        pattern = table.get(section, "") if isinstance(table, dict) else ""
        if not pattern:
            pattern = f"/{section}/:slug/" if blog.content.parent.name == "content" else ""
    elif blog.generator in ("Astro", "Eleventy") or (blog.generator == "Next.js" and section == "blog"):
        pattern = f"/{section}/:slug/" if blog.generator != "Next.js" else f"/{section}/:slug"
    elif blog.generator == "Next.js" and section == "_posts":
        pattern = "/posts/:slug"
    elif blog.generator == "Gatsby":
        pattern = "/:slug/"
    for token, field_name in sorted(_TOKENS.items(), key=lambda kv: -len(kv[0])):
        pattern = pattern.replace(token, field_name)
    if not pattern or ":" in pattern:
        return blog  # a token we cannot fill (Jekyll :categories, Hugo :title ...): no guess
    return replace(blog, article_url=site + "/" + pattern.lstrip("/"))


def _any_key(folder: Path, keys: tuple[str, ...]) -> bool:
    return any(_meta_has(path, keys) for path in sample_files(folder))


def _meta_has(path: Path, keys: tuple[str, ...]) -> bool:
    meta = _meta(path)
    return any(meta.get(k) for k in keys)


def _notes(generator: str) -> tuple[str, ...]:
    if generator == "Jekyll":
        return (
            "Jekyll publishes every file whose name does not start with _ or . : add `exclude: [digest.toml]` "
            "to _config.yml so the newsletter's config stays off your site.",
        )
    return ()


# --- what the front matter looks like ------------------------------------------------------------

FIELDS: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "date": reader.DATE_KEYS,
    "tags": reader.TAG_KEYS,
    "categories": reader.CATEGORY_KEYS,
    "cover": reader.COVER_KEYS,
    "excerpt": reader.EXCERPT_KEYS,
    "link": reader.URL_KEYS,
    "author": ("author",),
}
#: Keys the reader uses for something, so they are not "not read".
_ALSO_READ = frozenset({"slug", "draft", "layout", "pagination", "paginate", "headless", *reader.COVER_ALT_KEYS})


@dataclass
class Survey:
    """The front matter of a sample of the content folder, and how the reader takes those files."""

    total: int = 0  #: article files in the folder
    sampled: int = 0
    keys: dict[str, Counter[str]] = field(default_factory=dict)  #: field -> key spelling -> files
    unread: Counter[str] = field(default_factory=Counter)  #: keys the reader ignores
    articles: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    tags: Counter[str] = field(default_factory=Counter)


def sample_files(folder: Path, size: int = SAMPLE_SIZE) -> list[Path]:
    """Up to `size` article files spread evenly over the folder (sorted, so old and new posts)."""
    files = list(iter_article_files(folder))
    if len(files) <= size:
        return files
    step = len(files) / size
    return [files[int(i * step)] for i in range(size)]


def _meta(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > 4 * MAX_CONFIG_BYTES:
            return {}
        meta, _body = parse_front_matter(path.read_text(encoding="utf-8-sig", errors="replace"))
    except (OSError, ArticleProblem):
        return {}
    return meta


def survey(folder: Path, config: Any) -> Survey:
    """Read a sample of `folder` as the digest will: key spellings per field, keys not read, and
    how many become articles, are skipped on purpose, or are problems."""
    result = Survey(total=sum(1 for _ in iter_article_files(folder)))
    files = sample_files(folder)
    result.sampled = len(files)
    result.keys = {name: Counter() for name in FIELDS}
    for path in files:
        meta = _meta(path)
        for name, keys in FIELDS.items():
            for key in keys:
                if meta.get(key) not in (None, ""):
                    result.keys[name][key] += 1
        if not result_has(meta, reader.DATE_KEYS) and date_from_filename(path.stem, config.tz):
            result.keys["date"]["the file name"] += 1
        known = {k for keys in FIELDS.values() for k in keys} | _ALSO_READ
        result.unread.update(k for k in meta if isinstance(k, str) and k not in known)
        try:
            article = reader.read_article(path, folder, config)
        except NotAnArticle as exc:
            result.skipped[exc.reason] += 1
            continue
        except ArticleProblem as exc:
            where = f"{path.relative_to(folder)}" + (f":{exc.line}" if exc.line else "")
            result.problems.append(f"{where}: {exc}")
            continue
        if article.draft:
            result.skipped["draft"] += 1
        else:
            result.articles += 1
            result.tags.update(t.casefold() for t in article.tags)
    return result


def result_has(meta: dict[str, Any], keys: Iterable[str]) -> bool:
    return any(meta.get(k) not in (None, "") for k in keys)


def site_host(url: str) -> str:
    host = urlsplit(url).hostname or ""
    return host.removeprefix("www.")
