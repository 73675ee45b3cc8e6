"""Preview benchmark: the index of a large list, paged and searched on the server.

    .venv/bin/python benchmarks/preview_index.py [--subscribers 100000] [--work DIR]

Generates the real shape (benchmarks/corpus.py), builds the preview's state once (as
`digest preview` does on start and after each edit), then asks the running app for pages:
the index, a search, a far page, one subscriber's page. Prints the size and time of each answer,
and the whole `digest preview --get /` command (start-up and build included) for comparison.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AT = "2026-11-30T00:00:00+00:00"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=12763)
    parser.add_argument("--work", type=Path, help="generate into (and reuse) this folder")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from corpus import generate_content, generate_subscribers  # type: ignore[import-not-found]
    from starlette.testclient import TestClient

    from digest.web.live import PreviewState
    from digest.web.preview import create_app

    work = args.work or Path(tempfile.mkdtemp(prefix="digest-preview-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "content").is_dir():
        generate_content(work, args.posts, datetime.fromisoformat(AT))
    generate_subscribers(work, args.subscribers)
    config = work / "preview.toml"
    config.write_text(f"[newsletter]\nname = 'Bench Weekly'\n[templates]\npath = '{ROOT / 'templates'}'\n")

    state = PreviewState(config, AT)
    started = time.perf_counter()
    state.snapshot()  # what `digest preview` does once on start, and after each edit
    print(f"{args.subscribers:,} subscribers: preview state built in {time.perf_counter() - started:.2f} s")
    client = TestClient(create_app(state, watch=False), base_url="http://127.0.0.1")
    email = "reader77777@example.com" if args.subscribers > 77777 else "reader1@example.com"
    for label, path, params in (
        ("index", "/", {}),
        ("index again", "/", {}),
        ("search", "/", {"q": "music unsubscribed"}),
        ("page 500", "/", {"page": "500"}),
        ("one subscriber", f"/subscribers/{email}", {}),
    ):
        started = time.perf_counter()
        answer = client.get(path, params=params)
        elapsed = time.perf_counter() - started
        print(f"  GET {label:15} {answer.status_code}  {len(answer.content) / 1e3:8.1f} KB  {elapsed * 1e3:7.1f} ms")

    env = {**os.environ}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "preview", "--get", "/", "--at", AT],
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    print(
        f"digest preview --get / (start-up, build and page): {time.perf_counter() - started:.2f} s, {len(out) / 1e3:.1f} KB"
    )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
