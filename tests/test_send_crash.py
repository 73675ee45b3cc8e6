"""kill -9 the real `digest send` process mid-send, rerun it, and count what the server received.

The fake SendGrid runs as its own process and fsyncs each delivery to a log before answering, so
the log is the truth about who got what, whatever happened to the client.
"""

from __future__ import annotations

import os
import random
import signal
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


def digest_send(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SENDGRID_API_KEY": "SG.test-key"}
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "send", "--yes", "--at", AT, *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: a kill can take its forked workers too
    )


def deliveries(log: Path) -> Counter[str]:
    return Counter(line["to"] for line in FakeSendGrid.read_log(log) if "to" in line) if log.exists() else Counter()


def kill_after(
    proc: subprocess.Popen[bytes],
    log: Path,
    threshold: int,
    rng: random.Random,
    deadline: float,
    *,
    group: bool = False,
) -> bool:
    """kill -9 once `threshold` deliveries are logged (plus a random few ms); False if it finished
    first. `group`: the whole process group at once (the run and its forked workers: a machine
    that goes down)."""

    def kill() -> None:
        if group:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            proc.kill()
        proc.wait()

    while proc.poll() is None and time.monotonic() < deadline:
        if sum(deliveries(log).values()) >= threshold:
            time.sleep(rng.uniform(0, 0.02))  # land anywhere: mid-claim, mid-request, mid-settle
            kill()
            return True
        time.sleep(0.005)
    kill()
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


@pytest.mark.slow  # kill -9 of real digest processes
@pytest.mark.parametrize("workers", [1, 2])
def test_a_kill_leaves_at_most_the_requests_in_flight_ambiguous(tmp_path: Path, workers: int, engine) -> None:
    """On both engines (PostgreSQL's queue leases with SKIP LOCKED). Each request is claimed by the thread that sends it, right before it leaves, so after a
    kill -9 only requests that were in flight can be ambiguous (`concurrency` per sender); the rest
    of what the run had taken from the queue (leased, perhaps composed, never sent) goes back to
    the queue and the next run sends it. Before, a whole window was claimed at once: 50
    one-recipient requests while 4 were in flight, and a kill made all 50 ambiguous."""
    from digest.recovery import settle_dead_claims
    from digest.transports.sendgrid.transport import SendGridTransport

    rng = random.Random(11_2026 + workers)
    log = tmp_path / "deliveries.jsonl"
    fake, url = start_fake(log)
    concurrency = 4  # the default [sending] concurrency
    try:
        config = copy_sample(tmp_path / "site", sendgrid_toml(url, max_per_request=1))
        many_subscribers(config, 400, seed=5)
        cfg = load(config)
        transport = SendGridTransport("SG.test-key", host=url, from_email=cfg.newsletter.from_email)
        taken_beyond_flight = 0
        for _ in range(3):
            already = sum(deliveries(log).values())
            run = digest_send(config, "--workers", str(workers))
            assert kill_after(run, log, already + rng.randint(20, 60), rng, time.monotonic() + 30, group=True)
            with ledger_for(cfg) as ledger:
                rows = ledger.rows(EDITION)
                held = [r for r in rows.values() if r.state == "claimed"]
                leased = [r for r in rows.values() if r.state == "queued" and r.run_id]
                runs = {r.run_id for r in held + leased}
                deadline = time.monotonic() + 10  # PostgreSQL ends a killed client's session a moment later
                while any(ledger.run_alive(r) for r in runs) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not any(ledger.run_alive(r) for r in runs)
                assert len(held) <= workers * concurrency, [r.run_id for r in held]
                settle_dead_claims(ledger, transport, EDITION, time.time)
                after = ledger.rows(EDITION)
            got = deliveries(log)
            # only what was claimed (in flight) became ambiguous
            assert {s for s, r in after.items() if r.state == "ambiguous" and rows[s].state != "ambiguous"} == {
                r.subscriber for r in held
            }
            # what was only taken is free in the queue again, and truly never sent
            assert all(after[r.subscriber].state == "queued" and after[r.subscriber].run_id == "" for r in leased)
            assert not [r.email for r in leased if got[r.email]]
            taken_beyond_flight += len(leased) > 0
        assert taken_beyond_flight  # the kills landed with more of the queue taken than was in flight
        final = digest_send(config)
        assert final.wait(timeout=60) in (0, 3)
        got = deliveries(log)
        assert max(got.values()) == 1
        with ledger_for(cfg) as ledger:
            rows = ledger.rows(EDITION)
        assert {r.state for r in rows.values()} <= {"accepted", "ambiguous"}
        assert sum(r.state == "ambiguous" for r in rows.values()) <= 3 * workers * concurrency
        assert all(got[r.email] == 1 for r in rows.values() if r.state == "accepted")
        transport.close()
    finally:
        fake.terminate()
        fake.wait(timeout=10)


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")
