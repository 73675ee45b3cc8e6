"""Transports: how a composed digest leaves. One small interface (base.py: a `Batch` in, one
`Outcome` out), three implementations: outbox.py (.eml files), sendgrid/ (SendGrid v3 mail/send,
and everything else SendGrid-specific), smtp.py (smtplib). `make_transport` picks the configured
one and imports only that one (the SendGrid client is not loaded for an outbox run)."""

from __future__ import annotations

from typing import Any

from digest.config import Config
from digest.errors import SendError
from digest.transports.base import (
    Batch,
    Outcome,
    OutcomeKind,
    Recipient,
    Schedule,
    Transport,
    Unschedulable,
    render_failed,
)

__all__ = [
    "Batch",
    "Outcome",
    "OutcomeKind",
    "Recipient",
    "Schedule",
    "Transport",
    "Unschedulable",
    "render_failed",
    "make_transport",
]


def make_transport(
    config: Config, *, at: Any, name: str | None = None, sandbox: bool = False, dry_run: bool = False
) -> Transport:
    name = name or config.sending.transport
    if name == "outbox":
        from digest.transports.outbox import OutboxTransport

        return OutboxTransport(config.output.path, date=at)
    if name == "sendgrid":
        from digest.transports.sendgrid.transport import SendGridTransport

        return SendGridTransport.from_config(config, sandbox=sandbox, need_key=not dry_run)
    if name == "smtp":
        from digest.transports.smtp import SmtpTransport

        return SmtpTransport.from_config(config, date=at)
    raise SendError(f"unknown transport {name!r} (outbox, sendgrid or smtp)")
