"""The public app (`digest serve`) at list scale: per-GET latency of /preferences, and minting ids.

    .venv/bin/python benchmarks/public_app.py [--subscribers 300000] [--mint 100000] [--gets 50] [--parallel 20]

Generates a subscriber list of N rows in a temp folder, then prints:

* before: what each GET /preferences cost when the app re-read the whole list per request
  (`load_effective` plus a scan: exactly the old code path, timed here in-process);
* after: GET /preferences through the app (Starlette TestClient): the first request, which reads
  the list once, then the median and p95 of the next ones;
* parallel: the same app under real uvicorn on 127.0.0.1 (configured as `digest serve` runs it),
  P clients at once, each doing several GETs: median and p95 latency per GET;
* minting: opaque ids for M subscribers in one `token_ids` call, the first time (creating them)
  and the second (all known), with the number of write transactions each took.

Figures are printed, never asserted: no test depends on timing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from corpus import generate  # noqa: E402

SECRET = "benchmark-secret-0123456789abcdef"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=300_000)
    parser.add_argument("--mint", type=int, default=100_000)
    parser.add_argument("--gets", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--before-samples", type=int, default=3)
    args = parser.parse_args()

    os.environ["DIGEST_SECRET"] = SECRET
    from starlette.testclient import TestClient

    from digest.audience import load_effective
    from digest.config import load_config
    from digest.suppressions import open_state
    from digest.tokens import make_token
    from digest.web.public import PublicSettings, create_public_app

    with tempfile.TemporaryDirectory(prefix="digest-public-bench-") as tmp:
        root = Path(tmp)
        (root / "digest.toml").write_text(
            '[newsletter]\nname = "Bench"\n[sending]\nunsubscribe_url = "https://news.example.com/unsubscribe"\n'
            "[serve]\nrate_limit = 0\n",
            encoding="utf-8",
        )
        started = time.perf_counter()
        # the corpus generator's list: Zipf preferences over 30 topics, addresses reader<k>@example.com
        generate(root, articles=0, subscribers=args.subscribers, bad=0, at=datetime.now(UTC))
        print(f"list: {args.subscribers:,} rows written in {time.perf_counter() - started:.1f} s")
        config = load_config(root / "digest.toml")
        ids_of = [f"reader{k}@example.com" for k in range(args.subscribers)]

        # ---- minting
        mint = ids_of[: args.mint]
        with open_state(config.state.path) as state:
            statements: list[str] = []
            state._db.set_trace_callback(statements.append)
            t0 = time.perf_counter()
            ids = state.token_ids(mint)
            first, first_writes = time.perf_counter() - t0, sum(s.startswith("BEGIN") for s in statements)
            statements.clear()
            t0 = time.perf_counter()
            state.token_ids(mint)
            again, again_writes = time.perf_counter() - t0, sum(s.startswith("BEGIN") for s in statements)
        print(f"minting {len(mint):,} ids: first {ms(first)} ({first_writes} write transaction(s)), "
              f"again {ms(again)} ({again_writes} write transaction(s))")  # fmt: skip

        # ---- before: the whole list per GET, as the old app did
        rng = random.Random(5)
        samples = []
        for _ in range(args.before_samples):
            wanted = rng.choice(mint)
            t0 = time.perf_counter()
            subs = load_effective(config.subscribers.path, config.state.path)
            next(s for s in subs.subscribers if s.id == wanted)
            samples.append(time.perf_counter() - t0)
        print(f"before (list re-read per GET): median {ms(statistics.median(samples))} per GET")

        # ---- after: through the app
        app = create_public_app(PublicSettings(config, SECRET.encode(), None))
        client = TestClient(app, base_url="https://news.example.com")
        urls = [f"/preferences?token={make_token(ids[rng.choice(mint)], SECRET.encode(), 'preferences')}"
                for _ in range(max(args.gets, args.parallel * 5))]  # fmt: skip
        t0 = time.perf_counter()
        assert client.get(urls[0]).status_code == 200
        print(f"after: first GET (reads the list once) {ms(time.perf_counter() - t0)}")
        timings = []
        for url in urls[1 : args.gets + 1]:
            t0 = time.perf_counter()
            assert client.get(url).status_code == 200
            timings.append(time.perf_counter() - t0)
        print(f"after: next {len(timings)} GETs median {ms(statistics.median(timings))}, "
              f"p95 {ms(sorted(timings)[int(len(timings) * 0.95) - 1])}")  # fmt: skip

        if args.parallel:
            parallel(app, urls, args.parallel)


def parallel(app: object, urls: list[str], clients: int) -> None:
    import httpx
    import uvicorn

    from digest.web.preview import bind
    from digest.web.public import uvicorn_config

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(app))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    host, port = sock.getsockname()[:2]
    timings: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def one_client(n: int) -> None:
        with httpx.Client(base_url=f"http://{host}:{port}", headers={"Host": "news.example.com"}) as http:
            barrier.wait()
            for url in urls[n::clients][:5]:
                t0 = time.perf_counter()
                assert http.get(url).status_code == 200
                with lock:
                    timings.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    workers = [threading.Thread(target=one_client, args=(n,)) for n in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    server.should_exit = True
    thread.join(timeout=10)
    print(f"parallel (real uvicorn, {clients} clients x 5 GETs): median {ms(statistics.median(timings))}, "
          f"p95 {ms(sorted(timings)[int(len(timings) * 0.95) - 1])}, {len(timings) / wall:.0f} GETs/s")  # fmt: skip


if __name__ == "__main__":
    main()
