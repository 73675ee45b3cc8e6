"""How a send behaves when something goes wrong around it: claims only for requests ready to
leave, rendering errors that sent nothing, a row settled by another process while planning, cancel
cut-offs and a live clock, paused batches, 504s, SMTP connections closed, failed commits and full
disks, dry runs and status that write nothing, sandbox sends that cancel nothing, lock and cache
files.

Real parts only: the real sendgrid client against FakeSendGrid, aiosmtpd, SQLite in tmp_path.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from schedule_support import WEEKLY, scheduled_sample, utc
from send_support import (
    AT,
    AT_DT,
    SAMPLE_RECIPIENTS,
    FakeSendGrid,
    Sleeps,
    copy_sample,
    hold_run,
    ledger_for,
    load,
    sendgrid_toml,
    setup,
    transport,
)
from sendgrid import SendGridAPIClient
from smtp_support import smtp_peer

from digest.cli import main
from digest.config import Config
from digest.content import load_articles
from digest.dispatch import recipient
from digest.errors import ConfigError, LedgerError, TemplateError
from digest.ledger import ClaimItem, Ledger
from digest.pipeline import open_run
from digest.send import SendOptions, SendReport, send_edition
from digest.store.runlock import RunLock
from digest.store.sqlite_ledger import SqliteLedger
from digest.store.sqlite_state import SqliteSubscriberState
from digest.suppressions import StateError
from digest.transports import Batch, Recipient, Schedule
from digest.transports.outbox import OutboxTransport
from digest.transports.smtp import SmtpTransport

EDITION = "2026-W49"
UNSUBSCRIBE = '[sending]\nunsubscribe_url = "https://news.example.com/u"\n'


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def run_send(cfg: Config, t: object, ledger: Ledger | None = None, **options: object) -> SendReport:
    own = ledger is None
    ledger = ledger or ledger_for(cfg)
    try:
        return send_edition(open_run(cfg, AT_DT), ledger, t, SendOptions(**options))  # type: ignore[arg-type]
    finally:
        if own:
            ledger.close()


def rows(cfg: Config) -> dict[str, str]:
    with ledger_for(cfg) as ledger:
        return {s: r.state for s, r in ledger.rows(EDITION).items()}


def mail_sends(fake: FakeSendGrid) -> int:
    return sum(1 for r in fake.requests if r.path == "/v3/mail/send")


def cancels(fake: FakeSendGrid) -> int:
    return sum(1 for r in fake.requests if r.path == "/v3/user/scheduled_sends" and r.method == "POST")


# ---------------------------------------------------------------- 1. claim only what is ready


def test_a_missing_secret_claims_nothing_and_the_next_run_sends_everyone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unsubscribe URL needs DIGEST_SECRET, read lazily for the first recipient: the run stops
    before any row is claimed, instead of leaving one `claimed` for the next run to call ambiguous."""
    monkeypatch.delenv("DIGEST_SECRET", raising=False)
    cfg = load(copy_sample(tmp_path, UNSUBSCRIBE))
    outbox = OutboxTransport(cfg.output.path, date=AT_DT)
    with pytest.raises(ConfigError, match="DIGEST_SECRET"):
        run_send(cfg, outbox)
    assert rows(cfg) == {}
    monkeypatch.setenv("DIGEST_SECRET", "s3cret-for-tests")
    report = run_send(cfg, outbox)
    assert set(report.accepted) == SAMPLE_RECIPIENTS and report.ambiguous == ()


