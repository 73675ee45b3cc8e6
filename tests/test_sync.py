"""`digest sync` against the fake SendGrid: every list, paginated, mirrored; failures are clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from send_support import AT, FakeSendGrid, copy_sample, load, sendgrid_toml

from digest.audience import read_overlay
from digest.cli import main
from digest.config import Config
from digest.errors import AuthError, SendError
from digest.store import open_state
from digest.sync import sync


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    return load(copy_sample(tmp_path, sendgrid_toml(fake.url, asm_group_id=42)))


def reasons(config: Config) -> dict[str, set[str]]:
    return {sub: {o.reason for o in rows} for sub, rows in read_overlay(config).optouts.items()}


def fill(fake: FakeSendGrid) -> None:
    fake.suppressions["unsubscribes"] = [{"email": f"u{i}@example.com", "created": 1_700_000_000 + i} for i in range(5)]
    fake.suppressions["bounces"] = [{"email": "Grace@Example.org", "created": 1, "reason": "550 5.1.1 unknown"}]
    fake.suppressions["spam_reports"] = [{"email": "li.lei@example.com", "created": 2}]
    fake.suppressions["invalid_emails"] = [{"email": "bad@example.com", "created": 3, "reason": "Mail domain"}]
    fake.suppressions["blocks"] = [{"email": "blocked@example.com", "created": 4}]  # temporary: not synced
    fake.group_suppressions[42] = ["ada@example.com"]
    fake.group_suppressions[9] = ["other-list@example.com"]


def test_every_list_is_pulled_page_by_page(config: Config, fake: FakeSendGrid) -> None:
    fill(fake)
    fake.suppression_page_limit = 2  # smaller than the page we ask for: only an empty page ends a list
    report = sync(config)
    assert dict(report.counts) == {
        "unsubscribes": 5,
        "bounces": 1,
        "spam_reports": 1,
        "invalid_emails": 1,
        "asm_group_42": 1,
    }
    got = reasons(config)
    assert {f"u{i}@example.com" for i in range(5)} <= set(got)
    assert got["grace@example.org"] == {"bounced"}  # keyed by the case-folded address
    assert got["li.lei@example.com"] == {"complained"} and got["bad@example.com"] == {"invalid"}
    assert got["ada@example.com"] == {"group_unsubscribed"}
    assert "blocked@example.com" not in got and "other-list@example.com" not in got
    pages = [r for r in fake.requests if r.path == "/v3/suppression/unsubscribes"]
    assert [r.query["offset"] for r in pages] == [["0"], ["2"], ["4"], ["5"]]


def test_sync_mirrors_sendgrid_and_keeps_what_subscribers_told_us(config: Config, fake: FakeSendGrid) -> None:
    fill(fake)
    sync(config)
    with open_state(config) as state:
        state.opt_out("grace@example.org", "unsubscribed", "one-click")
    fake.suppressions["bounces"] = []  # the sender removed the bounce in SendGrid to try again
    sync(config)
    assert reasons(config)["grace@example.org"] == {"unsubscribed"}  # the bounce went, the opt-out stays
    sync(config)  # running it again changes nothing
    assert reasons(config)["grace@example.org"] == {"unsubscribed"}


def test_a_refused_key_is_an_auth_error_without_the_key(
    config: Config, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong-and-secret")
    with pytest.raises(AuthError, match="the API key was refused") as info:
        sync(config)
    assert "SG.wrong-and-secret" not in str(info.value)
    assert not (config.state.path / "subscribers.sqlite3").exists()


def test_an_unreachable_sendgrid_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSendGrid() as dead:
        url = dead.url
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.x")
    config = load(copy_sample(tmp_path, sendgrid_toml(url)))
    with pytest.raises(SendError, match="cannot reach SendGrid for /v3/suppression/unsubscribes"):
        sync(config)


def test_a_failed_sync_stops_the_send_and_nothing_is_sent(
    config: Config, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong-and-secret")
    result = CliRunner().invoke(main, ["--config", str(config.source), "--verbose", "send", "--yes", "--at", AT])
    assert result.exit_code == 1 and "sync: SendGrid: the API key was refused" in result.output
    assert "SG.wrong-and-secret" not in result.output
    assert fake.delivered_to() == {} and not any(r.path == "/v3/mail/send" for r in fake.requests)


def test_the_cli_reports_counts(config: Config, fake: FakeSendGrid) -> None:
    fill(fake)
    result = CliRunner().invoke(main, ["--config", str(config.source), "--verbose", "sync"])
    assert result.exit_code == 0, result.output
    assert "unsubscribes: 5" in result.output and "synced 9 suppression(s)" in result.output
    assert fake.api_key not in result.output


def test_a_dry_run_does_not_sync_or_write(config: Config, fake: FakeSendGrid) -> None:
    fill(fake)
    result = CliRunner().invoke(main, ["--config", str(config.source), "send", "--dry-run", "--at", AT])
    assert result.exit_code == 0, result.output
    assert fake.requests == [] and not (config.state.path / "subscribers.sqlite3").exists()


def test_a_truncated_answer_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that promises more bytes than it sends (IncompleteRead) is a SendError, not a crash."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(3):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n[{")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    cfg = load(copy_sample(tmp_path, sendgrid_toml(f"http://127.0.0.1:{port}")))
    try:
        with pytest.raises(SendError, match="sync: cannot reach SendGrid for"):
            sync(cfg)
    finally:
        listener.close()


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")
