"""First-party click tracking (`[tracking] clicks`): a real outbox send writes article links through
`digest serve`'s /r/; the public app counts a click and redirects only to the URL recorded for that
article in that edition. Never an open redirect, never an address in a link."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from engagement_support import newsletter, public_client, send_edition
from public_support import SECRET, Signer, head_of, raw_request, real_server, token_id
from send_support import SAMPLE_RECIPIENTS

from digest.config import Config
from digest.store import open_events
from digest.tokens import make_link_token, make_token, new_token_id, read_link_token
from digest.web.public import PublicSettings, create_public_app

NOW = 1_790_000_000
EDITION = "2026-W49"
ROBOTS = "2026/11/robot-dogs-learn-stairs"
ROBOTS_URL = "https://circuit.example.com/posts/robot-dogs-learn-stairs"
CLICKS = "\n[tracking]\nclicks = true\n"
LINK = re.compile(r'href="(https://news\.example\.com/r/[^"]+)"')


@pytest.fixture
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    config = newsletter(tmp_path, monkeypatch, extra=CLICKS)
    report = send_edition(config)
    assert set(report.accepted) == SAMPLE_RECIPIENTS
    return config


def eml(config: Config, address: str) -> email.message.EmailMessage:
    data = (config.output.path / EDITION / f"{address}.eml").read_bytes()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def links(config: Config, address: str) -> list[str]:
    html = eml(config, address).get_body(("html",)).get_content()
    return [u.replace("&amp;", "&") for u in LINK.findall(html)]


def test_article_links_go_through_r_and_carry_no_address(sent: Config) -> None:
    for address in SAMPLE_RECIPIENTS:
        found = links(sent, address)
        assert found, address
        raw = (sent.output.path / EDITION / f"{address}.eml").read_bytes()
        assert b"circuit.example.com/posts/" not in raw.replace(b"=\r\n", b"").replace(b"=\n", b"")
        for url in found:
            path, query = urlsplit(url).path, parse_qs(urlsplit(url).query)
            assert read_link_token(path.removeprefix("/r/"), [SECRET.encode()]) is not None
            (reader,) = query["u"]
            assert re.fullmatch(r"v2\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{24}", reader)
            assert address not in url and address.split("@")[0] not in url
        text = eml(sent, address).get_body(("plain",)).get_content()
        assert "Read more: https://news.example.com/r/l1." in text


def test_a_click_is_counted_for_its_reader_and_redirects_to_the_article(sent: Config) -> None:
    client = public_client(sent, Signer(), NOW)
    (robots,) = [
        u
        for u in links(sent, "chloe.dubois@example.net")
        if read_link_token(urlsplit(u).path.removeprefix("/r/"), [SECRET.encode()]) == (EDITION, ROBOTS)
    ][:1]
    answer = client.get(robots.removeprefix("https://news.example.com"))
    assert answer.status_code == 302
    target = answer.headers["location"]
    assert target.startswith(ROBOTS_URL + "?") and "utm_campaign=2026-W49" in target
    assert answer.headers["referrer-policy"] == "no-referrer" and answer.headers["cache-control"] == "no-store"
    client.get(robots.removeprefix("https://news.example.com"))
    with open_events(sent.state.path) as store:
        counts = store.counts(EDITION)
        activity = store.activity(EDITION)
        top = store.article_clicks(EDITION)
    assert (counts.clicks, counts.clickers) == (2, 1)
    assert activity["chloe.dubois@example.net"].articles == (ROBOTS,)
    assert [(a.article, a.clicks) for a in top] == [(ROBOTS, 2)]


def test_never_an_open_redirect(sent: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    client = public_client(sent, Signer(), NOW)
    secret = SECRET.encode()
    good = make_link_token(EDITION, ROBOTS, secret)
    cases = {
        "forged": make_link_token(EDITION, ROBOTS, b"somebody-elses-secret-1234"),
        "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        # signed with our secret, but the edition never carried such an article
        "not in the edition": make_link_token(EDITION, "https://evil.example/phish", secret),
        "another edition": make_link_token("2026-W01", ROBOTS, secret),
        "an unsubscribe token": make_token("A" * 22, secret, "unsubscribe"),
        "a URL": "https:%2F%2Fevil.example%2F",
        "empty": "",
    }
    for name, token in cases.items():
        answer = client.get(f"/r/{token}?u=x&next=https://evil.example/")
        assert answer.status_code == 404, name
        assert "location" not in answer.headers, name
    # nothing in the request chooses the target: extra parameters are ignored
    answer = client.get(f"/r/{good}?url=https://evil.example/&next=//evil.example")
    assert answer.status_code == 302 and answer.headers["location"].startswith(ROBOTS_URL)


def test_a_bad_or_missing_reader_still_redirects_but_is_not_counted(sent: Config) -> None:
    client = public_client(sent, Signer(), NOW)
    good = make_link_token(EDITION, ROBOTS, SECRET.encode())
    stranger = make_token(new_token_id(), b"not-our-secret-0123456789", "click")
    unknown = make_token(new_token_id(), SECRET.encode(), "click")  # ours, but names nobody (a preview's)
    unsubscribe = make_token(token_id(sent, "ada@example.com"), SECRET.encode(), "unsubscribe")  # wrong purpose
    for query in ("", f"?u={stranger}", f"?u={unknown}", f"?u={unsubscribe}", "?u=ada@example.com"):
        assert client.get(f"/r/{good}{query}").status_code == 302
    with open_events(sent.state.path) as store:
        counts = store.counts(EDITION)
    assert counts.clicks == 0 and counts.clickers == 0


def test_the_preview_shows_tracked_links_whose_clicks_count_for_nobody(sent: Config) -> None:
    from digest.web.live import PreviewState
    from digest.web.preview import get_page

    status, body = get_page(PreviewState(sent.source, "2026-11-30T00:00"), "/subscribers/grace@example.org/email.html")
    assert status == 200
    link = LINK.findall(body.decode("utf-8"))[0].replace("&amp;", "&")
    client = public_client(sent, Signer(), NOW)
    assert client.get(link.removeprefix("https://news.example.com")).status_code == 302
    with open_events(sent.state.path) as store:
        assert store.counts(EDITION).clicks == 0  # the editor's click is not Grace's
    # the email as sent carries Grace's own token, which does count
    sent_link = links(sent, "grace@example.org")[0]
    assert sent_link.split("?")[0] == link.split("?")[0] and sent_link != link  # same article, other reader
    assert client.get(sent_link.removeprefix("https://news.example.com")).status_code == 302
    with open_events(sent.state.path) as store:
        assert store.activity(EDITION)["grace@example.org"].clicks == 1


def test_head_requests_and_floods_are_redirected_uncounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = newsletter(tmp_path, monkeypatch, extra=CLICKS + "[serve]\nrate_limit = 60\nrate_burst = 3\n")
    send_edition(config)
    client = public_client(config, Signer(), NOW)
    good = make_link_token(EDITION, ROBOTS, SECRET.encode())
    reader = make_token(token_id(config, "chloe.dubois@example.net"), SECRET.encode(), "click")
    assert client.head(f"/r/{good}?u={reader}").status_code == 302
    answers = [client.get(f"/r/{good}?u={reader}").status_code for _ in range(10)]
    assert answers == [302] * 10  # a reader is never refused their article
    with open_events(config.state.path) as store:
        assert store.counts(EDITION).clicks == 3  # the burst; the rest were not written


def test_previous_secrets_still_verify_after_a_rotation(sent: Config) -> None:
    rotated = PublicSettings(
        sent, b"the-new-secret-after-rotation", Signer().key, now=lambda: NOW, previous_secrets=(SECRET.encode(),)
    )
    from starlette.testclient import TestClient

    client = TestClient(create_public_app(rotated), base_url="https://news.example.com", follow_redirects=False)
    good = make_link_token(EDITION, ROBOTS, SECRET.encode())
    assert client.get(f"/r/{good}").status_code == 302


def test_the_redirect_over_real_uvicorn_as_raw_bytes(sent: Config) -> None:
    app = create_public_app(PublicSettings(sent, SECRET.encode(), None, now=lambda: NOW))
    (first,) = links(sent, "grace@example.org")[:1]
    path = first.removeprefix("https://news.example.com")
    with real_server(app) as address:
        answer = raw_request(address, f"GET {path} HTTP/1.1\r\nHost: news.example.com\r\n\r\n".encode())
    status, headers = head_of(answer)
    assert status == 302
    assert headers["location"].startswith("https://circuit.example.com/posts/")
    assert b"\r\nlocation: https://circuit.example.com/posts/" in answer.lower()


def test_test_sends_link_straight_to_the_articles(sent: Config) -> None:
    """A tester's click must not count as the member's, and must work before the edition is sent."""
    from click.testing import CliRunner

    from digest.cli import main

    args = ["--config", str(sent.source), "test-send", "--segment", "ai-readers", "--to", "me@example.com"]
    result = CliRunner().invoke(main, [*args, "--at", "2026-11-30T00:00"])
    assert result.exit_code == 0, result.output
    (path,) = (sent.output.path / f"{EDITION}.test.ai-readers").glob("*.eml")
    html = email.message_from_bytes(path.read_bytes(), policy=email.policy.default).get_body(("html",)).get_content()
    assert "news.example.com/r/" not in html and "https://circuit.example.com/posts/" in html


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")