def test_a_missing_secret_in_scheduled_mode_claims_nothing(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_SECRET", raising=False)
    cfg = setup(tmp_path, fake, one_click=False)
    cfg_path = tmp_path / "digest.toml"
    cfg_path.write_text(
        cfg_path.read_text().replace(
            'transport = "sendgrid"', 'transport = "sendgrid"\nunsubscribe_url = "https://x.example/u"'
        )
    )
    cfg = load(cfg_path)
    with pytest.raises(ConfigError, match="DIGEST_SECRET"):
        run_send(cfg, transport(cfg), scheduled=True)
    assert rows(cfg) == {} and mail_sends(fake) == 0
    monkeypatch.setenv("DIGEST_SECRET", "s3cret-for-tests")
    report = run_send(cfg, transport(cfg), scheduled=True)
    assert set(report.accepted) == SAMPLE_RECIPIENTS and report.ambiguous == ()


# ---------------------------------------------------------------- 2. rendering inside a transport


def failing_batch(cfg: Config, schedule: Schedule | None = None) -> Batch:
    """Ada's real batch, whose message cannot be built (as a template error would)."""
    run = open_run(cfg, AT_DT)
    ada = run.select(run.subscribers_for(["ada@example.com"])[0])

    def email_for(recipient: Recipient) -> object:
        raise TemplateError("footer.mjml line 3: 'unknown' is undefined")

    return Batch(EDITION, run.content_for(ada), (recipient(run, ada),), email_for, schedule)  # type: ignore[arg-type]


def test_outbox_rendering_error_is_failed_not_ambiguous(tmp_path: Path) -> None:
    cfg = load(copy_sample(tmp_path))
    outcome = OutboxTransport(cfg.output.path, date=AT_DT).send(failing_batch(cfg))
    assert outcome.kind == "failed" and "footer.mjml line 3" in outcome.error
    assert not cfg.output.path.exists()


def test_smtp_rendering_error_is_failed_and_nothing_reaches_the_relay(tmp_path: Path) -> None:
    with smtp_peer() as (inbox, port):
        cfg = load(copy_sample(tmp_path))
        smtp = SmtpTransport("127.0.0.1", port, date=AT_DT, security="none", timeout=5)
        outcome = smtp.send(failing_batch(cfg))
        smtp.close()
    assert outcome.kind == "failed" and "footer.mjml line 3" in outcome.error
    assert inbox.messages == []


# ---------------------------------------------------------------- 3. planning reads the ledger once


class RacingLedger:
    """The real ledger (either engine). Right after planning has read the row states, another
    process (its own connection) settles the row it saw claimed: the moment of the race, without
    any timing."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.real = ledger_for(cfg)
        self.raced = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def __enter__(self) -> RacingLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()

    def _other_process_settles(self) -> None:
        if not self.raced:
            self.raced = True
            with ledger_for(self.cfg) as other:
                other.settle(EDITION, ["ada@example.com"], "accepted", run_id="other")

    def row_states(self, edition: str):  # type: ignore[no-untyped-def]
        out = self.real.row_states(edition)
        self._other_process_settles()
        return out


def test_a_row_settled_by_another_process_while_planning_is_no_internal_error(tmp_path: Path) -> None:
    cfg = load(copy_sample(tmp_path))
    run = open_run(cfg, AT_DT)
    ada = run.select(run.subscribers_for(["ada@example.com"])[0])
    other = hold_run(cfg, "other")  # the other run is alive: its claim is left alone
    try:
        with ledger_for(cfg) as ledger:
            ledger.claim(
                EDITION,
                "other",
                [ClaimItem(ada.subscriber.id, ada.subscriber.email, ada.content_key, AT_DT)],
                transport="outbox",
            )
        with RacingLedger(cfg) as ledger:
            report = run_send(cfg, OutboxTransport(cfg.output.path, date=AT_DT), ledger)  # type: ignore[arg-type]
            assert ledger.raced
    finally:
        other.release()
    assert ("ada@example.com", "being sent by another run (other)") in report.skipped
    assert set(report.accepted) == SAMPLE_RECIPIENTS - {"ada@example.com"}


# ---------------------------------------------------------------- 4. cancel cut-off and a live clock


@pytest.mark.parametrize(
    "options",
    [
        {"send_at": {"grace@example.org": 300}},  # local time: held 5 minutes from now
        {"scheduled": True, "send_at_delay": 300},  # scheduled mode with a short delay
    ],
    ids=["local-time", "scheduled"],
)
def test_a_lost_answer_too_close_to_send_at_is_ambiguous_not_cancelled(
    tmp_path: Path, fake: FakeSendGrid, options: dict[str, object]
) -> None:
    """Within 10 minutes of send_at SendGrid accepts a cancel and delivers anyway: trusting it
    would mark the row retryable and the next run would send a second copy."""
    now = float(int(time.time()))
    fake.now = lambda: now
    if "send_at" in options:
        options = {"send_at": {"grace@example.org": int(now) + 300}}
    cfg = setup(tmp_path, fake)
    fake.script(["drop_after"])  # accepted by SendGrid, answer lost

    def send_once() -> SendReport:
        with ledger_for(cfg) as ledger:
            return send_edition(
                open_run(cfg, AT_DT),
                ledger,
                transport(cfg),
                SendOptions(only=("grace@example.org",), **options),  # type: ignore[arg-type]
                now=lambda: now,
            )

    report = send_once()
    assert [a for a, _ in report.ambiguous] == ["grace@example.org"] and report.failed == ()
    assert rows(cfg) == {"grace@example.org": "ambiguous"} and cancels(fake) == 0
    again = send_once()
    assert again.accepted == () and [a for a, _ in again.ambiguous] == ["grace@example.org"]
    assert fake.delivered_to() == {"grace@example.org": 1}


def test_scheduled_send_reads_a_live_clock_for_every_request(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """send_at follows the clock as the run goes on, not the slot moment frozen at its start."""
    config = scheduled_sample(tmp_path, WEEKLY + sendgrid_toml(fake.url, scheduled_mode=True, max_per_request=2))
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    slot_moment = utc(2026, 11, 30, 9, 0, 30)
    start = slot_moment.timestamp() + 7200  # the run really happens two hours after --at
    fake.now = lambda: start
    readings: list[float] = []

    def clock() -> float:
        readings.append(start + 60 * len(readings))  # a minute passes per request
        return readings[-1]

    from digest.scheduler import send_scheduled

    result = send_scheduled(load(config), slot_moment, clock=clock)
    assert result.outcome == "sent", result.message
    send_ats = [b["send_at"] for b in fake.accepted]
    assert len(send_ats) > 2 and len(set(send_ats)) == len(send_ats)
    assert {s - 15 * 60 for s in send_ats} <= {int(r) for r in readings}


# ---------------------------------------------------------------- 5. a paused batch is not cancelled


def test_cancel_of_a_paused_batch_is_not_a_cancel(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake)
    t = transport(cfg)
    api = SendGridAPIClient(fake.api_key, host=fake.url)
    paused = t.new_batch()
    api.client.user.scheduled_sends.post(request_body={"batch_id": paused, "status": "pause"})
    assert t.cancel(paused) is False  # refused ("already has a status"), and that status is pause
    cancelled = t.new_batch()
    assert t.cancel(cancelled) is True
    assert t.cancel(cancelled) is True  # a repeat: the batch's status is cancel


# ---------------------------------------------------------------- 6. 504 is a lost answer


def test_a_504_is_ambiguous_and_never_retried(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake)
    fake.script(["504"])
    sleeps = Sleeps()
    report = run_send(cfg, transport(cfg, sleep=sleeps), only=("ada@example.com",))
    assert [a for a, _ in report.ambiguous] == ["ada@example.com"] and "504" in report.ambiguous[0][1]
    assert sleeps == [] and mail_sends(fake) == 1
    assert rows(cfg) == {"ada@example.com": "ambiguous"}


def test_a_504_in_scheduled_mode_is_cancelled_and_reissued(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake)
    fake.script(["504"])
    report = run_send(cfg, transport(cfg), only=("ada@example.com",), scheduled=True)
    assert report.accepted == ("ada@example.com",) and fake.delivered_to() == {"ada@example.com": 1}
    assert cancels(fake) == 1


# ---------------------------------------------------------------- 7. SMTP connections are closed


@pytest.mark.parametrize(
    ("security", "username"),
    [("starttls", ""), ("none", "user")],
    ids=["starttls-refused", "login-not-offered"],
)
def test_a_failed_starttls_or_login_closes_the_new_connection(tmp_path: Path, security: str, username: str) -> None:
    """aiosmtpd without TLS offers neither STARTTLS nor AUTH: starttls() and login() raise
    SMTPNotSupportedError. The socket must be closed, not left for the garbage collector."""
    with smtp_peer() as (_, port):
        cfg = load(copy_sample(tmp_path))
        run = open_run(cfg, AT_DT)
        ada = run.select(run.subscribers_for(["ada@example.com"])[0])
        batch = Batch(EDITION, run.content_for(ada), (recipient(run, ada),), lambda r: run.email(r.selection))
        smtp = SmtpTransport(
            "127.0.0.1", port, date=AT_DT, security=security, username=username, password="pw", timeout=5, retries=0
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            outcome = smtp.send(batch)
            smtp.close()
            gc.collect()
    assert outcome.kind == "retry" and "not supported" in outcome.error
    # Only a socket to this test's peer counts: the collection may also find a socket another test
    # left behind, which says nothing about this one (it made the mutation run's clean pass flaky).
    peer = f"raddr=('127.0.0.1', {port})"
    leaked = [w for w in caught if issubclass(w.category, ResourceWarning) and peer in str(w.message)]
    assert leaked == []


# ---------------------------------------------------------------- 8. failed writes and commits


@pytest.mark.sqlite_only
def test_a_failed_commit_is_rolled_back_and_wrapped(tmp_path: Path) -> None:
    """A deferred foreign key fails at COMMIT, which leaves SQLite's transaction open."""
    from digest.db import Transaction, connect

    path = tmp_path / "x.sqlite3"
    db = connect(
        path,
        "CREATE TABLE IF NOT EXISTS p (id INTEGER PRIMARY KEY);"
        "CREATE TABLE IF NOT EXISTS c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);",
    )
    db.execute("PRAGMA foreign_keys = ON")
    with pytest.raises(LedgerError, match=r"x\.sqlite3: cannot write the send ledger: FOREIGN KEY"):
        with Transaction(db, path, LedgerError, "the send ledger"):
            db.execute("INSERT INTO c VALUES (1)")
    assert not db.in_transaction
    with Transaction(db, path, LedgerError, "the send ledger"):  # the next BEGIN works
        db.execute("INSERT INTO p VALUES (1)")
    assert db.execute("SELECT COUNT(*) FROM c").fetchone() == (0,)
    db.close()


def fill_disk(db: sqlite3.Connection) -> None:
    """As if the disk were full: SQLite may not grow the file by one more page."""
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")


@pytest.mark.sqlite_only
def test_a_full_disk_is_a_ledger_error_and_the_ledger_stays_usable(tmp_path: Path) -> None:
    items = [ClaimItem(f"r{i}@example.com", f"r{i}@example.com", ("a" * 40,), AT_DT) for i in range(500)]
    with SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        fill_disk(ledger._db)
        with pytest.raises(LedgerError, match="cannot write the send ledger: database or disk is full"):
            ledger.claim(EDITION, "run", items, transport="outbox")
        ledger._db.execute("PRAGMA max_page_count = 1073741823")
        assert len(ledger.claim(EDITION, "run", items, transport="outbox")) == 500


@pytest.mark.sqlite_only
def test_a_full_disk_is_a_state_error(tmp_path: Path) -> None:
    with SqliteSubscriberState(tmp_path / "subscribers.sqlite3") as state:
        fill_disk(state._db)
        with pytest.raises(StateError, match="cannot write the subscriber state"):
            state.replace_synced({"bounces": [(f"b{i}@example.com", "bounced", "x" * 100) for i in range(500)]})
        state._db.execute("PRAGMA max_page_count = 1073741823")
        state.opt_out("ada@example.com", "unsubscribed", "one-click")
        assert set(state.optouts()) == {"ada@example.com"}


# ---------------------------------------------------------------- 9. dry run and status write nothing


def test_dry_run_writes_nothing_not_even_the_content_cache(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--dry-run", "--at", AT])
    assert result.exit_code == 0, result.output
    assert "would send 7 email(s)" in result.output
    assert not (tmp_path / "state").exists()


def test_dry_run_reads_an_existing_content_cache_and_leaves_it_alone(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    cfg = load(config)
    load_articles(cfg, cache_dir=cfg.state.path / "cache")  # a real send left a cache
    cache = cfg.state.path / "cache" / "content-index.json"
    before = cache.stat().st_mtime_ns, cache.read_bytes()
    (config.parent / "content" / "extra.md").write_text("---\ntitle: Extra\ndate: 2026-11-27\n---\nNew.\n")
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--dry-run", "--at", AT])
    assert result.exit_code == 0, result.output
    assert (cache.stat().st_mtime_ns, cache.read_bytes()) == before
    assert sorted(p.name for p in cache.parent.iterdir()) == ["content-index.json"]


def test_status_before_any_send_creates_nothing(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    result = CliRunner().invoke(main, ["--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    assert "nothing sent yet" in result.output
    assert not (tmp_path / "state").exists()


# ---------------------------------------------------------------- 10. a sandbox send cancels nothing


def test_a_sandbox_send_never_cancels_a_real_scheduled_batch(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crashed run left Ada's scheduled request claimed. Recovery would cancel its batch through
    the real API; a sandbox run records nothing, so it must not recover anything either."""
    cfg = setup(tmp_path, fake)
    t = transport(cfg)
    run = open_run(cfg, AT_DT)
    ada = run.select(run.subscribers_for(["ada@example.com"])[0])
    schedule = Schedule(t.new_batch(), int(time.time()) + 3600)
    with ledger_for(cfg) as ledger:
        item = ClaimItem(ada.subscriber.id, ada.subscriber.email, ada.content_key, AT_DT)
        ledger.claim(
            EDITION, "crashed", [item], transport="sendgrid", batch_id=schedule.batch_id, send_at=schedule.send_at
        )
    batch = Batch(EDITION, run.content_for(ada), (recipient(run, ada),), lambda r: run.email(r.selection), schedule)
    assert t.send(batch).kind == "accepted"  # ...and then that run was killed
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "digest.toml"), "send", "--sandbox", "--at", AT])
    assert result.exit_code == 0, result.output
    assert cancels(fake) == 0 and fake.cancelled == [] and fake.delivered_to() == {"ada@example.com": 1}
    assert rows(cfg) == {"ada@example.com": "claimed"}


# ---------------------------------------------------------------- 11. lock and cache files


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.sqlite_only
def test_a_run_lock_held_by_another_run_leaks_no_descriptor(tmp_path: Path) -> None:
    held = RunLock(tmp_path, "run")
    try:
        before = open_fds()
        for _ in range(3):
            with pytest.raises(BlockingIOError):
                RunLock(tmp_path, "run")
        assert open_fds() == before
    finally:
        held.release()


def test_the_content_cache_temp_file_is_this_processs_own(tmp_path: Path) -> None:
    """Another process saving its cache at the same moment holds the shared temp name (here a
    folder stands for it): this one still saves its own, and leaves the other's alone."""
    cfg = load(copy_sample(tmp_path))
    cache_dir = cfg.state.path / "cache"
    (cache_dir / "content-index.tmp").mkdir(parents=True)
    load_articles(cfg, cache_dir=cache_dir)
    assert (cache_dir / "content-index.json").is_file()
    assert (cache_dir / "content-index.tmp").is_dir()
    assert not any(p.name.endswith(".tmp") and p.is_file() for p in cache_dir.iterdir())


def test_row_states_is_one_consistent_read(new_ledger) -> None:
    with new_ledger() as ledger:
        items = [ClaimItem(e, e, ("a",), datetime(2026, 11, 30, tzinfo=UTC)) for e in ("a@x.io", "b@x.io", "c@x.io")]
        ledger.claim(EDITION, "r1", items, transport="outbox")
        ledger.settle(EDITION, ["a@x.io"], "accepted", run_id="r1")
        ledger.settle(EDITION, ["b@x.io"], "ambiguous", run_id="r1", error="lost")
        states = ledger.row_states(EDITION)
    assert states["a@x.io"] == ("accepted", "", "")
    assert states["b@x.io"] == ("ambiguous", "r1", "lost")
    assert states["c@x.io"] == ("claimed", "r1", "")


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")


# ---------------------------------------------------------------- 5. the ledger failing mid-send


class FailingClaims:
    """The real ledger, whose claims fail (a full disk) after the first one."""

    def __init__(self, cfg: Config) -> None:
        self.real = ledger_for(cfg)
        self.claims = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def claim(self, *args: object, **kwargs: object) -> tuple[str, ...]:
        self.claims += 1
        if self.claims > 1:
            raise LedgerError("ledger.sqlite3: cannot write the send ledger: database or disk is full")
        return self.real.claim(*args, **kwargs)  # type: ignore[no-any-return]


def test_a_ledger_failing_in_every_sender_thread_stops_the_run_instead_of_hanging(tmp_path: Path) -> None:
    """Every sender thread meets the failed claim and ends; the requests still waiting for a
    thread must not keep the run waiting for answers that can never come."""
    import threading

    from send_support import many_subscribers

    config = copy_sample(tmp_path)
    many_subscribers(config, 4)  # a few requests: all handed over before any thread fails
    cfg = load(config)
    ledger = FailingClaims(cfg)
    outcome: list[BaseException | SendReport] = []

    def send() -> None:
        try:
            outcome.append(run_send(cfg, OutboxTransport(cfg.output.path, date=AT_DT), ledger))  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - what the run raised is the result
            outcome.append(exc)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.join(timeout=60)
    try:
        assert not thread.is_alive(), "the run hung after its sender threads failed"
        assert len(outcome) == 1 and isinstance(outcome[0], LedgerError), outcome
        assert "disk is full" in str(outcome[0])
        states = rows(cfg)
        # the first request was claimed and settled; nothing after it was claimed or sent
        assert sorted(states.values()).count("accepted") == 1 and "claimed" not in states.values()
        assert len(list(cfg.output.path.rglob("*.eml"))) == 1
    finally:
        ledger.real.close()


# ---------------------------------------------------------------- an interrupt mid-request


def test_an_interrupt_while_a_scheduled_request_is_in_flight_leaves_it_ambiguous(
    tmp_path: Path, fake: FakeSendGrid
) -> None:
    """Ctrl+C (a real SIGINT) while SendGrid holds the request: it may have been queued, so its row
    is ambiguous, never failed (a failed row is sent again), and the interrupt still stops the run.
    In scheduled mode the next run then cancels that request's batch and sends once."""
    import signal
    import threading

    cfg = setup(tmp_path, fake)
    fake.script(["slow:30"])  # accepted, answered only when the fake stops
    in_flight = threading.Event()

    def interrupt_once_in_flight() -> None:
        for _ in range(500):
            if any(r.path == "/v3/mail/send" for r in fake.requests):
                in_flight.set()
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=interrupt_once_in_flight)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_send(cfg, transport(cfg), only=("ada@example.com",), scheduled=True)
    finally:
        watcher.join()
    assert in_flight.is_set()
    with ledger_for(cfg) as ledger:
        (row,) = ledger.rows(EDITION).values()
    assert (row.email, row.state, row.error) == ("ada@example.com", "ambiguous", "interrupted: KeyboardInterrupt")
    # scheduled mode can settle it: the next run cancels the interrupted request's batch before
    # its send time, then sends once; the reader gets exactly one email
    report = run_send(cfg, transport(cfg), only=("ada@example.com",), scheduled=True)
    assert report.accepted == ("ada@example.com",) and (mail_sends(fake), cancels(fake)) == (2, 1)
    assert fake.delivered_to() == {"ada@example.com": 1} and len(fake.cancelled) == 1
