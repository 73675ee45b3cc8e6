"""`digest send` with the default outbox transport, through the real CLI (CliRunner)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from send_support import AT, AT_DT, SAMPLE_RECIPIENTS, copy_sample, ledger_for, load

from digest.cli import main
from digest.ledger import ClaimItem
from digest.pipeline import open_run
from digest.send import SendOptions, send_edition
from digest.transports.outbox import OutboxTransport


def digest(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def outbox_files(config: Path) -> set[str]:
    return {p.name.removesuffix(".eml") for p in (config.parent / "outbox").rglob("*.eml")}


def test_send_writes_each_digest_once_and_a_rerun_sends_nothing(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    code, out = digest(config, "send", "--yes", "--at", AT)
    assert code == 0, out
    assert "accepted: 7" in out
    assert outbox_files(config) == SAMPLE_RECIPIENTS
    with ledger_for(load(config)) as ledger:
        assert ledger.summary("2026-W49") == {"accepted": 7}
    code, out = digest(config, "send", "--yes", "--at", AT)
    assert code == 0, out
    assert "accepted: 0" in out and "7 x already sent in this edition" in out


def test_without_yes_and_without_a_terminal_it_refuses(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    code, out = digest(config, "send", "--at", AT)
    assert code == 2
    assert "pass --yes" in out
    assert outbox_files(config) == set()


def test_dry_run_counts_and_touches_nothing(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    code, out = digest(config, "send", "--dry-run", "--at", AT)
    assert code == 0, out
    assert "would send 7 email(s)" in out and "first recipients: ada@example.com" in out
    # the content cache may be written; the ledger may not
    assert not (tmp_path / "state" / "ledger.sqlite3").exists() and outbox_files(config) == set()


def test_limit_and_subscriber_then_the_rest(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    code, out = digest(config, "send", "--yes", "--at", AT, "--limit", "2")
    assert code == 0 and "accepted: 2" in out
    code, out = digest(config, "send", "--yes", "--at", AT, "--subscriber", "li.lei@example.com")
    assert code == 0 and "accepted: 1" in out
    code, out = digest(config, "send", "--yes", "--at", AT)
    assert code == 0 and "accepted: 4" in out
    assert outbox_files(config) == SAMPLE_RECIPIENTS


def test_status_shows_counts_and_editions(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    code, out = digest(config, "status")
    assert code == 0 and "nothing sent yet" in out
    digest(config, "send", "--yes", "--at", AT)
    code, out = digest(config, "status", "--edition", "2026-W49")
    assert code == 0
    assert "edition 2026-W49: accepted 7" in out


def test_next_edition_never_resends_an_article(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    digest(config, "send", "--yes", "--at", AT)
    # a day later: each window starts at the last delivery, and nothing was published since
    code, out = digest(config, "send", "--yes", "--at", "2026-12-01T00:00", "--edition", "special")
    assert code == 0, out
    assert "accepted: 0" in out
    assert "7 x no matching articles in the window" in out
    assert "1 x no articles in the window" in out  # ada, who follows everything


def test_a_claim_left_by_a_dead_run_becomes_ambiguous_and_is_skipped(tmp_path: Path) -> None:
    cfg = load(copy_sample(tmp_path))
    run = open_run(cfg, AT_DT)
    transport = OutboxTransport(cfg.output.path, date=AT_DT)
    with ledger_for(cfg) as ledger:
        # a run that crashed between claim and answer: no lock file is held for it any more
        ledger.claim(
            "2026-W49", "deadrun", [ClaimItem("ada@example.com", "ada@example.com", ("x",), AT_DT)], transport="outbox"
        )
        report = send_edition(run, ledger, transport, SendOptions())
        assert [a for a, _ in report.ambiguous] == ["ada@example.com"]
        assert "ada@example.com" not in report.accepted and len(report.accepted) == 6
        assert report.exit_code == 3
        assert ledger.rows("2026-W49")["ada@example.com"].state == "ambiguous"
        report = send_edition(run, ledger, transport, SendOptions(on_ambiguous="resend"))
        assert report.accepted == ("ada@example.com",) and report.exit_code == 0


def test_a_claim_held_by_a_live_run_is_left_alone(tmp_path: Path) -> None:
    from send_support import hold_run

    cfg = load(copy_sample(tmp_path))
    lock = hold_run(cfg, "liverun")
    try:
        with ledger_for(cfg) as ledger:
            ledger.claim(
                "2026-W49",
                "liverun",
                [ClaimItem("ada@example.com", "ada@example.com", ("x",), AT_DT)],
                transport="outbox",
            )
            report = send_edition(
                open_run(cfg, AT_DT),
                ledger,
                OutboxTransport(cfg.output.path, date=AT_DT),
                SendOptions(),
            )
            assert ("ada@example.com", "being sent by another run (liverun)") in report.skipped
            assert ledger.rows("2026-W49")["ada@example.com"].state == "claimed"
    finally:
        lock.release()


def test_a_subscriber_who_missed_editions_catches_up_from_their_last_delivery(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    code, out = digest(config, "send", "--yes", "--at", "2026-11-23T00:00", "--subscriber", "ada@example.com")
    assert code == 0 and "accepted: 1" in out, out
    # Three weeks later nothing is new in the default 7-day window, but Ada's window starts at her
    # last delivery, so she gets the week she missed; a subscriber never sent anything does not.
    code, out = digest(
        config,
        "send",
        "--yes",
        "--at",
        "2026-12-14T00:00",
        "--subscriber",
        "ada@example.com",
        "--subscriber",
        "grace@example.org",
    )
    assert code == 0, out
    assert "accepted: 1" in out
    assert (config.parent / "outbox" / "2026-W51" / "ada@example.com.eml").exists()
    assert not (config.parent / "outbox" / "2026-W51" / "grace@example.org.eml").exists()


def test_progress_without_a_terminal_is_a_few_log_lines(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    csv = config.parent / "subscribers" / "subscribers.csv"
    rows = csv.read_text(encoding="utf-8").splitlines()
    csv.write_text("\n".join([rows[0]] + [f"r{i}@example.com,Reader {i},,,active,UTC," for i in range(120)]) + "\n")
    code, out = digest(config, "send", "--yes", "--at", AT)
    assert code == 0 and "accepted: 120" in out, out
    lines = [line for line in out.splitlines() if line.startswith("sent ")]
    assert lines[-1] == "sent 120/120" and len(lines) <= 11


def test_sandbox_is_refused_where_it_would_really_send(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    code, out = digest(config, "send", "--sandbox", "--at", AT)
    assert code == 2 and "sendgrid transport" in out
    assert outbox_files(config) == set()


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")
