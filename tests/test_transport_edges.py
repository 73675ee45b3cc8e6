"""Transport behaviour no other test reached (issue #20): the errors a user sees for an unknown
transport, an unwritable outbox, an unreachable SendGrid when batching or cancelling, temporary
and final SMTP refusals, a relay gone before QUIT; and what must never be printed (keys, passwords).

Real parts only: the real sendgrid client against FakeSendGrid, aiosmtpd on 127.0.0.1.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from send_support import AT_DT, FakeSendGrid, Sleeps, copy_sample, load, sendgrid_toml, setup, transport
from smtp_support import Inbox, free_port, smtp_peer

from digest.config import Config
from digest.dispatch import recipient
from digest.errors import SendError
from digest.pipeline import open_run
from digest.transports import Batch, make_transport
from digest.transports.outbox import OutboxTransport
from digest.transports.sendgrid.webhook import kept_events
from digest.transports.smtp import SmtpTransport

EDITION = "2026-W49"


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def ada_batch(cfg: Config) -> Batch:
    run = open_run(cfg, AT_DT)
    ada = run.select(run.subscribers_for(["ada@example.com"])[0])
    return Batch(EDITION, run.content_for(ada), (recipient(run, ada),), lambda r: run.email(r.selection))


# ---------------------------------------------------------------- choosing a transport


def test_an_unknown_transport_name_is_one_clear_error(tmp_path: Path) -> None:
    cfg = load(copy_sample(tmp_path))
    with pytest.raises(SendError) as exc:
        make_transport(cfg, at=AT_DT, name="pigeon")
    assert str(exc.value) == "unknown transport 'pigeon' (outbox, sendgrid or smtp)"


def test_smtp_has_no_scheduled_mode_and_cancels_nothing() -> None:
    smtp = SmtpTransport("127.0.0.1", 25, date=AT_DT, security="none")
    assert smtp.can_schedule is False
    with pytest.raises(NotImplementedError, match="^SmtpTransport has no scheduled mode$"):
        smtp.new_batch()
    assert smtp.cancel("any-batch") is False


# ---------------------------------------------------------------- outbox


def test_an_unwritable_outbox_is_retryable_and_names_the_folder(tmp_path: Path) -> None:
    cfg = load(copy_sample(tmp_path))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the outbox should be")
    outcome = OutboxTransport(blocker, date=AT_DT).send(ada_batch(cfg))
    assert outcome.kind == "retry"
    assert outcome.error == f"cannot write {blocker / EDITION}: Not a directory"
    assert blocker.read_text() == "a file where the outbox should be"


# ---------------------------------------------------------------- SendGrid


def test_the_sendgrid_transport_never_shows_its_key(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake)
    t = transport(cfg, key="SG.very-secret")
    assert repr(t) == f"SendGridTransport(host={fake.url!r})" and "SG.very-secret" not in repr(t)
    t.close()


def test_a_pickled_transport_is_remade_with_its_settings_and_key(tmp_path: Path, fake: FakeSendGrid) -> None:
    """A sender process gets the transport pickled: it must come back able to talk to SendGrid."""
    cfg = setup(tmp_path, fake)
    t = transport(cfg, key=fake.api_key, sleep=lambda s: None)
    copy = pickle.loads(pickle.dumps(t))
    assert copy is not t and repr(copy) == repr(t) and copy.max_batch == t.max_batch
    batch_id = copy.new_batch()  # a wrong or missing key would be refused with 401
    assert batch_id in fake.batches
    t.close()
    copy.close()


def test_an_unreachable_sendgrid_cannot_create_a_batch_id_and_cancels_nothing(tmp_path: Path) -> None:
    with FakeSendGrid() as dead:
        url = dead.url
    cfg = load(copy_sample(tmp_path, sendgrid_toml(url)))
    t = transport(cfg, max_retries=0)
    with pytest.raises(SendError, match=r"^could not create a SendGrid batch id: mail/batch: gave up after 1 attempts"):
        t.new_batch()
    assert t.cancel("some-batch") is False
    t.close()


# ---------------------------------------------------------------- webhook


def test_an_event_naming_no_subscriber_and_no_email_is_not_kept() -> None:
    base = {"event": "open", "sg_event_id": "e1", "edition": EDITION, "timestamp": 1}
    assert kept_events([base]) == []
    kept = kept_events([{**base, "email": "Ada@Example.com"}])
    assert [e.subscriber for e in kept] == ["ada@example.com"]


# ---------------------------------------------------------------- SMTP


def test_the_smtp_transport_never_shows_its_password() -> None:
    smtp = SmtpTransport("relay.example.com", 587, date=AT_DT, username="u", password="hunter2")
    assert repr(smtp) == "SmtpTransport('relay.example.com', 587, security='starttls')"


class Temporary(Inbox):
    """Refuses every recipient for now (450), and final-refuses the message body (554)."""

    def __init__(self, rcpt: str = "250 OK", data: str = "250 OK") -> None:
        super().__init__()
        self.rcpt, self.data = rcpt, data

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802, ANN001, ANN201
        if self.rcpt.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001, ANN201
        if self.data.startswith("250"):
            return await super().handle_DATA(server, session, envelope)
        return self.data


def send_with(handler: Inbox, cfg: Config, sleeps: Sleeps) -> object:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = SmtpTransport("127.0.0.1", port, date=AT_DT, security="none", timeout=5, retries=1, sleep=sleeps)
        outcome = smtp.send(ada_batch(cfg))
        smtp.close()
    finally:
        controller.stop()
    return outcome


def test_a_temporary_recipient_refusal_is_retried_then_left_retryable(tmp_path: Path) -> None:
    cfg = load(copy_sample(tmp_path))
    sleeps = Sleeps()
    outcome = send_with(Temporary(rcpt="450 4.2.1 mailbox busy"), cfg, sleeps)
    assert outcome.kind == "retry"  # type: ignore[attr-defined]
    assert outcome.error == "not sent after 2 attempts: 450 4.2.1 mailbox busy"  # type: ignore[attr-defined]
    assert sleeps == [2.0]


@pytest.mark.parametrize(
    ("reply", "kind", "error"),
    [
        ("451 4.3.0 queue full", "retry", "not sent after 2 attempts: 451 4.3.0 queue full"),
        ("554 5.7.1 message rejected", "failed", "refused: 554 5.7.1 message rejected"),
    ],
)
def test_a_refused_message_body_is_retried_when_temporary_and_failed_when_final(
    tmp_path: Path, reply: str, kind: str, error: str
) -> None:
    cfg = load(copy_sample(tmp_path))
    sleeps = Sleeps()
    inbox = Temporary(data=reply)
    outcome = send_with(inbox, cfg, sleeps)
    assert (outcome.kind, outcome.error) == (kind, error)  # type: ignore[attr-defined]
    assert inbox.messages == [] and len(sleeps) == (1 if kind == "retry" else 0)


def test_closing_after_the_relay_went_away_is_quiet(tmp_path: Path) -> None:
    cfg = load(copy_sample(tmp_path))
    with smtp_peer() as (inbox, port):
        smtp = SmtpTransport("127.0.0.1", port, date=AT_DT, security="none", timeout=5)
        assert smtp.send(ada_batch(cfg)).kind == "accepted"
    # the peer is gone: QUIT cannot be answered, and closing must not raise
    smtp.close()
    assert smtp._conn is None and len(inbox.messages) == 1


# ---------------------------------------------------------------- answers the fake never gives


class Scripted:
    """A plain HTTP server on 127.0.0.1 answering each request with the next (status, headers, body)."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        import http.server
        import threading

        self.answers = list(answers)
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.paths.append(f"{self.command} {self.path}")
                status, headers, body = outer.answers.pop(0)
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_refusal_that_is_not_json_is_shown_as_sent(tmp_path: Path) -> None:
    server = Scripted([(400, {"Content-Type": "text/plain"}, b"Bad Request: no such thing")])
    try:
        cfg = load(copy_sample(tmp_path, sendgrid_toml(server.url)))
        t = transport(cfg)
        outcome = t.send(ada_batch(cfg))
        t.close()
    finally:
        server.close()
    assert (outcome.kind, outcome.error) == ("failed", "HTTP 400: Bad Request: no such thing")


