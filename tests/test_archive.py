"""`digest archive`: a static site of the editions sent, each the generic version, plus an index and
an Atom feed; the emails' "View in browser" link points at it. Every file is scanned for anything
personal: addresses, names, tokens, per-reader links."""

from __future__ import annotations

import csv
import email
import email.policy
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from engagement_support import newsletter, send_edition
from send_support import AT_DT, SAMPLE_RECIPIENTS

from digest import personalize
from digest.archive import ATOM, write_archive
from digest.cli import main
from digest.config import Config
from digest.errors import DigestError

ARCHIVE = "https://news.example.com/archive/"
EXTRA = f'\n[tracking]\nclicks = true\n[archive]\nbase_url = "{ARCHIVE}"\n'
HOSTILE_TITLE = 'Fast & "safe" <b>parsers</b> ]]> for everyone'
#: What a token or a per-reader link looks like, whatever its purpose.
TOKEN_SHAPES = [
    re.compile(r"v2\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{24}"),  # unsubscribe / preferences / click
    re.compile(r"l1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{24}"),  # first-party click link
    re.compile(r"token="),
    re.compile(r"[?&]u="),
    re.compile(r"/r/"),
    re.compile(r"__DG"),  # an unfilled personalisation token
]


def add_next_week_article(config: Config) -> None:
    (config.content.path / "2026" / "12").mkdir(parents=True, exist_ok=True)
    (config.content.path / "2026" / "12" / "parsers.md").write_text(
        f"---\ntitle: '{HOSTILE_TITLE}'\ndate: 2026-12-03T09:00:00Z\nslug: parsers\ntags: [python, AI]\n---\n"
        "A parser that never executes what it reads.\n",
        encoding="utf-8",
    )


@pytest.fixture
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """Two editions sent through the outbox: the sample week, and the next with one new article."""
    config = newsletter(tmp_path, monkeypatch, extra=EXTRA)
    assert set(send_edition(config).accepted) == SAMPLE_RECIPIENTS
    add_next_week_article(config)
    assert send_edition(config, AT_DT + timedelta(days=7)).accepted
    return config


def personal_strings(config: Config) -> list[str]:
    """Every address, local part and name in the list, as they could show."""
    out: list[str] = []
    with config.subscribers.path.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            address = row["email"].strip()
            out += [address, address.split("@")[0], personalize.escape_text(address)]
            if row.get("name", "").strip():
                out += [row["name"].strip(), personalize.escape_text(row["name"].strip())]
    return [s for s in out if len(s) >= 3]


def test_emails_link_to_their_editions_page_in_the_archive(sent: Config) -> None:
    for edition in ("2026-W49", "2026-W50"):
        for path in (sent.output.path / edition).glob("*.eml"):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            html = msg.get_body(("html",)).get_content()
            text = msg.get_body(("plain",)).get_content()
            assert f'href="{ARCHIVE}{edition}/"' in html and ">View in browser</a>" in html
            assert f"View in browser: {ARCHIVE}{edition}/" in text


