"""Signups on `digest serve` through Starlette's TestClient: the form, double opt-in, the emails
as the outbox wrote them (raw bytes where the wire format matters), single use and expiry, the
abuse limits, and the same answer for every address."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from signup_support import (
    NEW,
    Clock,
    Gate,
    drain,
    form,
    html_of,
    link,
    outbox_messages,
    signup_client,
    signup_config,
    stamp_of,
    status_of,
    subscribe,
    text_of,
    views,
)

from digest.cli import main
from digest.config import Config
from digest.store import open_signups, open_state

pytestmark = pytest.mark.usefixtures("engine")  # the state on SQLite, then on PostgreSQL


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return signup_config(tmp_path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(config: Config, clock: Clock):
    with signup_client(config, clock) as c:  # the lifespan runs: the worker stops with the app
        yield c


# ---------------------------------------------------------------- the page


def test_the_form_offers_the_contents_topics_a_consent_line_and_nothing_else(client) -> None:
    page = client.get("/subscribe")
    assert page.status_code == 200
    html = page.text
    assert "<h1>Subscribe to The Weekly Circuit</h1>" in html
    # topics: what the sample's articles carry, in their canonical spelling, each once
    tags = re.findall(r'name="tag" value="([^"]+)"', html)
    categories = re.findall(r'name="category" value="([^"]+)"', html)
    assert "Climate" in tags and "Security" in categories
    assert len({t.casefold() for t in tags}) == len(tags)
    # the consent line is the configured text, beside a required checkbox
    assert re.search(r'<input type="checkbox" id="consent" name="consent" value="yes" required>', html)
    assert "I want to receive The Weekly Circuit by email." in html
    # a honeypot hidden from people and a signed stamp
    assert 'name="website" tabindex="-1"' in html and 'aria-hidden="true"' in html
    assert stamp_of(html).startswith("s1.")
    # the usual headers of the public app; no script without a CAPTCHA
    assert (
        page.headers["cache-control"] == "no-store"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    assert "<script" not in html


def test_case_variant_tags_are_offered_once_as_the_articles_spell_them_most(tmp_path: Path) -> None:
    config = signup_config(tmp_path, "topics = 5\n")
    content = config.content.path
    for n, tag in enumerate(["Open-Source", "open-source", "Open-Source", "Rust", "rust"]):
        (content / f"extra-{n}.md").write_text(
            f"---\ntitle: Extra {n}\ndate: 2026-11-2{n}\ntags: [{tag}]\n---\nBody.\n", encoding="utf-8"
        )
    with signup_client(config) as c:
        tags = re.findall(r'name="tag" value="([^"]+)"', c.get("/subscribe").text)
    assert "Open-Source" in tags and "open-source" not in tags
    assert len(re.findall(r'name="(?:tag|category)" value=', c.get("/subscribe").text)) <= 5


# ---------------------------------------------------------------- double opt-in, end to end


def test_signup_confirm_welcome_and_the_next_send_includes_them_exactly_once(config, client, clock) -> None:
    answer = subscribe(client, clock, NEW, name="New Reader", tag=["Climate", "No-Such-Topic"])
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    # pending: in the state, not on the list any command sees
    with open_signups(config) as store:
        assert store.signup(NEW).status == "pending"  # type: ignore[union-attr]
    assert status_of(config, NEW) is None

    [(raw, msg)] = outbox_messages(config, "confirm")
    head = raw.split(b"\n\n", 1)[0]
    assert b"Subject: Confirm your subscription to The Weekly Circuit\n" in head
    assert b"To: New Reader <new.reader@example.org>" in head
    # raw List-* headers: the cancel link (never one that confirms), one-click, the list's id
    cancel = re.search(rb"\nList-Unsubscribe: <(https://news\.example\.com/subscribe/cancel\?token=[^>]+)>\n", head)
    assert cancel and b"\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\n" in head
    assert b"\nList-Id: <weekly.circuit.example.com>\n" in head
    assert b"confirm" not in cancel.group(1)
    assert "Topics: Climate." in text_of(msg)  # the unknown topic was dropped
    assert NEW not in link(msg)  # never the address in a URL
    assert link(msg) in html_of(msg).replace("&amp;", "&")

    # A GET (a link scanner) shows a button and confirms nothing
    page = client.get(link(msg))
    assert page.status_code == 200 and "Confirm my subscription" in page.text and 'method="post"' in page.text
    assert status_of(config, NEW) is None

    done = client.post(link(msg))
    assert done.status_code == 200 and "Welcome to The Weekly Circuit" in done.text
    assert "/preferences?token=v2." in done.text
    drain(client)
    assert status_of(config, NEW) == "active"
    [(raw, welcome)] = outbox_messages(config, "welcome")
    head = raw.split(b"\n\n", 1)[0]
    assert b"Subject: Welcome to The Weekly Circuit\n" in head
    assert re.search(rb"\nList-Unsubscribe: <https://news\.example\.com/unsubscribe\?token=v2\.[^>]+>\n", head)
    assert b"\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\n" in head
    assert "Climate" in text_of(welcome)

    # the next send: the new subscriber once, with the topic they chose; a rerun sends nothing more
    runner = CliRunner()
    env = {"DIGEST_SECRET": "public-support-secret-7c1e9a3b5d"}
    first = runner.invoke(main, ["--config", str(config.source), "send", "--yes", "--at", "2026-11-30T00:00"], env=env)
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, ["--config", str(config.source), "send", "--yes", "--at", "2026-11-30T00:00"], env=env)
    assert again.exit_code == 0, again.output
    sent = [p for p in config.output.path.glob("2026-*/*.eml") if p.name == f"{NEW}.eml"]
    assert len(sent) == 1
    assert b"Climate" in sent[0].read_bytes()


def test_a_confirmation_link_works_once(config, client, clock) -> None:
    subscribe(client, clock)
    [(_, msg)] = outbox_messages(config, "confirm")
    assert "Welcome" in client.post(link(msg)).text
    second = client.post(link(msg))
    assert second.status_code == 200 and "Already confirmed" in second.text
    drain(client)
    assert len(outbox_messages(config, "welcome")) == 1  # one welcome, however often it is pressed


def test_a_confirmation_link_expires(config, client, clock) -> None:
    subscribe(client, clock)
    [(_, msg)] = outbox_messages(config, "confirm")
    clock.advance(48 * 3600 + 60)
    assert client.get(link(msg)).status_code == 410
    gone = client.post(link(msg))
    assert gone.status_code == 410 and "expired" in gone.text
    assert "<title>Link expired · The Weekly Circuit</title>" in gone.text
    assert status_of(config, NEW) is None


def test_forged_or_cross_purpose_tokens_are_refused(config, client, clock) -> None:
    subscribe(client, clock)
    [(_, msg)] = outbox_messages(config, "confirm")
    token = link(msg).split("token=")[1]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.post(f"/subscribe/confirm?token={tampered}").status_code == 403
    # the cancel token (what a mail app's unsubscribe button posts to) never confirms
    cancel = link(msg, "cancel").split("token=")[1]
    assert client.post(f"/subscribe/confirm?token={cancel}").status_code == 403
    assert client.post("/subscribe/confirm").status_code == 400
    assert status_of(config, NEW) is None


def test_one_click_on_the_confirmation_email_cancels_the_request(config, client, clock) -> None:
    subscribe(client, clock)
    [(_, msg)] = outbox_messages(config, "confirm")
    # what Gmail posts (RFC 8058) to the List-Unsubscribe URL
    answer = client.post(link(msg, "cancel"), content=b"List-Unsubscribe=One-Click")
    assert answer.status_code == 200 and "will not be subscribed" in answer.text
    assert client.post(link(msg)).status_code == 410
    with open_signups(config) as store:
        assert store.signup(NEW) is None
    assert status_of(config, NEW) is None


def test_after_confirming_the_confirmation_emails_unsubscribe_button_unsubscribes(config, client, clock) -> None:
    subscribe(client, clock)
    [(_, msg)] = outbox_messages(config, "confirm")
    client.post(link(msg))
    assert status_of(config, NEW) == "active"
    client.post(link(msg, "cancel"), content=b"List-Unsubscribe=One-Click")
    assert status_of(config, NEW) == "unsubscribed"


# ---------------------------------------------------------------- abuse


def test_the_honeypot_is_answered_as_a_success_and_nothing_happens(config, client, clock) -> None:
    real = subscribe(client, clock, "someone@example.org")
    trapped = subscribe(client, clock, "victim@example.org", website="http://spam.example")
    assert trapped.status_code == real.status_code == 200 and trapped.text == real.text
    assert [m for _, m in outbox_messages(config, "confirm") if "victim" in m["To"]] == []
    with open_signups(config) as store:
        assert store.signup("victim@example.org") is None


def test_a_form_sent_too_fast_or_without_a_stamp_is_shown_again(config, client, clock) -> None:
    page = client.get("/subscribe")
    data = {"email": NEW, "consent": "yes", "website": "", "started": stamp_of(page.text), "tag": "Climate"}
    fast = client.post("/subscribe", data=data)  # the same second the page was served
    assert fast.status_code == 200 and "One more step" in fast.text
    assert f'value="{NEW}"' in fast.text and 'value="Climate" checked' in fast.text  # kept, not lost
    for started in ("", "s1.1.AAAAAAAAAAAAAAAAAAAAAAAA", stamp_of(page.text) + "x"):
        clock.advance(10)
        assert "One more step" in client.post("/subscribe", data={**data, "started": started}).text
    clock.advance(25 * 3600)  # a day-old page
    shown = client.post("/subscribe", data=data)
    assert "One more step" in shown.text
    drain(client)
    assert outbox_messages(config, "confirm") == []
    # the page shown again carries a fresh stamp that works
    clock.advance(10)
    assert "Check your inbox" in client.post("/subscribe", data={**data, "started": stamp_of(shown.text)}).text


def test_invalid_address_or_missing_consent_is_said_next_to_the_field(config, client, clock) -> None:
    bad = client.post("/subscribe", data=form(client, clock, "not an address"))
    assert bad.status_code == 400 and 'aria-invalid="true"' in bad.text and 'role="alert"' in bad.text
    no_consent = client.post("/subscribe", data=form(client, clock, NEW, consent=""))
    assert no_consent.status_code == 400 and "Tick the box" in no_consent.text
    drain(client)
    assert outbox_messages(config, "confirm") == []


def test_per_client_limit_refuses_before_reading_the_form(tmp_path: Path, clock: Clock) -> None:
    config = signup_config(tmp_path, "per_ip_per_hour = 2\n")
    with signup_client(config, clock) as client:
        answers = [client.post("/subscribe", data=form(client, clock, f"r{n}@example.org")) for n in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[2].headers["retry-after"]) >= 1


def test_no_more_than_n_confirmation_emails_a_day_to_one_address(tmp_path: Path, clock: Clock) -> None:
    config = signup_config(tmp_path, "per_ip_per_hour = 0\nper_address_per_day = 3\n")
    with signup_client(config, clock) as client:
        answers = [subscribe(client, clock, "Victim@Example.org") for _ in range(6)]
        assert {a.text for a in answers} == {answers[0].text}  # the same answer, sent or not
        assert len(outbox_messages(config, "confirm")) == 3
        clock.advance(24 * 3600)
        subscribe(client, clock, "victim@example.org")
    assert len(outbox_messages(config, "confirm")) == 4


def test_every_address_gets_the_same_answer_and_the_request_never_waits_on_its_lookup(config, client, clock) -> None:
    with open_state(config) as state:
        state.opt_out("grace@example.org", "unsubscribed", "one-click")
    addresses = [
        NEW,  # unknown
        "ada@example.com",  # subscribed
        "grace@example.org",  # unsubscribed: may come back
        "bo.unce@example.org",  # bounced on the list
        "pat.former@example.com",  # unsubscribed on the list
    ]
    gate = Gate(client)  # the worker is busy: anything the request waited on would hang here
    answers = [client.post("/subscribe", data=form(client, clock, a)) for a in addresses]
    assert views(client).worker.pending == len(addresses) + 1  # all queued, none handled yet
    gate.open()
    drain(client)
    first = answers[0]
    for a in answers:
        assert a.status_code == first.status_code == 200
        assert a.content == first.content
        assert {k: v for k, v in a.headers.items() if k != "date"} == {
            k: v for k, v in first.headers.items() if k != "date"
        }
    # what happened differs (only in the background): new and the unsubscribed ones were asked to
    # confirm; the subscriber and the bounced address got nothing
    to = sorted(m["To"].addresses[0].addr_spec for _, m in outbox_messages(config, "confirm"))
    assert to == sorted([NEW, "grace@example.org", "pat.former@example.com"])


# ---------------------------------------------------------------- coming back, and what a form cannot lift


def test_an_unsubscribed_reader_comes_back_through_the_form(config, client, clock) -> None:
    with open_state(config) as state:
        state.opt_out("grace@example.org", "unsubscribed", "one-click")
    assert status_of(config, "grace@example.org") == "unsubscribed"
    subscribe(client, clock, "grace@example.org", tag=["Security"])
    [(_, msg)] = outbox_messages(config, "confirm")
    client.post(link(msg))
    assert status_of(config, "grace@example.org") == "active"
    # the list's row is still the record; the topics are the ones chosen now
    from digest.audience import load_effective

    grace = next(s for s in load_effective(config).subscribers if s.id == "grace@example.org")
    assert grace.name == "Grace Hopper" and grace.tags == ("Security",)
    # and a row the list marks unsubscribed comes back too (until the list says something new)
    subscribe(client, clock, "pat.former@example.com")
    client.post(link(outbox_messages(config, "confirm")[-1][1]))
    assert status_of(config, "pat.former@example.com") == "active"


def test_a_bounce_or_complaint_is_never_lifted_by_the_form(config, client, clock) -> None:
    with open_state(config) as state:
        state.opt_out("conor.obrien@example.org", "complained", "webhook")
    subscribe(client, clock, "conor.obrien@example.org")
    subscribe(client, clock, "bo.unce@example.org")  # bounced on the list
    assert outbox_messages(config, "confirm") == []
    assert status_of(config, "conor.obrien@example.org") == "complained"
    assert status_of(config, "bo.unce@example.org") == "bounced"


def test_a_complaint_recorded_after_the_request_stops_the_confirmation(config, client, clock) -> None:
    subscribe(client, clock, "li.lei@example.com")  # subscribed already: nothing sent
    assert outbox_messages(config, "confirm") == []
    with open_state(config) as state:
        state.opt_out(NEW, "unsubscribed", "one-click")
    subscribe(client, clock, NEW)
    [(_, msg)] = outbox_messages(config, "confirm")
    with open_state(config) as state:
        state.opt_out(NEW, "bounced", "webhook")
    refused = client.post(link(msg))
    assert refused.status_code == 403 and status_of(config, NEW) is None


def test_pending_signups_never_receive_digests_and_are_purged(tmp_path: Path, clock: Clock) -> None:
    config = signup_config(tmp_path, "pending_days = 2\nkeep_ip_days = 1\n")
    with signup_client(config, clock) as client:
        subscribe(client, clock, NEW)
        with open_signups(config) as store:
            [consent] = store.consents_for(NEW)
        assert consent.ip == "testclient"  # kept for a day, as configured
    assert status_of(config, NEW) is None
    runner = CliRunner()
    env = {"DIGEST_SECRET": "public-support-secret-7c1e9a3b5d"}
    sent = runner.invoke(main, ["--config", str(config.source), "send", "--yes", "--at", "2026-11-30T00:00"], env=env)
    assert sent.exit_code == 0 and not list(config.output.path.glob(f"2026-*/{NEW}.eml"))
    # nothing is old enough yet
    assert "0 pending signup(s)" in runner.invoke(main, ["--config", str(config.source), "subscribers", "purge"]).output
    with open_signups(config) as store:
        from datetime import UTC, datetime, timedelta

        later = datetime.now(UTC) + timedelta(days=3)
        counts = store.purge(pending_before=later - timedelta(days=2), ip_before=later - timedelta(days=1))
        assert (counts.pending, counts.requests) == (1, 1)
        assert store.signup(NEW) is None and store.consents_for(NEW) == []


def test_ip_addresses_are_not_recorded_unless_configured(config, client, clock) -> None:
    subscribe(client, clock, NEW)
    with open_signups(config) as store:
        [consent] = store.consents_for(NEW)
    assert consent.ip is None
    assert consent.consent_text.startswith("I want to receive The Weekly Circuit")
    assert consent.source == "form"


def test_what_is_typed_is_shown_back_escaped(config, client, clock) -> None:
    evil = '<script>alert(1)</script>"'
    page = client.post("/subscribe", data=form(client, clock, "x@", name=evil))
    assert page.status_code == 400
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text


def test_the_preferences_page_lets_an_unsubscribed_reader_back_in_but_not_a_bounced_one(config, client) -> None:
    from public_support import token

    t = token(config, "grace@example.org", "preferences")
    client.post(f"/preferences?token={t}", data={"action": "unsubscribe"})
    assert status_of(config, "grace@example.org") == "unsubscribed"
    back = client.post(f"/preferences?token={t}", data={"action": "resubscribe"})
    assert back.status_code == 200 and "Welcome back" in back.text
    assert status_of(config, "grace@example.org") == "active"
    with open_signups(config) as store:
        [consent] = store.consents_for("grace@example.org")
    assert consent.source == "preferences page" and consent.confirmed_at is not None
    with open_state(config) as state:
        state.opt_out("ada@example.com", "bounced", "webhook")
    b = token(config, "ada@example.com", "preferences")
    assert 'value="resubscribe"' not in client.get(f"/preferences?token={b}").text
    assert client.post(f"/preferences?token={b}", data={"action": "resubscribe"}).status_code == 403
    assert status_of(config, "ada@example.com") == "bounced"


def test_a_reader_the_list_itself_marks_unsubscribed_can_come_back_from_the_preferences_page(
    config, client, clock, machine_zone
) -> None:
    """pat.former's row in the list says unsubscribed (they left in the site's own system). Coming
    back from the preferences page records what the row said, so the row no longer wins; the
    consent is stamped with the app's clock as an instant, whatever zone the server is set to."""
    from public_support import token

    machine_zone("Asia/Tokyo")  # a server not on UTC: a local wall time would be 9 h off
    assert status_of(config, "pat.former@example.com") == "unsubscribed"
    clock.advance(3600)
    t = token(config, "pat.former@example.com", "preferences")
    before = clock()
    back = client.post(f"/preferences?token={t}", data={"action": "resubscribe"})
    after = clock()
    assert back.status_code == 200
    assert '<p class="notice" id="saved">Welcome back: digests are on again.</p>' in back.text
    assert status_of(config, "pat.former@example.com") == "active"
    with open_signups(config) as store:
        [consent] = store.consents_for("pat.former@example.com")
    assert consent.confirmed_at is not None and int(before) <= consent.confirmed_at.timestamp() <= after
    # and a bounced row is refused, saying why in the page
    b = token(config, "bo.unce@example.org", "preferences")
    refused = client.post(f"/preferences?token={b}", data={"action": "resubscribe"})
    assert refused.status_code == 403
    assert ">This address cannot be subscribed again from here.<" in refused.text
    assert status_of(config, "bo.unce@example.org") == "bounced"


