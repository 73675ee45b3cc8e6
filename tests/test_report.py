"""`digest report` and `digest status` against a hand-computed fixture.

The sample edition is sent for real through FakeSendGrid; the webhook gets a signed batch of what
happened next; one reader unsubscribes with the one-click link. Every number below was worked out
by hand from that story (see FIXTURE), not read back from the code under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from engagement_support import engagement, newsletter, post, public_client, send_edition
from public_support import Signer, token
from send_support import SAMPLE_RECIPIENTS, FakeSendGrid

from digest.cli import main
from digest.config import Config
from digest.report import reports
from digest.store import open_state

NOW = 1_790_000_000
EDITION = "2026-W49"
ROBOTS = "2026/11/robot-dogs-learn-stairs"
ROBOTS_URL = "https://circuit.example.com/posts/robot-dogs-learn-stairs?utm_source=newsletter&utm_campaign=2026-W49"
CARBON = "2026/11/carbon-capture-iceland"
CARBON_URL = "https://circuit.example.com/posts/carbon-capture-iceland"

#: The story, worked out by hand:
#:  7 sent and accepted; li.lei is deferred once then bounces; the other 6 are delivered.
#:  Opens: ada only by Apple's proxy (machine); chloe by the proxy then herself; grace and conor
#:  themselves (conor twice). Human 3 (chloe, grace, conor), machine-only 1 (ada).
#:  Clicks: chloe robots x2 and the carbon capture piece x1, grace robots x1, conor the unsubscribe link x1:
#:  5 clicks by 3 readers; CTR 3 / 6 delivered = 50%. Top: robots 3 clicks by 2, carbon capture 1 by 1.
#:  Left: conor one-click unsubscribe (after the send: attributed by time), sam's group unsubscribe
#:  and jo's spam report (SendGrid names the edition): 2 unsubscribes, 1 complaint. A suppression
#:  copied by `digest sync` (no moment of its own) is not counted.
FIXTURE = {
    "edition": EDITION,
    "sent": 7,
    "accepted": 7,
    "failed": 0,
    "ambiguous": 0,
    "delivered": 6,
    "bounced": 1,
    "deferred": 1,
    "dropped": 0,
    "opens_human": 3,
    "opens_machine": 1,
    "clickers": 3,
    "clicks": 5,
    "unsubscribes": 2,
    "complaints": 1,
    "ctr": 0.5,
    "ctr_base": "delivered",
}


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, module_engine: str) -> Iterator[Config]:
    """Told once per engine (module_engine): the state the reports read is SQLite's, then PostgreSQL's."""
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp, FakeSendGrid() as fake:
        config = newsletter(tmp, mp, fake.url, "asm_group_id = 7\n")
        assert set(send_edition(config).accepted) == SAMPLE_RECIPIENTS
        by_email = {e["email"]: e for e in fake.events(at=NOW - 900) if e["event"] == "delivered"}
        signer = Signer()
        client = public_client(config, signer, NOW)
        d = by_email
        li = d.pop("li.lei@example.com")
        batch = [*d.values()]
        batch += [engagement(li, "deferred", attempt="1"), engagement(li, "bounce", type="bounce", status="5.1.1")]
        ada, chloe, grace = d["ada@example.com"], d["chloe.dubois@example.net"], d["grace@example.org"]
        conor, sam, jo = d["conor.obrien@example.org"], d["sam.rivera@example.net"], d["jo.mueller@example.com"]
        batch += [
            engagement(ada, "open", sg_machine_open=True),
            engagement(chloe, "open", sg_machine_open=True),
            engagement(chloe, "open", sg_machine_open=False),
            engagement(grace, "open"),
            engagement(conor, "open"),
            engagement(conor, "open"),
            engagement(chloe, "click", url=ROBOTS_URL),
            engagement(chloe, "click", url=ROBOTS_URL + "#comments"),
            engagement(chloe, "click", url=CARBON_URL + "?utm_medium=email"),
            engagement(grace, "click", url=ROBOTS_URL),
            engagement(conor, "click", url="https://news.example.com/unsubscribe?token=whatever"),
            engagement(sam, "group_unsubscribe", asm_group_id=7),
            engagement(jo, "spamreport"),
        ]
        post(client, signer, batch, NOW)
        # conor leaves through the one-click link (no edition in it)
        answer = client.post(f"/unsubscribe?token={token(config, 'conor.obrien@example.org')}")
        assert answer.status_code == 200
        with open_state(config.state.path) as state:
            state.replace_synced({"unsubscribes": [("ada@example.com", "unsubscribed", "")]})
        yield config


def test_the_report_matches_the_hand_computed_fixture(story: Config) -> None:
    (report,) = reports(story, EDITION)
    got = {key: getattr(report, key) for key in FIXTURE}
    assert got == FIXTURE
    assert [(a.article, a.clicks, a.clickers) for a in report.top_articles] == [(ROBOTS, 3, 2), (CARBON, 1, 1)]
    assert report.label == "30 November 2026" and report.subscribers == ()


def test_json_for_scripts_and_aggregate_by_default(story: Config) -> None:
    result = CliRunner().invoke(main, ["--config", str(story.source), "report", "--json"])
    assert result.exit_code == 0, result.output
    (data,) = json.loads(result.output)
    assert {key: data[key] for key in FIXTURE} == FIXTURE
    assert data["top_articles"][0] == {
        "article": ROBOTS,
        "title": "Robot dogs finally learn to take the stairs",
        "clicks": 3,
        "clickers": 2,
    }
    assert data["subscribers"] is None
    text = CliRunner().invoke(main, ["--config", str(story.source), "report"]).output
    for address in SAMPLE_RECIPIENTS:  # privacy: nobody is named without --per-subscriber
        assert address not in result.output and address not in text
    assert "unique opens: 3 human, 1 machine only" in text
    assert "unique clicks: 3, click-through rate 50.0% of delivered; 5 click(s) in all" in text
    assert "unsubscribes 2, complaints 1" in text


def test_per_subscriber_only_when_asked(story: Config) -> None:
    (report,) = reports(story, EDITION, per_subscriber=True)
    lines = {s.email: s for s in report.subscribers}
    assert set(lines) == SAMPLE_RECIPIENTS
    assert lines["chloe.dubois@example.net"].opened == "human" and lines["chloe.dubois@example.net"].clicks == 3
    assert lines["chloe.dubois@example.net"].articles == (ROBOTS, CARBON)
    assert lines["ada@example.com"].opened == "machine"
    assert lines["li.lei@example.com"].bounced and not lines["li.lei@example.com"].delivered
    assert lines["jo.mueller@example.com"].left == "complaint"
    assert all(s.state == "accepted" and s.message_id for s in report.subscribers)
    text = CliRunner().invoke(main, ["--config", str(story.source), "report", "--per-subscriber"]).output
    assert "chloe.dubois@example.net [accepted] delivered; opened (human); 3 click(s)" in text


def test_status_shows_what_happened_after_the_send(story: Config) -> None:
    result = CliRunner().invoke(main, ["--config", str(story.source), "status"])
    assert result.exit_code == 0, result.output
    assert f"edition {EDITION}: accepted 7" in result.output
    assert (
        "after the send: delivered 6, bounced 1, deferred 1; opens 3 human + 1 machine; clicks 3 "
        "(50.0% of delivered); unsubscribes 2, complaints 1"
    ) in result.output


def test_nothing_sent_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)  # SQLite here; the story runs on both engines
    config = newsletter(tmp_path, monkeypatch)
    assert reports(config) == []
    output = CliRunner().invoke(main, ["--config", str(config.source), "report"]).output
    assert "nothing sent yet" in output
    assert not config.state.path.exists()  # a report creates nothing


def test_status_without_events_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)  # SQLite here; the story runs on both engines
    config = newsletter(tmp_path, monkeypatch)  # the outbox: nothing comes back by itself
    assert len(send_edition(config).accepted) == 7
    output = CliRunner().invoke(main, ["--config", str(config.source), "status"]).output
    assert "after the send: no events yet" in output
    (report,) = reports(config)
    assert (report.sent, report.accepted, report.delivered) == (7, 7, 0)
    assert report.ctr == 0.0 and report.ctr_base == "accepted"  # no delivery events: out of accepted


def test_an_unknown_edition_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)  # SQLite here; the story runs on both engines
    config = newsletter(tmp_path, monkeypatch)
    send_edition(config)
    result = CliRunner().invoke(main, ["--config", str(config.source), "report", "--edition", "2026-W01"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: edition '2026-W01' is not in the send ledger (digest status lists the editions)"
    )
