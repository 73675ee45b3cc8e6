"""Consent records and erasure: `digest subscribers show`, `forget` and `export` with signups and
consent columns, imports that honour an erasure, and the `digest form` snippet posted for real."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from public_support import SECRET, token
from signup_support import (
    NEW,
    Clock,
    drain,
    link,
    outbox_messages,
    signup_client,
    signup_config,
    status_of,
    stored_bytes,
    subscribe,
)

from digest.cli import main
from digest.config import Config
from digest.events import Event
from digest.signup.store import address_key
from digest.store import open_events, open_ledger, open_signups, open_state
from digest.subscribers import load_subscribers

AT = "2026-11-30T00:00"
ENV = {"DIGEST_SECRET": SECRET}


def cli(config: Config, *args: str, input: str | None = None):
    result = CliRunner().invoke(main, ["--config", str(config.source), *args], env=ENV, input=input)
    return result


pytestmark = pytest.mark.usefixtures("engine")  # the state on SQLite, then on PostgreSQL


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return signup_config(tmp_path, "keep_ip_days = 30\n")


@pytest.fixture
def confirmed(config: Config) -> Config:
    """The sample newsletter with NEW signed up and confirmed through the form."""
    clock = Clock()
    with signup_client(config, clock) as client:
        subscribe(client, clock, NEW, name="New Reader", tag=["Climate"])
        [(_, msg)] = outbox_messages(config, "confirm")
        client.post(link(msg))
        drain(client)
    return config


# ---------------------------------------------------------------- show


def test_show_prints_the_consent_record(confirmed: Config) -> None:
    out = cli(confirmed, "subscribers", "show", NEW.upper())
    assert out.exit_code == 0, out.output
    assert "status for the next send: active" in out.output
    assert "signup: active since" in out.output and "(form)" in out.output
    assert "form, from testclient: confirmed" in out.output
    assert "shown: I want to receive The Weekly Circuit by email." in out.output
    data = json.loads(cli(confirmed, "subscribers", "show", NEW, "--json").output)
    [consent] = data["consents"]
    assert consent["source"] == "form" and consent["ip"] == "testclient" and consent["confirmed_at"]
    assert data["signup"]["tags"] == ["Climate"] and data["status"] == "active"


def test_show_of_a_list_subscriber_and_of_a_stranger(config: Config) -> None:
    out = cli(config, "subscribers", "show", "grace@example.org").output
    assert "list: " in out and "subscribers.csv:3 (status active" in out and "consent records: none" in out
    assert "not on the list" in cli(config, "subscribers", "show", "nobody@example.org").output
    bad = cli(config, "subscribers", "show", "not-an-address")
    assert bad.exit_code == 1 and "is not an email address" in bad.output


# ---------------------------------------------------------------- forget


def test_forget_erases_everywhere_but_a_hash(confirmed: Config) -> None:
    config = confirmed
    target = "grace@example.org"
    # grace has history everywhere: digests sent (ledger + outbox), events, state rows
    assert cli(config, "send", "--yes", "--at", AT).exit_code == 0
    with open_events(config) as events:
        events.record([Event("e1", "sendgrid", "bounce", "2026-W49", target, 1, detail=f"550 {target} unknown")])
    with open_state(config) as state:
        state.set_topics(target, tags=["python"], categories=[], source="preferences page")
    token(config, target)  # a link id
    before = (config.subscribers.path).read_bytes()

    out = cli(config, "subscribers", "forget", target, "--yes")
    assert out.exit_code == 0, out.output
    assert "list records removed: 1" in out.output and ".eml files deleted: 1" in out.output

    # the list: that one line gone, every other byte as it was
    after = config.subscribers.path.read_bytes()
    assert after == b"".join(line for line in before.splitlines(keepends=True) if not line.startswith(b"grace@"))
    # the state and the ledger no longer hold the address anywhere (SQLite: not even in free space)
    assert target.encode() not in stored_bytes(config)
    with open_ledger(config) as ledger:  # type: ignore[attr-defined]
        assert any(s.startswith("forgotten:") for s in ledger.histories("none"))
    assert not list(config.output.path.rglob(f"{target}.eml"))
    with open_signups(config) as store:
        assert store.forgotten() == {address_key(target): "forgotten"}
    # the other subscribers are untouched
    assert status_of(config, "ada@example.com") == "active" and status_of(config, NEW) == "active"


def test_a_forgotten_address_is_never_reimported_or_mailed_again(confirmed: Config, tmp_path: Path) -> None:
    config = confirmed
    assert cli(config, "subscribers", "forget", "ada@example.com", "--yes").exit_code == 0
    export = tmp_path / "mailchimp.csv"
    export.write_text("Email Address,First Name\nADA@example.com,Ada\nnew.one@example.com,New\n", encoding="utf-8")
    out = cli(config, "subscribers", "import", "--from", "mailchimp", str(export))
    assert out.exit_code == 0, out.output
    assert "ADA@example.com skipped (erased at the subscriber's request" in out.output
    assert "ada@" not in config.subscribers.path.read_text(encoding="utf-8").casefold()
    # pasted back by hand from an old copy: still never mailed
    with config.subscribers.path.open("a", encoding="utf-8") as f:
        f.write("ada@example.com,Ada Lovelace,,,active,Europe/London,\n")
    assert status_of(config, "ada@example.com") == "unsubscribed"
    assert cli(config, "send", "--yes", "--at", AT).exit_code == 0
    assert not list(config.output.path.glob("2026-*/ada@example.com.eml"))
    # the import recorded a consent for the one it added
    shown = json.loads(cli(config, "subscribers", "show", "new.one@example.com", "--json").output)
    assert [c["source"] for c in shown["consents"]] == ["import:mailchimp"]


def test_after_an_erasure_a_new_signup_is_a_new_consent_but_a_kept_bounce_stays(config: Config) -> None:
    with open_state(config) as state:
        state.opt_out("li.lei@example.com", "bounced", "webhook")
    assert cli(config, "subscribers", "forget", "li.lei@example.com", "--yes").exit_code == 0
    assert cli(config, "subscribers", "forget", "jo.mueller@example.com", "--yes").exit_code == 0
    clock = Clock()
    with signup_client(config, clock) as client:
        subscribe(client, clock, "li.lei@example.com")
        subscribe(client, clock, "jo.mueller@example.com")
        sent = outbox_messages(config, "confirm")
        assert [m["To"].addresses[0].addr_spec for _, m in sent] == ["jo.mueller@example.com"]
        client.post(link(sent[0][1]))
    assert status_of(config, "jo.mueller@example.com") == "active"
    with open_signups(config) as store:
        assert store.forgotten() == {address_key("li.lei@example.com"): "bounced"}


def test_forget_asks_first_and_says_what_it_cannot_rewrite(config: Config) -> None:
    refused = cli(config, "subscribers", "forget", "ada@example.com", input="n\n")
    assert refused.exit_code == 1 and status_of(config, "ada@example.com") == "active"
    config.subscribers.path.chmod(0o444)
    config.subscribers.path.parent.chmod(0o555)
    try:
        out = cli(config, "subscribers", "forget", "ada@example.com", "--yes")
    finally:
        config.subscribers.path.parent.chmod(0o755)
    if "could not rewrite the list" not in out.output:  # running as root: the folder was writable anyway
        assert "list records removed: 1" in out.output
    assert status_of(config, "ada@example.com") in (None, "unsubscribed")


def test_forget_removes_records_from_a_json_list(tmp_path: Path) -> None:
    config = signup_config(tmp_path, "")
    data = [{"email": "a@example.com", "isActive": True}, {"email": "B@example.com", "isActive": True}]
    path = tmp_path / "subscribers" / "subscribers.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    source = config.source
    assert source is not None
    source.write_text(
        source.read_text(encoding="utf-8").replace(
            'path = "subscribers/subscribers.csv"', 'path = "subscribers/subscribers.json"'
        ),
        encoding="utf-8",
    )
    out = CliRunner().invoke(
        main, ["--config", str(source), "subscribers", "forget", "b@example.com", "--yes"], env=ENV
    )
    assert out.exit_code == 0, out.output
    assert json.loads(path.read_text(encoding="utf-8")) == [data[0]]


# ---------------------------------------------------------------- export


def test_export_includes_signups_with_their_consent_and_reads_back(confirmed: Config, tmp_path: Path) -> None:
    out_path = tmp_path / "export.csv"
    result = cli(confirmed, "subscribers", "export", "--out", str(out_path))
    assert result.exit_code == 0, result.output
    assert "1 from signups" in result.output
    rows = list(csv.DictReader(io.StringIO(out_path.read_text(encoding="utf-8"))))
    new = next(r for r in rows if r["email"] == NEW)
    assert new["status"] == "active" and new["tags"] == "Climate" and new["consent_source"] == "form"
    assert new["consent_text"].startswith("I want to receive") and new["consent_ip"] == "testclient"
    assert new["confirmed_at"] and new["consent_at"]
    assert next(r for r in rows if r["email"] == "ada@example.com")["consent_source"] == ""
    # read back as a list: the same people, the consent columns not taken for attributes or flags
    again = load_subscribers(out_path)
    assert not [p for p in again.problems if p.severity == "error"]
    back = next(s for s in again.subscribers if s.email == NEW)
    assert back.status == "active" and not set(back.attributes) & {"consent_text", "consent_at", "confirmed_at"}


# ---------------------------------------------------------------- digest form


def test_the_form_snippet_posts_to_the_signup_page_and_works_there(config: Config) -> None:
    out = cli(config, "form")
    assert out.exit_code == 0, out.output
    html = out.output
    assert '<form class="digest-signup" method="post" action="https://news.example.com/subscribe"' in html
    assert "<script" not in html and 'name="website" tabindex="-1"' in html
    assert re.search(r'<input type="checkbox" name="tag" value="Climate"', html)
    assert "I want to receive The Weekly Circuit by email." in html
    # what a visitor's browser posts from the snippet: the page once more (no stamp), then done
    clock = Clock()
    with signup_client(config, clock) as client:
        first = client.post("/subscribe", data={"email": NEW, "consent": "yes", "website": "", "tag": "Climate"})
        assert first.status_code == 200 and "One more step" in first.text and 'value="Climate" checked' in first.text
        stamp = re.search(r'name="started" value="([^"]+)"', first.text).group(1)  # type: ignore[union-attr]
        clock.advance(5)
        second = client.post("/subscribe", data={"email": NEW, "consent": "yes", "started": stamp, "tag": "Climate"})
        assert "Check your inbox" in second.text
        drain(client)
    assert len(outbox_messages(config, "confirm")) == 1


def test_the_form_snippet_without_the_fill_time_check_is_one_step(tmp_path: Path) -> None:
    config = signup_config(tmp_path, "min_fill_seconds = 0\n")
    with signup_client(config) as client:
        answer = client.post("/subscribe", data={"email": NEW, "consent": "yes", "website": ""})
        assert "Check your inbox" in answer.text
        drain(client)
    assert len(outbox_messages(config, "confirm")) == 1


def test_digest_form_needs_signups_enabled(tmp_path: Path) -> None:
    from public_support import public_config

    config = public_config(tmp_path)
    out = CliRunner().invoke(main, ["--config", str(config.source), "form"], env=ENV)
    assert out.exit_code == 1 and "signup.enabled is false" in out.output


def test_a_restore_of_an_older_backup_does_not_bring_an_erased_address_back(confirmed: Config, tmp_path: Path) -> None:
    config = confirmed
    assert cli(config, "send", "--yes", "--at", AT).exit_code == 0
    backup = tmp_path / "backup"
    assert cli(config, "state", "backup", str(backup)).exit_code == 0
    assert cli(config, "subscribers", "forget", NEW, "--yes").exit_code == 0
    restored = cli(config, "state", "restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert "erased again 1 address(es)" in restored.output
    assert NEW.encode() not in stored_bytes(config)
    assert status_of(config, NEW) is None
    with open_signups(config) as store:
        assert store.forgotten() == {address_key(NEW): "forgotten"}


def test_with_the_list_in_the_subscribers_table(tmp_path: Path) -> None:
    """`[subscribers] source = "database"`: signups merge with the table's rows, forget deletes
    the table's row, and an import into the table skips the erased address."""
    config = signup_config(tmp_path, "")
    source = config.source
    assert source is not None
    text = source.read_text(encoding="utf-8")
    source.write_text(
        text.replace(
            'path = "subscribers/subscribers.csv"', 'path = "subscribers/subscribers.csv"\nsource = "database"', 1
        ),
        encoding="utf-8",
    )
    listed = tmp_path / "list.csv"
    listed.write_text(
        "email,name,status\nada@example.com,Ada,active\npat@example.com,Pat,unsubscribed\n", encoding="utf-8"
    )
    assert cli(config, "subscribers", "import", str(listed)).exit_code == 0
    from digest.config import load_config

    config = load_config(source)
    clock = Clock()
    with signup_client(config, clock) as client:
        for address in (NEW, "pat@example.com"):
            subscribe(client, clock, address)
        for _, msg in outbox_messages(config, "confirm"):
            client.post(link(msg))
        drain(client)
    assert status_of(config, NEW) == "active" and status_of(config, "pat@example.com") == "active"
    out = cli(config, "subscribers", "forget", "ada@example.com", "--yes")
    assert "list records removed: 1" in out.output, out.output
    from digest.store import open_subscriber_table

    with open_subscriber_table(config) as table:
        assert table.get("ada@example.com") is None and table.get("pat@example.com") is not None
    again = cli(config, "subscribers", "import", str(listed))
    assert "ada@example.com: erased at the subscriber's request; not imported" in again.output, again.output
    with open_subscriber_table(config) as table:
        assert table.get("ada@example.com") is None
