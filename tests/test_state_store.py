"""The state's engines as a user meets them: migrations applied by `digest state migrate` and only
checked elsewhere, the URL and its password, `digest state copy`, backup and restore, and the
subscribers table."""

from __future__ import annotations

import csv
import multiprocessing
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from send_support import AT, AT_DT, SAMPLE_RECIPIENTS, copy_sample, ledger_for, load

from digest.audience import read_overlay
from digest.cli import main
from digest.errors import ConfigError
from digest.send import SendOptions, send
from digest.store import DATABASE_URL_ENV, Location, locate, open_state, open_subscriber_table
from digest.store.schema import MIGRATIONS, SchemaError, latest

EDITION = "2026-W49"

#: The ledger as every version before migrations wrote it (version 1, no schema_migrations).
OLD_LEDGER = """
CREATE TABLE deliveries (
    edition TEXT NOT NULL, subscriber TEXT NOT NULL, email TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('claimed','accepted','failed','ambiguous','cancelled')),
    run_id TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1, article_ids TEXT NOT NULL,
    selected_at TEXT NOT NULL, claimed_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    transport TEXT NOT NULL DEFAULT '', message_id TEXT NOT NULL DEFAULT '', batch_id TEXT NOT NULL DEFAULT '',
    send_at INTEGER, error TEXT NOT NULL DEFAULT '', PRIMARY KEY (edition, subscriber));
CREATE INDEX deliveries_subscriber ON deliveries (subscriber, state);
INSERT INTO deliveries VALUES ('2026-W48', 'ada@example.com', 'ada@example.com', 'accepted', 'r0', 1,
    '["x"]', '2026-11-23T00:00:00.000000+00:00', '2026-11-23T00:00:01.000000+00:00',
    '2026-11-23T00:00:02.000000+00:00', 'outbox', '', '', NULL, '');
"""


def set_option(config: Path, after: str, line: str) -> None:
    """Add `line` to the sample config's section, under its `after` line."""
    text = config.read_text(encoding="utf-8")
    assert after in text
    config.write_text(text.replace(after, f"{after}\n{line}", 1), encoding="utf-8")