def test_signup_subscribers_use_the_preferences_page_like_anyone(config, client, clock) -> None:
    subscribe(client, clock, NEW, tag=["Climate"])
    [(_, msg)] = outbox_messages(config, "confirm")
    page = client.post(link(msg))
    prefs = re.search(r'href="https://news\.example\.com(/preferences\?token=[^"]+)"', page.text).group(1)
    assert f"<strong>{NEW}</strong>" in client.get(prefs).text
    client.post(prefs, data={"action": "pause"})
    assert status_of(config, NEW) == "paused"


def test_signups_are_off_unless_enabled(tmp_path: Path) -> None:
    from public_support import client_for, public_config

    config = public_config(tmp_path)
    with client_for(config) as c:
        assert c.get("/subscribe").status_code == 404
        assert c.post("/api/subscribe", json={}).status_code in (404, 405)


# ---------------------------------------------------------------- the JSON API


def test_the_json_api_reads_half_a_surrogate_pair_as_a_replacement_character(config, client, clock) -> None:
    """`"\\ud800"` is valid JSON, and no email can carry it: the confirmation would have failed at
    every try. It reads as U+FFFD, and the signup goes through."""
    origin = "https://circuit.example.com"
    started = client.get("/api/subscribe", headers={"Origin": origin}).json()["started"]
    clock.advance(10)
    fields = {"email": NEW, "name": "Zo<h>e", "consent": True, "started": started, "tags": ["climate<l>"]}
    # JSON's own escapes for half a pair, as a hostile or buggy client writes them
    body = json.dumps({**fields, "consent_text": "Yes <l>"}).replace("<h>", "\\ud800").replace("<l>", "\\udfff")
    answer = client.post(
        "/api/subscribe", content=body.encode(), headers={"Origin": origin, "Content-Type": "application/json"}
    )
    assert answer.status_code == 202, answer.text
    drain(client)
    [(_, msg)] = outbox_messages(config, "confirm")
    assert "Zo\ufffde" in str(msg["To"]) or "Zo\ufffde" in text_of(msg)
    with open_signups(config) as store:
        [consent] = store.consents_for(NEW)
    assert "\ufffd" in consent.consent_text


