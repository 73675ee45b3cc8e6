"""The SMTP transport against a real SMTP peer (aiosmtpd on 127.0.0.1), through `digest send`."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email.message import Message
from email.policy import default
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from send_support import AT, SAMPLE_RECIPIENTS, copy_sample, ledger_for, load

from digest.cli import main


class Inbox:
    """An aiosmtpd handler keeping what it received; refuses addresses in `refuse` with a 550."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802, ANN001, ANN201
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001, ANN201
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content, policy=default)))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def smtp_config(tmp_path: Path, port: int) -> Path:
    return copy_sample(
        tmp_path,
        f'[sending]\ntransport = "smtp"\n\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        'username_env = ""\ntimeout = 5.0\n',
    )


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
        report = send_edition(open_run(cfg, AT_DT), ledger, transport, SendOptions(limit=1), state_dir=cfg.state.path)
        assert report.exit_code == 1 and "not sent after 4 attempts" in report.failed[0][1]
        assert waits == [2.0, 4.0, 8.0]
        assert {r.state for r in ledger.rows("2026-W49").values()} == {"failed"}
