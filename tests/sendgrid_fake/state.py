"""What the fake keeps: each request as it saw it, each accepted mail and its messages, and the
scripted faults the next requests answer with."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass
class RequestRecord:
    """One HTTP request as the fake saw it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    size: int
    fault: str | None = None
    status: int | None = None  # None: the connection was dropped without an answer
    message_id: str | None = None
    connection: tuple[str, int] | None = None  #: the client's address: one per TCP connection


@dataclass
class Accepted:
    """A mail/send body the fake accepted, with per-personalization state."""

    message_id: str
    body: dict[str, Any]
    at: float
    cancelled: set[int] = field(default_factory=set)
    paused: set[int] = field(default_factory=set)


def render(value: str | None, subs: dict[str, str]) -> str | None:
    """Apply substitutions the simple way SendGrid does: replace each key literally."""
    if value is None:
        return None
    for key, sub in subs.items():
        value = value.replace(key, sub)
    return value


class Message(NamedTuple):
    """One delivered recipient: unpacks as (to_email, subject, personalization, message_id, body).

    `subject` is rendered with the personalization's substitutions; the properties give the
    rest of what this recipient really received.
    """

    to_email: str
    subject: str | None
    personalization: dict[str, Any]
    message_id: str
    body: dict[str, Any]

    @property
    def substitutions(self) -> dict[str, str]:
        return self.personalization.get("substitutions") or {}

    @property
    def content(self) -> list[dict[str, str | None]]:
        """The content blocks after substitution, in request order."""
        return [
            {"type": c.get("type"), "value": render(c.get("value"), self.substitutions)}
            for c in self.body.get("content") or []
        ]

    def _typed(self, mime: str) -> str | None:
        for block in self.content:
            if str(block["type"]).lower() == mime:
                return block["value"]
        return None

    @property
    def html(self) -> str | None:
        return self._typed("text/html")

    @property
    def text(self) -> str | None:
        return self._typed("text/plain")

    @property
    def headers(self) -> dict[str, str]:
        """Top-level headers overridden by the personalization's."""
        return {**(self.body.get("headers") or {}), **(self.personalization.get("headers") or {})}

    @property
    def custom_args(self) -> dict[str, str]:
        return {
            **(self.body.get("custom_args") or {}),
            **(self.personalization.get("custom_args") or {}),
        }

    @property
    def categories(self) -> list[str]:
        return list(self.body.get("categories") or [])

    @property
    def send_at(self) -> int | None:
        return self.personalization.get("send_at", self.body.get("send_at"))

    @property
    def batch_id(self) -> str | None:
        return self.body.get("batch_id")

    @property
    def from_email(self) -> str | None:
        sender = self.personalization.get("from") or self.body.get("from") or {}
        return sender.get("email")

    @property
    def role(self) -> str:
        """'to', 'cc' or 'bcc'."""
        for kind in ("to", "cc", "bcc"):
            for addr in self.personalization.get(kind) or []:
                if addr.get("email") == self.to_email:
                    return kind
        return "to"


@dataclass(frozen=True)
class Fault:
    """A parsed script token."""

    token: str
    kind: str  # ok | status | drop_before | drop_after | slow
    status: int = 0
    reset_in: float | None = 1.0  # 429 only: seconds ahead for X-RateLimit-Reset, None = no header
    delay: float = 0.0


def parse_fault(token: str) -> Fault:
    """Parse "ok", "429[:reset=N|:noreset]", "<4xx/5xx>", "drop_before", "drop_after", "slow:S"."""
    tok = token.strip()
    head, _, arg = tok.partition(":")
    if tok in ("ok", "drop_before", "drop_after"):
        return Fault(tok, tok)
    if head == "slow":
        try:
            delay = float(arg)
        except ValueError:
            raise ValueError(f"bad script token {token!r}: use slow:SECONDS") from None
        return Fault(tok, "slow", delay=delay)
    if head.isdigit() and 400 <= int(head) <= 599:
        status = int(head)
        reset_in: float | None = 1.0
        if arg:
            if status != 429:
                raise ValueError(f"bad script token {token!r}: only 429 takes options")
            if arg == "noreset":
                reset_in = None
            elif arg.startswith("reset="):
                reset_in = float(arg[len("reset=") :])
            else:
                raise ValueError(f"bad script token {token!r}")
        return Fault(tok, "status", status=status, reset_in=reset_in)
    raise ValueError(f"unknown script token {token!r}")


OK = Fault("ok", "ok")


def event_id() -> str:
    """An sg_event_id as SendGrid spells them: 22 URL-safe base64 characters."""
    return secrets.token_urlsafe(16)
