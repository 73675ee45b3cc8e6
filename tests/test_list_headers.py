"""List-Unsubscribe, List-Unsubscribe-Post and List-Id on the MIME path (.eml, outbox, SMTP).

Read as the raw bytes written to disk or received by a real SMTP peer: Python's parser would
decode an RFC 2047 encoded-word and hide exactly the bug that costs recipients the one-click button.
"""

from __future__ import annotations

import email
import re
from email.policy import default
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from send_support import AT, SAMPLE_RECIPIENTS, copy_sample, ledger_for, load
from smtp_support import smtp_peer

from digest.cli import main
from digest.errors import TemplateError
from digest.message import fold_list_header

#: Longer than a header line may be before the email package folds or encodes it, with any token.
ENDPOINT = "https://newsletter-preferences.circuit.example.com/one-click/unsubscribe"
ONE_CLICK_LINE = re.compile(rb"List-Unsubscribe: <" + re.escape(ENDPOINT.encode()) + rb"\?token=[A-Za-z0-9_.\-]+>(,?)")


def header_lines(raw: bytes, name: bytes) -> list[bytes]:
    """The physical lines of header `name` (first line and continuation lines) as written."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    out: list[bytes] = []
    taking = False
    for line in re.split(rb"\r?\n", head):
        if line[:1] in (b" ", b"\t"):
            if taking:
                out.append(line)
            continue
        taking = line.lower().startswith(name.lower() + b":")
        if taking:
            out.append(line)
    return out


def invoke(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def test_a_built_eml_carries_raw_unencoded_list_headers_folded_between_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "s3cret-for-list-header-tests")
    config = copy_sample(
        tmp_path,
        f'[sending]\nunsubscribe_url = "{ENDPOINT}"\nunsubscribe_mailto = "leave@circuit.example.com"\n',
    )
    code, out = invoke(config, "build", "--at", AT, "--out", str(tmp_path / "built"))
    assert code == 0, out
    raw = (tmp_path / "built" / "ada@example.com.eml").read_bytes()
    first, second = header_lines(raw, b"List-Unsubscribe")
    match = ONE_CLICK_LINE.fullmatch(first)
    assert match and match.group(1) == b",", first  # one entry per line, the comma after the first
    assert second == b" <mailto:leave@circuit.example.com?subject=unsubscribe>"
    assert header_lines(raw, b"List-Unsubscribe-Post") == [b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"]
    assert header_lines(raw, b"List-Id") == [b"List-Id: <weekly.circuit.example.com>"]
    # the header's link is the footer's: the same signed token
    url = first[len(b"List-Unsubscribe: <") : -2].decode()
    msg = email.message_from_bytes(raw, policy=default)
    assert url in msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_what_an_smtp_peer_receives_has_the_one_click_header_on_one_raw_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "s3cret-for-list-header-tests")
    with smtp_peer() as (inbox, port):
        config = copy_sample(
            tmp_path,
            f'[sending]\ntransport = "smtp"\nunsubscribe_url = "{ENDPOINT}"\n\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nusername_env = ""\ntimeout = 5.0\n',
        )
        code, out = invoke(config, "send", "--yes", "--at", AT)
        assert code == 0, out
    assert set(inbox.raw) == SAMPLE_RECIPIENTS
    for data in inbox.raw.values():
        (line,) = header_lines(data, b"List-Unsubscribe")
        assert len(line) > 78 and b"=?" not in line
        match = ONE_CLICK_LINE.fullmatch(line)
        assert match and match.group(1) == b"", line
        assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in data
        assert b"\r\nList-Id: <weekly.circuit.example.com>\r\n" in data


def test_a_configured_mailto_without_an_endpoint_is_the_list_unsubscribe(tmp_path: Path) -> None:
    # `unsubscribe_mailto` and no HTTPS endpoint: mail apps get that mailbox, and no one-click header
    config = copy_sample(tmp_path, '[sending]\nunsubscribe_mailto = "leave@circuit.example.com"\n')
    code, out = invoke(config, "send", "--yes", "--at", AT)
    assert code == 0, out
    raw = (tmp_path / "outbox" / "2026-W49" / "ada@example.com.eml").read_bytes()
    assert header_lines(raw, b"List-Unsubscribe") == [
        b"List-Unsubscribe: <mailto:leave@circuit.example.com?subject=unsubscribe>"
    ]
    assert header_lines(raw, b"List-Unsubscribe-Post") == []


def test_without_an_endpoint_the_outbox_eml_has_the_footers_mailto_as_list_unsubscribe(sample: Path) -> None:
    code, out = invoke(sample, "send", "--yes", "--at", AT)
    assert code == 0, out
    raw = (sample.parent / "outbox" / "2026-W49" / "ada@example.com.eml").read_bytes()
    assert header_lines(raw, b"List-Unsubscribe") == [
        b"List-Unsubscribe: <mailto:weekly@circuit.example.com?subject=unsubscribe>"
    ]
    assert header_lines(raw, b"List-Unsubscribe-Post") == []  # one-click is for HTTPS only


@pytest.mark.parametrize("transport", ["smtp", "sendgrid"])
def test_check_and_send_refuse_bulk_transports_without_a_one_click_endpoint(tmp_path: Path, transport: str) -> None:
    with smtp_peer() as (inbox, port):
        config = copy_sample(
            tmp_path,
            f'[sending]\ntransport = "{transport}"\n\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nusername_env = ""\n',
        )
        code, out = invoke(config, "check", "--at", AT)
        assert code == 1 and f"sending.transport is {transport} but sending.unsubscribe_url is empty" in out
        code, out = invoke(config, "send", "--yes", "--at", AT)
        assert code == 1 and "sending.unsubscribe_url is empty" in out
        assert len(out.strip().splitlines()) == 1, out
        assert inbox.raw == {}
    assert not (tmp_path / "state" / "ledger.sqlite3").exists()  # refused before anything was claimed


def test_the_outbox_needs_no_endpoint_but_overriding_it_with_smtp_does(sample: Path) -> None:
    code, out = invoke(sample, "check", "--at", AT)
    assert "unsubscribe_url" not in out
    code, out = invoke(sample, "send", "--yes", "--at", AT, "--transport", "smtp")
    assert code == 1 and "sending.transport is smtp but sending.unsubscribe_url is empty" in out
    assert not (sample.parent / "state" / "ledger.sqlite3").exists()
    code, out = invoke(sample, "send", "--yes", "--at", AT)
    assert code == 0, out
    with ledger_for(load(sample)) as ledger:
        assert ledger.summary("2026-W49")["accepted"] == len(SAMPLE_RECIPIENTS)


# ---------------------------------------------------------------- the folding itself

_URL_CHARS = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="<>,"), min_size=1, max_size=200
)


@given(st.lists(_URL_CHARS.map(lambda s: f"<https://x.example/{s}>"), min_size=1, max_size=4))
def test_folding_only_ever_happens_between_entries(entries: list[str]) -> None:
    folded = fold_list_header("List-Unsubscribe", ", ".join(entries))
    assert folded.endswith("\r\n") and folded.isascii()
    lines = folded[:-2].split("\r\n")
    single = "List-Unsubscribe: " + ", ".join(entries)
    if len(lines) == 1:
        assert lines == [single]
    else:  # one whole entry per line, only when they do not fit on one
        assert len(single) > 78 and len(lines) == len(entries)
        assert lines == [f"List-Unsubscribe: {entries[0]},", *(f" {e}," for e in entries[1:-1]), f" {entries[-1]}"]


def test_a_non_ascii_mailto_is_percent_encoded_and_control_characters_are_refused() -> None:
    assert fold_list_header("List-Unsubscribe", "<mailto:zoë@exämple.com?subject=unsubscribe>") == (
        "List-Unsubscribe: <mailto:zo%C3%AB@ex%C3%A4mple.com?subject=unsubscribe>\r\n"
    )
    with pytest.raises(TemplateError, match="control character"):
        fold_list_header("List-Id", "<a.example>\r\nBcc: victim@example.com")
    with pytest.raises(TemplateError, match="998"):
        fold_list_header("List-Unsubscribe", f"<https://x.example/{'a' * 1000}>")