def test_a_429_with_an_unreadable_reset_backs_off_with_jitter(tmp_path: Path) -> None:
    import random

    server = Scripted(
        [(429, {"X-RateLimit-Reset": "soon"}, b""), (202, {"X-Message-Id": "m-1"}, b"")],
    )
    try:
        cfg = load(copy_sample(tmp_path, sendgrid_toml(server.url)))
        sleeps = Sleeps()
        t = transport(cfg, sleep=sleeps, rng=random.Random(5))
        outcome = t.send(ada_batch(cfg))
        t.close()
    finally:
        server.close()
    assert (outcome.kind, outcome.message_id) == ("accepted", "m-1")
    assert sleeps == [random.Random(5).uniform(0, 0.5)]


def test_a_cancel_refused_reads_a_status_answered_as_one_object(tmp_path: Path) -> None:
    """SendGrid may answer GET scheduled_sends/<id> with one object rather than a list."""
    server = Scripted(
        [
            (400, {}, b'{"errors": [{"message": "batch id already has a status"}]}'),
            (200, {"Content-Type": "application/json"}, b'{"batch_id": "b1", "status": "cancel"}'),
        ]
    )
    try:
        cfg = load(copy_sample(tmp_path, sendgrid_toml(server.url)))
        t = transport(cfg)
        assert t.cancel("b1") is True
        t.close()
    finally:
        server.close()
    assert server.paths == ["POST /v3/user/scheduled_sends", "GET /v3/user/scheduled_sends/b1"]


# ---------------------------------------------------------------- suppression lists that do not read


