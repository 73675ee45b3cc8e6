"""A hostile or broken content cache (state/cache/content-index.json) never stops, hijacks or
changes a run: every unreadable entry is ignored and that article parsed again.

The cache used to be a pickle: a crafted file ran code as the user holding the SendGrid key, and
fuzzed files stopped every run until the folder was deleted.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.assembly import PreparedEdition
from digest.compose import Composer
from digest.config import Config, parse_config
from digest.content import load_articles
from digest.content_cache import NAME
from digest.models import Article, Choice, Selection, Subscriber
from digest.personalize import recipient_values
from digest.schedule import edition_for

ROOT = Path(__file__).resolve().parent.parent.parent

ARTICLES = {
    "2026/11/alpha.md": "---\ntitle: Alpha\ndate: '2026-11-20'\ntags: [AI, Space]\nimage: /a.png\n---\nBody one.\n",
    "2026/11/beta.md": (
        "---\ntitle: Beta «β»\ndate: 2026-11-21T09:30:00Z\nexcerpt: Short one...\nurl: 'javascript:x'\n---\n"
    ),
    "2026/11/gamma.md": "---\ntitle: Gamma\ndate: 2026-11-22\ncategories: Science\n---\n# Heading\n\nText *here*.\n",
    "broken.md": "---\ntitle: 'unclosed\n---\n",
}


def site(tmp_path: Path) -> tuple[Config, Path]:
    for rel, text in ARTICLES.items():
        path = tmp_path / "content" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    config = parse_config(
        {"content": {"path": "content"}, "templates": {"path": str(ROOT / "templates")}}, base=tmp_path
    )
    return config, tmp_path / "state" / "cache"


def snapshot(config: Config, cache: Path | None, *, save: bool = True) -> tuple[object, ...]:
    index = load_articles(config, cache_dir=cache, save=save)
    return tuple(index.articles), tuple(index.problems)


@pytest.fixture
def warm(tmp_path: Path) -> tuple[Config, Path, tuple[object, ...], bytes]:
    config, cache = site(tmp_path)
    truth = snapshot(config, None)  # no cache at all: what the files say
    assert snapshot(config, cache) == truth
    good = (cache / NAME).read_bytes()
    return config, cache, truth, good


def lines(data: bytes) -> list[object]:
    """The cache's lines as JSON values (each line: an 8-digit CRC-32, a space, JSON)."""
    return [json.loads(line[9:]) for line in data.split(b"\n") if line]


def crafted(values: list[object]) -> bytes:
    """A cache file with these lines, each with a correct checksum: what an attacker writes."""
    out = b""
    for value in values:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        out += b"%08x %s\n" % (zlib.crc32(body), body)
    return out


def test_the_cache_is_checksummed_json_lines_and_a_warm_load_equals_a_parse(warm) -> None:
    config, cache, truth, good = warm
    header, *entries = lines(good)
    assert header["format"] == "newsletter-digest content index" and len(entries) == len(ARTICLES)
    assert crafted([header, *entries]) == good
    assert snapshot(config, cache) == truth


def mutations(good: bytes, rng: random.Random) -> list[bytes]:
    out = [b"", b"\x00" * 64, b"\x80\x04\x95" + rng.randbytes(200), b"[" * 100_000 + b"]" * 100_000, b"null", b"{}"]
    for _ in range(120):
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        out.append(bytes(data))
    for _ in range(40):
        out.append(good[: rng.randrange(len(good))])
    for _ in range(40):
        at = rng.randrange(len(good))
        out.append(good[:at] + rng.randbytes(rng.randint(1, 30)) + good[at:])
    return out


HOSTILE_VALUES = [
    None,
    True,
    0,
    -1,
    10**40,
    1.5,
    "",
    "x\x00y",
    "two\nlines",
    "javascript:alert(1)",
    "http://[",
    "https://",
    "not a date",
    "2026-11-20T00:00:00",  # a naive moment
    [],
    [None],
    ["AI", "ai"],
    ["\x1b[31m"],
    {"a": 1},
    [[[[[]]]]],
]


def structural(good: bytes) -> list[bytes]:
    """Crafted: valid checksums and JSON, wrong data. Every field of every entry (the header's
    too) replaced by every hostile value."""
    base = lines(good)
    out = []
    for i, line in enumerate(base):
        for path in _paths(line):
            for value in HOSTILE_VALUES:
                values = json.loads(json.dumps(base))
                _set(values[i], path, value)
                out.append(crafted(values))
        for value in HOSTILE_VALUES:
            out.append(crafted([*base[:i], value, *base[i + 1 :]]))
    return out


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    paths = [prefix] if prefix else []
    items = enumerate(value) if isinstance(value, list) else value.items() if isinstance(value, dict) else ()
    for key, item in items:
        paths += _paths(item, (*prefix, key))
    return paths


def _set(target: object, path: tuple[object, ...], value: object) -> None:
    for key in path[:-1]:
        target = target[key]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]


def test_damaged_caches_are_ignored_and_rebuilt(warm) -> None:
    """Random damage never reaches an article: the checksums catch every case."""
    config, cache, truth, good = warm
    cases = mutations(good, random.Random(1130))
    for case in cases:
        (cache / NAME).write_bytes(case)
        assert snapshot(config, cache) == truth, case[:200]
        # ...and the next run is warm again: whatever was bad was replaced
        assert (cache / NAME).read_bytes() == good


