"""What the public app records, and what it tells the reader (issue 20: found by mutation testing).

The subscriber state keeps, for every opt-out, where it came from and SendGrid's own words
(support answers "why do I not get the digest?" from them); the preferences page saves exactly
what the form says, with its defaults, and says what it did.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from public_support import SECRET, Signer, client_for, public_config, token

from digest.config import Config
from digest.suppressions import read_overlay
from digest.web.public import PublicSettings

NOW = 1_790_000_000


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    return public_config(tmp_path, "[sendgrid]\nasm_group_id = 7\n")


def rows(config: Config) -> dict[str, set[tuple[str, str, str]]]:
    return {
        who: {(o.reason, o.source, o.detail) for o in found}
        for who, found in read_overlay(config.state.path).optouts.items()
    }


def post_events(config: Config, signer: Signer, events: list[dict]) -> dict:
    client = client_for(config, signer, now=lambda: NOW)
    body = json.dumps(events).encode()
    answer = client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, NOW))
    assert answer.status_code == 200, answer.text
    return answer.json()


def ev(kind: str, email: object, n: int, **extra: object) -> dict:
    return {"email": email, "event": kind, "sg_event_id": f"e{n}", "timestamp": NOW - 100 + n, **extra}


def test_each_opt_out_records_where_it_came_from_and_sendgrids_reason(config: Config) -> None:
    signer = Signer()
    post_events(
        config,
        signer,
        [
            ev("bounce", "b@example.com", 1, reason="550 5.1.1 no such user"),
            ev("bounce", "nr@example.com", 2),  # no reason given
            ev("dropped", "d@example.com", 3, reason=" Bounced Address "),
            ev("dropped", "content@example.com", 4, reason="Spam Content"),  # about one message, not the address
            ev("dropped", "noreason@example.com", 5),
            ev("spamreport", "s@example.com", 6),
            ev("unsubscribe", "u@example.com", 7),
            ev("group_unsubscribe", "g@example.com", 8, asm_group_id=7),
        ],
    )
    assert rows(config) == {
        "b@example.com": {("bounced", "webhook", "550 5.1.1 no such user")},
        "nr@example.com": {("bounced", "webhook", "")},
        "d@example.com": {("bounced", "webhook", " Bounced Address ")},
        "s@example.com": {("complained", "webhook", "spam report")},
        "u@example.com": {("unsubscribed", "webhook", "SendGrid unsubscribe")},
        "g@example.com": {("group_unsubscribed", "webhook", "asm group 7")},
    }


def test_an_event_without_a_usable_address_changes_nothing(config: Config) -> None:
    signer = Signer()
    answer = post_events(
        config,
        signer,
        [ev("spamreport", email, n) for n, email in enumerate(["", "no-at-sign", 42, None, ["a@b.c"]])],
    )
    assert answer == {"received": 5, "new": 5}
    assert rows(config) == {}


def test_a_group_resubscribe_lifts_only_the_group_unsubscribe(config: Config) -> None:
    signer = Signer()
    post_events(config, signer, [ev("group_unsubscribe", "g@example.com", 1, asm_group_id=7)])
    post_events(config, signer, [ev("bounce", "g@example.com", 2, reason="mailbox full")])
    post_events(config, signer, [ev("group_resubscribe", "g@example.com", 3, asm_group_id=7)])
    assert rows(config) == {"g@example.com": {("bounced", "webhook", "mailbox full")}}


def test_the_preferences_form_saves_what_it_says_and_says_what_it_did(config: Config) -> None:
    client = client_for(config)
    t = token(config, "grace@example.org", "preferences")
    # no action field: the form's one button saves
    saved = client.post(f"/preferences?token={t}", data={"tags": "space; Python", "categories": "Science; Business"})
    assert saved.status_code == 200 and "Your topics are saved." in saved.text
    pref = read_overlay(config.state.path).preferences["grace@example.org"]
    assert (pref.tags, pref.categories, pref.source) == (
        ("space", "Python"),
        ("Science", "Business"),
        "preferences page",
    )
    # a form without the topic fields clears them (the reader emptied both boxes)
    client.post(f"/preferences?token={t}", data={"action": "save"})
    pref = read_overlay(config.state.path).preferences["grace@example.org"]
    assert (pref.tags, pref.categories) == ((), ())
    paused = client.post(f"/preferences?token={t}", data={"action": "pause"})
    assert "Digests are paused until you resume them." in paused.text
    assert read_overlay(config.state.path).preferences["grace@example.org"].source == "preferences page"
    assert "Digests are on again." in client.post(f"/preferences?token={t}", data={"action": "resume"}).text
    gone = client.post(f"/preferences?token={t}", data={"action": "unsubscribe"})
    assert "You are unsubscribed." in gone.text
    assert rows(config)["grace@example.org"] == {("unsubscribed", "preferences page", "")}


def test_the_preferences_form_refuses_what_it_cannot_do(config: Config) -> None:
    client = client_for(config)
    t = token(config, "grace@example.org", "preferences")
    unknown = client.post(f"/preferences?token={t}", data={"action": "delete"})
    assert unknown.status_code == 400 and "Unknown action." in unknown.text
    gone = token(config, "left-the-list@example.com", "preferences")
    answer = client.post(f"/preferences?token={gone}", data={"action": "pause"})
    assert answer.status_code == 404 and "This address is not on the list any more." in answer.text
    assert not read_overlay(config.state.path).preferences


def test_the_settings_never_show_a_secret(config: Config) -> None:
    settings = PublicSettings(config, SECRET.encode(), None, previous_secrets=(b"an-old-secret-0123456789",))
    assert repr(settings) == "PublicSettings(<secrets hidden>)" == str(settings)
    assert SECRET not in f"{settings!r} {settings}"
