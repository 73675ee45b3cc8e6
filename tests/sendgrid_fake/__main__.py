"""The fake as its own process: `python -m sendgrid_fake --port 0 --log deliveries.jsonl` (from
tests/), or `python tests/sendgrid_fake_process.py ...` from anywhere. Prints `READY <url>` once
listening; runs until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from sendgrid_fake.fake import FakeSendGrid


def main(argv: list[str] | None = None) -> int:
    """Run the fake as a process until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(description="A local stand-in for SendGrid's v3 HTTP API.")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--log", help="append one JSON line per delivered recipient (fsynced)")
    ap.add_argument("--api-key", default="SG.test-key")
    ap.add_argument("--script", default="", help="comma-separated fault tokens, e.g. 429,ok")
    args = ap.parse_args(argv)

    fake = FakeSendGrid(args.api_key, port=args.port, log_path=args.log)
    if args.script:
        fake.script(args.script.split(","))
    # A plain flag, not a threading.Event: the handler runs in the main thread, and Event.set()
    # there deadlocks when the signal lands while Event.wait() holds the Event's own lock (seen
    # as a fake that ignored SIGTERM forever after a test).
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    fake.start()
    print(f"READY {fake.url}", flush=True)
    try:
        while not stopping:
            time.sleep(0.05)
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
