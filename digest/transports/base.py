"""The transport interface: how a composed digest leaves. One small protocol, three implementations
(outbox.py, sendgrid.py, smtp.py); `make_transport` in the package picks one.

A send run hands a transport a `Batch`: recipients who receive identical content. The transport
answers with one `Outcome` for the whole batch, after its own bounded retries. The outcome's kind
is what the ledger needs to keep exactly-once:

- accepted: the provider took it (a message id when there is one);
- failed: refused for good (a 400, a rejected address); retrying the same thing cannot help;
- retry: known never to have left (refused connection, retries exhausted); safe to send again;
- ambiguous: it may have left but the answer was lost; never resent silently.

A transport answers `failed` or `retry`, never raises, for whatever goes wrong before anything was
handed over (rendering the message included): the caller settles an exception from `send` as
ambiguous, since it cannot tell how far the request got.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from digest.compose import Content
from digest.models import Email, Selection, Subscriber

OutcomeKind = Literal["accepted", "failed", "retry", "ambiguous"]


@dataclass(frozen=True)
class Recipient:
    """One subscriber in a batch: their selection and per-recipient field values."""

    selection: Selection
    values: Mapping[str, str]
    headers: Mapping[str, str]  #: List-Id, List-Unsubscribe, ... for this recipient

    @property
    def subscriber(self) -> Subscriber:
        return self.selection.subscriber


@dataclass(frozen=True)
class Schedule:
    """Scheduled mode: the provider holds the mail until `send_at`, cancellable through `batch_id`."""

    batch_id: str
    send_at: int  #: epoch seconds


@dataclass(frozen=True)
class Batch:
    """Recipients of one identical content (bar per-recipient fields), sent as one request where
    the transport can (SendGrid), else one message each."""

    edition_id: str
    content: Content
    recipients: tuple[Recipient, ...]
    #: The final Email of one recipient (SMTP and outbox need whole messages).
    email_for: Callable[[Recipient], Email]
    schedule: Schedule | None = None


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    message_id: str = ""
    error: str = ""


def render_failed(exc: Exception) -> Outcome:
    """The outcome of a message that could not be built: nothing left, and the same input would
    fail the same way, so `failed` (retried on the next run, after a fix), never ambiguous."""
    return Outcome("failed", error=f"cannot build the email: {type(exc).__name__}: {exc}")


class Transport(Protocol):
    name: str
    #: Most recipients one `send` call may carry.
    max_batch: int
    #: Whether `new_batch`/`cancel` work (scheduled mode).
    can_schedule: bool
    #: Seconds before a scheduled request's send_at after which a cancel proves nothing (the
    #: provider may deliver anyway): the request stays ambiguous.
    cancel_cutoff: int

    def send(self, batch: Batch) -> Outcome: ...

    def new_batch(self) -> str: ...

    def cancel(self, batch_id: str) -> bool: ...

    def close(self) -> None: ...


class Unschedulable:
    """Mixin for transports without scheduled sends."""

    can_schedule = False
    cancel_cutoff = 0

    def new_batch(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} has no scheduled mode")

    def cancel(self, batch_id: str) -> bool:
        return False

    def close(self) -> None:
        pass
