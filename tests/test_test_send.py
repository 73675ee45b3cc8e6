"""`digest test-send`: a segment's digest exactly as a member gets it, only to the test addresses,
never touching the ledger or what a later real send selects."""

from __future__ import annotations

import email
import hashlib
import re
import shutil
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from send_support import AT, AT_DT, SAMPLE_RECIPIENTS, FakeSendGrid, copy_sample, ledger_for, load, sendgrid_toml

from digest.cli import main
from digest.ledger import ClaimItem
from digest.message import to_bytes
from digest.pipeline import open_run
from digest.store import open_ledger
from digest.testsend import BANNER_END, BANNER_START, DISABLED_LINK_FRAGMENT, TEXT_BANNER_END

DATA = Path(__file__).resolve().parent / "data" / "segments"
EDITION = "2026-W49"
CHLOE = "chloe.dubois@example.net"
SAMPLE_SEGMENTS = {
    "ai-readers": CHLOE,
    "security": "conor.obrien@example.org",
    "europe": "ada@example.com",
    "everyone-else": "ada@example.com",
}


def digest(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def read_eml(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[return-value]


def parts(msg: EmailMessage) -> tuple[str, str]:
    """(html, text), line ends normalised: the outbox writes CRLF, `to_bytes` LF."""
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return html.replace("\r\n", "\n"), text.replace("\r\n", "\n")


def without_banner(html: str, text: str) -> tuple[str, str]:
    html = re.sub(re.escape(BANNER_START) + ".*?" + re.escape(BANNER_END), "", html, count=1, flags=re.S)
    return html, text.split(TEXT_BANNER_END + "\n\n", 1)[1]


def ledger_bytes(state: Path) -> str:
    """The ledger's data. A read-only reader of a WAL database may leave an empty -wal and a -shm
    (SQLite's index of the WAL) behind; neither holds data, and an empty WAL is asserted."""
    wal = state / "ledger.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    return hashlib.sha256((state / "ledger.sqlite3").read_bytes()).hexdigest()


def test_all_segments_give_one_test_email_each_equal_to_the_members_own(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    code, out = digest(config, "test-send", "--all-segments", "--to", "me@example.com", "--at", AT)
    assert code == 0, out
    cfg = load(config)
    assert not (cfg.state.path / "ledger.sqlite3").exists()  # not created, let alone written
    run = open_run(cfg, AT_DT)
    files = sorted((tmp_path / "outbox").rglob("*.eml"))
    assert [f.relative_to(tmp_path / "outbox").as_posix() for f in files] == sorted(
        f"{EDITION}.test.{name}/me@example.com.eml" for name in SAMPLE_SEGMENTS
    )
    for name, member_address in SAMPLE_SEGMENTS.items():
        test = read_eml(tmp_path / "outbox" / f"{EDITION}.test.{name}" / "me@example.com.eml")
        (member,) = run.subscribers_for([member_address])
        member_email = run.email(run.select(member))
        real = read_eml_bytes(to_bytes(member_email, date=run.at, edition_id=EDITION))
        assert test["To"] == "me@example.com" and test["Subject"] == f"[TEST] {member_email.subject}"
        assert test["X-Digest-Test"] == f"segment={name}; member={member_address}"
        html, text = parts(test)
        assert f"segment <strong>{name}</strong>" in html and member_address in html.split(BANNER_END)[0]
        assert text.startswith(f"TEST SEND of segment {name}, rendered for {member_address}")
        # Apart from the banner and the disabled links, byte for byte what the member gets.
        member_unsubscribe = run.unsubscribe_url(member)
        disabled = cfg.newsletter.site_url + "/" + DISABLED_LINK_FRAGMENT
        real_html, real_text = parts(real)
        assert without_banner(html, text) == (
            real_html.replace(member_unsubscribe, disabled),
            real_text.replace(member_unsubscribe, disabled),
        )


def read_eml_bytes(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def test_history_is_read_not_written_and_a_later_send_gets_what_the_test_showed(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    # Chloé got an earlier edition: the ledger now excludes those articles from her next digest.
    code, out = digest(config, "send", "--yes", "--at", "2026-11-27T00:00", "--edition", "early", "--subscriber", CHLOE)
    assert code == 0 and "accepted: 1" in out, out
    state = load(config).state.path
    before = ledger_bytes(state)
    code, out = digest(config, "test-send", "--segment", "ai-readers", "--to", "me@example.com", "--at", AT)
    assert code == 0, out
    assert ledger_bytes(state) == before
    with ledger_for(load(config)) as ledger:
        assert ledger.rows(EDITION) == {}
        early = ledger.rows("early")[CHLOE].article_ids
    code, out = digest(config, "send", "--yes", "--at", AT)
    assert code == 0 and "accepted: 7" in out, out  # the test reserved nobody, skipped nobody
    with ledger_for(load(config)) as ledger:
        real_ids = ledger.rows(EDITION)[CHLOE].article_ids
    assert real_ids and not set(real_ids) & set(early)
    test_html, test_text = without_banner(
        *parts(read_eml(tmp_path / "outbox" / f"{EDITION}.test.ai-readers" / "me@example.com.eml"))
    )
    real_html, real_text = parts(read_eml(tmp_path / "outbox" / EDITION / f"{CHLOE}.eml"))
    unsubscribe = f"mailto:{load(config).newsletter.from_email}?subject=unsubscribe"
    disabled = load(config).newsletter.site_url + "/" + DISABLED_LINK_FRAGMENT
    assert (test_html, test_text) == (
        real_html.replace(unsubscribe, disabled),
        real_text.replace(unsubscribe, disabled),
    )


@pytest.mark.usefixtures("engine")
def test_the_ledger_is_opened_read_only(tmp_path: Path) -> None:
    # test-send reads the history through open_ledger(mode="read"): the engine refuses any write
    cfg = load(copy_sample(tmp_path))
    with ledger_for(cfg):
        pass  # creates the file (or, on PostgreSQL, nothing: the schema is there)
    with open_ledger(cfg, "read") as ledger:
        assert ledger.histories(exclude_edition=EDITION) == {}
        with pytest.raises(Exception, match="read-?only"):
            ledger.claim(EDITION, "run", [ClaimItem(CHLOE, CHLOE, ("a",), AT_DT)], transport="outbox")


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


SECRET_TOML = '[sending]\nunsubscribe_url = "https://news.circuit.example.com/unsubscribe"\n'


def test_over_sendgrid_only_the_testers_receive_and_never_the_members_unsubscribe(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every member is a live address on the SendGrid stand-in: any leak would be delivered.
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    monkeypatch.setenv("DIGEST_SECRET", "s3cret-for-tokens-only-in-this-test")
    toml = sendgrid_toml(fake.url, one_click=False).replace(
        'transport = "sendgrid"', 'transport = "sendgrid"\n' + SECRET_TOML.split("\n")[1]
    )
    config = copy_sample(tmp_path, toml)
    testers = ("tester@example.com", "second.tester@example.com")
    code, out = digest(config, "test-send", "--all-segments", "--to", testers[0], "--to", testers[1], "--at", AT)
    assert code == 0, out
    assert fake.delivered_to() == {testers[0]: 4, testers[1]: 4}
    cfg = load(config)
    run = open_run(cfg, AT_DT)
    (chloe,) = run.subscribers_for([CHLOE])
    token_url = run.unsubscribe_url(chloe)
    assert "token=" in token_url
    for message in fake.messages_for(testers[0]):
        assert message.subject.startswith("[TEST] ")  # type: ignore[union-attr]
        assert not {h.lower() for h in message.headers} & {"list-unsubscribe", "list-unsubscribe-post"}
        assert "token=" not in (message.html or "") and "token=" not in (message.text or "")
    assert not (cfg.state.path / "ledger.sqlite3").exists()
    # and the real send that follows reaches every member, once, with their own one-click header
    code, out = digest(config, "send", "--yes", "--at", AT)
    assert code == 0, out
    delivered = fake.delivered_to()
    assert {a: delivered[a] for a in SAMPLE_RECIPIENTS} == dict.fromkeys(SAMPLE_RECIPIENTS, 1)
    (real,) = fake.messages_for(CHLOE)
    assert real.headers["List-Unsubscribe"] == f"<{token_url}>"


def test_segment_test_recipients_as_and_a_custom_prefix(tmp_path: Path) -> None:
    config = copy_sample(tmp_path, '[sending]\ntest_subject_prefix = "[PROOF]"\n')
    code, out = digest(config, "test-send", "--segment", "ai-readers", "--as", "sam.rivera@example.net", "--at", AT)
    assert code == 0, out
    (path,) = (tmp_path / "outbox").rglob("*.eml")
    assert path.name == "editors@circuit.example.com.eml"  # the segment's own test_recipients
    msg = read_eml(path)
    assert msg["Subject"].startswith("[PROOF] ") and "rendered for <strong>sam.rivera@example.net" in parts(msg)[0]
    assert "Hi Sam," in parts(msg)[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--segment", "nope"], "unknown segment 'nope' (segments: ai-readers, security, europe, everyone-else)"),
        (["--segment", "martians", "--to", "me@example.com"], "segment 'martians' is empty"),
        (["--segment", "no-testers"], "segment 'no-testers' has no test_recipients"),
        (["--segment", "no-testers", "--to", "me@example.com", "--as", CHLOE], "not a member of segment 'no-testers'"),
        (["--segment", "no-testers", "--to", "me@example.com", "--as", "x@y.com"], "--as x@y.com: not in"),
        (["--segment", "no-testers", "--to", "not-an-address"], "invalid test recipient 'not-an-address'"),
        ([], "name a segment with --segment NAME, or use --all-segments"),
    ],
)
def test_bad_input_is_one_line_and_sends_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    config = copy_sample(tmp_path)
    shutil.copy(DATA / "segment_matching_nobody.toml", tmp_path / "subscribers" / "segments.toml")
    if "nope" in args:
        shutil.copy(Path(__file__).resolve().parent.parent / "subscribers" / "segments.toml", tmp_path / "subscribers")
    code, out = digest(config, "test-send", *args, "--at", AT)
    assert code == 1 and out.startswith("error: ") and message in out, out
    assert out.count("\n") == 1
    assert not (tmp_path / "outbox").exists()


def test_all_segments_skips_an_empty_segment_and_says_so(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    shutil.copy(DATA / "segment_matching_nobody.toml", tmp_path / "subscribers" / "segments.toml")
    code, out = digest(config, "test-send", "--all-segments", "--to", "me@example.com", "--at", AT)
    assert code == 0, out
    assert "martians: skipped: segment 'martians' is empty" in out
    assert "no-testers: rendered for grace@example.org" in out
    assert [p.parent.name for p in (tmp_path / "outbox").rglob("*.eml")] == [f"{EDITION}.test.no-testers"]


def test_over_smtp_only_the_testers_receive(tmp_path: Path) -> None:
    """test-send works with every transport: over a real SMTP peer (aiosmtpd) too."""
    from smtp_support import smtp_config, smtp_peer

    with smtp_peer() as (inbox, port):
        config = smtp_config(tmp_path, port)
        code, out = digest(config, "test-send", "--all-segments", "--to", "me@example.com", "--at", AT)
    assert code == 0, out
    recipients = {r for rcpts, _ in inbox.messages for r in rcpts}
    assert recipients == {"me@example.com"} and len(inbox.messages) >= 2
    assert all(msg["Subject"].startswith("[TEST]") and "List-Unsubscribe" not in msg for _, msg in inbox.messages)
    assert not (tmp_path / "state" / "ledger.sqlite3").exists()
