"""The public app: one-click and page unsubscribes, the preferences page, and what it refuses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from public_support import BASE_URL, SECRET, legacy, token, token_id
from starlette.testclient import TestClient

from digest.audience import load_effective, read_overlay
from digest.config import Config, load_config
from digest.signup.form import consent_text
from digest.subscribers import load_subscribers
from digest.suppressions import STATE_NAME
from digest.web.public import PublicSettings, create_public_app

ROOT = Path(__file__).resolve().parent.parent
EXTRA = '\n[sending]\nunsubscribe_url = "https://news.example.com/unsubscribe"\n'


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    import shutil

    for name in ("content", "templates", "subscribers"):
        shutil.copytree(ROOT / name, tmp_path / name)
    (tmp_path / "digest.toml").write_text((ROOT / "digest.toml").read_text() + EXTRA, encoding="utf-8")
    csv = tmp_path / "subscribers" / "subscribers.csv"
    with csv.open("a", encoding="utf-8") as fh:  # a hostile row: everything shown must be escaped
        fh.write('eve@example.com,"<script>alert(1)</script>","<b>x</b>;<img src=x onerror=alert(2)>",,active,UTC,\n')
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    return load_config(tmp_path / "digest.toml")


@pytest.fixture
def client(config: Config) -> TestClient:
    return TestClient(create_public_app(PublicSettings(config, SECRET.encode(), None)), base_url=BASE_URL)


def status_of(config: Config, email: str) -> str:
    subs = load_effective(config).subscribers
    return next(s.status for s in subs if s.email == email)


def nothing_written(config: Config) -> bool:
    overlay = read_overlay(config)
    return not overlay.optouts and not overlay.preferences


def test_one_click_post_unsubscribes_without_confirmation(config: Config, client: TestClient) -> None:
    response = client.post(
        f"/unsubscribe?token={token(config, 'ada@example.com')}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert status_of(config, "ada@example.com") == "unsubscribed"
    assert status_of(config, "grace@example.org") == "active"
    (row,) = read_overlay(config).optouts["ada@example.com"]
    assert row.source == "one-click"


def test_get_shows_one_confirm_button_and_never_unsubscribes(config: Config, client: TestClient) -> None:
    t = token(config, "ada@example.com")
    for _ in range(3):  # a link scanner may follow the link many times
        page = client.get(f"/unsubscribe?token={t}")
        assert page.status_code == 200
    assert nothing_written(config)
    assert page.text.count("<form") == 1 and page.text.count('type="submit"') == 1
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action and action.group(1) == f"?token={t}"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)"', page.text))
    assert client.post(f"/unsubscribe{action.group(1)}", data=fields).status_code == 200
    assert status_of(config, "ada@example.com") == "unsubscribed"
    (row,) = read_overlay(config).optouts["ada@example.com"]
    assert row.source == "unsubscribe page"


def test_a_get_with_an_address_link_creates_no_state(config: Config, client: TestClient) -> None:
    """Reading never creates the state folder (a link scanner hitting an old link writes nothing)."""
    for _ in range(3):
        assert client.get(f"/unsubscribe?token={legacy('ada@example.com')}").status_code == 200
        assert client.get(f"/preferences?token={legacy('ada@example.com', 'preferences')}").status_code == 200
        assert client.get("/unsubscribe?token=v2.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA").status_code == 403
    assert not (config.state.path / STATE_NAME).exists()


FORGERIES = (
    "garbage",
    "forged with another secret",
    "tampered mac",
    "another subscriber's id on ada's mac",
    "token for the other purpose",
    "bare address",
    "bare opaque id",
    "extra characters in the id",
    "extra characters in the mac",
    "padding added",
    "trailing newline",
    "non-canonical spare bits",
    "address link forged with another secret",
    "address link with another address on ada's mac",
)


def _forgeries(config: Config) -> dict[str, str]:
    ada = token(config, "ada@example.com")
    version, ada_id, mac = ada.split(".")
    grace_id = token_id(config, "grace@example.org")
    old_payload, old_mac = legacy("ada@example.com").split(".")
    return {
        "garbage": "not-a-token",
        "forged with another secret": token(config, "ada@example.com", secret="attacker-guessed-secret-123"),
        "tampered mac": f"v2.{ada_id}." + ("A" if mac[0] != "A" else "B") + mac[1:],
        "another subscriber's id on ada's mac": f"v2.{grace_id}.{mac}",
        "token for the other purpose": token(config, "ada@example.com", "preferences"),
        "bare address": "ada@example.com",
        "bare opaque id": ada_id,
        # a lenient base64 decoder skips these and the MAC would still verify
        "extra characters in the id": f'v2.{ada_id[:3]}"<>{ada_id[3:]}.{mac}',
        "extra characters in the mac": f"v2.{ada_id}.{mac[:5]}<!>{mac[5:]}",
        "padding added": f"v2.{ada_id}==.{mac}",
        "trailing newline": ada + "\n",
        "non-canonical spare bits": f"v2.{_spare_bits_flipped(ada_id)}.{mac}",
        "address link forged with another secret": legacy("ada@example.com", secret="attacker-guessed-secret-123"),
        "address link with another address on ada's mac": legacy("grace@example.org").split(".")[0] + "." + old_mac,
    }


def _spare_bits_flipped(text: str) -> str:
    """The same bytes spelt differently: the last character differs only in unused bits."""
    import base64

    assert len(text) % 4 == 2  # 16 bytes: the last character carries 4 spare bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
    assert base64.urlsafe_b64decode(other + "==") == base64.urlsafe_b64decode(text + "==")
    return other


@pytest.mark.parametrize("name", FORGERIES)
def test_every_forgery_is_refused_and_writes_nothing(config: Config, client: TestClient, name: str) -> None:
    forgeries = _forgeries(config)
    assert set(forgeries) == set(FORGERIES)
    bad = forgeries[name]
    assert client.get("/unsubscribe", params={"token": bad}).status_code == 403
    assert client.post("/unsubscribe", params={"token": bad}, content=b"List-Unsubscribe=One-Click").status_code == 403
    # the other way round
    wrong = bad if name != "token for the other purpose" else token(config, "ada@example.com")
    assert client.get("/preferences", params={"token": wrong}).status_code == 403
    assert client.post("/preferences", params={"token": wrong}, data={"action": "pause"}).status_code == 403
    assert nothing_written(config)


def test_a_tampered_spelling_is_never_reflected_into_the_page(config: Config, client: TestClient) -> None:
    for t in (token(config, "ada@example.com"), legacy("ada@example.com")):
        head, tail = t.split(".", 1)
        inserted = "\"'<>!;()"  # no base64 characters: a lenient decoder skips them all
        page = client.get("/unsubscribe", params={"token": head[:1] + inserted + head[1:] + "." + tail})
        assert page.status_code == 403
        assert "<form" not in page.text and "&lt;&gt;" not in page.text and "&#34;" not in page.text


def test_a_missing_token_is_400(config: Config, client: TestClient) -> None:
    assert client.get("/unsubscribe").status_code == 400
    assert client.post("/unsubscribe", content=b"List-Unsubscribe=One-Click").status_code == 400
    assert client.post("/preferences", data={"action": "pause"}).status_code == 400
    assert nothing_written(config)


def test_preferences_show_the_current_topics_and_change_only_their_own(config: Config, client: TestClient) -> None:
    t = token(config, "chloe.dubois@example.net", "preferences")
    page = client.get(f"/preferences?token={t}")
    assert page.status_code == 200 and 'value="ai; climate; robotics"' in page.text
    # The form names no subscriber: an email field smuggled in cannot redirect the change.
    saved = client.post(
        f"/preferences?token={t}", data={"action": "save", "tags": "space, Python", "email": "ada@example.com"}
    )
    assert saved.status_code == 200 and 'value="space; Python"' in saved.text
    subs = {s.email: s for s in load_effective(config).subscribers}
    assert subs["chloe.dubois@example.net"].tags == ("space", "Python")
    assert subs["ada@example.com"].tags == () and subs["ada@example.com"].status == "active"
    # The list itself is never rewritten.
    assert load_subscribers(config.subscribers.path).subscribers[2].tags == ("ai", "climate", "robotics")


def test_pause_resume_and_unsubscribe_from_the_preferences_page(config: Config, client: TestClient) -> None:
    t = token(config, "grace@example.org", "preferences")
    assert "Resume digests" in client.post(f"/preferences?token={t}", data={"action": "pause"}).text
    assert status_of(config, "grace@example.org") == "paused"
    # Pausing kept the list's topics in force (it must not freeze them).
    assert read_overlay(config).preferences["grace@example.org"].tags is None
    client.post(f"/preferences?token={t}", data={"action": "resume"})
    assert status_of(config, "grace@example.org") == "active"
    page = client.post(f"/preferences?token={t}", data={"action": "unsubscribe"})
    assert status_of(config, "grace@example.org") == "unsubscribed"
    # an unsubscribed reader is not offered settings that do nothing, only the way back
    assert 'name="tags"' not in page.text and 'value="pause"' not in page.text
    assert 'value="resubscribe"' in page.text
    assert client.post(f"/preferences?token={t}", data={"action": "drop tables"}).status_code == 400


def test_each_refusal_of_the_preferences_form_says_exactly_why_and_changes_nothing(
    config: Config, client: TestClient
) -> None:
    t = token(config, "grace@example.org", "preferences")
    url = f"/preferences?token={t}"
    unknown = client.post(url, data={"action": "explode"})
    assert unknown.status_code == 400 and "<p>Unknown action.</p>" in unknown.text
    # the sample has one schedule: no cadence to choose, so any is unknown
    cadence = client.post(url, data={"action": "save", "tags": "space", "frequency": "daily"})
    assert cadence.status_code == 400 and "<p>Unknown cadence.</p>" in cadence.text
    gone = token(config, "left@example.com", "preferences")  # signed, but no longer on the list
    missing = client.post(f"/preferences?token={gone}", data={"action": "save", "tags": "space"})
    assert missing.status_code == 404 and "<p>This address is not on the list any more.</p>" in missing.text
    assert nothing_written(config)
    # a cadence is read only with Save: a stray one beside Pause does not stop the pause
    paused = client.post(url, data={"action": "pause", "frequency": "hourly"})
    assert paused.status_code == 200 and status_of(config, "grace@example.org") == "paused"


def test_saving_without_a_tags_field_clears_the_tags_and_keeps_the_categories_sent(
    config: Config, client: TestClient
) -> None:
    t = token(config, "chloe.dubois@example.net", "preferences")
    saved = client.post(f"/preferences?token={t}", data={"action": "save", "categories": "Science"})
    assert saved.status_code == 200
    chloe = next(s for s in load_effective(config).subscribers if s.email == "chloe.dubois@example.net")
    assert (chloe.tags, chloe.categories) == ((), ("Science",))


def test_every_page_names_the_newsletter_and_each_change_says_exactly_what_was_done(
    config: Config, client: TestClient
) -> None:
    t = token(config, "grace@example.org", "preferences")
    url = f"/preferences?token={t}"
    page = client.get(url).text
    assert "<title>Your preferences · The Weekly Circuit</title>" in page
    assert "<h1>Your The Weekly Circuit preferences</h1>" in page and 'id="saved"' not in page  # nothing saved yet
    assert 'id="cadence"' not in page  # one schedule: no cadence to show or choose
    notices = {
        "save": "Your topics are saved.",
        "pause": "Digests are paused until you resume them.",
        "resume": "Digests are on again.",
        "unsubscribe": "You are unsubscribed.",
    }
    for action, notice in notices.items():
        answer = client.post(url, data={"action": action, "tags": "python"})
        assert f'<p class="notice" id="saved">{notice}</p>' in answer.text, action
    # unsubscribed now: the way back shows the words they would agree to again
    assert f'<p class="muted">{consent_text(config)}</p>' in client.get(url).text
    one_click = client.post(
        f"/unsubscribe?token={token(config, 'ada@example.com')}", content=b"List-Unsubscribe=One-Click"
    )
    assert "<title>You are unsubscribed · The Weekly Circuit</title>" in one_click.text


def test_a_signed_link_naming_nobody_we_know_is_not_valid_rather_than_expired(client: TestClient) -> None:
    from digest.tokens import make_token, new_token_id

    stranger = make_token(new_token_id(), SECRET.encode(), "preferences")  # our signature, an id never given
    page = client.get(f"/preferences?token={stranger}")
    assert page.status_code == 403
    assert "<p>This link is not valid. Use the link from your most recent email.</p>" in page.text


def test_a_reader_the_list_marks_pending_is_offered_the_way_in(config: Config, client: TestClient) -> None:
    with config.subscribers.path.open("a", encoding="utf-8") as fh:
        fh.write("pen@example.com,Pen,,,pending,UTC,\n")
    page = client.get(f"/preferences?token={token(config, 'pen@example.com', 'preferences')}").text
    assert '<strong id="status">pending</strong>' in page and 'value="resubscribe"' in page


def test_everything_shown_is_escaped(config: Config, client: TestClient) -> None:
    page = client.get(f"/preferences?token={token(config, 'eve@example.com', 'preferences')}").text
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "&lt;img src=x onerror=alert(2)&gt;" in page


def test_only_the_listed_endpoints_exist(client: TestClient) -> None:
    from digest.web.live import PreviewState
    from digest.web.preview import create_app

    for path in ("/", "/subscribers/ada@example.com", "/subscribers/ada@example.com/email.html", "/preview",
                 "/events", "/admin", "/status", "/subscribers"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 404, path
        assert "ada@example.com" not in response.text
    assert client.get("/webhooks/sendgrid").status_code == 405
    assert client.put("/unsubscribe").status_code == 405
    public = {r.path for r in client.app.routes}  # type: ignore[attr-defined]
    assert public == {"/unsubscribe", "/preferences", "/webhooks/sendgrid", "/r/{token}"}
    preview = {r.path for r in create_app(PreviewState(Path("digest.toml"), None, None), watch=False).routes}
    assert not public & preview


def test_pages_are_not_cached_and_leak_no_token_through_the_referer(config: Config, client: TestClient) -> None:
    page = client.get(f"/unsubscribe?token={token(config, 'ada@example.com')}")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert client.get("/unsubscribe?token=bad").headers["cache-control"] == "no-store"


def test_a_valid_token_for_an_address_not_on_the_list(config: Config, client: TestClient) -> None:
    """Removed from the CSV since the email went out: the opt-out still counts if they come back."""
    gone = token(config, "left@example.com")
    assert client.post(f"/unsubscribe?token={gone}", content=b"List-Unsubscribe=One-Click").status_code == 200
    assert "left@example.com" in read_overlay(config).optouts
    page = client.get(f"/preferences?token={token(config, 'left@example.com', 'preferences')}")
    assert page.status_code == 404 and "<p>This address is not on the list any more.</p>" in page.text


@pytest.mark.slow  # a real digest serve process
def test_serve_binds_loopback_by_default_and_logs_no_secret_or_token(config: Config, tmp_path: Path) -> None:
    from digest.cli import main

    host = next(p for p in main.commands["serve"].params if p.name == "host")
    assert host.default == "127.0.0.1"
    env = {"DIGEST_SECRET": SECRET, "PATH": "/usr/bin:/bin", "SENDGRID_API_KEY": "SG.do-not-print-me"}
    env.update((k, v) for k, v in os.environ.items() if k == "DIGEST_DATABASE_URL")  # the engine under test
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config.source), "--verbose", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # blocks until the server says where it listens
            lines.append(line)
            if "serving" in line:
                break
        url = re.search(r"http://127\.0\.0\.1:\d+/", "".join(lines))
        assert url, lines
        t = token(config, "ada@example.com")
        answer = httpx.post(f"{url.group(0)}unsubscribe?token={t}", content=b"List-Unsubscribe=One-Click")
        assert answer.status_code == 200
        assert httpx.get(f"{url.group(0)}unsubscribe?token=forged").status_code == 403
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    logged = "".join(lines) + out
    assert "unsubscribe recorded" in logged
    for secret in (SECRET, "SG.do-not-print-me", t):
        assert secret not in logged
    assert status_of(config, "ada@example.com") == "unsubscribed"


def test_serve_without_the_secret_is_one_line_naming_the_variable(config: Config, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config.source), "--verbose", "serve", "--port", "0"],
        env={"PATH": "/usr/bin:/bin", "DIGEST_SECRET": "short"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "DIGEST_SECRET" in result.stderr
    assert "short" not in result.stderr.replace("16 characters", "")


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")


def test_a_one_click_body_that_is_not_utf8_still_unsubscribes(config: Config, client: TestClient) -> None:
    # RFC 8058: the signed link is the proof, whatever a mail client's POST body holds
    response = client.post(
        f"/unsubscribe?token={token(config, 'ada@example.com')}",
        content=b"List-Unsubscribe=One-Click\xff\xfe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    (row,) = read_overlay(config).optouts["ada@example.com"]
    assert row.source == "one-click"


@pytest.mark.sqlite_only
def test_an_internal_error_is_one_plain_page_and_one_log_line(config: Config, caplog: pytest.LogCaptureFixture) -> None:
    """A state that cannot be read (here a file that is no database) mid-service: the reader is
    told nothing was recorded, and neither the page nor the log holds a traceback or a token."""
    app = create_public_app(PublicSettings(config, SECRET.encode(), None))
    client = TestClient(app, base_url=BASE_URL, raise_server_exceptions=False)
    link = f"/unsubscribe?token={token(config, 'ada@example.com')}"
    state = config.state.path / STATE_NAME
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(b"this is not a database\n" * 200)
    with caplog.at_level("INFO", logger="digest"):
        response = client.post(link, content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 500
    assert "Something went wrong" in response.text and "Your request was not recorded." in response.text
    assert "Traceback" not in response.text and link.split("=", 1)[1] not in response.text
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("internal error: ")
    assert "\n" not in errors[0] and "token" not in errors[0]
