"""The preferences page offers the cadences the config has slots for, records a reader's choice in
the subscriber state (as topic changes are), and the next scheduled send honours it. In-process
for the rules and refusals, and once in headless Chromium against the app under real uvicorn, the
way a reader clicks it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import chromium
from click.testing import CliRunner
from public_support import BASE_URL, SECRET, app_for, public_config, real_server, token
from starlette.testclient import TestClient

from digest.audience import read_overlay
from digest.cli import main
from digest.config import Config
from digest.suppressions import STATE_NAME

CADENCES = '\n[schedule]\ndaily = "0 7 * * *"\nweekly = "0 9 * * MON"\n'
CHLOE = "chloe.dubois@example.net"
# The sample's articles are from the week to 29 November; Monday 30 November 09:30 GMT both the
# daily (07:00) and the weekly (09:00) slot are due.
DUE = "2026-11-30T09:30"


def outbox(config: Config, edition: str) -> set[str]:
    return {p.name.removesuffix(".eml") for p in (config.output.path / edition).glob("*.eml")}


def send_due(config: Config) -> str:
    result = CliRunner().invoke(main, ["--config", str(config.source), "send", "--scheduled", "--yes", "--at", DUE])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    return public_config(tmp_path, CADENCES)


@pytest.fixture
def client(config: Config) -> TestClient:
    return TestClient(app_for(config), base_url=BASE_URL)


def radios(page: str) -> dict[str, bool]:
    """The page's cadence choices: value -> checked."""
    return {m[1]: bool(m[2]) for m in re.finditer(r'name="frequency" value="(\w+)"( checked)?', page)}


def test_the_page_offers_the_cadences_with_slots_and_a_choice_reaches_the_next_send(
    config: Config, client: TestClient
) -> None:
    url = f"/preferences?token={token(config, CHLOE, 'preferences')}"
    page = client.get(url).text
    assert radios(page) == {"daily": False, "weekly": True}  # no monthly slot: not offered
    assert "every day at 07:00 (Europe/London time)" in page and "Mondays at 09:00" in page
    assert '<strong id="cadence">weekly</strong>' in page

    answer = client.post(url, data={"action": "save", "tags": "ai; climate; robotics", "frequency": "daily"})
    assert answer.status_code == 200
    assert "Your topics are saved; digests now come daily." in answer.text
    assert radios(answer.text) == {"daily": True, "weekly": False}
    assert read_overlay(config.state.path).frequencies == {CHLOE: "daily"}

    out = send_due(config)
    assert outbox(config, "2026-11-30") == {CHLOE}
    assert CHLOE not in outbox(config, "2026-W49") and len(outbox(config, "2026-W49")) == 6
    assert "daily edition 2026-11-30 (slot Mon 2026-11-30 07:00 GMT): sent to 1 subscriber(s)" in out

    # the merged list says so, for whoever folds the state back into their own list
    exported = CliRunner().invoke(main, ["--config", str(config.source), "subscribers", "export"])
    assert f"{CHLOE},Chloé Dubois,ai;climate;robotics,,active,daily," in exported.stdout
    # and back: the next week's weekly is hers again, and no daily is
    client.post(url, data={"action": "save", "tags": "ai; climate; robotics", "frequency": "weekly"})
    assert read_overlay(config.state.path).frequencies == {CHLOE: "weekly"}


def test_saving_topics_alone_records_no_cadence(config: Config, client: TestClient) -> None:
    url = f"/preferences?token={token(config, CHLOE, 'preferences')}"
    client.post(url, data={"action": "save", "tags": "space", "frequency": "weekly"})  # what she has already
    client.post(url, data={"action": "save", "tags": "space"})  # a form without the choice
    overlay = read_overlay(config.state.path)
    assert overlay.frequencies == {} and overlay.preferences[CHLOE].tags == ("space",)


@pytest.mark.parametrize("value", ["monthly", "hourly", "", "daily'--"])
def test_a_cadence_without_a_slot_is_refused_and_nothing_recorded(
    config: Config, client: TestClient, value: str
) -> None:
    url = f"/preferences?token={token(config, CHLOE, 'preferences')}"
    answer = client.post(url, data={"action": "save", "tags": "space", "frequency": value})
    assert answer.status_code == 400 and "Unknown cadence." in answer.text
    overlay = read_overlay(config.state.path)
    assert overlay.frequencies == {} and overlay.preferences == {}


def test_a_single_cron_offers_no_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    config = public_config(tmp_path, '\n[schedule]\ncron = "0 9 * * MON"\n')
    client = TestClient(app_for(config), base_url=BASE_URL)
    url = f"/preferences?token={token(config, CHLOE, 'preferences')}"
    page = client.get(url).text
    assert radios(page) == {} and 'id="cadences"' not in page
    assert client.post(url, data={"action": "save", "frequency": "daily"}).status_code == 400
    assert read_overlay(config.state.path).frequencies == {}


def test_a_state_file_from_before_cadences_gains_the_table(config: Config, client: TestClient) -> None:
    import sqlite3

    path = config.state.path / STATE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(path)  # what the state held before cadences: no `frequencies` table
    old.executescript(
        "CREATE TABLE preferences (subscriber TEXT PRIMARY KEY, email TEXT NOT NULL, tags TEXT, categories TEXT,"
        " paused INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL, at TEXT NOT NULL);"
    )
    old.close()
    url = f"/preferences?token={token(config, CHLOE, 'preferences')}"
    assert client.post(url, data={"action": "save", "frequency": "daily"}).status_code == 200
    assert read_overlay(config.state.path).frequencies == {CHLOE: "daily"}


# ---------------------------------------------------------------- a reader's click, in Chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def test_a_reader_switches_to_daily_in_the_browser(config: Config, browser: Any) -> None:
    with real_server(app_for(config)) as (host, port):
        page = browser.new_page()
        page.goto(f"http://{host}:{port}/preferences?token={token(config, CHLOE, 'preferences')}")
        assert page.get_by_label("Weekly").is_checked()
        page.get_by_label("Daily").check()  # the label is the radio's name: a click on the words works
        page.get_by_role("button", name="Save").click()
        page.wait_for_selector("#saved")
        assert page.locator("#saved").inner_text() == "Your topics are saved; digests now come daily."
        assert page.locator("#cadence").inner_text() == "daily"
        assert page.get_by_label("Daily").is_checked()
        page.close()
    send_due(config)
    assert outbox(config, "2026-11-30") == {CHLOE}
