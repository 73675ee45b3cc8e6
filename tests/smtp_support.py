"""A real SMTP peer for the tests: aiosmtpd on 127.0.0.1 with an inbox that keeps what it got."""

from __future__ import annotations

import contextlib
import email
import socket
from collections.abc import Iterator
from email.message import Message
from email.policy import default
from pathlib import Path

from aiosmtpd.controller import Controller
from send_support import ONE_CLICK_TOML, copy_sample


class Inbox:
    """An aiosmtpd handler keeping what it received; refuses addresses in `refuse` with a 550."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.raw: dict[str, bytes] = {}  #: recipient -> the DATA bytes exactly as received
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802, ANN001, ANN201
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001, ANN201
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content, policy=default)))
        for rcpt in envelope.rcpt_tos:
            self.raw[rcpt] = envelope.original_content
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def smtp_peer() -> Iterator[tuple[Inbox, int]]:
    """A plain aiosmtpd server on 127.0.0.1 for the duration of the block: (its inbox, its port)."""
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
        f'[sending]\ntransport = "smtp"\n{ONE_CLICK_TOML}\n[smtp]\nhost = "127.0.0.1"\nport = {port}\n'
        'security = "none"\nusername_env = ""\ntimeout = 5.0\n',
    )
