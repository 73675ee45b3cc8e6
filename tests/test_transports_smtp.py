"""The SMTP transport against a real SMTP peer (aiosmtpd on 127.0.0.1), through `digest send`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from send_support import AT, ONE_CLICK_TOML, SAMPLE_RECIPIENTS, copy_sample, ledger_for, load
from smtp_support import Inbox, free_port, smtp_config, smtp_peer
from tls_support import make_certificate

from digest.cli import main

# aiosmtpd warns when AUTH is allowed without STARTTLS; over implicit TLS (security = "ssl") it is
# encrypted all the same
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_peer() as peer:
        yield peer


def test_one_mime_message_per_recipient_and_a_rerun_sends_nothing(tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    config = smtp_config(tmp_path, port)
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--yes", "--at", AT])
    assert result.exit_code == 0, result.output
    assert sorted(r for rcpts, _ in inbox.messages for r in rcpts) == sorted(SAMPLE_RECIPIENTS)
    rcpts, msg = next(m for m in inbox.messages if m[0] == ["ada@example.com"])
    assert msg["List-Id"] and msg["Message-ID"]
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    with ledger_for(load(config)) as ledger:
        row = ledger.rows("2026-W49")["ada@example.com"]
    assert row.state == "accepted" and row.message_id == msg["Message-ID"]
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--yes", "--at", AT])
    assert result.exit_code == 0 and len(inbox.messages) == 7


def test_a_refused_recipient_fails_alone(tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    inbox.refuse.add("grace@example.org")
    config = smtp_config(tmp_path, port)
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--yes", "--at", AT])
    assert result.exit_code == 1
    assert "grace@example.org: refused: 550" in result.output
    assert len(inbox.messages) == 6
    inbox.refuse.clear()  # fixed on the server's side: the next run sends only grace's
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--yes", "--at", AT])
    assert result.exit_code == 0 and "accepted: 1" in result.output


def test_no_server_means_not_sent_and_retryable(tmp_path: Path) -> None:
    from send_support import AT_DT

    from digest.pipeline import open_run
    from digest.send import SendOptions, send_edition
    from digest.transports.smtp import SmtpTransport

    cfg = load(smtp_config(tmp_path, free_port()))
    waits: list[float] = []
    transport = SmtpTransport("127.0.0.1", cfg.smtp.port, date=AT_DT, security="none", timeout=2, sleep=waits.append)
    with ledger_for(cfg) as ledger:
        report = send_edition(open_run(cfg, AT_DT), ledger, transport, SendOptions())
        assert report.exit_code == 1 and "not sent after 4 attempts" in report.failed[0][1]
        # the first recipient spends the retries; the relay is then given up on for the run
        assert waits == [2.0, 4.0, 8.0]
        assert len(report.failed) == 7 and all("relay is not answering" in e for _, e in report.failed[1:])
        assert {r.state for r in ledger.rows("2026-W49").values()} == {"failed"}


# ---- TLS and login: STARTTLS and implicit TLS against aiosmtpd with a certificate made here


def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001, ANN201
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"mailer", b"s3cret-pw")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture(params=["starttls", "ssl"])
def tls_smtp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Inbox, int, str, Path]]:
    import ssl

    cert, key = make_certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    inbox, port, mode = Inbox(), free_port(), request.param
    common = {
        "hostname": "127.0.0.1",
        "port": port,
        "authenticator": authenticator,
        "auth_required": True,
    }
    if mode == "starttls":
        # the server refuses anything before STARTTLS, and AUTH in the clear
        controller = Controller(inbox, tls_context=server_tls, require_starttls=True, auth_require_tls=True, **common)
    else:
        # implicit TLS: aiosmtpd only knows STARTTLS sessions as encrypted, so it must be told AUTH is fine
        controller = Controller(inbox, ssl_context=server_tls, auth_require_tls=False, **common)
    controller.start()
    try:
        yield inbox, port, mode, cert
    finally:
        controller.stop()


def tls_config(tmp_path: Path, port: int, mode: str, ca: Path | None) -> Path:
    """The sample over SMTP with TLS; `ca` None trusts only the system's CAs (and no login)."""
    trust = f'ca_file = "{ca}"\n' if ca is not None else 'username_env = ""\n'
    return copy_sample(
        tmp_path / "newsletter",
        f'[sending]\ntransport = "smtp"\n{ONE_CLICK_TOML}\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "{mode}"\n'
        f"{trust}timeout = 5.0\n",
    )


def test_tls_and_login_with_credentials_from_the_environment(
    tmp_path: Path, tls_smtp: tuple[Inbox, int, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port, mode, ca = tls_smtp
    (tmp_path / "newsletter").mkdir()
    config = tls_config(tmp_path, port, mode, ca)
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret-pw")
    result = CliRunner().invoke(main, ["--config", str(config), "--verbose", "send", "--yes", "--at", AT])
    assert result.exit_code == 0, result.output
    assert sorted(r for rcpts, _ in inbox.messages for r in rcpts) == sorted(SAMPLE_RECIPIENTS)
    assert "s3cret-pw" not in result.output


def test_a_refused_password_stops_with_one_line_and_never_shows_it(
    tmp_path: Path, tls_smtp: tuple[Inbox, int, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port, mode, ca = tls_smtp
    (tmp_path / "newsletter").mkdir()
    config = tls_config(tmp_path, port, mode, ca)
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-password-xyz")
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--yes", "--at", AT])
    assert result.exit_code == 1
    assert "the user name or password was refused" in result.output
    assert "wrong-password-xyz" not in result.output and not inbox.messages


def test_an_untrusted_certificate_is_refused(tmp_path: Path, tls_smtp: tuple[Inbox, int, str, Path]) -> None:
    inbox, port, mode, _ = tls_smtp
    (tmp_path / "newsletter").mkdir()
    config = tls_config(tmp_path, port, mode, None)
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--yes", "--at", AT])
    assert result.exit_code == 1 and not inbox.messages
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: SMTP 127.0.0.1: its TLS certificate is not trusted") and "ca_file" in line
    # stopped at once, after one recipient, recorded as not sent (retryable), never ambiguous; the
    # rest of the plan is still queued (nothing was sent for it; the next run plans it again)
    with ledger_for(load(config)) as ledger:
        states = [r.state for r in ledger.rows("2026-W49").values()]
    assert states.count("failed") == 1 and set(states) == {"failed", "queued"}
