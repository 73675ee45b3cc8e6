"""The seed site's own subscriber file (`data/subscribers.json`), read as that site meant it.

tests/data/subscribers/seed_site_200_readers.json has the seed file's exact shape: 200 readers,
11 of them `isActive: false`, daily and weekly cadences, categories in `preferences`.
"""

from __future__ import annotations

import email
import email.policy
import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DATA

from digest.cli import main
from digest.subscribers import load_subscribers

SEED = DATA / "subscribers" / "seed_site_200_readers.json"
AT = "2026-11-30T00:00"


def seed_items() -> list[dict]:
    return json.loads(SEED.read_text(encoding="utf-8"))


def test_every_field_of_the_seed_shape_is_read_exactly():
    items = seed_items()
    result = load_subscribers(SEED)
    assert not result.problems
    assert len(result.subscribers) == 200
    by_email = {s.email: s for s in result.subscribers}
    for item in items:
        s = by_email[item["email"]]
        assert s.active is item["isActive"], item["email"]
        assert s.status == ("active" if item["isActive"] else "unsubscribed")
        assert s.external_id == item["id"]
        assert s.subscribed_at == datetime.fromisoformat(item["subscribedAt"])
        assert s.subscribed_at.utcoffset() is not None
        assert s.frequency == item["preferences"]["frequency"]
        assert s.categories == tuple(item["preferences"]["categories"])
        # The flag and the timestamp are fields, not template attributes a wrong guess leaves behind.
        assert dict(s.attributes) == {}
    assert sum(not s.active for s in result.subscribers) == 11
    assert {s.frequency for s in result.subscribers} == {"daily", "weekly"}
    assert {s.frequency for s in result.subscribers if not s.active} == {"daily", "weekly"}


@pytest.fixture
def seed_newsletter(sample: Path) -> Path:
    """The sample newsletter with the seed site's subscriber file as its list."""
    shutil.copy(SEED, sample.parent / "subscribers" / "seed.json")
    text = sample.read_text(encoding="utf-8").replace('"subscribers/subscribers.csv"', '"subscribers/seed.json"')
    sample.write_text(text, encoding="utf-8")
    return sample


def test_build_writes_nothing_for_the_inactive_readers(seed_newsletter, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["--config", str(seed_newsletter), "build", "--at", AT, "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    items = seed_items()
    inactive = {i["email"] for i in items if not i["isActive"]}
    recipients = set()
    for path in out.glob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        recipients.add(msg["To"].addresses[0].addr_spec)
    assert recipients, "the active readers whose categories match get a digest"
    assert not recipients & inactive
    for address in inactive:
        assert f"{address}: status is unsubscribed" in result.output
    # Every active reader is accounted for: a digest, or a reason why not.
    active = {i["email"] for i in items if i["isActive"]}
    no_match = {a for a in active if f"{a}: no matching articles" in result.output}
    assert recipients | no_match == active
    assert "invalid subscriber rows: 0" in result.output


def write_json(folder: Path, items: list[dict]) -> Path:
    path = folder / "subscribers" / "seed.json"
    path.write_text(json.dumps(items, indent=2), encoding="utf-8")
    return path


def test_check_accepts_the_three_cadences_and_reports_any_other(seed_newsletter):
    items = seed_items()[:5]
    items[0]["preferences"]["frequency"] = "monthly"
    items[1]["preferences"]["frequency"] = "Daily"
    items[2]["preferences"]["frequency"] = "fortnightly"
    items[3]["preferences"]["frequency"] = None
    path = write_json(seed_newsletter.parent, items)
    result = CliRunner().invoke(main, ["--config", str(seed_newsletter), "check", "--at", AT])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if "seed.json:" in line]
    assert len(errors) == 1, result.output
    third = [n for n, text in enumerate(path.read_text().splitlines(), 1) if text == "  {"][2]
    assert f"seed.json:{third}: error: frequency 'fortnightly' is not one of daily, weekly, monthly" in errors[0]
    by_email = {s.email: s for s in load_subscribers(path).subscribers}
    assert [by_email[i["email"]].frequency for i in (items[0], items[1], items[3], items[4])] == [
        "monthly",
        "daily",
        None,
        items[4]["preferences"]["frequency"],
    ]
    assert items[2]["email"] not in by_email  # reported and not mailed
