"""kill -9 the real `digest send` process mid-send, rerun it, and count what the server received.

The fake SendGrid runs as its own process and fsyncs each delivery to a log before answering, so
the log is the truth about who got what, whatever happened to the client.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from send_support import (
    AT,
    AT_DT,
    FakeSendGrid,
    copy_sample,
    ledger_for,
    load,
    many_subscribers,
    sendgrid_toml,
    start_fake,
)

from digest.send import SendOptions, send

EDITION = "2026-W49"


def digest_send(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SENDGRID_API_KEY": "SG.test-key"}
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "send", "--yes", "--at", AT],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def deliveries(log: Path) -> Counter[str]:
    return Counter(line["to"] for line in FakeSendGrid.read_log(log) if "to" in line) if log.exists() else Counter()


def kill_after(proc: subprocess.Popen[bytes], log: Path, threshold: int, rng: random.Random, deadline: float) -> bool:
    """kill -9 once `threshold` deliveries are logged (plus a random few ms); False if it finished first."""
    while proc.poll() is None and time.monotonic() < deadline:
        if sum(deliveries(log).values()) >= threshold:
            time.sleep(rng.uniform(0, 0.02))  # land anywhere: mid-claim, mid-request, mid-settle
            proc.kill()
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    return False


@pytest.mark.slow  # kill -9 of real digest processes, again and again
def test_kill_9_at_random_points_then_rerun_delivers_nobody_twice(tmp_path: Path, fresh_database) -> None:
    rng = random.Random(20261130)
    kills = 0
    for iteration in range(3):
        folder = tmp_path / f"run{iteration}"
        fresh_database()  # each newsletter its own state, on PostgreSQL too
        log = folder / "deliveries.jsonl"
        folder.mkdir()
        fake, url = start_fake(log)
        try:
            config = copy_sample(folder, sendgrid_toml(url, max_per_request=5))
            many_subscribers(config, 300, seed=iteration)
            planned = send(load(config), AT_DT, SendOptions(dry_run=True)).recipients
            assert planned > 100
            # one or two crashes, then a run left to finish
            for _ in range(rng.choice((1, 2))):
                already = sum(deliveries(log).values())
                threshold = already + rng.randint(1, max(1, (planned - already) // 2))
                kills += kill_after(digest_send(config), log, threshold, rng, time.monotonic() + 20)
            final = digest_send(config)
            assert final.wait(timeout=30) in (0, 3)  # 3: only ambiguous rows left, by design

            got = deliveries(log)
            assert max(got.values()) == 1, [a for a, n in got.items() if n > 1]
            with ledger_for(load(config)) as ledger:
                rows = ledger.rows(EDITION)
            assert len(rows) == planned
            by_state = Counter(r.state for r in rows.values())
            assert set(by_state) <= {"accepted", "ambiguous"}, by_state
            # accepted means delivered exactly once; ambiguous rows were delivered at most once
            # (checked above for everyone) and are reported, never resent silently
            assert all(got[row.email] == 1 for row in rows.values() if row.state == "accepted")
            # and nobody received mail the ledger does not account for
            assert set(got) <= {r.email for r in rows.values() if r.state in ("accepted", "ambiguous")}
            # and once more: nothing new goes out
            before = sum(got.values())
            assert digest_send(config).wait(timeout=30) in (0, 3)
            assert sum(deliveries(log).values()) == before
        finally:
            fake.terminate()
            fake.wait(timeout=10)
    assert kills >= 3  # the kills really landed mid-send


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")
