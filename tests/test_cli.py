"""Every command through Click's test runner, and .eml files parsed back with the stdlib."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT

from digest.cli import main

AT = "2026-11-30T00:00"


def invoke(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def test_build_writes_one_parsable_eml_per_subscriber(sample, tmp_path):
    out = tmp_path / "out"
    result = invoke(sample, "build", "--at", AT, "--out", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.glob("*.eml"))
    assert len(files) == 7 and "nina@example.net.eml" not in files
    assert "built 7 digest(s)" in result.output
    assert "nina@example.net: no matching articles in the window" in result.output
    assert "pat.former@example.com: status is unsubscribed" in result.output

    msg = email.message_from_bytes((out / "chloe.dubois@example.net.eml").read_bytes(), policy=email.policy.default)
    assert msg["From"] == "The Weekly Circuit <weekly@circuit.example.com>"
    assert msg["To"] == "Chloé Dubois <chloe.dubois@example.net>"
    assert msg["Subject"] and msg["Date"] and msg["Message-ID"]
    assert msg["List-Id"]
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]  # text first: clients show the last part they can
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Hi Chloé," in text and "Hi Chloé," in html


def test_build_only_named_subscribers(sample, tmp_path):
    out = tmp_path / "out"
    result = invoke(sample, "build", "--at", AT, "--out", str(out), "--subscriber", "GRACE@example.org")
    assert result.exit_code == 0
    assert [p.name for p in out.glob("*.eml")] == ["grace@example.org.eml"]
    result = CliRunner().invoke(
        main, ["--config", str(sample), "build", "--at", AT, "--subscriber", "nobody@example.com"]
    )
    assert result.exit_code == 1 and "nobody@example.com" in result.output


def test_bad_article_and_row_are_reported_and_the_run_goes_on(sample, tmp_path):
    (sample.parent / "content" / "broken.md").write_text("---\ntitle: 'oops\n---\n")
    with (sample.parent / "subscribers" / "subscribers.csv").open("a") as f:
        f.write("not-an-email,X,,,active,,\n")
    result = invoke(sample, "build", "--at", AT, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0
    assert re.search(r"content/broken\.md:\d+: error: front matter is not valid YAML", result.output)
    assert re.search(r"subscribers\.csv:12: error: invalid email address 'not-an-email'", result.output)
    assert "built 7 digest(s)" in result.output
    assert "bad article files: 1; invalid subscriber rows: 1" in result.output


def test_check_clean_sample_passes(sample):
    result = invoke(sample, "check", "--at", AT)
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


def test_check_fails_on_errors_and_strict_fails_on_warnings(sample):
    text = sample.read_text()
    sample.write_text(
        text.replace(
            'postal_address = "The Weekly Circuit, 12 Example Street, London EC1A 1AA, United Kingdom"',
            'postal_address = ""',
        )
    )
    result = invoke(sample, "check", "--at", AT)
    assert result.exit_code == 0 and "postal_address is empty" in result.output
    assert invoke(sample, "check", "--strict").exit_code == 1
    (sample.parent / "content" / "untitled.md").write_text("---\ndate: 2026-11-25\n---\n")
    result = invoke(sample, "check", "--at", AT)
    assert result.exit_code == 1 and "untitled.md: error: no title" in result.output


def test_size_limit_warns_in_build_and_fails_check(sample, tmp_path):
    sample.write_text(sample.read_text() + "\n[templates]\nmax_html_kb = 30\n")
    result = invoke(sample, "build", "--at", AT, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0
    assert re.search(r"warning: ada@example\.com: HTML is \d+\.\d KB, over 30 KB", result.output)
    result = invoke(sample, "check", "--at", AT)
    assert result.exit_code == 1 and "over the 30 KB limit" in result.output


def test_errors_are_one_line_and_tracebacks_only_with_verbose(sample):
    sample.write_text(sample.read_text() + "\n[selection]\nwindow_days = 'x'\n")
    result = CliRunner().invoke(main, ["--config", str(sample), "build"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {sample}: not valid TOML")
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["--config", str(sample), "--verbose", "build"])
    assert "Traceback" in result.output


def test_usage_errors_exit_2(sample):
    assert CliRunner().invoke(main, ["--config", str(sample), "build", "--at", "garbage"]).exit_code == 2
    assert CliRunner().invoke(main, ["build", "--no-such-flag"]).exit_code == 2


def test_every_command_has_help_and_is_documented():
    docs = "\n".join(page.read_text(encoding="utf-8") for page in (ROOT / "docs").glob("*.md"))
    for name, command in main.commands.items():
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and command.help, name
        assert f"digest {name}" in docs, f"`digest {name}` is not documented in docs/"


@pytest.mark.parametrize("args", [["build"], ["check"]])
def test_default_config_is_digest_toml_in_the_current_folder(sample, args, monkeypatch, tmp_path):
    monkeypatch.chdir(sample.parent)
    result = CliRunner().invoke(
        main, [*args, "--at", AT] + (["--out", str(tmp_path / "o")] if args == ["build"] else [])
    )
    assert result.exit_code == 0, result.output


def test_eml_bytes_match_the_stdlib_message(sample_config):
    """`to_bytes` writes the message by hand for speed; it must parse to what `to_mime` builds."""
    from conftest import SAMPLE_AT

    from digest.message import to_bytes, to_mime
    from digest.pipeline import open_run

    run = open_run(sample_config, SAMPLE_AT)
    for sub in run.subscribers.subscribers[:4]:
        mail = run.email(run.select(sub))
        fast = email.message_from_bytes(to_bytes(mail, date=SAMPLE_AT, edition_id="e1"), policy=email.policy.default)
        ref = email.message_from_bytes(
            to_mime(mail, date=SAMPLE_AT, edition_id="e1").as_bytes(), policy=email.policy.default
        )
        for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Id"):
            assert fast[header] == ref[header]
        for kind in ("plain", "html"):
            # to_mime's SMTP policy writes CRLF line ends; the content is the same
            assert fast.get_body((kind,)).get_content() == ref.get_body((kind,)).get_content().replace("\r\n", "\n")
        assert fast.get_body(("plain",)).get_content() == mail.text


def test_eml_names_never_collide():
    from digest.message import eml_name
    from digest.models import Subscriber

    names = {eml_name(Subscriber(email=e)) for e in ("a!b@x.org", "a#b@x.org", "a_b@x.org", "A_B@x.org")}
    assert len(names) == 3  # the last two are one address, case aside
    assert eml_name(Subscriber(email="ada@example.com")) == "ada@example.com.eml"
