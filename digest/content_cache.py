"""The content index cache: each article file's parse result, keyed by path, size and mtime, as JSON.

A 12,000-article folder parses in seconds but loads from here in a fraction of one, so a weekly
run starts warm. The cache lives in the state folder, and its format is plain data on purpose: a
pickle there would run code as whoever loads it (the user holding the SendGrid key), and one bad
byte in it would stop every run until someone deleted the folder.

So nothing here trusts the file. Every entry is checked field by field against what the reader
itself produces (types, one-line titles and tags, http(s) links, aware dates); anything else, a
truncated or corrupted file, nesting too deep to parse or a file far larger than the folder could
explain, is ignored and that article is parsed again. A cache can make a run slower, never stop it,
and never change what an article says beyond what its own file could.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from digest.config import Config
from digest.fields import is_web_url
from digest.models import Article, Problem, Skipped
from digest.text import one_line

NAME = "content-index.json"
#: Cache files of earlier versions: removed when a new cache is written (a pickle is a liability).
LEGACY_NAMES = ("content-index.pickle",)
FORMAT = "newsletter-digest content index"
VERSION = 5  #: 5: titles checked and cut, epoch milliseconds, files over 64 MB refused (4: word counts, Skipped pages)
#: Bytes a cache entry may take, on average, before the whole file is thought implausible.
MAX_ENTRY_BYTES = 64 * 1024

#: One file's outcome: the article (or why there is none), and warnings about what was kept.
Read = tuple[Article | Problem | Skipped, tuple[Problem, ...]]


class FileStat(NamedTuple):
    """An article file found by `scan`: where it is and the stat fields the cache is keyed by."""

    path: str
    rel: str  #: relative to the content folder, '/'-separated
    size: int
    mtime_ns: int


def scan(folder: Path, suffixes: frozenset[str], links_out: list[tuple[str, str]] | None = None) -> list[FileStat]:
    """Article files under `folder` (hidden files and folders skipped), in the order
    `sorted(Path...)` gives: by path components, so 'a/b.md' comes before 'a-c.md'.

    A symlink (file or folder) is followed only when it resolves inside `folder`, as Jekyll's safe
    mode does: content is untrusted, and a link to `/` or to a home folder would otherwise walk the
    whole disk or read files nobody meant to publish. Each link left out is appended to
    `links_out` as (link, where it points).

    That order is a walk that takes each folder's entries sorted by name, files and folders
    alike, and goes into a folder where its name comes: sorting names per folder costs less than
    sorting every path's components at the end (a warm start is mostly this and the cache)."""
    found: list[FileStat] = []
    # A stack of the folders being walked, not a recursive closure: a closure that calls itself is
    # a reference cycle, which kept every FileStat alive until the next garbage collection. A
    # folder that is its own ancestor (a symlink back up the tree) is not walked again.
    walking: list[tuple[int, int]] = []
    root = os.path.realpath(folder)
    inside = root.rstrip(os.sep) + os.sep
    stack = [(_entries(str(folder), walking), "")]
    while stack:
        entries, prefix = stack[-1]
        for entry in entries:
            try:
                # d_type says which entries are links: only those pay for a realpath
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if target != root and not target.startswith(inside):
                        if links_out is not None:
                            links_out.append((entry.path, target))
                        continue
                if entry.is_dir():
                    # into the folder now, the rest of this one after it
                    stack.append((_entries(entry.path, walking), f"{prefix}{entry.name}/"))
                    break
                name = entry.name
                dot = name.rfind(".")  # os.path.splitext's suffix: hidden names never get here
                if dot < 1 or name[dot:].lower() not in suffixes or not entry.is_file():
                    continue
                st = entry.stat()
            except OSError:
                continue
            found.append(FileStat(entry.path, prefix + name, st.st_size, st.st_mtime_ns))
        else:
            stack.pop()
            walking.pop()
    return found


