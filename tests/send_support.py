"""Helpers for the send tests: temp newsletters, configs pointing at local peers, the fake.

Kept out of conftest.py on purpose (the send tests import what they use).
"""

from __future__ import annotations

import csv
import random
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from digest.config import Config, load_config
from digest.ledger import Ledger
from digest.store import open_ledger
from digest.transports.sendgrid.transport import SendGridTransport

try:  # pytest puts tests/ on sys.path (rootdir-relative imports, no package)
    from sendgrid_fake import FakeSendGrid
except ImportError:  # pragma: no cover
    from tests.sendgrid_fake import FakeSendGrid

ROOT = Path(__file__).resolve().parent.parent
FAKE_SCRIPT = Path(__file__).with_name("sendgrid_fake_process.py")
AT = "2026-11-30T00:00"
AT_DT = datetime(2026, 11, 30, tzinfo=ZoneInfo("Europe/London"))
#: Who gets a digest in the sample newsletter at AT (the others are inactive or have no match).
SAMPLE_RECIPIENTS = frozenset(
    {
        "ada@example.com",
        "grace@example.org",
        "chloe.dubois@example.net",
        "li.lei@example.com",
        "conor.obrien@example.org",
        "sam.rivera@example.net",
        "jo.mueller@example.com",
    }
)
TOPICS = ("ai", "climate", "security", "hardware", "space", "python", "startups", "robotics", "")


def copy_sample(dest: Path, extra_toml: str = "") -> Path:
    """A private copy of the sample newsletter, with extra TOML appended; returns digest.toml."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("content", "templates", "subscribers"):
        shutil.copytree(ROOT / name, dest / name)
    config = dest / "digest.toml"
    config.write_text((ROOT / "digest.toml").read_text(encoding="utf-8") + "\n" + extra_toml, encoding="utf-8")
    return config


def many_subscribers(config_path: Path, count: int, seed: int = 7) -> list[str]:
    """Replace the sample's list with `count` subscribers, each following zero to two topics."""
    rng = random.Random(seed)
    path = config_path.parent / "subscribers" / "subscribers.csv"
    emails = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "tags", "categories", "status"])
        for i in range(count):
            email = f"reader{i:04d}@example.com"
            tags = sorted({t for t in (rng.choice(TOPICS), rng.choice(TOPICS)) if t})
            writer.writerow([email, f"Reader {i}", ";".join(tags), "", "active"])
            emails.append(email)
    return emails


#: A one-click unsubscribe endpoint, which `send` and `check` require with the sendgrid and smtp
#: transports; its signing secret comes from a variable only the tests set (see conftest.py).
ONE_CLICK_TOML = 'unsubscribe_url = "https://news.circuit.example.com/unsubscribe"\nsecret_env = "DIGEST_TEST_SECRET"\n'


def sendgrid_toml(url: str, *, one_click: bool = True, **extra: object) -> str:
    """[sending] with the sendgrid transport at `url` (and, unless one_click=False, an endpoint)."""
    lines = ["[sending]", 'transport = "sendgrid"', ONE_CLICK_TOML if one_click else ""]
    lines += ["[sendgrid]", f'host = "{url}"', "timeout = 5.0"]
    for key, value in extra.items():
        lines.append(f"{key} = {str(value).lower() if isinstance(value, bool) else repr(value)}")
    return "\n".join(lines) + "\n"


def ledger_for(config: Config) -> Ledger:
    """The config's ledger, on whichever engine the test runs (see the `engine` fixture)."""
    return open_ledger(config)


def load(config_path: Path) -> Config:
    return load_config(config_path)


class Sleeps(list[float]):
    """Records waits instead of sleeping, so retries cost no wall time."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def setup(tmp_path: Path, fake: FakeSendGrid, extra: str = "", **sendgrid: object) -> Config:
    return load(copy_sample(tmp_path, sendgrid_toml(fake.url, **sendgrid) + extra))


def transport(cfg: Config, key: str = "SG.test-key", **kwargs: object) -> SendGridTransport:
    """The real SendGrid transport pointed at the fake, with sleeps recorded instead of slept."""
    sg = cfg.sendgrid
    settings: dict[str, object] = {
        "host": sg.host,
        "from_email": cfg.newsletter.from_email,
        "from_name": cfg.from_name,
        "reply_to": cfg.newsletter.reply_to,
        "categories": tuple(sg.categories),
        "asm_group_id": sg.asm_group_id,
        "timeout": sg.timeout,
        "max_batch": sg.max_per_request,
        "sleep": Sleeps(),
    }
    return SendGridTransport(key, **{**settings, **kwargs})  # type: ignore[arg-type]


def start_fake(log: Path) -> tuple[subprocess.Popen[str], str]:
    # Every answer takes 30 ms: a send of ~60 requests lasts long enough for each planned kill to
    # land mid-send, however fast the machine (concurrent requests overlap, so still >= 0.5 s).
    slow = ",".join(["slow:0.03"] * 400)
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_SCRIPT), "--port", "0", "--log", str(log), "--script", slow],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY "), line
    return proc, line.split()[1]


__all__ = ["FakeSendGrid", "FAKE_SCRIPT"]


class HeldRun:
    """Another run, alive for as long as this object is: its own ledger connection holds its run
    lock (a lock file on SQLite, an advisory lock on PostgreSQL)."""

    def __init__(self, config: Config, run_id: str):
        self._ledger = open_ledger(config)
        self._lock = self._ledger.run_lock(run_id)

    def release(self) -> None:
        self._lock.release()
        self._ledger.close()


def hold_run(config: Config, run_id: str) -> HeldRun:
    return HeldRun(config, run_id)
