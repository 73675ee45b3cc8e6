"""Content index benchmark: loading a large front-matter folder cold, then from the cache.

    .venv/bin/python benchmarks/content_load.py [--articles 12763] [--warm-runs 5]

Generates a real blog's shape (benchmarks/corpus.py: three years of posts in two front-matter
styles, case-variant tags, duplicates, a few broken files), then loads it with the real reader:
once with an empty cache (every file parsed), then --warm-runs times from the cache the first
load wrote (keyed by path, size and mtime). Prints each time (the warm median too); asserts
nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=12763)
    parser.add_argument("--warm-runs", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from corpus import generate_content  # type: ignore[import-not-found]

    from digest.config import parse_config
    from digest.content import load_articles

    work = Path(tempfile.mkdtemp(prefix="digest-content-"))
    try:
        generate_content(work, args.articles, datetime.fromisoformat("2026-11-30T00:00:00+00:00"), bad=25)
        config = parse_config({"content": {"path": "content"}}, base=work)
        cache = work / "state" / "cache"
        warm = []
        for run in range(1 + args.warm_runs):
            started = time.perf_counter()
            index = load_articles(config, cache_dir=cache)
            elapsed = time.perf_counter() - started
            warm += [elapsed] if run else []
            errors = sum(1 for p in index.problems if p.severity == "error")
            label = "warm (cache)" if run else "cold (no cache)"
            print(f"{label:16} {len(index.articles)} articles, {errors} bad files named, in {elapsed:.3f} s")
        print(f"warm median: {statistics.median(warm):.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