JSON = {"Content-Type": "application/json"}
UNSUBSCRIBES = "/v3/suppression/unsubscribes"


def sync_against(tmp_path: Path, answers: list[tuple[int, dict[str, str], bytes]], **sendgrid: object) -> str:
    """`digest sync` against a server giving `answers`: the one-line error it stops with."""
    from digest.sync import sync

    server = Scripted(answers)
    try:
        cfg = load(copy_sample(tmp_path, sendgrid_toml(server.url, **sendgrid)))
        with pytest.raises(SendError) as info:
            sync(cfg)
    finally:
        server.close()
    assert not (cfg.state.path / "subscribers.sqlite3").exists()  # nothing half-synced
    return str(info.value)


@pytest.fixture
def sendgrid_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.secret-key-never-shown")


@pytest.mark.usefixtures("sendgrid_key")
@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            (403, {"Content-Type": "text/plain"}, b"access forbidden"),
            f"sync: SendGrid answered HTTP 403 for {UNSUBSCRIBES} (is the API key allowed to read suppressions?):"
            " access forbidden",
        ),
        ((500, {}, b""), f"sync: SendGrid answered HTTP 500 for {UNSUBSCRIBES}"),
        ((503, {}, b"x" * 300), f"sync: SendGrid answered HTTP 503 for {UNSUBSCRIBES}: {'x' * 200}"),
        (
            (200, JSON, b"<html>maintenance</html>"),
            f"sync: SendGrid answered {UNSUBSCRIBES} with something that is not JSON",
        ),
        ((200, JSON, b'{"errors": []}'), f"sync: SendGrid answered {UNSUBSCRIBES} with something that is not a list"),
    ],
    ids=["403-hint", "500-empty", "503-cut-at-200", "not-json", "not-a-list"],
)
def test_a_suppression_list_that_cannot_be_read_is_one_line_naming_it(
    tmp_path: Path, answer: tuple[int, dict[str, str], bytes], message: str
) -> None:
    error = sync_against(tmp_path, [answer])
    assert error == message
    assert "SG.secret" not in error


@pytest.mark.usefixtures("sendgrid_key")
def test_a_suppression_list_that_never_ends_stops_after_max_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.transports.sendgrid import suppressions

    monkeypatch.setattr(suppressions, "MAX_PAGES", 3)
    page = (200, JSON, b'[{"email": "same@example.com", "created": 1}]')
    assert sync_against(tmp_path, [page] * 3) == f"sync: {UNSUBSCRIBES} did not end after 3 pages"


@pytest.mark.usefixtures("sendgrid_key")
def test_an_asm_group_answered_with_an_object_is_one_line_naming_the_group(tmp_path: Path) -> None:
    empty = (200, JSON, b"[]")
    answers = [empty] * 4 + [(200, JSON, b'{"recipient_emails": ["a@example.com"]}')]
    assert (
        sync_against(tmp_path, answers, asm_group_id=42)
        == "sync: SendGrid answered /v3/asm/groups/42/suppressions with something that is not a list"
    )


# ---------------------------------------------------------------- SMTP connections that go away


class HangsUpOnData(Inbox):
    """Receives the whole message, then drops the line before answering: it may have queued it."""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001, ANN201
        await super().handle_DATA(server, session, envelope)
        server.transport.close()
        return "250 never sent"


def test_a_connection_lost_before_the_data_reply_is_ambiguous_and_the_next_message_reconnects(
    tmp_path: Path,
) -> None:
    cfg = load(copy_sample(tmp_path))
    inbox = HangsUpOnData()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = SmtpTransport("127.0.0.1", port, date=AT_DT, security="none", timeout=5, retries=1, sleep=Sleeps())
        first = smtp.send(ada_batch(cfg))
        assert smtp._conn is None  # the dead connection is not kept for the next recipient
        second = smtp.send(ada_batch(cfg))
        smtp.close()
    finally:
        controller.stop()
    assert first.kind == second.kind == "ambiguous"  # never "retry": the relay may have queued it
    assert first.error.startswith("connection lost while sending: ")
    assert len(inbox.messages) == 2  # the second message went over a new connection


def test_a_kept_connection_the_relay_closed_while_idle_is_replaced_not_ambiguous(tmp_path: Path) -> None:
    """Relays drop idle clients (aiosmtpd after `timeout` seconds): the next message must notice
    before sending, reconnect and be accepted, not be reported as possibly lost."""
    cfg = load(copy_sample(tmp_path))
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, timeout=0.3)
    controller.start()
    try:
        smtp = SmtpTransport("127.0.0.1", port, date=AT_DT, security="none", timeout=5, retries=0)
        assert smtp.send(ada_batch(cfg)).kind == "accepted"
        kept = smtp._conn
        time.sleep(1.0)  # the relay hangs up on the idle connection
        outcome = smtp.send(ada_batch(cfg))
        assert outcome.kind == "accepted" and smtp._conn is not kept
        smtp.close()
    finally:
        controller.stop()
    assert len(inbox.messages) == 2