def test_the_json_api_for_the_sites_own_form(config, client, clock) -> None:
    origin = "https://circuit.example.com"
    info = client.get("/api/subscribe", headers={"Origin": origin})
    assert info.status_code == 200 and info.headers["access-control-allow-origin"] == origin
    data = info.json()
    assert data["newsletter"] == "The Weekly Circuit" and "Climate" in data["topics"]["tags"]
    pre = client.options(
        "/api/subscribe",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert pre.status_code == 204 and "POST" in pre.headers["access-control-allow-methods"]
    clock.advance(10)
    body = {
        "email": NEW,
        "consent": True,
        "started": data["started"],
        "tags": ["climate"],
        "consent_text": "Yes, send it.",
    }
    known = {**body, "email": "ada@example.com"}
    a = client.post("/api/subscribe", json=body, headers={"Origin": origin})
    b = client.post("/api/subscribe", json=known, headers={"Origin": origin})
    assert a.status_code == b.status_code == 202 and a.content == b.content
    assert a.headers["access-control-allow-origin"] == origin
    drain(client)
    [(_, msg)] = outbox_messages(config, "confirm")
    assert "Topics: Climate." in text_of(msg)  # the canonical spelling
    with open_signups(config) as store:
        [consent] = store.consents_for(NEW)
    assert (consent.source, consent.consent_text) == ("api", "Yes, send it.")


def test_the_json_api_refuses_other_origins_and_odd_bodies(config, client, clock) -> None:
    stamp = client.get("/api/subscribe").json()["started"]
    clock.advance(10)
    body = {"email": NEW, "consent": True, "started": stamp}
    other = client.post("/api/subscribe", json=body, headers={"Origin": "https://evil.example"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    pre = client.options(
        "/api/subscribe", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in pre.headers
    assert client.post("/api/subscribe", content=b"email=x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert (
        client.post("/api/subscribe", content=b"[" * 50, headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    missing = client.post("/api/subscribe", json={"email": NEW, "consent": True})
    assert missing.status_code == 400 and missing.json()["field"] == "started"
    invalid = client.post("/api/subscribe", json={**body, "email": "nope"})
    assert invalid.status_code == 400 and invalid.json()["field"] == "email"
    drain(client)
    assert outbox_messages(config, "confirm") == []


def test_a_full_worker_queue_refuses_everyone_alike(config, client, clock) -> None:
    worker = views(client).worker
    gate = Gate(client)
    while worker.submit(lambda: None):
        pass
    answer = client.post("/subscribe", data=form(client, clock, NEW))
    gate.open()
    assert answer.status_code == 503 and "<title>Busy · The Weekly Circuit</title>" in answer.text


# ---------------------------------------------------------------- cadences


def test_the_form_offers_the_configs_cadences_and_the_choice_reaches_the_send(tmp_path: Path, clock: Clock) -> None:
    from digest.audience import load_effective
    from digest.cadences import Cadences

    config = signup_config(tmp_path, '[schedule]\ndaily = "0 7 * * *"\nweekly = "0 9 * * MON"\n')
    with signup_client(config, clock) as client:
        page = client.get("/subscribe").text
        assert re.findall(r'name="frequency" value="(\w+)"( checked)?', page) == [("daily", ""), ("weekly", " checked")]
        assert client.get("/api/subscribe").json()["cadences"] == ["daily", "weekly"]
        subscribe(client, clock, NEW, frequency="daily")
        subscribe(client, clock, "other@example.org", frequency="hourly")  # not offered: the default
        for _, msg in outbox_messages(config, "confirm"):
            client.post(link(msg))
        assert "How often: daily." in text_of(outbox_messages(config, "confirm")[0][1])
        drain(client)
    merged = {s.id: s for s in load_effective(config).subscribers}
    cadences = Cadences.of(config)
    assert cadences is not None
    assert cadences.cadence_of(merged[NEW]) == "daily"
    assert cadences.cadence_of(merged["other@example.org"]) == "weekly"
    runner = CliRunner()
    env = {"DIGEST_SECRET": "public-support-secret-7c1e9a3b5d"}
    args = ["--config", str(config.source), "send", "--yes", "--at", "2026-11-30T07:00", "--cadence"]
    assert runner.invoke(main, [*args, "daily"], env=env).exit_code == 0
    assert runner.invoke(main, [*args, "weekly"], env=env).exit_code == 0
    daily = {p.name for p in config.output.path.glob("2026-11-30/*.eml")}
    assert f"{NEW}.eml" in daily and "other@example.org.eml" not in daily
    assert [p.parent.name for p in config.output.path.glob("2026-W*/other@example.org.eml")]


# ---------------------------------------------------------------- the CAPTCHA hook


@pytest.fixture
def siteverify():
    """A local stand-in for a CAPTCHA provider's siteverify endpoint: "good" passes, all else fails."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs

    seen: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            seen.append(form)
            body = json.dumps({"success": form.get("response") == ["good"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/siteverify", seen
    server.shutdown()


def test_a_configured_captcha_is_shown_and_checked_with_the_provider(tmp_path, clock, siteverify, monkeypatch) -> None:
    url, seen = siteverify
    monkeypatch.setenv("DIGEST_CAPTCHA_SECRET", "captcha-secret-value")
    config = signup_config(
        tmp_path, f'captcha = "turnstile"\ncaptcha_site_key = "site-key-1"\ncaptcha_verify_url = "{url}"\n'
    )
    with signup_client(config, clock) as client:
        page = client.get("/subscribe")
        assert 'class="cf-turnstile" data-sitekey="site-key-1"' in page.text
        assert '<script src="https://challenges.cloudflare.com/turnstile/v0/api.js"' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src https://challenges.cloudflare.com" in csp and "default-src 'none'" in csp
        refused = client.post("/subscribe", data=form(client, clock, NEW, **{"cf-turnstile-response": "bad"}))
        assert refused.status_code == 400 and "complete the check" in refused.text
        passed = client.post("/subscribe", data=form(client, clock, NEW, **{"cf-turnstile-response": "good"}))
        assert "Check your inbox" in passed.text
        drain(client)
    assert len(outbox_messages(config, "confirm")) == 1
    assert [s["secret"] for s in seen] == [["captcha-secret-value"]] * 2 and seen[0]["remoteip"] == ["testclient"]


def test_an_unreachable_captcha_provider_lets_nothing_through(tmp_path, clock, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_CAPTCHA_SECRET", "captcha-secret-value")
    config = signup_config(
        tmp_path, 'captcha = "hcaptcha"\ncaptcha_site_key = "k"\ncaptcha_verify_url = "http://127.0.0.1:9/x"\n'
    )
    with signup_client(config, clock) as client:
        answer = client.post("/subscribe", data=form(client, clock, NEW, **{"h-captcha-response": "good"}))
        assert answer.status_code == 400
        drain(client)
    assert outbox_messages(config, "confirm") == []


def test_the_welcome_shows_the_last_editions_most_clicked_articles(config, client, clock) -> None:
    from digest.events import Event
    from digest.store import open_events

    runner = CliRunner()
    env = {"DIGEST_SECRET": "public-support-secret-7c1e9a3b5d"}
    assert (
        runner.invoke(
            main, ["--config", str(config.source), "send", "--yes", "--at", "2026-11-30T00:00"], env=env
        ).exit_code
        == 0
    )
    with open_events(config) as events:
        [edition] = events.editions()
        articles = events.articles(edition.edition)
        clicked = articles[-1]  # the last by id: first only because readers clicked it
        events.record(
            [
                Event(f"c{n}", "redirect", "click", edition.edition, f"r{n}@x.org", 1, article=clicked.article)
                for n in range(3)
            ]
        )
    subscribe(client, clock, NEW)
    client.post(link(outbox_messages(config, "confirm")[0][1]))
    drain(client)
    [(_, welcome)] = outbox_messages(config, "welcome")
    text = text_of(welcome)
    assert f"Read lately, from {edition.label}:" in text
    listed = [a.title for a in articles if a.title in text]
    assert len(listed) == 3 and text.index(clicked.title) < min(text.index(t) for t in listed if t != clicked.title)
    assert clicked.url in text and clicked.title in html_of(welcome)


def test_hostile_bodies_are_refused_or_bounded(config, client, clock) -> None:
    big = form(client, clock, NEW, name="x" * 20_000)
    assert client.post("/subscribe", data=big).status_code == 413
    many = form(client, clock, NEW)
    body = "&".join(f"tag=t{n}" for n in range(2000)) + "&" + "&".join(f"{k}={v}" for k, v in many.items())
    answer = client.post(
        "/subscribe", content=body[:16_000].encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code in (200, 400)  # too many fields: read as an empty form, never a 500
    deep = client.post(
        "/api/subscribe", content=b'{"a":' * 40 + b"1" + b"}" * 40, headers={"Content-Type": "application/json"}
    )
    assert deep.status_code == 400
    junk = client.post(
        "/subscribe", content=b"\xff\xfe\x00garbage", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert junk.status_code == 200 and "One more step" in junk.text  # read as an empty form: shown again
    drain(client)
    assert outbox_messages(config, "confirm") == []
