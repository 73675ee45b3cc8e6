"""Delivery and engagement events: a real send through the real `sendgrid` client to FakeSendGrid,
the fake's deliveries turned into SendGrid-shaped events, signed with a generated ECDSA key and
posted to the public app's webhook; what the event store keeps, per edition, message and subscriber."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from engagement_support import engagement, newsletter, post, public_client, send_edition, state_rows
from public_support import Signer
from send_support import SAMPLE_RECIPIENTS, FakeSendGrid, ledger_for

from digest.audience import read_overlay
from digest.config import Config
from digest.events import canonical_link
from digest.store import open_events
from digest.suppressions import STATE_NAME
from digest.transports.sendgrid.webhook import from_sendgrid

NOW = 1_790_000_000
EDITION = "2026-W49"
ROBOTS = "2026/11/robot-dogs-learn-stairs"
ROBOTS_URL = "https://circuit.example.com/posts/robot-dogs-learn-stairs"


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeSendGrid) -> Config:
    """The sample edition sent for real through the fake (edition record, ledger, message ids)."""
    config = newsletter(tmp_path, monkeypatch, fake.url)
    report = send_edition(config)
    assert set(report.accepted) == SAMPLE_RECIPIENTS and report.exit_code == 0
    return config


def delivered_events(fake: FakeSendGrid) -> dict[str, dict]:
    return {e["email"]: e for e in fake.events(at=NOW - 300) if e["event"] == "delivered"}


def test_deliveries_become_events_per_edition_message_and_subscriber(sent: Config, fake: FakeSendGrid) -> None:
    signer = Signer()
    client = public_client(sent, signer, NOW)
    events = fake.events(at=NOW - 300)
    assert {e["event"] for e in events} == {"processed", "delivered"}
    post(client, signer, events, NOW)
    with open_events(sent.state.path) as store:
        counts = store.counts(EDITION)
        activity = store.activity(EDITION)
    assert counts.by_kind == {"processed": 7, "delivered": 7}
    # every event is filed under the subscriber and the request's X-Message-Id, which the ledger
    # holds for the same row: the two records meet
    with ledger_for(sent) as ledger:
        rows = ledger.rows(EDITION)
    assert set(activity) == set(rows) == SAMPLE_RECIPIENTS
    assert all(rows[s].message_id for s in rows)
    assert {s: a.message_ids for s, a in activity.items()} == {s: (r.message_id,) for s, r in rows.items()}


def test_opens_flag_apple_machine_opens_and_clicks_map_to_articles_without_utm(
    sent: Config, fake: FakeSendGrid
) -> None:
    signer = Signer()
    client = public_client(sent, signer, NOW)
    d = delivered_events(fake)
    chloe, ada, grace = d["chloe.dubois@example.net"], d["ada@example.com"], d["grace@example.org"]
    unsubscribe = "https://news.example.com/unsubscribe?token=v2.AAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBB"
    batch = [
        engagement(ada, "open", sg_machine_open=True),  # Apple MPP fetched it: no person
        engagement(chloe, "open", sg_machine_open=True),
        engagement(chloe, "open", sg_machine_open=False),  # and then Chloé read it
        engagement(grace, "open"),
        engagement(chloe, "click", url=f"{ROBOTS_URL}?utm_source=newsletter&utm_medium=email&utm_campaign=x#top"),
        engagement(chloe, "click", url=ROBOTS_URL),
        engagement(grace, "click", url=unsubscribe),  # not an article: kept without its query
    ]
    post(client, signer, list(d.values()) + batch, NOW)
    with open_events(sent.state.path) as store:
        counts = store.counts(EDITION)
        top = store.article_clicks(EDITION)
        activity = store.activity(EDITION)
    assert (counts.human_opens, counts.machine_opens) == (2, 1)  # chloe and grace; ada machine only
    assert (counts.clicks, counts.clickers) == (3, 2)
    assert [(a.article, a.clicks, a.clickers) for a in top] == [(ROBOTS, 2, 1)]
    assert top[0].title == "Robot dogs finally learn to take the stairs"
    assert activity["chloe.dubois@example.net"].articles == (ROBOTS,)
    assert activity["ada@example.com"].machine_open and not activity["ada@example.com"].human_open
    # the token in the unsubscribe link's query never reaches the store
    if (sent.state.path / STATE_NAME).exists():
        assert b"v2.AAAAAAAAAAAAAAAAAAAAAA" not in (sent.state.path / STATE_NAME).read_bytes()
    assert "v2.AAAAAAAAAAAAAAAAAAAAAA" not in repr(state_rows(sent, "SELECT * FROM engagement_events"))
    links = {row[0] for row in state_rows(sent, "SELECT link FROM engagement_events WHERE kind = 'click'")}
    assert links == {"https://news.example.com/unsubscribe", canonical_link(ROBOTS_URL)}


def test_a_repeated_batch_is_kept_once(sent: Config, fake: FakeSendGrid) -> None:
    signer = Signer()
    client = public_client(sent, signer, NOW)
    chloe = delivered_events(fake)["chloe.dubois@example.net"]
    batch = [chloe, engagement(chloe, "open"), engagement(chloe, "click", url=ROBOTS_URL)]
    post(client, signer, batch, NOW)
    post(client, signer, batch, NOW)  # SendGrid retries: at least once, never exactly once
    post(client, signer, batch[::-1], NOW)
    with open_events(sent.state.path) as store:
        counts = store.counts(EDITION)
    assert counts.clicks == 1 and counts.by_kind == {"delivered": 1, "open": 1, "click": 1}


def test_the_event_id_is_a_unique_key_in_the_schema(sent: Config) -> None:
    """Dedup is the database's: a second row with the same sg_event_id cannot exist at all."""
    from digest.events import EventsError

    row = ("e1", "sendgrid", "open", EDITION, "a@example.com", "", 1, 0, "", "", "")
    insert = (
        "INSERT INTO engagement_events (event_id, source, kind, edition, subscriber, message_id, at, machine,"
        " article, link, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    state_rows(sent, insert + " RETURNING event_id", row)
    with pytest.raises((sqlite3.IntegrityError, EventsError), match="(?i)unique|duplicate"):
        state_rows(sent, insert + " RETURNING event_id", row)


def test_bounces_deferrals_and_drops_count_and_opt_outs_still_apply(sent: Config, fake: FakeSendGrid) -> None:
    signer = Signer()
    client = public_client(sent, signer, NOW)
    d = delivered_events(fake)
    li, sam, jo = d["li.lei@example.com"], d["sam.rivera@example.net"], d["jo.mueller@example.com"]
    batch = [
        engagement(li, "deferred", attempt="1", response="421 try later"),
        engagement(li, "bounce", type="bounce", status="5.1.1", reason="550 no such user li.lei@example.com"),
        engagement(sam, "bounce", type="blocked", status="4.7.1"),
        engagement(jo, "dropped", reason="Bounced Address"),
        engagement(jo, "spamreport"),
    ]
    post(client, signer, batch, NOW)
    with open_events(sent.state.path) as store:
        counts = store.counts(EDITION)
    assert counts.by_kind == {"deferred": 1, "bounce": 2, "dropped": 1, "spamreport": 1}
    # the webhook's old job is unchanged: the permanent bounce, the drop and the complaint opt out
    optouts = {s: {o.reason for o in rows} for s, rows in read_overlay(sent.state.path).optouts.items()}
    assert optouts == {"li.lei@example.com": {"bounced"}, "jo.mueller@example.com": {"bounced", "complained"}}
    # the event keeps the bounce's type and status, not its text (which often holds the address)
    details = dict(state_rows(sent, "SELECT subscriber, detail FROM engagement_events WHERE kind = 'bounce'"))
    assert details == {"li.lei@example.com": "bounce 5.1.1", "sam.rivera@example.net": "blocked 4.7.1"}


def test_events_of_mail_digest_did_not_send_are_not_kept(sent: Config) -> None:
    signer = Signer()
    client = public_client(sent, signer, NOW)
    foreign = {"email": "x@example.com", "event": "open", "sg_event_id": "f1", "timestamp": NOW - 5}
    odd = {"email": "x@example.com", "event": "processed_later", "sg_event_id": "f2", "edition": EDITION}
    post(client, signer, [foreign, odd], NOW)
    with open_events(sent.state.path) as store:
        assert store.counts(EDITION).by_kind == {}
    assert from_sendgrid(foreign) is None and from_sendgrid(odd) is None


def test_hostile_field_values_are_capped_and_typed() -> None:
    event = from_sendgrid(
        {
            "event": "click",
            "sg_event_id": "x" * 10_000,
            "edition": "e" * 10_000,
            "subscriber": ["not", "a", "string"],
            "email": "Big@Example.com",
            "timestamp": True,  # a bool is not a timestamp
            "url": "https://a.example/" + "p" * 100_000,
            "sg_message_id": 42,
            "sg_machine_open": "true",
        }
    )
    assert event is not None
    assert len(event.event_id) == 200 and len(event.edition) == 200 and len(event.url) == 2000
    assert event.subscriber == "big@example.com" and event.at == 0 and event.message_id == "" and not event.machine


def test_sendgrid_tracking_is_off_unless_asked_and_said_in_every_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeSendGrid, fresh_database
) -> None:
    send_edition(newsletter(tmp_path / "off", monkeypatch, fake.url))
    off = fake.accepted
    assert off and all(
        b["tracking_settings"]
        == {"open_tracking": {"enable": False}, "click_tracking": {"enable": False, "enable_text": False}}
        for b in off
    )
    fake.reset()
    fresh_database()  # the second newsletter's state is its own, on PostgreSQL too
    on = newsletter(tmp_path / "on", monkeypatch, fake.url, "open_tracking = true\nclick_tracking = true\n")
    assert on.sendgrid.open_tracking and on.sendgrid.click_tracking
    send_edition(on)
    assert fake.accepted and all(
        b["tracking_settings"]
        == {"open_tracking": {"enable": True}, "click_tracking": {"enable": True, "enable_text": True}}
        for b in fake.accepted
    )


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")
