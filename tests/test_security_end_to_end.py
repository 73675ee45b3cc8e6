"""The security properties end to end (issue 20): real `digest build` and `digest serve` processes,
the links taken from the .eml files build wrote, raw HTTP to the served app.

Each property here also has a unit test of its own (tests/test_security_units.py,
tests/test_escaping_properties.py, tests/test_public_app.py, tests/test_webhooks.py):

- GET safety: a link scanner that follows every link in every email (GET and HEAD, with any
  query it likes) changes nothing in the subscriber state;
- token purpose: a preferences link cannot unsubscribe, an unsubscribe link cannot open or change
  preferences, and a real link still does its own job;
- webhook signatures: absent, present but wrong (another key, a tampered body, a moved timestamp)
  and stale requests are refused and write nothing; a fresh signed one is recorded;
- escaping: a subscriber whose name, topics and company are markup gets an email and a preferences
  page where a parser finds no element or event attribute of theirs, and their text intact.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest
from public_support import SECRET, Signer, public_config

from digest.config import Config
from digest.suppressions import STATE_NAME

AT = "2026-11-30T00:00"
HOSTILE_NAME = '<script>alert(1)</script>" onmouseover="alert(3)'
HOSTILE_TAGS = "ai;<b>x</b>;<img src=x onerror=alert(2)>"
HOSTILE_COMPANY = "'\"><svg onload=alert(4)>"
SERVE = "[serve]\nrate_limit = 0\nrate_burst = 1000\n"
#: Starts `digest build` and `digest serve` processes (CONTRIBUTING.md: such tests are slow).
pytestmark = pytest.mark.slow


@dataclass
class Served:
    config: Config
    url: str  #: where `digest serve` listens (loopback)
    emails: dict[str, email.message.EmailMessage]
    signer: Signer
    env: dict[str, str]

    def request(self, method: str, link: str, **kw: object) -> httpx.Response:
        """`link` (an https://news.example.com/... URL from an email) sent to the local server."""
        parts = urlsplit(link.replace("&amp;", "&"))
        assert parts.netloc == "news.example.com", link
        target = f"{self.url}{parts.path.lstrip('/')}" + (f"?{parts.query}" if parts.query else "")
        return httpx.request(method, target, headers={"Host": "news.example.com"}, timeout=30, **kw)  # type: ignore[arg-type]


def state_dump(config: Config) -> list[str]:
    """Every row of the subscriber state (opt-outs, preferences, link ids, events), read-only."""
    path = config.state.path / STATE_NAME
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def digest_cli(config: Config, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config.source), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    dest = tmp_path_factory.mktemp("e2e")
    config = public_config(dest, SERVE)
    with (dest / "subscribers" / "subscribers.csv").open("a", encoding="utf-8") as fh:
        quoted = [f'"{v.replace(chr(34), chr(34) * 2)}"' for v in (HOSTILE_NAME, HOSTILE_TAGS, HOSTILE_COMPANY)]
        fh.write(f"eve@example.com,{quoted[0]},{quoted[1]},,active,UTC,{quoted[2]}\n")
    signer = Signer()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DIGEST_SECRET": SECRET,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64,
    }
    digest_cli(config, env, "build", "--at", AT, "--out", str(dest / "built"))
    emails = {
        p.stem: email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted((dest / "built").glob("*.eml"))
    }
    assert "eve@example.com" in emails and len(emails) >= 5
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config.source), "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:  # until the server says where it listens
            lines.append(line)
            if "serving" in line:
                break
        found = re.search(r"http://127\.0\.0\.1:\d+/", "".join(lines))
        assert found, lines
        yield Served(config, found.group(0), emails, signer, env)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def html_of(message: email.message.EmailMessage) -> str:
    return message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def links_in(message: email.message.EmailMessage) -> list[str]:
    """Every link of the endpoint in an email: the header's, every href, every URL in the text."""
    found = re.findall(r"<(https://news\.example\.com/[^>]+)>", message["List-Unsubscribe"] or "")
    found += re.findall(r'href="(https://news\.example\.com/[^"]+)"', html_of(message))
    found += re.findall(r"https://news\.example\.com/\S+", message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    return sorted(set(found))


# ------------------------------------------------------------------------------ GET safety


def test_a_link_scanner_following_every_link_in_every_email_changes_nothing(served: Served) -> None:
    before = state_dump(served.config)
    assert before, "build made the link ids"
    followed = 0
    for address, message in served.emails.items():
        links = links_in(message)
        assert any("/unsubscribe?" in u for u in links) and any("/preferences?" in u for u in links), address
        for link in links:
            for extra in ("", "&action=unsubscribe", "&List-Unsubscribe=One-Click", "&via=page&action=pause"):
                for method in ("GET", "HEAD"):
                    answer = served.request(method, link + extra)
                    assert answer.status_code in (200, 405), (method, link, answer.status_code)
                    followed += 1
    assert followed > 50
    assert state_dump(served.config) == before


# ------------------------------------------------------------------------------ token purpose


def test_each_link_works_for_its_own_purpose_only(served: Served) -> None:
    grace = links_in(served.emails["grace@example.org"])
    unsubscribe = next(u for u in grace if "/unsubscribe?" in u)
    preferences = next(u for u in grace if "/preferences?" in u)
    before = state_dump(served.config)
    swapped_unsubscribe = preferences.replace("/preferences?", "/unsubscribe?")
    swapped_preferences = unsubscribe.replace("/unsubscribe?", "/preferences?")
    for method, link, body in (
        ("GET", swapped_unsubscribe, None),
        ("POST", swapped_unsubscribe, b"List-Unsubscribe=One-Click"),
        ("GET", swapped_preferences, None),
        ("POST", swapped_preferences, b"action=unsubscribe"),
        ("POST", swapped_preferences, b"action=save&tags=space"),
    ):
        answer = served.request(method, link, content=body)
        assert answer.status_code == 403, (method, link)
        assert "grace@example.org" not in answer.text
    assert state_dump(served.config) == before
    # the same links, each for its own purpose, do work (the refusals above were not luck)
    assert served.request("GET", preferences).status_code == 200
    assert served.request("POST", unsubscribe, content=b"List-Unsubscribe=One-Click").status_code == 200
    changed = set(state_dump(served.config)) - set(before)
    assert any("grace@example.org" in row and "unsubscribed" in row for row in changed), changed
    assert not any("ada@example.com" in row for row in changed)


# ------------------------------------------------------------------------------ webhook signatures


def test_the_webhook_refuses_unsigned_wrongly_signed_and_stale_requests(served: Served) -> None:
    url = f"{served.url}webhooks/sendgrid"
    events = [{"email": "jo.mueller@example.com", "event": "spamreport", "sg_event_id": "e2e-1", "timestamp": 1}]
    body = json.dumps(events).encode()
    now = int(time.time())
    good = served.signer.headers(body, now)
    stale = served.signer.headers(body, now - served.config.sendgrid.webhook_max_age - 30)
    moved = {**good, "X-Twilio-Email-Event-Webhook-Timestamp": str(now + 1)}
    before = state_dump(served.config)
    attempts = {
        "absent": ({"Content-Type": "application/json"}, body),
        "signature only": ({k: v for k, v in good.items() if "Timestamp" not in k}, body),
        "another key": (Signer().headers(body, now), body),
        "tampered body": (good, body.replace(b"jo.mueller", b"ada")),
        "moved timestamp": (moved, body),
        "stale": (stale, body),
    }
    for name, (headers, content) in attempts.items():
        answer = httpx.post(url, content=content, headers=headers, timeout=30)
        assert answer.status_code == 401, name
    assert state_dump(served.config) == before
    answer = httpx.post(url, content=body, headers=good, timeout=30)
    assert answer.status_code == 200 and answer.json() == {"received": 1, "new": 1}
    assert any(
        "jo.mueller@example.com" in row and "complained" in row for row in set(state_dump(served.config)) - set(before)
    )


# ------------------------------------------------------------------------------ escaping


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> _Markup:
    parser = _Markup()
    parser.feed(html)
    parser.close()
    return parser


def assert_no_markup_of_theirs(html: str) -> str:
    markup = parsed(html)
    assert not {"script", "svg", "b"} & set(markup.tags)
    assert not [a for a in markup.attributes if a.startswith("on")]
    img_sources = re.findall(r"<img\b[^>]*\bsrc=[\"']?x[\"'\s>]", html)
    assert not img_sources
    return " ".join("".join(markup.text).split())


def test_a_subscriber_made_of_markup_gets_an_email_and_a_page_with_none_of_it(served: Served) -> None:
    for address, message in served.emails.items():
        text = assert_no_markup_of_theirs(html_of(message))
        if address == "eve@example.com":
            assert "Your topics: ai, <b>x</b>, <img src=x onerror=alert(2)>." in text
    first = HOSTILE_NAME.split()[0]
    assert f"Hi {first}," in " ".join(parsed(html_of(served.emails["eve@example.com"])).text)
    preferences = next(u for u in links_in(served.emails["eve@example.com"]) if "/preferences?" in u)
    page = served.request("GET", preferences)
    assert page.status_code == 200
    text = assert_no_markup_of_theirs(page.text)
    assert "eve@example.com" in text
    fields = {m.group(1): m.group(2) for m in re.finditer(r'name="(tags|categories)"[^>]*value="([^"]*)"', page.text)}
    assert "&lt;img src=x onerror=alert(2)&gt;" in fields.get("tags", ""), fields
