"""How long `digest init` takes on a large blog, and reading a large feed.

    python benchmarks/init_and_feeds.py [--articles 12000] [--items 5000]

Prints: init on a generated Hugo-like folder of N posts (detect, sample survey, write, load all
posts for the `--at` hint), and parsing an N-item RSS 2.0 feed into articles (from bytes, no network).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest.config import parse_config
from digest.feeds import Stored, _from_parsed, parse_feed
from digest.init import init


def hugo_folder(root: Path, n: int) -> None:
    (root / "hugo.toml").write_text("baseURL = 'https://big.example.org/'\ntitle = 'Big Blog'\n")
    posts = root / "content" / "posts"
    posts.mkdir(parents=True)
    (posts / "_index.md").write_text("---\ntitle: Posts\n---\n")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(n):
        when = start - timedelta(hours=i)
        (posts / f"post-{i}.md").write_text(
            f"+++\ntitle = 'Post {i}'\ndate = {when:%Y-%m-%dT%H:%M:%S}Z\ntags = ['t{i % 30}']\n+++\nBody {i}.\n"
        )


def big_feed(n: int) -> bytes:
    items = "".join(
        f"<item><title>Item {i}</title><link>https://feed.example.org/{i}</link>"
        f"<pubDate>Mon, 23 Nov 2026 10:00:00 +0000</pubDate><category>c{i % 20}</category>"
        f"<description><![CDATA[<p>Summary <b>{i}</b> with <a href='https://x.example/'>a link</a>.</p>]]></description></item>"
        for i in range(n)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>{items}</channel></rss>'.encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=12_000)
    parser.add_argument("--items", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hugo_folder(root, args.articles)
        started = time.perf_counter()
        report = init(root)
        elapsed = time.perf_counter() - started
        assert report.survey is not None
        print(
            f"digest init on {args.articles} posts: {elapsed:.2f} s "
            f"(sampled {report.survey.sampled}, {report.survey.articles} read as articles)"
        )
    body = big_feed(args.items)
    config = parse_config({}, base=Path("."))
    started = time.perf_counter()
    parsed = parse_feed(body, "https://feed.example.org/rss")
    articles, problems = _from_parsed(parsed, Stored("https://feed.example.org/rss", 0.0), config)
    elapsed = time.perf_counter() - started
    print(
        f"feed of {args.items} items ({len(body) / 1e6:.1f} MB): {elapsed:.2f} s to {len(articles)} articles, "
        f"{len(problems)} problems"
    )


if __name__ == "__main__":
    main()
