"""`digest subscribers import --from TOOL`: each tool's export mapped into our list, every row
reported, and no opt-out ever lifted. Fixtures in tests/data/imports/ are written by hand after
each tool's documented export columns."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DATA

from digest.audience import read_overlay
from digest.cli import main
from digest.imports import CsvListStore, import_subscribers
from digest.store import open_state
from digest.subscribers import load_subscribers
from digest.suppressions import EMPTY

IMPORTS = DATA / "imports"
MAILCHIMP = sorted((IMPORTS / "mailchimp").glob("*.csv"))
AT = "2026-11-30T00:00"


def run_import(source: str, files: list[Path], into: Path, overlay=EMPTY, **kw):
    return import_subscribers(source, files, CsvListStore(into), overlay, **kw)


def by_email(path: Path):
    result = load_subscribers(path)
    assert not [p for p in result.problems if p.severity == "error"], result.problems
    return {s.email: s for s in result.subscribers}


def outcomes(report) -> dict[str, tuple[str, str]]:
    return {r.email or f"line {r.line}": (r.action, r.reason) for r in report.results}


def test_mailchimp_three_exports(tmp_path):
    into = tmp_path / "list.csv"
    report = run_import("mailchimp", MAILCHIMP, into)
    subs = by_email(into)
    status = {e: s.status for e, s in subs.items()}
    assert status == {
        "bounced.box@example.com": "cleaned",
        "ada@example.com": "cleaned",  # subscribed export AND cleaned export: cleaned wins
        "grace@example.org": "unsubscribed",  # subscribed AND unsubscribed exports
        "Miguel.Santos@Example.net": "active",
        "amara.okafor@example.com": "active",
        "chloe.dubois@example.net": "active",
        "pat.former@example.com": "active",
        "li.lei@example.com": "unsubscribed",
        "omar.haddad@example.org": "unsubscribed",
    }
    ada = subs["ada@example.com"]
    assert ada.name == "Ada Lovelace" and ada.tags == ("AI", "Hardware")
    assert ada.external_id == "b1f9a2c3d4"
    assert ada.subscribed_at == datetime(2024, 1, 8, 9, 13, 2, tzinfo=UTC)  # CONFIRM_TIME
    assert dict(ada.attributes) == {
        "timezone": "Europe/London",
        "company": "Analytical Engines Ltd",
        "position": "Founder",
        "zip_code": "EC1A 1AA",
    }  # no IPs, coordinates, ratings or notes
    miguel = subs["Miguel.Santos@Example.net"]
    assert miguel.name == "Miguel Santos" and miguel.tags == ("Space", "AI")
    assert miguel.attributes["company"] == '=HYPERLINK("http://attacker.example/x","click")'
    assert b"'=HYPERLINK(" in into.read_bytes()  # written neutralised
    results = outcomes(report)
    assert results["not-an-address"] == ("skipped", "invalid email address 'not-an-address'")
    assert results["omar.haddad@example.org"] == ("added", "as unsubscribed; in Mailchimp's unsubscribed export")
    assert (report.count("added"), report.count("skipped")) == (9, 1)
    assert report.written and not list(tmp_path.glob(".import-*"))  # the temporary file became the list


def test_the_order_of_the_files_does_not_matter(tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    run_import("mailchimp", MAILCHIMP, one)
    run_import("mailchimp", list(reversed(MAILCHIMP)), two)
    fields = ("status", "name", "external_id", "subscribed_at")
    assert {e: [getattr(s, f) for f in fields] for e, s in by_email(one).items()} == {
        e: [getattr(s, f) for f in fields] for e, s in by_email(two).items()
    }


def test_substack(tmp_path):
    into = tmp_path / "list.csv"
    report = run_import("substack", [IMPORTS / "substack" / "email_list.circuit.csv"], into)
    subs = by_email(into)
    assert {e: s.status for e, s in subs.items()} == {
        "ada@example.com": "active",
        "newreader@example.org": "active",
        "quiet.reader@example.com": "unsubscribed",
        "Bob.Something@advisers.example.co.uk": "active",
    }
    assert subs["quiet.reader@example.com"].subscribed_at == datetime(2024, 12, 19, 8, 3, 4, 977000, tzinfo=UTC)
    results = outcomes(report)
    assert results["x7f3a9c1@deletion-request.substack.com"] == (
        "skipped",
        "a Substack deletion request, not a subscriber",
    )
    assert results["elpaper@example.com"][0] == "skipped"
    assert "email_disabled 'maybe' is not a yes/no value" in results["elpaper@example.com"][1]
    assert results["quiet.reader@example.com"] == ("added", "as unsubscribed; email disabled in Substack")


def test_buttondown(tmp_path):
    into = tmp_path / "list.csv"
    report = run_import("buttondown", [IMPORTS / "buttondown" / "subscribers.csv"], into)
    subs = by_email(into)
    assert {e: s.status for e, s in subs.items()} == {
        "ada@example.com": "active",
        "premium.pat@example.org": "active",
        "pending.paula@example.net": "pending",
        "left@example.com": "unsubscribed",
        "bot1234@example.biz": "cleaned",
        "gone@example.com": "cleaned",
    }
    ada = subs["ada@example.com"]
    assert ada.tags == ("ai", "hardware") and ada.external_id == "0f3c9a1e-5b2d-4c7a-9e1f-2a3b4c5d6e7f"
    assert dict(ada.attributes) == {
        "first_name": "Ada",
        "company": "Analytical Engines Ltd",
    }  # notes, UTM, referrer dropped
    results = outcomes(report)
    assert (
        results["vip@example.com"][0] == "skipped"
        and "unknown Buttondown subscriber type 'vip'" in results["vip@example.com"][1]
    )
    # a flag hidden in the metadata is not a silent attribute: the row is not imported
    assert results["meta.flag@example.com"] == (
        "skipped",
        "metadata.unsubscribed names a subscription flag or status, which the import does not read there",
    )


def test_listmonk(tmp_path):
    into = tmp_path / "list.csv"
    report = run_import("listmonk", [IMPORTS / "listmonk" / "subscribers.csv"], into)
    subs = by_email(into)
    assert {e: s.status for e, s in subs.items()} == {
        "ada@example.com": "active",
        "sam.rivera@example.net": "active",
        "blocked@example.org": "unsubscribed",
        "paused.person@example.com": "paused",
    }
    ada, sam = subs["ada@example.com"], subs["sam.rivera@example.net"]
    assert ada.tags == ("AI", "History") and dict(ada.attributes) == {"city": "London"}
    assert ada.external_id == "8f2c8a50-1c2b-4a9e-a6b1-7e5f0c3d2a11"
    assert ada.subscribed_at == datetime(2024, 1, 8, 9, 12, 44, 713208, tzinfo=UTC)
    assert sam.frequency == "daily"
    assert sam.subscribed_at == datetime(2025, 4, 2, 0, 30, 0, 500000, tzinfo=UTC)  # -0700 PDT
    results = outcomes(report)
    assert "unknown listmonk status 'archived'" in results["odd.status@example.com"][1]
    assert results["bad.json@example.com"] == ("skipped", "attributes is not valid JSON")


def test_ghost(tmp_path):
    into = tmp_path / "list.csv"
    report = run_import("ghost", [IMPORTS / "ghost" / "members.2026-11-30.csv"], into)
    subs = by_email(into)
    assert {e: s.status for e, s in subs.items()} == {
        "jamie@example.com": "active",
        "chloe.dubois@example.net": "active",
        "no.emails@example.org": "unsubscribed",
        "deleted.member@example.com": "unsubscribed",
        "comped@example.com": "active",
    }
    jamie, chloe = subs["jamie@example.com"], subs["chloe.dubois@example.net"]
    assert jamie.tags == ("Label 1", "VIP") and jamie.external_id == "623199bfe8bc4d3097caefe0"
    assert dict(chloe.attributes) == {"tiers": "Gold"}  # the staff note and the Stripe id stay in Ghost
    assert outcomes(report)["deleted.member@example.com"] == (
        "added",
        "as unsubscribed; deleted in Ghost on 2026-01-01T00:00:00.000Z",
    )


def test_an_import_never_resubscribes_and_never_lifts_an_opt_out(tmp_path):
    into = tmp_path / "list.csv"
    into.write_text(
        "email,name,tags,categories,status\n"
        "chloe.dubois@example.net,Chloé,ai,,active\n"
        "pat.former@example.com,Pat,,,unsubscribed\n"
        "jamie@example.com,Jamie,,,active\n",
        encoding="utf-8",
    )
    state_dir = tmp_path / "state"
    with open_state(state_dir) as state:
        state.opt_out("Jamie@Example.com", "unsubscribed", "one-click")
    mailchimp = [p for p in MAILCHIMP if p.name.startswith("subscribed")]
    report = run_import("mailchimp", mailchimp, into, read_overlay(state_dir))
    ghost = run_import("ghost", [IMPORTS / "ghost" / "members.2026-11-30.csv"], into, read_overlay(state_dir))
    subs = by_email(into)
    assert subs["pat.former@example.com"].status == "unsubscribed"  # "active" in the export
    assert subs["jamie@example.com"].status == "unsubscribed"  # opted out in the state
    assert subs["chloe.dubois@example.net"].name == "Chloé"  # ours is kept; the export fills gaps
    assert subs["chloe.dubois@example.net"].tags == ("ai", "Climate", "Robotics")
    assert "stays unsubscribed: an import never re-subscribes" in outcomes(report)["pat.former@example.com"][1]
    action, reason = outcomes(ghost)["jamie@example.com"]
    assert action == "updated" and "status active -> unsubscribed" in reason and "kept unsubscribed" in reason
    assert read_overlay(state_dir).optouts["jamie@example.com"]  # the opt-out itself is untouched


def test_a_dry_run_writes_nothing(tmp_path):
    into = tmp_path / "list.csv"
    report = run_import("ghost", [IMPORTS / "ghost" / "members.2026-11-30.csv"], into, dry_run=True)
    assert report.count("added") == 5 and not report.written
    assert not into.exists()


def test_a_list_with_unreadable_rows_is_not_rewritten(tmp_path):
    into = tmp_path / "list.csv"
    text = "email,name\na@example.com,Ann\nnot-an-address,Broken\n"
    into.write_text(text, encoding="utf-8")
    with pytest.raises(Exception, match=r"1 row\(s\) that cannot be read .*an import rewrites the list"):
        run_import("ghost", [IMPORTS / "ghost" / "members.2026-11-30.csv"], into)
    assert into.read_text(encoding="utf-8") == text


def test_an_export_column_that_looks_like_a_flag_skips_its_rows(tmp_path):
    export = tmp_path / "members.csv"
    export.write_text(
        "id,email,name,note,subscribed_to_emails,complimentary_plan,stripe_customer_id,created_at,deleted_at,labels,tiers,email_suppressed\n"
        "1,a@example.com,A,,true,false,,2022-03-16T08:03:11.000Z,,,,true\n"
        "2,b@example.com,B,,true,false,,2022-03-16T08:03:11.000Z,,,,\n",
        encoding="utf-8",
    )
    report = run_import("ghost", [export], tmp_path / "list.csv")
    assert [r.action for r in report.results] == ["skipped", "added"]
    assert "column 'email_suppressed' looks like a subscription flag" in report.results[0].reason


def test_the_cli_reports_every_row_and_build_mails_only_the_subscribed(sample, tmp_path):
    files = [str(p) for p in MAILCHIMP]
    result = CliRunner().invoke(
        main, ["--config", str(sample), "subscribers", "import", "--from", "mailchimp", *files], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line]
    assert len(lines) == 12  # one per export row
    assert lines[9].endswith(
        "unsubscribed_members_export_4f1c2a9e07.csv:2: li.lei@example.com updated "
        "(status active -> unsubscribed; external_id; subscribed_at; in Mailchimp's unsubscribed export)"
    )
    assert "mailchimp import: 4 added, 7 updated, 0 unchanged, 1 skipped into" in result.stderr

    out = tmp_path / "out"
    build = CliRunner().invoke(main, ["--config", str(sample), "build", "--at", AT, "--out", str(out)])
    assert build.exit_code == 0, build.output
    recipients = {
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"].addresses[0].addr_spec
        for p in out.glob("*.eml")
    }
    for address in ("ada@example.com", "grace@example.org", "li.lei@example.com", "omar.haddad@example.org"):
        assert address not in recipients
        assert f"{address}: status is" in build.output
    assert "amara.okafor@example.com" in recipients or "amara.okafor@example.com: no matching" in build.output


def test_a_target_that_is_not_csv_is_refused(sample):
    json_list = sample.parent / "subscribers" / "subscribers.json"
    before = json_list.read_bytes()
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(sample),
            "subscribers",
            "import",
            "--from",
            "ghost",
            "--into",
            str(json_list),
            str(IMPORTS / "ghost" / "members.2026-11-30.csv"),
        ],
    )
    assert result.exit_code == 1 and "an import writes a CSV list" in result.output
    assert json_list.read_bytes() == before
    assert not list(json_list.parent.glob(".import-*"))