def test_the_archive_has_a_page_per_edition_an_index_and_a_feed(sent: Config, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = CliRunner().invoke(main, ["--config", str(sent.source), "archive", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "archived 2 edition(s)" in result.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["2026-W49/index.html", "2026-W50/index.html", "feed.xml", "index.html"]
    page = (out / "2026-W50" / "index.html").read_text(encoding="utf-8")
    assert "The web version of The Weekly Circuit" in page and "Hi there," in page
    assert "View in browser" not in page and "Unsubscribe" not in page and ">All editions</a>" in page
    assert "https://circuit.example.com/posts/parsers?utm_source=newsletter" in page  # straight to the article
    assert personalize.escape_text(HOSTILE_TITLE) in page and "<b>parsers</b>" not in page
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.index(f'href="{ARCHIVE}2026-W50/"') < index.index(f'href="{ARCHIVE}2026-W49/"')  # newest first
    assert "&lt;b&gt;parsers&lt;/b&gt;" in index and "<b>parsers" not in index

    feed = ET.parse(out / "feed.xml").getroot()
    ns = {"a": ATOM}
    assert feed.tag == f"{{{ATOM}}}feed" and feed.findtext("a:title", namespaces=ns) == "The Weekly Circuit"
    entries = feed.findall("a:entry", ns)
    assert [e.find("a:link", ns).get("href") for e in entries] == [f"{ARCHIVE}2026-W50/", f"{ARCHIVE}2026-W49/"]
    assert [e.findtext("a:id", namespaces=ns) for e in entries] == [f"{ARCHIVE}2026-W50/", f"{ARCHIVE}2026-W49/"]
    assert HOSTILE_TITLE in entries[0].findtext("a:summary", namespaces=ns)
    assert entries[1].findtext("a:updated", namespaces=ns) == "2026-11-30T00:00:00Z"
    assert feed.find("a:link[@rel='self']", ns).get("href") == f"{ARCHIVE}feed.xml"


def test_no_file_of_the_archive_holds_anything_personal(sent: Config, tmp_path: Path) -> None:
    out = tmp_path / "site"
    report = write_archive(sent, out)
    personal = personal_strings(sent)
    assert "chloe.dubois@example.net" in personal and "Chloé Dubois" in personal
    scanned = 0
    for path in out.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8")
        for value in personal:
            assert value.casefold() not in text.casefold(), f"{value!r} in {path}"
        for shape in TOKEN_SHAPES:
            assert not shape.search(text), f"{shape.pattern} in {path}"
        scanned += 1
    assert scanned == len(report.files) == 4
    # the scan is not vacuous: the same scan finds a real email's tokens and address
    sample = next((sent.output.path / "2026-W49").glob("chloe*.eml")).read_text(encoding="utf-8")
    assert any(shape.search(sample) for shape in TOKEN_SHAPES) and "chloe.dubois@example.net" in sample


def test_nothing_to_archive_and_never_into_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = newsletter(tmp_path, monkeypatch)
    with pytest.raises(DigestError, match="no edition sent yet"):
        write_archive(config, tmp_path / "site")
    send_edition(config)
    with pytest.raises(DigestError, match="inside the state folder"):
        write_archive(config, config.state.path / "site")


def test_without_a_base_url_links_are_relative_and_ids_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = newsletter(tmp_path, monkeypatch)
    send_edition(config)
    eml = next((config.output.path / "2026-W49").glob("*.eml")).read_text(encoding="utf-8")
    assert "View in browser" not in eml  # no archive configured: no link
    write_archive(config, tmp_path / "site")
    feed = ET.parse(tmp_path / "site" / "feed.xml").getroot()
    (entry,) = feed.findall(f"{{{ATOM}}}entry")
    assert entry.find(f"{{{ATOM}}}link").get("href") == "2026-W49/"
    assert entry.findtext(f"{{{ATOM}}}id") == "tag:circuit.example.com,2026:edition:2026-W49"


def test_an_unwritable_folder_is_one_clear_line(sent: Config, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the archive should go", encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(sent.source), "archive", "--out", str(blocker / "site")])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "cannot write the archive" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_daily_pages_hold_their_own_day_and_never_repeat_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daily edition's page shows what arrived since the previous daily edition, not the last
    seven days again (the generic reader has no history of their own to start from)."""
    config = newsletter(
        tmp_path, monkeypatch, extra='\n[schedule]\ndaily = "0 7 * * *"\nweekly = "0 9 * * MON"\ndefault = "daily"\n'
    )
    runner = CliRunner()
    for at in ("2026-11-28T08:00", "2026-11-29T08:00"):
        result = runner.invoke(
            main, ["--config", str(config.source), "send", "--cadence", "daily", "--yes", "--at", at]
        )
        assert result.exit_code == 0, result.output
    report = write_archive(config, tmp_path / "site")
    pages = {a.edition.id: {x.id for x in a.articles} for a in report.editions}
    assert set(pages) == {"2026-11-28", "2026-11-29"}
    # the 29th's page: only what was published after the 28th's edition (RISC-V laptops, 29 Nov)
    assert pages["2026-11-29"] == {"hardware/risc-v-laptops"}
    assert not pages["2026-11-29"] & pages["2026-11-28"]


@pytest.mark.parametrize(
    ("edition", "label"),
    [("2026-W48", "W48"), ("2026-11", "11"), ("2026-11-30", "11-30"), ("2026-W49-resend", "2026-W49")],
)
def test_chart_labels_fit_every_cadences_edition_ids(edition: str, label: str) -> None:
    from digest.web.charts import short_label

    assert short_label(edition) == label
