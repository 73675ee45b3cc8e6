"""When a send stops before it starts, or gives up on a scheduled request: what the user is told,
and that the ledger and the inboxes show exactly that (digest/send.py's refusals)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from send_support import AT_DT, SAMPLE_RECIPIENTS, FakeSendGrid, copy_sample, ledger_for, load, setup, transport

from digest.config import Config
from digest.errors import AuthError, SendError
from digest.pipeline import open_run
from digest.send import SCHEDULED_ATTEMPTS, SendOptions, SendReport, send_edition
from digest.transports.outbox import OutboxTransport

EDITION = "2026-W49"


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def rows(cfg: Config) -> dict[str, str]:
    with ledger_for(cfg) as ledger:
        return {s: r.state for s, r in ledger.rows(EDITION).items()}


def send(cfg: Config, t: object, **options: object) -> SendReport:
    with ledger_for(cfg) as ledger:
        return send_edition(open_run(cfg, AT_DT), ledger, t, SendOptions(**options))  # type: ignore[arg-type]


def test_a_declined_confirmation_sends_nothing_and_records_nothing(tmp_path: Path) -> None:
    """`digest send` without --yes asks first, showing the plan: "no" leaves no trace at all."""
    cfg = load(copy_sample(tmp_path))
    asked: list[SendReport] = []

    def decline(planned: SendReport) -> bool:
        asked.append(planned)
        return False

    with ledger_for(cfg) as ledger, pytest.raises(SendError) as caught:
        outbox = OutboxTransport(cfg.output.path, date=AT_DT)
        send_edition(open_run(cfg, AT_DT), ledger, outbox, SendOptions(), confirm=decline)
    assert str(caught.value) == "send cancelled: nothing was sent"
    (planned,) = asked
    assert planned.dry_run and planned.recipients == len(SAMPLE_RECIPIENTS) and planned.accepted == ()
    assert rows(cfg) == {} and not list(cfg.output.path.glob("*.eml"))


def test_scheduled_mode_is_refused_on_a_transport_that_cannot_schedule(tmp_path: Path) -> None:
    cfg = load(copy_sample(tmp_path))
    outbox = OutboxTransport(cfg.output.path, date=AT_DT)
    with pytest.raises(SendError) as caught:
        send(cfg, outbox, scheduled=True)
    assert str(caught.value) == "scheduled mode needs the sendgrid transport, not outbox"
    assert rows(cfg) == {} and not list(cfg.output.path.glob("*.eml"))


def test_a_run_lock_that_cannot_be_made_stops_the_send_before_anything_is_sent(tmp_path: Path) -> None:
    """Without its lock file a run could not be told alive from dead by the next one: a state
    folder where the locks cannot go (here a file stands where their folder should be) stops it."""
    cfg = load(copy_sample(tmp_path))
    with ledger_for(cfg):
        pass  # the state as a first run leaves it
    (cfg.state.path / "runs").write_text("not a folder")
    with pytest.raises(SendError) as caught:
        send(cfg, OutboxTransport(cfg.output.path, date=AT_DT))
    message = str(caught.value)
    assert "cannot create this run's lock file: " in message and message.endswith(" (nothing was sent)")
    assert "\n" not in message and rows(cfg) == {} and not list(cfg.output.path.glob("*.eml"))


def test_a_refused_request_in_scheduled_mode_fails_its_rows_and_stops(tmp_path: Path, fake: FakeSendGrid) -> None:
    """401 on the request itself (the batch id was made): nothing was queued at SendGrid, so the
    request's rows are failed (a rerun sends them), never ambiguous, and the run stops there."""
    cfg = setup(tmp_path, fake)
    fake.fail_for("ada@example.com", 401)
    with pytest.raises(AuthError):
        send(cfg, transport(cfg), only=("ada@example.com", "grace@example.org"), scheduled=True)
    states = rows(cfg)
    assert states.pop("ada@example.com") == "failed"
    assert set(states.values()) <= {"queued", "accepted"}  # grace's request may have gone first
    assert "ada@example.com" not in fake.delivered_to()
    fake.fail_for("ada@example.com", None)
    send(cfg, transport(cfg), only=("ada@example.com", "grace@example.org"), scheduled=True)
    assert rows(cfg) == {"ada@example.com": "accepted", "grace@example.org": "accepted"}
    assert fake.delivered_to() == {"ada@example.com": 1, "grace@example.org": 1}


def test_a_scheduled_request_lost_every_time_is_cancelled_each_time_and_reported_failed(
    tmp_path: Path, fake: FakeSendGrid
) -> None:
    """Scheduled mode re-issues a request whose answer was lost, once it has cancelled the batch
    (then nothing can be delivered). After the last attempt the rows stay cancelled, reported as
    failed and to be retried: nobody gets the email twice, and a rerun sends it."""
    cfg = setup(tmp_path, fake)
    fake.script(["504"] * SCHEDULED_ATTEMPTS)
    report = send(cfg, transport(cfg), only=("ada@example.com",), scheduled=True)
    assert report.accepted == () and report.ambiguous == ()
    lost = "HTTP 504 (gateway timeout): SendGrid may have queued the request"
    assert report.failed == (("ada@example.com", f"{lost} (cancelled; will be retried)"),)
    assert rows(cfg) == {"ada@example.com": "cancelled"}
    assert fake.delivered_to() == {}
    assert send(cfg, transport(cfg), only=("ada@example.com",), scheduled=True).accepted == ("ada@example.com",)
    assert fake.delivered_to() == {"ada@example.com": 1}
