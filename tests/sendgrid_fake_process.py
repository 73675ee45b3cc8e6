"""`python tests/sendgrid_fake_process.py --port 0 --log deliveries.jsonl [--script 429,ok]`: the
SendGrid fake (tests/sendgrid_fake/) as its own process, for the tests that kill -9 a client and
count what the fake received. Prints `READY <url>` once listening."""

from __future__ import annotations

import sys

from sendgrid_fake.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
