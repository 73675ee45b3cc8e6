"""Content index benchmark: loading a large front-matter folder cold, then from the cache.

    .venv/bin/python benchmarks/content_load.py [--articles 12763]

Generates the folder (benchmarks/corpus.py, several dialects, a few broken files), then loads it
twice with the real reader: once with an empty cache (every file parsed) and once with the cache
the first load wrote (keyed by path, size and mtime). Prints both times; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=12763)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from corpus import generate  # type: ignore[import-not-found]

    from digest.config import parse_config
    from digest.content import load_articles

    work = Path(tempfile.mkdtemp(prefix="digest-content-"))
    try:
        generate(work, args.articles, 1, bad=25, at=datetime.fromisoformat("2026-11-30T00:00:00+00:00"))
        config = parse_config({"content": {"path": "content"}}, base=work)
        cache = work / "state" / "cache"
        for label in ("cold (no cache)", "warm (cache)"):
            started = time.perf_counter()
            index = load_articles(config, cache_dir=cache)
            elapsed = time.perf_counter() - started
            print(
                f"{label:16} {len(index.articles)} articles, {len(index.problems)} bad files named, in {elapsed:.2f} s"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
