"""Segments: rules, the first-match override rule, overrides through the one composer, grouping by
segment, `digest segments`, `digest send --segment` and segment problems in `digest check`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import subscriber
from send_support import AT, AT_DT, FakeSendGrid, copy_sample, ledger_for, load, sendgrid_toml

from digest.check import check
from digest.cli import main
from digest.pipeline import open_run
from digest.segments import (
    EmptySegmentError,
    Overrides,
    Rule,
    SegmentError,
    UnknownSegmentError,
    load_segments,
)
from digest.send import SendOptions, send_edition
from digest.transports.sendgrid.transport import SendGridTransport

DATA = Path(__file__).resolve().parent / "data" / "segments"
CHLOE = "chloe.dubois@example.net"
SAM = "sam.rivera@example.net"


def with_segments(tmp_path: Path, fixture: str | None, extra_toml: str = "") -> Path:
    """A sample copy whose segments file is tests/data/segments/<fixture> (None: no file)."""
    config = copy_sample(tmp_path, extra_toml)
    target = tmp_path / "subscribers" / "segments.toml"
    if fixture is None:
        target.unlink()
    else:
        shutil.copy(DATA / fixture, target)
    return config


def digest(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


# ---------------------------------------------------------------- rules


def test_a_rule_is_a_conjunction_of_any_of_lists_case_insensitive() -> None:
    ai = subscriber("a@x.com", tags=("AI", "Space"), categories=("Security",), attributes={"Company": "Rivera Labs"})
    rule = Rule(tags=("ai", "robotics"), categories=("security",), contains={"company": "LABS"})
    assert rule.matches(ai)
    assert not Rule(tags=("robotics",)).matches(ai)
    assert not Rule(tags=("ai",), exclude_tags=("space",)).matches(ai)
    assert not Rule(exclude_categories=("SECURITY",)).matches(ai)
    assert Rule(equals={"company": "rivera labs"}).matches(ai)
    assert not Rule(equals={"company": "rivera"}).matches(ai)  # equals is not contains
    assert Rule(equals={"email": "A@X.COM"}).matches(ai)
    assert not Rule(equals={"city": "london"}).matches(ai)  # a field they lack never matches


def test_rules_match_the_lists_frequency_and_id_columns() -> None:
    """`frequency` and `id` are fields of their own since lists are read exactly; rules written
    against those columns (when they were attributes) must keep matching."""
    daily = subscriber("d@x.com", frequency="daily", external_id="usr_17")
    assert Rule(equals={"frequency": "DAILY"}).matches(daily)
    assert not Rule(equals={"frequency": "weekly"}).matches(daily)
    assert Rule(contains={"id": "usr_"}).matches(daily)
    assert not Rule(equals={"frequency": "daily"}).matches(subscriber("w@x.com"))  # none chosen


def test_status_defaults_to_active_and_can_be_widened() -> None:
    gone = subscriber("gone@x.com", status="unsubscribed")
    assert Rule().matches(subscriber()) and not Rule().matches(gone)
    assert Rule(status=("active", "unsubscribed")).matches(gone)


# ---------------------------------------------------------------- the override rule


def test_each_override_comes_from_the_first_matching_segment_that_sets_it(tmp_path: Path) -> None:
    segments = load_segments(DATA / "overlapping_overrides.toml")
    run = open_run(load(with_segments(tmp_path, "overlapping_overrides.toml")), AT_DT)
    chloe, sam = run.subscribers_for([CHLOE, SAM])
    # Chloé is in robots, climate and ai (file order): intro from robots, max_articles from
    # climate (robots sets none), subject from ai.
    assert segments.overrides_for(chloe) == Overrides(
        subject="From ai: {{ articles | length }} stories", intro="Intro from robots.", max_articles=2
    )
    assert segments.overrides_for(sam) == Overrides(subject="From ai: {{ articles | length }} stories", max_articles=4)
    email = run.email(run.select(chloe))
    assert email.subject == "From ai: 2 stories" and len(email.article_ids) == 2
    assert "Intro from robots." in email.html and "Intro from climate." not in email.text


def test_reversing_the_file_order_changes_who_wins(tmp_path: Path) -> None:
    text = (DATA / "overlapping_overrides.toml").read_text(encoding="utf-8")
    blocks = text.split("[[segment]]")
    reversed_file = tmp_path / "reversed.toml"
    reversed_file.write_text("[[segment]]".join([blocks[0], *reversed(blocks[1:])]), encoding="utf-8")
    chloe = subscriber(CHLOE, tags=("ai", "climate", "robotics"))
    assert load_segments(reversed_file).overrides_for(chloe) == Overrides(
        subject="From ai: {{ articles | length }} stories", intro="Intro from climate.", max_articles=4
    )


def test_overridden_emails_are_the_fast_path_of_the_same_composer(tmp_path: Path) -> None:
    run = open_run(load(copy_sample(tmp_path)), AT_DT)
    (conor,) = run.subscribers_for(["conor.obrien@example.org"])
    selection = run.select(conor)
    fast = run.email(selection)
    overrides = run.segments.overrides_for(conor)
    direct = run.with_overrides(overrides).composer.compose_direct(selection, run.edition, run.values(conor))
    assert fast.subject.startswith("Security this week: ") and "Patch notes for humans" in fast.html
    assert (fast.subject, fast.preheader, fast.html, fast.text) == (
        direct.subject,
        direct.preheader,
        direct.html,
        direct.text,
    )
    # the plain run, without the overrides, is a different email: the overrides really apply
    assert run.prepared.email(selection, run.values(conor)).subject != fast.subject


def test_a_missing_segments_file_means_no_segments(tmp_path: Path) -> None:
    run = open_run(load(with_segments(tmp_path, None)), AT_DT)
    assert len(run.segments) == 0
    assert all(run.variant(s) is run for s in run.subscribers.subscribers)
    with pytest.raises(UnknownSegmentError, match="no segments are defined"):
        run.subscribers_for(segment="ai-readers")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("unknown_rule_key.toml", "unknown key(s) tag (known: tags, exclude_tags"),
        ("duplicate_names.toml", "segment name 'Readers' is used twice"),
        ("unknown_status.toml", "unknown status ['lapsed']"),
        ("zero_max_articles.toml", "max_articles must be a whole number of at least 1"),
        ("not_toml.toml", "not valid TOML"),
        ("bad_segment_name.toml", "`name` must be letters, digits, - or _"),
        ("invalid_test_recipient.toml", "invalid email address 'not-an-address'"),
    ],
)
def test_a_bad_segments_file_is_one_clear_error(tmp_path: Path, fixture: str, message: str) -> None:
    with pytest.raises(SegmentError) as info:
        load_segments(DATA / fixture)
    assert message in str(info.value) and fixture in str(info.value)
    config = with_segments(tmp_path, fixture)
    code, out = digest(config, "send", "--dry-run", "--at", AT)
    assert code == 1 and out.count("\n") == 1 and message in out


def test_unknown_segment_lists_the_valid_names_and_empty_says_so(tmp_path: Path) -> None:
    run = open_run(load(copy_sample(tmp_path)), AT_DT)
    with pytest.raises(UnknownSegmentError, match=r"'nope' \(segments: ai-readers, security, europe, everyone-else\)"):
        run.subscribers_for(segment="nope")
    config = with_segments(tmp_path / "empty", "segment_matching_nobody.toml")
    with pytest.raises(EmptySegmentError, match="'martians' is empty"):
        open_run(load(config), AT_DT).subscribers_for(segment="martians")


def test_check_reports_a_rule_field_no_subscriber_has(tmp_path: Path) -> None:
    config = with_segments(tmp_path, "rule_naming_a_missing_field.toml")
    problems = check(open_run(load(config), AT_DT))
    (problem,) = [p for p in problems if "londoners" in p.message and p.severity == "error"]
    assert "no subscriber has a field 'city'" in problem.message and "timezone" in problem.message
    code, out = digest(config, "check", "--at", AT)
    assert code == 1 and "no subscriber has a field 'city'" in out


def test_check_reports_a_bad_file_and_a_broken_override_without_crashing(tmp_path: Path) -> None:
    code, out = digest(with_segments(tmp_path / "a", "unknown_rule_key.toml"), "check", "--at", AT)
    assert code == 1 and "unknown key(s) tag" in out and "error(s)" in out
    code, out = digest(with_segments(tmp_path / "b", "template_override_missing.toml"), "check", "--at", AT)
    assert code == 1 and "segment 'fancy' overrides:" in out and "fancy.mjml.j2: template not found" in out
    code, out = digest(with_segments(tmp_path / "c", "segment_matching_nobody.toml"), "check", "--at", AT)
    assert code == 0 and "warning: segment 'martians' is empty" in out


def test_the_sample_checks_clean(tmp_path: Path) -> None:
    code, out = digest(copy_sample(tmp_path), "check", "--at", AT)
    assert code == 0 and "0 error(s), 0 warning(s)" in out, out


# ---------------------------------------------------------------- commands


def test_digest_segments_lists_counts_and_an_example(tmp_path: Path) -> None:
    code, out = digest(copy_sample(tmp_path), "segments")
    assert code == 0, out
    assert f"ai-readers: 2 member(s), e.g. {CHLOE}" in out
    assert "security: 1 member(s), e.g. conor.obrien@example.org" in out
    assert "everyone-else: 5 member(s), e.g. ada@example.com" in out
    code, out = digest(with_segments(tmp_path / "none", None), "segments")
    assert code == 0 and "no segments" in out


def test_send_segment_sends_only_to_its_members(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    code, out = digest(config, "send", "--yes", "--at", AT, "--segment", "ai-readers")
    assert code == 0 and "accepted: 2" in out, out
    with ledger_for(load(config)) as ledger:
        rows = ledger.rows("2026-W49")
    assert set(rows) == {CHLOE, SAM}
    assert len(rows[CHLOE].article_ids) <= 5  # the segment's max_articles
    code, out = digest(config, "send", "--yes", "--at", AT, "--segment", "nope")
    assert code == 1 and "unknown segment 'nope' (segments: ai-readers" in out


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def test_same_articles_but_different_overrides_never_share_a_request(tmp_path: Path, fake: FakeSendGrid) -> None:
    config_path = copy_sample(tmp_path, sendgrid_toml(fake.url))
    (tmp_path / "subscribers" / "subscribers.csv").write_text(
        "email,name,tags,categories,status,timezone\n"
        "london@example.com,Lon Don,,,active,Europe/London\n"
        "newyork@example.com,New York,,,active,America/New_York\n",
        encoding="utf-8",
    )
    (tmp_path / "subscribers" / "segments.toml").write_text(
        '[[segment]]\nname = "londoners"\n[segment.rule]\nequals = { timezone = "Europe/London" }\n'
        '[segment.overrides]\nintro = "Hello from the London desk."\n',
        encoding="utf-8",
    )
    cfg = load(config_path)
    run = open_run(cfg, AT_DT)
    london, newyork = (run.select(s) for s in run.subscribers.subscribers)
    assert london.content_key == newyork.content_key  # the same articles ...
    assert run.group_key(london) != run.group_key(newyork)  # ... but not the same content
    t = SendGridTransport(fake.api_key, host=fake.url, from_email=cfg.newsletter.from_email, timeout=5.0)
    with ledger_for(cfg) as ledger:
        report = send_edition(run, ledger, t, SendOptions())
    assert report.contents == 2 and report.requests == 2 and len(fake.accepted) == 2
    (to_london,) = fake.messages_for("london@example.com")
    (to_newyork,) = fake.messages_for("newyork@example.com")
    assert "Hello from the London desk." in to_london.html
    assert "Hello from the London desk." not in to_newyork.html
    assert cfg.newsletter.intro in to_newyork.html


def test_the_preview_lists_segments_with_members_and_an_example_digest(tmp_path: Path) -> None:
    code, out = digest(copy_sample(tmp_path), "preview", "--get", "/", "--at", AT)
    assert code == 0
    section = out.split('<h2 id="segments">', 1)[1].split("<h2 ", 1)[0]
    assert section.count('<tr class="segment">') == 4
    assert f'<a href="/subscribers/{CHLOE}">{CHLOE}</a>' in section and SAM in section
    code, out = digest(with_segments(tmp_path / "none", None), "preview", "--get", "/", "--at", AT)
    assert code == 0 and 'id="segments"' not in out
