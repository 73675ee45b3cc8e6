"""Three `digest send` processes and a `digest serve` on one state (one PostgreSQL database, or one
SQLite state folder), kill -9 at random points, reruns; the capture server's log is the truth.

- Before the run, some readers unsubscribe through `digest serve` (one-click): none of them may
  receive anything.
- Immediate mode: nobody gets two emails; every eligible reader ends accepted (delivered exactly
  once) or ambiguous (a killed sender's request in flight: delivered at most once, reported).
- Scheduled mode (SendGrid holds each request until send_at): a killed sender's requests are
  cancelled through their batch and re-sent, so every eligible reader gets exactly one email.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from send_support import AT, AT_DT, FAKE_SCRIPT, FakeSendGrid, ledger_for, load, many_subscribers, start_fake

from digest.send import SendOptions, send
from digest.store import open_state
from digest.tokens import make_token

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("engine")]

EDITION = "2026-W49"
SECRET = "multi-sender-secret-4f7a2c9e1b"
ROOT = Path(__file__).resolve().parent.parent


def newsletter(folder: Path, url: str, *, scheduled: bool) -> Path:
    import shutil

    folder.mkdir(parents=True)
    for name in ("content", "templates", "subscribers"):
        shutil.copytree(ROOT / name, folder / name)
    text = (ROOT / "digest.toml").read_text(encoding="utf-8")
    text += (
        '\n[sending]\ntransport = "sendgrid"\nunsubscribe_url = "https://news.example.com/unsubscribe"\n\n'
        f'[sendgrid]\nhost = "{url}"\ntimeout = 5.0\nmax_per_request = 5\n'
        f"scheduled_mode = {str(scheduled).lower()}\n"
    )
    (folder / "digest.toml").write_text(text, encoding="utf-8")
    return folder / "digest.toml"


def env() -> dict[str, str]:
    return {**os.environ, "SENDGRID_API_KEY": "SG.test-key", "DIGEST_SECRET": SECRET}


def start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), *args],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_serve(config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "serve", "--port", "0"],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "serving" in line:
            break
    import re

    found = re.search(r"http://127\.0\.0\.1:\d+/", "".join(lines))
    assert found, lines
    return proc, found.group(0)


def counts(log: Path) -> Counter[str]:
    """Deliveries per address: accepted requests, less the recipients of cancelled scheduled sends."""
    got: Counter[str] = Counter()
    for line in FakeSendGrid.read_log(log) if log.exists() else []:
        if "to" in line:
            got[line["to"]] += 1
        elif "cancelled" in line:
            got[line["cancelled"]] -= 1
    return +got


def kill_some(procs: list[subprocess.Popen[bytes]], log: Path, rng: random.Random, planned: int, n: int) -> int:
    """kill -9 `n` of the running senders, each once deliveries pass a random threshold."""
    victims = rng.sample(procs, n)
    done = sum(counts(log).values())
    # early enough that every victim is still sending when its turn comes, even on a loaded machine
    threshold = done + rng.randint(2, max(3, (planned - done) // 8))
    deadline = time.monotonic() + 30
    killed = 0
    while victims and time.monotonic() < deadline and any(p.poll() is None for p in procs):
        if sum(counts(log).values()) >= threshold:
            time.sleep(rng.uniform(0, 0.03))  # anywhere: mid-take, mid-claim, mid-request, mid-settle
            victim = victims.pop()
            if victim.poll() is None:
                victim.kill()
                killed += 1
            threshold += rng.randint(1, 4)
        time.sleep(0.005)
    return killed


@pytest.mark.parametrize("scheduled", [False, True], ids=["immediate", "scheduled"])
def test_three_senders_and_serve_kill_9_and_reruns(tmp_path: Path, fresh_database, scheduled: bool) -> None:
    rng = random.Random(20261201 + scheduled)
    fresh_database()
    log = tmp_path / "deliveries.jsonl"
    fake, url = start_fake(log)
    serve = None
    try:
        config = newsletter(tmp_path / "news", url, scheduled=scheduled)
        emails = many_subscribers(config, 300, seed=11)
        cfg = load(config)
        # some readers leave before the run, through the public app's one-click endpoint
        leaving = rng.sample(emails, 12)
        with open_state(cfg) as state:
            ids = state.token_ids(leaving)
        serve, base = start_serve(config)
        for address in leaving:
            token = make_token(ids[address], SECRET.encode(), "unsubscribe")
            answer = httpx.post(f"{base}unsubscribe?token={token}", content=b"List-Unsubscribe=One-Click")
            assert answer.status_code == 200
        planned = send(load(config), AT_DT, SendOptions(dry_run=True))
        eligible = set(planned.first) | {a for a in emails if a not in leaving}
        eligible = {a for a in eligible if a not in {s for s, _ in planned.skipped}}
        assert planned.recipients == len(eligible) > 150 and not eligible & set(leaving)

        killed = 0
        args = ("send", "--yes", "--at", AT)
        for round_ in range(2):  # two rounds of three senders with kills
            senders = [start(config, *args) for _ in range(3)]
            killed += kill_some(senders, log, rng, planned.recipients, 2 if round_ == 0 else rng.choice((1, 2)))
            for proc in senders:
                assert proc.wait(timeout=60) in (0, 1, 3, -9), round_
        final = [start(config, *args) for _ in range(3)]  # and three left to finish
        assert [p.wait(timeout=60) for p in final] in ([0, 0, 0], [3, 3, 3]) or all(
            p.returncode in (0, 3) for p in final
        )

        got = counts(log)
        assert not set(got) & set(leaving), "mail to someone who unsubscribed before the run"
        assert max(got.values()) == 1, [a for a, n in got.items() if n > 1]
        with ledger_for(load(config)) as ledger:
            rows = ledger.rows(EDITION)
        assert set(rows) == eligible
        by_state = Counter(r.state for r in rows.values())
        if scheduled:
            # cancelled and re-issued: exactly one email for every eligible reader
            assert by_state == {"accepted": len(eligible)}, by_state
            assert set(got) == eligible and set(got.values()) == {1}
        else:
            assert set(by_state) <= {"accepted", "ambiguous"}, by_state
            assert all(got[r.email] == 1 for r in rows.values() if r.state == "accepted")
            assert set(got) <= eligible
        assert killed >= 2  # the kills really landed mid-send
        # and once more: nothing new goes out
        before = sum(got.values())
        assert start(config, *args).wait(timeout=60) in (0, 3)
        assert sum(counts(log).values()) == before
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=30)
        fake.terminate()
        fake.wait(timeout=10)


assert FAKE_SCRIPT.exists()
