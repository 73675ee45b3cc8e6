"""Signups through a real uvicorn server (as `digest serve` runs it): the emails received by an
aiosmtpd peer, and a person in Chromium filling the form, opening the link from the captured
email and landing on the welcome page."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import ARTIFACTS, chromium
from public_support import app_for, public_config, real_server
from signup_support import NEW, link, outbox_messages, parse, stamp_of, status_of, text_of
from smtp_support import smtp_peer

from digest.config import Config

pytestmark = pytest.mark.slow


def smtp_signup_config(tmp_path: Path, port: int) -> Config:
    # public_config leaves [sending] open (its unsubscribe_url): the transport goes in it
    return public_config(
        tmp_path,
        f'transport = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nusername_env = ""\n'
        "timeout = 5.0\n[signup]\nenabled = true\nmin_fill_seconds = 1\n",
    )


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_over_http_and_smtp_the_confirmation_and_welcome_arrive_as_sent(tmp_path: Path) -> None:
    with smtp_peer() as (inbox, port):
        config = smtp_signup_config(tmp_path, port)
        app = app_for(config)
        with real_server(app) as (host, server_port), httpx.Client(base_url=f"http://{host}:{server_port}") as http:
            page = http.get("/subscribe")
            assert page.status_code == 200
            time.sleep(1.1)  # a person takes longer than the minimum fill time
            form = {"email": NEW, "name": "Ne Reader", "consent": "yes", "website": "", "started": stamp_of(page.text)}
            answer = http.post("/subscribe", data={**form, "tag": "Climate"})
            assert answer.status_code == 200 and "Check your inbox" in answer.text
            wait_for(lambda: NEW in inbox.raw)
            raw = inbox.raw[NEW]
            head = raw.split(b"\r\n\r\n", 1)[0]
            # the DATA as the peer received it: list headers raw, one line each, never encoded
            assert re.search(
                rb"\r\nList-Unsubscribe: <https://news\.example\.com/subscribe/cancel\?token=v2\.[^>]+>\r\n", head
            )
            assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in head
            assert b"=?" not in head.split(b"\r\nList-", 1)[1]
            confirmation = parse(raw)
            assert confirmation["Subject"] == "Confirm your subscription to The Weekly Circuit"

            confirm = link(confirmation)
            assert "Confirm my subscription" in http.get(confirm).text
            assert status_of(config, NEW) is None
            done = http.post(confirm)
            assert done.status_code == 200 and "Welcome to The Weekly Circuit" in done.text
            wait_for(lambda: len(inbox.messages) == 2)
            welcome = parse(inbox.raw[NEW])
            assert welcome["Subject"] == "Welcome to The Weekly Circuit"
            assert "Climate" in text_of(welcome)
            assert re.search(
                rb"\r\nList-Unsubscribe: <https://news\.example\.com/unsubscribe\?token=v2\.", inbox.raw[NEW]
            )
    assert status_of(config, NEW) == "active"


# ---------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def test_a_visitor_signs_up_in_chromium_confirms_from_the_email_and_is_welcomed(tmp_path: Path, browser: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    config = public_config(tmp_path, "[signup]\nenabled = true\nmin_fill_seconds = 1\n")
    app = app_for(config)
    with real_server(app) as (host, port):
        base = f"http://{host}:{port}"
        context = browser.new_context(viewport={"width": 390, "height": 844})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/subscribe")
        # what a screen reader and a keyboard get: labelled fields, a named button
        page.get_by_label("Email address").fill(NEW)
        page.get_by_label("Name").fill("New Reader")
        page.get_by_label("Climate", exact=True).first.check()
        page.get_by_label("I want to receive The Weekly Circuit by email", exact=False).check()
        results = Axe().run(page)
        serious = [v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert not serious, serious
        page.wait_for_timeout(1100)  # longer than the minimum fill time
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "signup-sent.png"), full_page=True)

        assert app.state.signup.worker.drain(60)
        [(_, msg)] = outbox_messages(config, "confirm")
        page.goto(base + link(msg))
        assert status_of(config, NEW) is None  # opening the link confirmed nothing
        page.get_by_role("button", name="Confirm my subscription").click()
        page.get_by_role("heading", name="Welcome to The Weekly Circuit").wait_for()
        assert page.get_by_text(NEW).count() >= 1
        page.screenshot(path=str(ARTIFACTS / "signup-welcome.png"), full_page=True)
        assert app.state.signup.worker.drain(60)
        context.close()
    assert not errors, errors
    assert status_of(config, NEW) == "active"
    [(_, welcome)] = outbox_messages(config, "welcome")
    assert "Climate" in text_of(welcome)
