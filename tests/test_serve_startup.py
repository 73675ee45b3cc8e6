"""`digest serve`'s start-up, in process (`public_server`, what `serve` runs): what it checks before
it listens, what it says, and that the server it returns answers subscribers through real uvicorn.

The end-to-end tests start `digest serve` as a process (tests/test_security_end_to_end.py, slow);
these run the same start-up code here, so a mutation run reaches it too.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from public_support import PUBLIC, SECRET, Signer, public_config, raw_request, serving, token
from signup_support import SIGNUP

from digest.config import Config
from digest.errors import ConfigError, DigestError
from digest.web.public import public_server

KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"


def get(address: tuple[str, int], path: str) -> bytes:
    return raw_request(address, f"GET {path} HTTP/1.1\r\nHost: {PUBLIC}\r\nConnection: close\r\n\r\n".encode())


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    monkeypatch.delenv(KEY_ENV, raising=False)
    return monkeypatch


def test_serve_says_where_it_listens_warns_without_a_webhook_key_and_answers(
    tmp_path: Path, env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = public_config(tmp_path)
    with caplog.at_level(logging.INFO, logger="digest"):
        server, sock = public_server(config, host="127.0.0.1", port=0)
    port = sock.getsockname()[1]
    # the list is read before it listens, not on the first subscriber's click
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "digest.public"] == [
        ("INFO", "subscriber list read: 10 subscribers"),
        ("WARNING", f"webhook disabled: set {KEY_ENV} to SendGrid's verification key to accept events"),
        ("INFO", f"serving unsubscribe, preferences and webhooks at http://127.0.0.1:{port}/ (Ctrl+C to stop)"),
    ]
    assert not any(SECRET in r.getMessage() for r in caplog.records)
    with serving(server, sock) as address:
        page = get(address, f"/unsubscribe?token={token(config, 'ada@example.com')}")
        assert page.startswith(b"HTTP/1.1 200 ") and b'<form method="post"' in page
        assert get(address, "/unsubscribe?token=v2.forged").startswith(b"HTTP/1.1 403 ")
        assert get(address, "/subscribe").startswith(b"HTTP/1.1 404 ")  # signups are off


def test_serve_with_a_webhook_key_and_signups_says_so_and_serves_the_form(
    tmp_path: Path, env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv(KEY_ENV, Signer().public_b64)
    config = public_config(tmp_path, SIGNUP)
    with caplog.at_level(logging.INFO, logger="digest"):
        server, sock = public_server(config, host="127.0.0.1", port=0)
    port = sock.getsockname()[1]
    assert [r.getMessage() for r in caplog.records if r.name == "digest.public"] == [
        "subscriber list read: 10 subscribers",
        f"serving signups, unsubscribe, preferences and webhooks at http://127.0.0.1:{port}/ (Ctrl+C to stop)",
    ]
    with serving(server, sock) as address:
        form = get(address, "/subscribe")
        assert form.startswith(b"HTTP/1.1 200 ") and b'name="email"' in form


def test_serve_refuses_to_start_without_the_secret(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    env.delenv("DIGEST_SECRET")
    config = public_config(tmp_path)
    with pytest.raises(ConfigError, match="DIGEST_SECRET"):
        public_server(config, host="127.0.0.1", port=0)


def test_serve_refuses_to_start_on_a_state_it_cannot_read(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    config = public_config(tmp_path)
    state = unreadable_state(config)
    with pytest.raises(DigestError) as info:
        public_server(config, host="127.0.0.1", port=0)
    assert str(state) in str(info.value)


def test_serve_on_a_busy_port_is_one_line_and_starts_no_signup_worker(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    from digest.web.preview import bind

    config = public_config(tmp_path, SIGNUP)
    taken = bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    workers = {t.name for t in threading.enumerate()}
    try:
        with pytest.raises(DigestError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: .* \(try --port {port + 1}\)$"):
            public_server(config, host="127.0.0.1", port=port)
    finally:
        taken.close()
    assert {t.name for t in threading.enumerate()} == workers


def unreadable_state(config: Config) -> Path:
    """A state file that is not a database: what a disk error or a stray copy leaves."""
    from digest.suppressions import STATE_NAME

    path = config.state.path / STATE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an SQLite database" * 100)
    return path


def test_serve_logs_one_message_a_line_on_stderr_unless_logging_is_set_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from digest.web.public import log_to_terminal

    logger = logging.getLogger("digest")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    log_to_terminal()
    log_to_terminal()  # a second call adds no second handler (no line printed twice)
    logging.getLogger("digest.public").info("serving at http://127.0.0.1:8080/")
    logging.getLogger("digest.public").debug("not shown")
    assert capsys.readouterr().err == "serving at http://127.0.0.1:8080/\n"
    # a program that set up digest's logging itself keeps exactly its own
    own = logging.NullHandler()
    monkeypatch.setattr(logger, "handlers", [own])
    log_to_terminal()
    assert logger.handlers == [own]


def test_serve_logs_to_the_terminal_listens_where_told_and_answers_until_stopped(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    """`serve` itself, in a thread: the server it runs is caught on its way out of public_server
    (the real one, unchanged) so the test can stop it, as Ctrl+C would."""
    from digest.web import public
    from digest.web.preview import bind

    config = public_config(tmp_path)
    logger = logging.getLogger("digest")
    env.setattr(logger, "handlers", [])
    caught: list[Any] = []

    def keep(config: Config, *, host: str, port: int) -> tuple[Any, Any]:
        server, sock = real(config, host=host, port=port)
        caught.append((server, sock, host, port))
        return server, sock

    real = public.public_server
    env.setattr(public, "public_server", keep)
    probe = bind("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    thread = threading.Thread(target=public.serve, args=(config,), kwargs={"host": "127.0.0.1", "port": port})
    thread.start()
    deadline = time.monotonic() + 10
    while not (caught and caught[0][0].started):
        assert thread.is_alive() and time.monotonic() < deadline, "serve did not start"
        time.sleep(0.02)
    server, sock, host, given = caught[0]
    try:
        assert (host, given, sock.getsockname()[1]) == ("127.0.0.1", port, port)
        assert len(logger.handlers) == 1 and isinstance(logger.handlers[0], logging.StreamHandler)
        assert get(("127.0.0.1", port), "/unsubscribe?token=v2.forged").startswith(b"HTTP/1.1 403 ")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
