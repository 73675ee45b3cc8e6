"""Signups at list scale: what the request path costs, what the worker sustains, what signups add
to loading the list, and what an erasure costs on a big list.

    .venv/bin/python benchmarks/signup.py [--subscribers 300000] [--signups 20000] [--posts 200]

Generates a list of N rows (the corpus generator's) in a temp folder, then prints:

* request path: POST /subscribe through the app (TestClient), the worker held, median and p95:
  the answer's cost, which never depends on the address;
* worker: the same requests handled in the background (state writes, a confirmation email
  composed and written by the outbox transport), per request;
* the merged list: `load_effective` with no signups, then with S confirmed signups (S/10 of them
  also on the list) and S/100 forgotten addresses;
* `digest subscribers forget` of an address in the middle of the list (CSV rewrite included).

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
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
    parser.add_argument("--signups", type=int, default=20_000)
    parser.add_argument("--posts", type=int, default=200)
    args = parser.parse_args()

    os.environ["DIGEST_SECRET"] = SECRET
    from starlette.testclient import TestClient

    from digest.audience import load_effective
    from digest.config import load_config
    from digest.signup.consent import forget
    from digest.signup.store import SignupRequest, open_signups
    from digest.tokens import new_token_id
    from digest.web.public import PublicSettings, create_public_app

    with tempfile.TemporaryDirectory(prefix="digest-signup-bench-") as tmp:
        root = Path(tmp)
        (root / "digest.toml").write_text(
            '[newsletter]\nname = "Bench"\n[sending]\nunsubscribe_url = "https://news.example.com/unsubscribe"\n'
            "[signup]\nenabled = true\nper_ip_per_hour = 0\nmin_fill_seconds = 1\n",
            encoding="utf-8",
        )
        generate(root, articles=200, subscribers=args.subscribers, bad=0, at=datetime.now(UTC))
        config = load_config(root / "digest.toml")
        print(f"list: {args.subscribers:,} rows")

        # ---- the request path, then the worker
        clock = [time.time()]
        app = create_public_app(PublicSettings(config, SECRET.encode(), None, now=lambda: clock[0]))
        client = TestClient(app, base_url="https://news.example.com")
        signup = app.state.signup
        stamp = re.search(r'name="started" value="([^"]+)"', client.get("/subscribe").text).group(1)  # type: ignore[union-attr]
        clock[0] += 5
        held, release = threading.Event(), threading.Event()
        signup.worker.submit(lambda: (held.set(), release.wait(600)))
        held.wait(10)
        times = []
        for n in range(args.posts):
            data = {"email": f"new{n}@example.org", "consent": "yes", "website": "", "started": stamp}
            started = time.perf_counter()
            client.post("/subscribe", data=data)
            times.append(time.perf_counter() - started)
        times.sort()
        print(
            f"request path: POST /subscribe median {ms(statistics.median(times))}, "
            f"p95 {ms(times[int(len(times) * 0.95) - 1])} (the worker held)"
        )
        started = time.perf_counter()
        release.set()
        signup.worker.drain(3600)
        spent = time.perf_counter() - started
        emails = len(list(config.output.path.glob("signup-confirm-*/*.eml")))
        print(f"worker: {args.posts} requests in {spent:.1f} s ({ms(spent / args.posts)} each), {emails} emails")

        # ---- the merged list
        started = time.perf_counter()
        base = load_effective(config.subscribers.path, config.state.path)
        plain = time.perf_counter() - started
        now = datetime.now(UTC)
        with open_signups(config.state.path) as store:
            for n in range(args.signups):
                # every tenth is someone already on the list, coming back
                email = f"reader{n * 10}@example.com" if n % 10 == 0 else f"joined{n}@example.org"
                cid = new_token_id()
                store.add_request(SignupRequest(email=email), cid, now, now + timedelta(days=2), limit=9, since=now)
                store.confirm(cid, now, "")
            for n in range(args.signups // 100):
                store.forget(f"reader{n * 7 + 1}@example.com", "forgotten", now)
        started = time.perf_counter()
        merged = load_effective(config.subscribers.path, config.state.path)
        with_signups = time.perf_counter() - started
        print(
            f"merged list: {len(base.subscribers):,} rows in {ms(plain)}; with {args.signups:,} signups and "
            f"{args.signups // 100} forgotten: {len(merged.subscribers):,} rows in {ms(with_signups)}"
        )

        # ---- an erasure on the big list
        target = f"reader{args.subscribers // 2}@example.com"
        started = time.perf_counter()
        report = forget(config, target)
        spent = time.perf_counter() - started
        print(f"forget: one address of {args.subscribers:,} in {ms(spent)} ({report.list_rows} list record removed)")


if __name__ == "__main__":
    main()
