"""The real `sendgrid` client against FakeSendGrid (tests/sendgrid_fake/): bodies valid under
SendGrid's documented limits, one request per distinct content, retries, failures, ambiguity."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from send_support import (
    AT,
    AT_DT,
    SAMPLE_RECIPIENTS,
    FakeSendGrid,
    Sleeps,
    copy_sample,
    ledger_for,
    load,
    sendgrid_toml,
    setup,
    transport,
)

from digest.cli import main
from digest.config import Config
from digest.errors import AuthError
from digest.pipeline import open_run
from digest.send import SendOptions, SendReport, send_edition
from digest.transports.sendgrid.transport import SendGridTransport

EDITION = "2026-W49"


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def send(cfg: Config, t: SendGridTransport, **options: object) -> SendReport:
    with ledger_for(cfg) as ledger:
        return send_edition(open_run(cfg, AT_DT), ledger, t, SendOptions(**options))  # type: ignore[arg-type]


def states(cfg: Config) -> dict[str, str]:
    with ledger_for(cfg) as ledger:
        return {s: r.state for s, r in ledger.rows(EDITION).items()}


def test_each_subscriber_once_with_valid_bodies_and_personal_fields(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake, categories=["weekly"], asm_group_id=42)
    report = send(cfg, transport(cfg))
    assert report.exit_code == 0 and set(report.accepted) == SAMPLE_RECIPIENTS
    assert fake.delivered_to() == {e: 1 for e in SAMPLE_RECIPIENTS}
    # a 400 from the fake would have failed someone: every body passed its validation
    body = fake.accepted[0]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["categories"] == ["weekly"] and body["asm"] == {"group_id": 42}
    (chloe,) = fake.messages_for("chloe.dubois@example.net")
    assert "Chloé" in chloe.html and "__DG" not in chloe.html and "__DG" not in chloe.text
    assert chloe.custom_args == {"edition": EDITION, "subscriber": "chloe.dubois@example.net"}
    with ledger_for(cfg) as ledger:
        row = ledger.rows(EDITION)["chloe.dubois@example.net"]
    assert row.state == "accepted" and row.message_id == chloe.message_id
    # a rerun sends nothing
    before = len(fake.requests)
    assert send(cfg, transport(cfg)).accepted == () and len(fake.requests) == before


def test_identical_contents_share_a_request_up_to_the_limit(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake)
    # ada and conor's neighbours: make everyone share one content by dropping preferences
    csv = cfg.subscribers.path
    rows = csv.read_text(encoding="utf-8").splitlines()
    csv.write_text("\n".join([rows[0]] + [f"r{i}@example.com,Reader {i},,,active,UTC," for i in range(5)]) + "\n")
    report = send(cfg, transport(cfg, max_batch=2))
    assert len(report.accepted) == 5
    # requests run concurrently: arrival order is not fixed
    assert sorted(len(b["personalizations"]) for b in fake.accepted) == [1, 2, 2]


def test_one_click_unsubscribe_headers_per_recipient(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "s3cret-for-tests")
    cfg_path = copy_sample(tmp_path, sendgrid_toml(fake.url, one_click=False))
    text = cfg_path.read_text().replace(
        'transport = "sendgrid"', 'transport = "sendgrid"\nunsubscribe_url = "https://news.example.com/u"'
    )
    cfg_path.write_text(text)
    cfg = load(cfg_path)
    send(cfg, transport(cfg))
    (ada,) = fake.messages_for("ada@example.com")
    assert ada.headers["List-Unsubscribe"].startswith("<https://news.example.com/u?token=")
    assert ada.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (grace,) = fake.messages_for("grace@example.org")
    assert grace.headers["List-Unsubscribe"] != ada.headers["List-Unsubscribe"]


@pytest.mark.parametrize("faults", [["429:reset=30"], ["500", "502"], ["503", "429:noreset", "500"]])
def test_429_500_502_503_are_retried_until_accepted(tmp_path: Path, fake: FakeSendGrid, faults: list[str]) -> None:
    cfg = setup(tmp_path, fake)
    fake.script(faults)
    sleeps = Sleeps()
    report = send(cfg, transport(cfg, sleep=sleeps))
    assert report.exit_code == 0
    assert fake.delivered_to() == {e: 1 for e in SAMPLE_RECIPIENTS}
    assert len(sleeps) == len(faults)
    if faults == ["429:reset=30"]:
        assert 25 <= sleeps[0] <= 31  # waited for X-RateLimit-Reset, not a blind backoff


def test_429_wait_is_capped(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake)
    fake.script(["429:reset=3600"])
    sleeps = Sleeps()
    send(cfg, transport(cfg, sleep=sleeps, max_wait=60.0))
    assert sleeps == [60.0]


def test_retries_are_bounded_and_leave_rows_retryable(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake)
    fake.script(["500"] * 4)
    report = send(cfg, transport(cfg, max_retries=3, sleep=Sleeps()), limit=1)
    assert report.exit_code == 1 and len(report.failed) == 1 and "gave up after 4 attempts" in report.failed[0][1]
    assert fake.delivered_to() == {}
    assert send(cfg, transport(cfg), limit=1).accepted == (report.failed[0][0],)


def test_refused_connection_is_known_unsent(tmp_path: Path) -> None:
    with FakeSendGrid() as dead:
        url = dead.url
    cfg = load(copy_sample(tmp_path, sendgrid_toml(url)))
    sleeps = Sleeps()
    report = send(cfg, transport(cfg, max_retries=2, sleep=sleeps))
    assert report.exit_code == 1 and not report.ambiguous and len(report.failed) == 7
    assert len(sleeps) == 2 * 7  # two bounded retries per request
    assert set(states(cfg).values()) == {"failed"}  # never left: safe to send on the next run
    assert all("request not sent" in why for _, why in report.failed)


def test_a_400_fails_only_that_request(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake)
    fake.fail_for("grace@example.org", 400)
    report = send(cfg, transport(cfg))
    assert [(a, "fake fail_for" in why) for a, why in report.failed] == [("grace@example.org", True)]
    assert set(report.accepted) == SAMPLE_RECIPIENTS - {"grace@example.org"}
    assert report.exit_code == 1


def test_401_stops_at_once_with_a_clear_message(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake)
    with pytest.raises(AuthError, match="the API key was refused"):
        send(cfg, transport(cfg, key="SG.wrong"))
    assert len(fake.requests) == 1
    # the one request's rows failed; the rest of the plan stays queued (nothing was sent for it)
    (request,) = fake.requests
    tried = {p["to"][0]["email"] for p in request.body["personalizations"]}
    found = states(cfg)
    assert {s for s, state in found.items() if state == "failed"} == tried
    assert set(found.values()) == {"failed", "queued"}


def test_cli_401_is_one_line_and_never_shows_the_key(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = copy_sample(tmp_path, sendgrid_toml(fake.url))
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.very-secret-wrong-key")
    result = CliRunner().invoke(main, ["--config", str(config), "--verbose", "send", "--yes", "--at", AT])
    assert result.exit_code == 1
    assert "the API key was refused" in result.output
    assert "very-secret" not in result.output


def test_cli_sends_through_sendgrid_with_the_key_from_the_environment(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = copy_sample(tmp_path, sendgrid_toml(fake.url))
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--yes", "--at", AT])
    assert result.exit_code == 1 and "SENDGRID_API_KEY" in result.output
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--yes", "--at", AT])
    assert result.exit_code == 0, result.output
    assert fake.delivered_to() == {e: 1 for e in SAMPLE_RECIPIENTS}
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--dry-run", "--at", AT])
    assert "would send 0 email(s)" in result.output


def test_sandbox_validates_and_records_nothing(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = copy_sample(tmp_path, sendgrid_toml(fake.url))
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--sandbox", "--at", AT])
    assert result.exit_code == 0, result.output
    assert fake.delivered_to() == {} and len(fake.requests) == 7
    assert all(r.body["mail_settings"] == {"sandbox_mode": {"enable": True}} for r in fake.requests)
    assert not (config.parent / "state" / "ledger.sqlite3").exists()


@pytest.mark.parametrize("fault", ["drop_before", "drop_after"])
def test_a_lost_answer_is_ambiguous_and_never_resent_silently(tmp_path: Path, fake: FakeSendGrid, fault: str) -> None:
    cfg = setup(tmp_path, fake)
    fake.script([fault])
    report = send(cfg, transport(cfg))
    (lost,) = report.ambiguous
    assert report.exit_code == 3 and len(report.accepted) == 6
    again = send(cfg, transport(cfg))
    assert again.accepted == () and again.ambiguous[0][0] == lost[0]
    assert fake.delivered_to()[lost[0]] == (1 if fault == "drop_after" else 0)
    if fault == "drop_before":  # the operator's decision: send it again
        assert send(cfg, transport(cfg), on_ambiguous="resend").accepted == (lost[0],)
        assert fake.delivered_to()[lost[0]] == 1


def test_a_slow_answer_times_out_as_ambiguous(tmp_path: Path, fake: FakeSendGrid) -> None:
    cfg = setup(tmp_path, fake)
    fake.script(["slow:5"])
    report = send(cfg, transport(cfg, timeout=0.3), limit=1)
    assert len(report.ambiguous) == 1 and "no answer" in report.ambiguous[0][1]


@pytest.mark.parametrize("fault", ["drop_after", "drop_before", "slow:5"])
def test_scheduled_mode_cancels_and_reissues_a_lost_request(tmp_path: Path, fake: FakeSendGrid, fault: str) -> None:
    cfg = setup(tmp_path, fake)
    fake.script([fault])
    report = send(cfg, transport(cfg, timeout=0.5), scheduled=True)
    assert report.exit_code == 0 and set(report.accepted) == SAMPLE_RECIPIENTS
    assert fake.delivered_to() == {e: 1 for e in SAMPLE_RECIPIENTS}  # the lost one was cancelled
    assert len(fake.cancelled) == (0 if fault == "drop_before" else 1)
    assert all(b["send_at"] > time.time() + 600 and b["batch_id"] for b in fake.accepted)


def test_scheduled_mode_recovers_a_crashed_runs_batch(tmp_path: Path, fake: FakeSendGrid) -> None:
    """A run that died after its request left: the next run cancels that batch and sends again."""
    from digest.dispatch import recipient as _recipient
    from digest.ledger import ClaimItem
    from digest.transports import Batch, Schedule

    cfg = setup(tmp_path, fake)
    t = transport(cfg)
    run = open_run(cfg, AT_DT)
    ada = run.select(run.subscribers_for(["ada@example.com"])[0])
    schedule = Schedule(t.new_batch(), int(time.time()) + 900)
    with ledger_for(cfg) as ledger:
        ledger.claim(
            EDITION,
            "crashed",
            [ClaimItem("ada@example.com", "ada@example.com", ada.content_key, AT_DT)],
            transport="sendgrid",
            batch_id=schedule.batch_id,
            send_at=schedule.send_at,
        )
    batch = Batch(
        EDITION, run.prepared.content(ada), (_recipient(run, ada),), lambda r: run.email(r.selection), schedule
    )
    assert t.send(batch).kind == "accepted"  # ...and then the process was killed
    report = send(cfg, t, scheduled=True)
    assert "ada@example.com" in report.accepted and report.exit_code == 0
    assert fake.delivered_to() == {e: 1 for e in SAMPLE_RECIPIENTS}
    assert [m.to_email for m in fake.cancelled] == ["ada@example.com"]


def test_requests_go_out_concurrently_and_each_recipient_once(tmp_path: Path, fake: FakeSendGrid) -> None:
    """With sending.concurrency > 1, requests overlap (the fake answers slowly so they must), and
    the ledger still records every recipient exactly once."""
    import threading

    cfg = setup(tmp_path, fake)
    csv = cfg.subscribers.path
    rows = csv.read_text(encoding="utf-8").splitlines()
    csv.write_text("\n".join([rows[0]] + [f"r{i}@example.com,Reader {i},,,active,UTC," for i in range(9)]) + "\n")
    fake.script(["slow:0.2"] * 9)

    class Counting(SendGridTransport):
        """The real transport, counting requests in flight at once."""

        lock = threading.Lock()
        in_flight = 0
        most = 0

        def send(self, batch):  # type: ignore[no-untyped-def]
            with self.lock:
                type(self).in_flight += 1
                type(self).most = max(type(self).most, type(self).in_flight)
            try:
                return super().send(batch)
            finally:
                with self.lock:
                    type(self).in_flight -= 1

    plain = transport(cfg, max_batch=1)
    t = Counting("SG.test-key", host=plain.host, from_email=plain.from_email, timeout=10, max_batch=1)
    report = send(cfg, t, concurrency=4)
    assert len(report.accepted) == 9 and fake.delivered_to() == {f"r{i}@example.com": 1 for i in range(9)}
    assert set(states(cfg).values()) == {"accepted"}
    assert Counting.most == 4


def test_sandbox_reads_the_real_history_and_leaves_the_ledger_as_it_was(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    """After a real send to Ada, a sandbox run of the same edition validates requests for the
    others only (it knows Ada has hers) and the ledger file is unchanged."""
    config = copy_sample(tmp_path, sendgrid_toml(fake.url))
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    result = CliRunner().invoke(
        main, ["--config", str(config), "send", "--yes", "--at", AT, "--subscriber", "ada@example.com"]
    )
    assert result.exit_code == 0 and fake.delivered_to() == {"ada@example.com": 1}, result.output
    ledger_file = config.parent / "state" / "ledger.sqlite3"
    before = states(load(config))
    fake.reset()
    result = CliRunner().invoke(main, ["--config", str(config), "send", "--sandbox", "--at", AT])
    assert result.exit_code == 0, result.output
    sandboxed = {p["to"][0]["email"] for r in fake.requests for p in r.body["personalizations"]}
    assert sandboxed == SAMPLE_RECIPIENTS - {"ada@example.com"} and fake.delivered_to() == {}
    assert states(load(config)) == before and (engine == "postgresql" or ledger_file.exists())


# ---------------------------------------------------------------- pooled connections


def test_requests_reuse_a_few_kept_alive_connections(tmp_path: Path, fake: FakeSendGrid) -> None:
    """The official client opens a connection per request; ours keeps them alive: many requests,
    at most one connection per request in flight."""
    cfg = setup(tmp_path, fake, max_per_request=1)
    t = transport(cfg, max_batch=1)
    report = send(cfg, t, concurrency=2)
    assert set(report.accepted) == SAMPLE_RECIPIENTS and fake.delivered_to() == {e: 1 for e in SAMPLE_RECIPIENTS}
    mail = [r for r in fake.requests if r.path == "/v3/mail/send"]
    assert len(mail) == len(SAMPLE_RECIPIENTS)
    assert len({r.connection for r in mail}) == t.pool.opened <= 2 < len(mail)
    t.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed(tmp_path: Path) -> None:
    with FakeSendGrid(handler_timeout=0.3) as fake:  # the fake drops an idle connection after 0.3 s
        cfg = setup(tmp_path, fake)
        sleeps = Sleeps()
        t = transport(cfg, sleep=sleeps)
        assert send(cfg, t, limit=1).accepted and t.pool.opened == 1
        time.sleep(0.8)
        report = send(cfg, t, concurrency=1)
        assert report.exit_code == 0 and fake.delivered_to() == {e: 1 for e in SAMPLE_RECIPIENTS}
        # the stale one was noticed before use: a new connection, and nothing had to be retried
        assert t.pool.opened >= 2 and sleeps == []
        t.close()


def test_the_pooled_client_keeps_the_librarys_error_classes(fake: FakeSendGrid) -> None:
    from python_http_client.exceptions import BadRequestsError, HTTPError, UnauthorizedError
    from sendgrid import SendGridAPIClient

    from digest.transports.sendgrid.pool import pooled

    client = SendGridAPIClient("SG.wrong", host=fake.url)
    pool = pooled(client, timeout=5)
    with pytest.raises(UnauthorizedError) as refused:
        client.client.mail.send.post(request_body={"personalizations": []})
    assert refused.value.status_code == 401 and b"authorization grant" in refused.value.body
    client = SendGridAPIClient(fake.api_key, host=fake.url)
    pooled(client, timeout=5, pool=pool)
    with pytest.raises(BadRequestsError):
        client.client.mail.send.post(request_body={"personalizations": []})
    mail = {
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "news@example.com"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Hi"}],
    }
    fake.script(["502"])
    with pytest.raises(HTTPError) as bad_gateway:
        client.client.mail.send.post(request_body=mail)
    assert bad_gateway.value.status_code == 502 and type(bad_gateway.value) is HTTPError
    answer = client.client.mail.send.post(request_body=mail)
    assert answer.status_code == 202 and answer.headers.get("X-Message-Id")
    assert pool.opened == 1
    pool.close()


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")