def test_crafted_caches_never_stop_a_run(warm) -> None:
    """Valid checksums, hostile data. An entry is used only when it is something the reader itself
    could have produced (a title that is one line, http(s) links, an aware date ...); then the
    composer renders it like any article. Everything else is parsed again from the file."""
    config, cache, truth, good = warm
    cases = structural(good)
    assert len(cases) > 1000
    accepted: dict[str, set[Article]] = {}  # article id -> the crafted versions that were used
    for case in cases:
        (cache / NAME).write_bytes(case)
        articles, problems = snapshot(config, cache, save=False)
        assert [a.path for a in articles] == [a.path for a in truth[0]]
        for article in set(articles) - set(truth[0]):
            accepted.setdefault(article.id, set()).add(article)
    assert accepted  # some crafted entries were valid, so the composer gets to render them
    edition = edition_for(datetime(2026, 11, 30, tzinfo=UTC), config.tz)
    versions = [sorted(v, key=repr) for v in accepted.values()]
    for k in range(max(map(len, versions))):
        articles = tuple(v[k] for v in versions if k < len(v))
        selection = Selection(
            Subscriber("a@example.com"), tuple(Choice(a, "x") for a in articles), edition.at, edition.at
        )
        values = recipient_values(selection.subscriber, default_name="there", unsubscribe_url="https://u.example/x")
        email = PreparedEdition.compile(Composer(config), articles, edition).email(selection, values)
        assert email.html_bytes and all(a.title in email.text for a in articles)


def test_one_bad_entry_costs_only_that_file(warm) -> None:
    """The other entries stay in use: a file whose bytes changed but whose size and mtime did not
    is still served from the cache, which proves the cache was read rather than thrown away."""
    config, cache, truth, good = warm
    values = lines(good)
    (gamma,) = [v for v in values[1:] if v[0] == "2026/11/gamma.md"]
    gamma[3][1] = ["not", "a", "title"]
    (cache / NAME).write_bytes(crafted(values))
    alpha = config.content.path / "2026/11/alpha.md"
    st = alpha.stat()
    alpha.write_text(ARTICLES["2026/11/alpha.md"].replace("Alpha", "Omega"), encoding="utf-8")
    os.utime(alpha, ns=(st.st_atime_ns, st.st_mtime_ns))
    articles, problems = snapshot(config, cache)
    assert (articles, problems) == truth
    assert "Alpha" in [a.title for a in articles]  # from the cache, not from the edited file


def test_a_line_of_broken_json_with_a_right_checksum_costs_only_that_file(warm) -> None:
    """The lines are parsed together for speed; one body that is not JSON (or that is several
    values) sends the load back to one line at a time, and the other entries are still used."""
    config, cache, truth, good = warm
    alpha = config.content.path / "2026/11/alpha.md"
    st = alpha.stat()
    alpha.write_text(ARTICLES["2026/11/alpha.md"].replace("Alpha", "Omega"), encoding="utf-8")
    os.utime(alpha, ns=(st.st_atime_ns, st.st_mtime_ns))
    for bad in (b'{"not": json', b"1,2", b'["2026/11/gamma.md"'):
        out = b""
        for line in good.split(b"\n"):
            if b'"2026/11/gamma.md"' in line:
                line = b"%08x %s" % (zlib.crc32(bad), bad)
            out += line + b"\n" if line else b""
        assert out.count(bad) == 1
        (cache / NAME).write_bytes(out)
        articles, problems = snapshot(config, cache, save=False)
        assert (articles, problems) == truth  # gamma parsed again from its file
        assert "Alpha" in [a.title for a in articles]  # alpha still from the cache


def test_an_implausibly_large_cache_is_not_read(warm) -> None:
    config, cache, truth, _ = warm
    with (cache / NAME).open("wb") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GB that would otherwise be read into memory
    assert snapshot(config, cache) == truth
    assert (cache / NAME).stat().st_size < 100_000


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_pickle_left_in_the_cache_folder_is_never_loaded_and_is_removed(warm, tmp_path: Path) -> None:
    config, cache, truth, _ = warm
    marker = tmp_path / "code-ran"
    legacy = cache / "content-index.pickle"
    legacy.write_bytes(pickle.dumps(_Payload(marker)))
    (cache / NAME).write_bytes(pickle.dumps(_Payload(marker)))  # a pickle under the new name too
    assert snapshot(config, cache) == truth
    assert not marker.exists()
    assert not legacy.exists()


def test_a_link_judged_by_an_origin_seen_before_is_judged_as_without_it() -> None:
    """The cache checks 20,000 links on a warm start, most of them on a handful of origins: a link
    on an origin already seen whole in a plain link skips the pattern. Whatever it skips, the
    verdict is the reader's own (`is_web_url`), for any text after any origin, seen or not."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from digest import content_cache
    from digest.fields import is_web_url

    origins = ["https://a.example", "http://b.example:8080", "HTTPS://A.EXAMPLE", "https://a.example?", "https://"]

    @settings(max_examples=400, deadline=None)
    @given(st.sampled_from(origins), st.sampled_from(["", "/", "?", "#", "//", " /", "@x/"]), st.text(max_size=12))
    def check(origin: str, joint: str, rest: str) -> None:
        url = origin + joint + rest
        plain = bool(content_cache._PLAIN_WEB_URL.fullmatch(url)) or is_web_url(url)
        assert content_cache._web(url) is plain  # the first time (an origin may be learnt) ...
        assert content_cache._web(url) is plain  # ... and after
        assert content_cache._web(origin + "/x") is (
            bool(content_cache._PLAIN_WEB_URL.fullmatch(origin + "/x")) or is_web_url(origin + "/x")
        )

    check()
    assert "https://a.example" in content_cache._ORIGINS  # the fast path was taken