def _entries(directory: str, walking: list[tuple[int, int]]) -> Iterator[os.DirEntry[str]]:
    """A folder's entries sorted by name, hidden ones left out; none for a folder that cannot be
    read or is already being walked. Pushes the folder's identity on `walking`."""
    entries: list[os.DirEntry[str]] = []
    key = (-1, -1)
    try:
        st = os.stat(directory)
        key = (st.st_dev, st.st_ino)
        if key not in walking:
            with os.scandir(directory) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=_name)
    except OSError:
        pass
    walking.append(key)
    return iter(entries)


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


class ContentCache:
    """Parse results keyed by relative path, each valid while the file's size and mtime match.

    The file holds one line per article file, each prefixed with a CRC-32 of itself: random damage
    (a flipped bit, a truncated write, a disk error) costs the entries it touched, not the whole
    cache, and can never turn into a different title or link. Any change to the settings that
    shape an `Article` (zone, site URL, link pattern, excerpt length) or to this format starts a
    fresh cache.
    """

    def __init__(self, path: Path, fingerprint: list[object], entries: dict[str, list[Any]]):
        self.path = path
        self.fingerprint = fingerprint
        self._stored = entries  #: rel -> [rel, size, mtime_ns, result, warnings], checked on use
        self._used: dict[str, list[Any]] = {}
        self.dirty = False

    @classmethod
    def open(cls, folder: Path, config: Config, *, files: int = 0) -> ContentCache:
        """The cache in `folder` (empty when missing, unreadable, stale or implausible).
        `files`: how many article files there are, to bound a plausible cache size."""
        c = config.content
        fingerprint: list[object] = [
            str(c.path),
            c.article_url,
            c.excerpt_chars,
            c.term_separator,
            config.newsletter.timezone,
            config.newsletter.site_url,
        ]
        path = folder / NAME
        return cls(path, fingerprint, _read(path, fingerprint, limit=(files + 16) * MAX_ENTRY_BYTES))

    def get(self, file: FileStat, config: Config) -> Read | None:
        """The cached result for an unchanged file, or None (missing, changed or not valid)."""
        raw = self._stored.get(file.rel)
        if raw is None or raw[1] != file.size or raw[2] != file.mtime_ns:
            return None
        try:
            result = _decode(raw[3], file, config)
            warnings = tuple(_problem(w, file.path) for w in _items(raw[4])) if raw[4] != [] else ()
        except _Invalid:
            return None
        self._used[file.rel] = raw
        return result, warnings

    def put(self, file: FileStat, result: Read) -> None:
        article, warnings = result
        self._used[file.rel] = [file.rel, file.size, file.mtime_ns, _encode(article), [_encode(w) for w in warnings]]
        self.dirty = True

    def save(self) -> None:
        """Write what this load used (deleted articles drop out); never fails the run."""
        if not self.dirty and len(self._used) == len(self._stored):
            return
        header = {"format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint}
        lines = [_line(header), *(_line(entry) for entry in self._used.values())]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # one temp file per process: two runs saving at once must not write into the same one
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(b"".join(lines))
            os.replace(tmp, self.path)  # atomic: a crash never leaves half a cache
            for name in LEGACY_NAMES:
                (self.path.parent / name).unlink(missing_ok=True)
        except OSError:
            pass  # a read-only state folder only costs speed


def _line(value: object) -> bytes:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _read(path: Path, fingerprint: list[object], *, limit: int) -> dict[str, list[Any]]:
    """The entries whose line is intact, unchecked otherwise; {} when the file is not ours."""
    try:
        if path.stat().st_size > limit:
            return {}
        lines = path.read_bytes().split(b"\n")
    except OSError:
        return {}
    header = _parse(lines[0])
    if not isinstance(header, dict) or header != {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint}:
        return {}
    entries: dict[str, list[Any]] = {}
    for entry in _parse_all(lines[1:]):
        if isinstance(entry, list) and len(entry) == 5 and isinstance(entry[0], str):
            entries[entry[0]] = entry
    return entries


def _parse_all(lines: list[bytes]) -> list[Any]:
    """Each intact line's JSON value (see `_parse`), the bodies parsed in one `json.loads`: 12,763
    calls cost a sixth of a warm start. A body whose checksum is right but whose JSON is not (a
    crafted file) makes the whole parse fail, and then each line is parsed alone as before. (Bodies
    crafted to pair up differently when joined give values their author could have written as
    lines: every entry is checked by `_decode` alike.)"""
    bodies = [body for body in map(_intact, lines) if body is not None]
    try:
        values = json.loads(b"[" + b",".join(bodies) + b"]")
    except (ValueError, RecursionError):
        return [_parse(line) for line in lines]
    if not isinstance(values, list) or len(values) != len(bodies):  # a body of several values: crafted
        return [_parse(line) for line in lines]
    return values


def _intact(line: bytes) -> bytes | None:
    """A line's JSON text when its checksum matches, else None."""
    crc, _, body = line.partition(b" ")
    return body if len(crc) == 8 and crc == b"%08x" % zlib.crc32(body) else None


def _parse(line: bytes) -> Any:
    """A line's JSON value, or None when its checksum or its JSON is broken."""
    body = _intact(line)
    if body is None:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


# ---------------------------------------------------------------- entries


class _Invalid(Exception):
    """A cache entry that is not what the reader writes: ignored, the file is parsed again."""


_ARTICLE_FIELDS = 15


def _encode(result: Article | Problem | Skipped) -> list[Any]:
    if isinstance(result, Problem):
        return ["p", result.message, result.line, result.severity, result.field]
    if isinstance(result, Skipped):
        return ["s", result.reason, result.detail]
    a = result
    return [
        "a",
        a.title,
        a.date.isoformat(),
        a.url,
        a.slug,
        a.author,
        list(a.tags),
        list(a.categories),
        a.cover_url,
        a.cover_alt,
        a.draft,
        a.summary,
        a.body_head,
        a.body_is_html,
        a.excerpt_chars,
        a.words,
    ]


def _decode(raw: Any, file: FileStat, config: Config) -> Article | Problem | Skipped:
    if not (type(raw) is list and len(raw) == _ARTICLE_FIELDS + 1 and raw[0] == "a"):
        if isinstance(raw, list) and raw and raw[0] == "p":
            return _problem(raw, file.path)
        if isinstance(raw, list) and len(raw) == 3 and raw[0] == "s":
            _one_line(raw[1])
            _text(raw[2])
            return Skipped(file.path, raw[1], raw[2])
        raise _Invalid
    (
        _,
        title,
        date,
        url,
        slug,
        author,
        tags,
        categories,
        cover_url,
        cover_alt,
        draft,
        summary,
        head,
        is_html,
        chars,
        words,
    ) = raw
    _text(slug, head)
    if not (type(words) is int and words >= 0):
        raise _Invalid
    _one_line(title, author, cover_alt, summary)  # shown as they are: a control character breaks MJML
    if not title:
        raise _Invalid
    if not (isinstance(draft, bool) and isinstance(is_html, bool) and chars == config.content.excerpt_chars):
        raise _Invalid
    if not _web(url) or (cover_url != "" and not _web(cover_url)):
        raise _Invalid
    try:
        when = datetime.fromisoformat(date)
    except (TypeError, ValueError):
        raise _Invalid from None
    if when.tzinfo is None:
        raise _Invalid
    rel = file.rel
    # The entry holds Article's fields from `title` on, in order (see _encode), each checked above
    # as the reader makes it: the dataclass's __init__ (17 frozen setattrs, a tenth of a warm
    # start) is skipped. `_FIELDS` is checked against the dataclass at import.
    fields = dict(zip(_FIELDS, (rel[: rel.rfind(".")], _path(file.path), *raw[1:]), strict=True))
    # the id and path come from where the file is (the name without its suffix), never the cache
    fields["date"], fields["tags"], fields["categories"] = when, _terms(tags), _terms(categories)
    article = object.__new__(Article)
    article.__dict__.update(fields)
    return article


def _path(path: str) -> Path:
    """`Path(path)`, made from its folder's Path when one was made before: a folder holds many
    articles, and parsing each path whole was a twentieth of a warm start."""
    folder, _, name = path.rpartition(os.sep)
    parent = _FOLDERS.get(folder)
    if parent is None or _CHILD is None:
        made = Path(path)
        if len(_FOLDERS) < 4096:  # bounded: a folder of folders cannot grow it without end
            _FOLDERS[folder] = made.parent
        return made
    return _CHILD(parent, name)  # type: ignore[no-any-return]


#: Folder path -> its Path (see `_path`).
_FOLDERS: dict[str, Path] = {}
#: pathlib's own "child of this path" for names from a directory listing, which skips parsing;
#: private (CPython 3.11 to 3.13 have it), so Path(...) stands in where it is missing.
_CHILD = getattr(Path, "_make_child_relpath", None)


_FIELDS = (
    "id",
    "path",
    "title",
    "date",
    "url",
    "slug",
    "author",
    "tags",
    "categories",
    "cover_url",
    "cover_alt",
    "draft",
    "summary",
    "body_head",
    "body_is_html",
    "excerpt_chars",
    "words",
)
if _FIELDS != tuple(f.name for f in dataclasses.fields(Article)):  # pragma: no cover - a model change
    raise ImportError("content_cache._FIELDS must list Article's fields in order")


def _problem(raw: Any, source: str) -> Problem:
    if not (isinstance(raw, list) and len(raw) == 5 and raw[0] == "p"):
        raise _Invalid
    _, message, line, severity, field = raw
    if not isinstance(message, str) or severity not in ("error", "warning"):
        raise _Invalid
    if not (line is None or (type(line) is int and line > 0)) or not (field is None or isinstance(field, str)):
        raise _Invalid
    return Problem(source, message, line=line, severity=severity, field=field)


def _items(raw: Any) -> Sequence[Any]:
    if not isinstance(raw, list):
        raise _Invalid
    return raw


def _text(*values: Any) -> None:
    for value in values:
        if not isinstance(value, str):
            raise _Invalid


def _one_line(*values: Any) -> None:
    for value in values:
        if not (isinstance(value, str) and one_line(value) == value):
            raise _Invalid


def _terms(raw: Any) -> tuple[str, ...]:
    """Tags or categories as the reader keeps them: one-line, non-empty, distinct ignoring case.

    A folder has a few thousand distinct tag lists at most: each is checked once per load and
    its articles share one tuple."""
    terms = tuple(_items(raw))
    try:
        known = _TERMS.get(terms)
    except TypeError:  # an unhashable item (a list where a tag should be): not what the reader writes
        raise _Invalid from None
    if known is not None:
        return known
    for term in terms:
        if not (isinstance(term, str) and term and one_line(term) == term):
            raise _Invalid
    if len({t.casefold() for t in terms}) != len(terms):
        raise _Invalid
    if len(_TERMS) >= 65_536:
        _TERMS.clear()  # bounded: a crafted cache cannot grow it without end
    _TERMS[terms] = terms
    return terms


#: Valid term tuples seen (each is its own value): see `_terms`.
_TERMS: dict[tuple[str, ...], tuple[str, ...]] = {}


#: URLs whose parse cannot fail or surprise: ASCII host, no brackets, spaces or control characters.
_PLAIN_WEB_URL = re.compile(r"(?i)https?://[a-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][!-~]*)?")


def _web(url: Any) -> bool:
    """What the reader's `is_web_url` says, with the common case decided without urlsplit: a URL
    whose origin (`https://host`) was seen whole in a plain URL before, then `/` and printable
    ASCII, is a plain URL too (a folder's links share a handful of origins)."""
    if not isinstance(url, str):
        return False
    cut = url.find("/", 8)
    if cut > 0 and url[:cut] in _ORIGINS and url.isascii() and url.isprintable() and " " not in url:
        return True
    if _PLAIN_WEB_URL.fullmatch(url):
        if cut > 0 and len(_ORIGINS) < 1024 and _PLAIN_ORIGIN.fullmatch(url, 0, cut):
            _ORIGINS.add(url[:cut])
        return True
    return is_web_url(url)


_PLAIN_ORIGIN = re.compile(r"(?i)https?://[a-z0-9.-]+(?::[0-9]{1,5})?")
#: Origins matched by _PLAIN_ORIGIN (bounded: a crafted cache cannot grow it without end).
_ORIGINS: set[str] = set()