def cli(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


# ---------------------------------------------------------------- migrations


def test_a_ledger_from_before_migrations_is_refused_until_migrated_then_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    config = copy_sample(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "ledger.sqlite3") as db:
        db.executescript(OLD_LEDGER)
    db.close()
    code, out = cli(config, "send", "--yes", "--at", AT)
    assert code == 1 and "ledger.sqlite3: the send ledger is at schema version 1" in out
    assert "run `digest state migrate`" in out
    code, out = cli(config, "state", "migrate")
    assert code == 0 and "applied ledger 2" in out and "applied state" in out, out
    code, out = cli(config, "state", "migrate")
    assert code == 0 and "nothing to apply" in out
    code, out = cli(config, "send", "--yes", "--at", AT)
    assert code == 0, out
    with ledger_for(load(config)) as ledger:
        assert ledger.rows("2026-W48")["ada@example.com"].state == "accepted"  # the old row, kept
        assert set(ledger.rows(EDITION)) == SAMPLE_RECIPIENTS


def test_a_postgresql_database_is_never_set_up_silently(tmp_path: Path, pg_server, monkeypatch) -> None:
    url = pg_server.create_database("t_not_migrated")
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    config = copy_sample(tmp_path)
    for command in (["status"], ["send", "--yes", "--at", AT], ["send", "--dry-run", "--at", AT]):
        code, out = cli(config, *command)
        assert code == 1 and "not set up (no schema yet)" in out and "digest state migrate" in out, (command, out)
    code, out = cli(config, "state", "info")
    assert "engine: postgresql" in out and "schema version 0 (this digest needs" in out
    code, out = cli(config, "state", "migrate")
    assert code == 0 and out.count("applied") == sum(1 for _ in MIGRATIONS), out
    code, out = cli(config, "send", "--yes", "--at", AT)
    assert code == 0 and f"accepted: {len(SAMPLE_RECIPIENTS)}" in out, out


def test_a_schema_newer_than_this_digest_is_refused(tmp_path: Path, new_ledger, engine) -> None:
    with new_ledger(tmp_path) as ledger:
        pass
    loc = locate(tmp_path)
    if engine == "sqlite":
        with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
            db.execute("INSERT INTO schema_migrations VALUES ('ledger', 99, 'future', 'x')")
        db.close()
    else:
        import psycopg

        with psycopg.connect(loc.url, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_migrations VALUES ('ledger', 99, 'future', 'x')")
    with pytest.raises(SchemaError, match="newer than this digest knows .*upgrade newsletter-digest"):
        new_ledger(tmp_path)
    del ledger


def test_the_password_never_goes_in_the_config_nor_in_a_message(tmp_path: Path, monkeypatch) -> None:
    config = copy_sample(tmp_path)
    set_option(config, 'path = "state"', 'url = "postgresql://digest:hunter2hunter2@db.example.com/news"')
    code, out = cli(config, "status")
    assert code == 1 and "state.url holds a password" in out and "hunter2" not in out
    config.write_text(config.read_text().replace("digest:hunter2hunter2@", "digest@"))
    load(config)  # no password: fine
    # a password from the environment, a server that is not there: the message names the database only
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://digest:s3cret-pw@127.0.0.1:9/news?connect_timeout=2")
    code, out = cli(config, "status")
    assert code == 1 and "postgresql://digest@127.0.0.1:9/news: cannot connect" in out and "s3cret" not in out
    with pytest.raises(ConfigError, match="must be a postgresql:// URL"):
        from digest.config import validate_state_url

        validate_state_url("mysql://x@y/z", "state.url")


# ---------------------------------------------------------------- copy, backup, restore


def test_copy_from_sqlite_to_postgresql_then_the_switch_sends_nobody_twice(
    tmp_path: Path, pg_server, monkeypatch
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.setenv("DIGEST_SECRET", "s" * 32)
    config = copy_sample(tmp_path)
    cfg = load(config)
    send(cfg, AT_DT, SendOptions(only=("ada@example.com", "grace@example.org")))
    with open_state(cfg) as state:
        state.opt_out("li.lei@example.com", "unsubscribed", "one-click")
        ids = state.token_ids(["ada@example.com"])
    url = pg_server.create_database("t_copy_target")
    code, out = cli(config, "state", "copy", "--to", url)
    assert code == 0 and "deliveries: 2 row(s) read, 2 written" in out and "optouts: 1 row(s) read, 1 written" in out
    # more sends on SQLite, then the copy again: it converges, nothing duplicated
    send(cfg, AT_DT, SendOptions())
    code, out = cli(config, "state", "copy", "--to", url)
    assert code == 0 and "deliveries: 6 row(s) read, 4 written" in out, out
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    pg_cfg = load(config)
    with ledger_for(pg_cfg) as ledger:
        rows = ledger.rows(EDITION)
    assert {s: r.state for s, r in rows.items()} == dict.fromkeys(
        SAMPLE_RECIPIENTS - {"li.lei@example.com"}, "accepted"
    )
    assert "li.lei@example.com" in read_overlay(pg_cfg).optouts
    with open_state(pg_cfg) as state:
        assert state.token_ids(["ada@example.com"], create=False) == ids  # links in inboxes keep working
    assert send(pg_cfg, AT_DT, SendOptions()).accepted == ()  # the switch sends nobody again


@pytest.mark.usefixtures("engine")
def test_backup_then_restore_keeps_later_opt_outs(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    cfg = load(config)
    send(cfg, AT_DT, SendOptions(only=("ada@example.com",)))
    code, out = cli(config, "state", "backup", str(tmp_path / "b1"))
    assert code == 0 and "1 delivery row(s)" in out, out
    assert {p.name for p in (tmp_path / "b1").iterdir()} == {"ledger.sqlite3", "subscribers.sqlite3", "backup.json"}
    send(cfg, AT_DT, SendOptions())  # everyone else, after the backup
    with open_state(cfg) as state:
        state.opt_out("grace@example.org", "unsubscribed", "one-click")
    code, out = cli(config, "state", "restore", str(tmp_path / "b1"))
    assert code == 0 and "kept 1 opt-out(s)" in out and "before-restore-" in out, out
    with ledger_for(cfg) as ledger:
        assert set(ledger.rows(EDITION)) == {"ada@example.com"}  # the ledger as it was
    assert "grace@example.org" in read_overlay(cfg).optouts  # but never a forgotten opt-out
    (tmp_path / "b1" / "ledger.sqlite3").write_bytes(b"damaged")
    code, out = cli(config, "state", "restore", str(tmp_path / "b1"))
    assert code == 1 and "damaged" in out


# ---------------------------------------------------------------- the subscribers table


def write_list(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "tags", "status"])
        writer.writerows([(e, n, t, "active") for e, n, t in rows])
    return path


@pytest.mark.usefixtures("engine")
def test_import_upserts_and_reports_then_sends_read_the_table(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    set_option(config, 'path = "subscribers/subscribers.csv"', 'source = "database"')
    listed = write_list(
        tmp_path / "list.csv",
        [("ada@example.com", "Ada", "ai"), ("bob@example.com", "Bob", "space"), ("not-an-address", "X", "")],
    )
    code, out = cli(config, "subscribers", "import", str(listed))
    assert code == 0 and "2 added, 0 updated, 0 unchanged, 1 invalid row(s) skipped; the table holds 2" in out
    assert "list.csv:4" in out and "invalid email address" in out  # the bad row, named
    write_list(
        listed, [("ada@example.com", "Ada L.", "ai"), ("bob@example.com", "Bob", "space"), ("cy@ex.org", "", "")]
    )
    code, out = cli(config, "subscribers", "import", str(listed))
    assert "1 added, 1 updated, 1 unchanged, 0 invalid" in out, out
    cfg = load(config)
    with open_subscriber_table(cfg) as table:
        assert [s.email for s in table.stream()] == ["ada@example.com", "bob@example.com", "cy@ex.org"]
        assert table.get("ada@example.com").name == "Ada L."  # type: ignore[union-attr]
    with open_state(cfg) as state:
        state.opt_out("bob@example.com", "unsubscribed", "one-click")
    report = send(cfg, AT_DT, SendOptions(dry_run=True))
    planned = set(report.first) | {a for a, _ in report.skipped}
    assert "ada@example.com" in report.first and "bob@example.com" not in report.first
    assert planned <= {"ada@example.com", "bob@example.com", "cy@ex.org"}  # not the CSV's sample list


def test_location_shows_no_password() -> None:
    loc = Location(Path("state"), "postgresql://u:pw-here@h:5432/db")
    assert str(loc) == "postgresql://u@h:5432/db" and loc.engine == "postgresql"
    assert latest("ledger") >= 2 and latest("state") >= 2


@pytest.mark.usefixtures("engine")
def test_serve_looks_subscribers_up_in_the_table(tmp_path: Path, monkeypatch) -> None:
    from public_support import ENDPOINT, SECRET, token
    from starlette.testclient import TestClient

    from digest.web.public import PublicSettings, create_public_app

    config = copy_sample(tmp_path, ENDPOINT)
    set_option(config, 'path = "subscribers/subscribers.csv"', 'source = "database"')
    write_list(tmp_path / "list.csv", [("table.only@example.com", "Tabitha", "ai")])
    assert cli(config, "subscribers", "import", str(tmp_path / "list.csv"))[0] == 0
    cfg = load(config)
    client = TestClient(
        create_public_app(PublicSettings(cfg, SECRET.encode(), None)), base_url="https://news.example.com"
    )
    page = client.get(f"/preferences?token={token(cfg, 'table.only@example.com', 'preferences')}")
    assert page.status_code == 200 and "table.only@example.com" in page.text
    # the sample CSV's readers are not the list any more
    assert client.get(f"/preferences?token={token(cfg, 'ada@example.com', 'preferences')}").status_code == 404
    one_click = client.post(
        f"/unsubscribe?token={token(cfg, 'table.only@example.com')}", content=b"List-Unsubscribe=One-Click"
    )
    assert one_click.status_code == 200 and "table.only@example.com" in read_overlay(cfg).optouts


def _open_fresh(path: str, store: str, barrier: Any, results: Any) -> None:
    from digest.errors import LedgerError
    from digest.store.sqlite import open_store

    barrier.wait(timeout=30)
    try:
        open_store(Path(path), store, busy_timeout=10.0, error=LedgerError).close()  # type: ignore[arg-type]
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the message is the finding
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow  # processes, again and again
@pytest.mark.parametrize("store", ["ledger", "state"])
def test_processes_creating_one_fresh_store_at_once_all_open_it(tmp_path: Path, store: str) -> None:
    # Two senders, or a sender and `digest serve`, starting on a new state: each must open the
    # file the other is creating, never fail with "database is locked" (the switch to WAL) or
    # "schema version 1, needs 2" (a half-created file).
    ctx = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(25):
        path = tmp_path / f"{store}-{round_}.sqlite3"
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_fresh, args=(str(path), store, barrier, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=60)
        failures += [r for r in (results.get(timeout=5) for _ in procs) if r != "ok"]
    assert not failures, failures


def test_status_and_report_read_the_ledger_while_a_send_holds_its_write_lock(tmp_path: Path) -> None:
    # Commands that only look (status, report, the schedule's outlook, the archive) open the
    # ledger read-only: they answer while a send is inside a write transaction, instead of queueing
    # behind it for the busy timeout, and can write nothing themselves.
    from digest.ledger import LEDGER_NAME

    config = copy_sample(tmp_path)
    cfg = load(config)
    send(cfg, AT_DT, SendOptions(only=("ada@example.com",)))
    writer = sqlite3.connect(cfg.state.path / LEDGER_NAME, timeout=0, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # what a sender holds while it claims
    try:
        started = time.monotonic()
        code, out = cli(config, "status")
        assert code == 0 and EDITION in out, out
        code, out = cli(config, "report")
        assert code == 0, out
        assert time.monotonic() - started < 10  # a writer's open would wait its 30 s busy timeout
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_reader_meets_an_old_ledger_with_the_migrate_line(tmp_path: Path) -> None:
    from digest.ledger import LEDGER_NAME

    config = copy_sample(tmp_path)
    cfg = load(config)
    cfg.state.path.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(cfg.state.path / LEDGER_NAME)
    db.executescript(OLD_LEDGER)
    db.close()
    code, out = cli(config, "status")
    assert code == 1 and "schema version 1" in out and "digest state migrate" in out, out
    assert len(out.strip().splitlines()) == 1, out
