"""What the public app records, and what it tells the reader (issue 20: found by mutation testing).

The subscriber state keeps, for every opt-out, where it came from and SendGrid's own words
(support answers "why do I not get the digest?" from them); the preferences page saves exactly
what the form says, with its defaults, and says what it did.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from public_support import BASE_URL, SECRET, Signer, app_for, client_for, public_config, token
from starlette.testclient import TestClient

from digest.audience import read_overlay
from digest.config import Config
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


# ---------------------------------------------------------------- the webhook's answers


def test_each_webhook_refusal_says_why_in_json(config: Config) -> None:
    """SendGrid shows these answers in its delivery log: each refusal names its reason."""
    signer = Signer()
    without_key = client_for(config, None, now=lambda: NOW)
    body = b"[]"
    answer = without_key.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, NOW))
    assert (answer.status_code, answer.json()) == (503, {"error": "webhook verification key not configured"})
    client = client_for(config, signer, now=lambda: NOW)
    cases = {
        "bad signature": ({**signer.headers(body, NOW), "X-Twilio-Email-Event-Webhook-Signature": "AAAA"}, body),
        "stale timestamp": (signer.headers(body, NOW - 3600), body),
        "not a list": (signer.headers(b'{"event": "bounce"}', NOW), b'{"event": "bounce"}'),
    }
    expected = {
        "bad signature": (401, {"error": "bad signature"}),
        "stale timestamp": (401, {"error": "stale timestamp"}),
        "not a list": (400, {"error": "expected a JSON array of events"}),
    }
    for name, (headers, content) in cases.items():
        answer = client.post("/webhooks/sendgrid", content=content, headers=headers)
        assert (answer.status_code, answer.json()) == expected[name], name


def test_a_signed_timestamp_that_is_not_a_number_is_refused_as_stale(config: Config) -> None:
    """Signed over "soon" + body, as only the key's holder could: still no number, so no age."""
    signer = Signer()
    sig = base64.b64encode(signer.private.sign(b"soon[]", ec.ECDSA(hashes.SHA256()))).decode()
    headers = {"X-Twilio-Email-Event-Webhook-Signature": sig, "X-Twilio-Email-Event-Webhook-Timestamp": "soon"}
    answer = client_for(config, signer, now=lambda: NOW).post("/webhooks/sendgrid", content=b"[]", headers=headers)
    assert (answer.status_code, answer.json()) == (401, {"error": "stale timestamp"})


def test_nesting_up_to_the_limit_is_accepted(config: Config) -> None:
    from digest.web.public import MAX_WEBHOOK_DEPTH

    signer = Signer()
    client = client_for(config, signer, now=lambda: NOW)
    for depth, status in ((MAX_WEBHOOK_DEPTH, 200), (MAX_WEBHOOK_DEPTH + 1, 400)):
        body = ("[" * depth + "]" * depth).encode()
        assert client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, NOW)).status_code == status


def test_one_flooding_address_does_not_use_up_another_addresses_webhook_budget(tmp_path: Path, monkeypatch) -> None:

    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    config = public_config(tmp_path, "[serve]\nwebhook_rate_limit = 1\nrate_burst = 2\n")
    signer = Signer()
    app = app_for(config, signer, now=lambda: NOW, monotonic=lambda: 100.0)
    flood = TestClient(app, base_url=BASE_URL, client=("203.0.113.9", 5000))
    other = TestClient(app, base_url=BASE_URL, client=("198.51.100.7", 5000))
    body = b"[]"
    assert [flood.post("/webhooks/sendgrid", content=body).status_code for _ in range(3)] == [401, 401, 429]
    assert other.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, NOW)).status_code == 200


# ---------------------------------------------------------------- forms and pages


def test_a_form_too_large_is_refused_with_a_page_saying_so(config: Config) -> None:
    client = client_for(config)
    t = token(config, "ada@example.com")
    answer = client.post(f"/unsubscribe?token={t}", content=b"x" * (17 * 1024))
    assert answer.status_code == 413 and "Request too large." in answer.text
    assert not read_overlay(config.state.path).optouts


def test_an_empty_action_is_not_a_save(config: Config) -> None:
    client = client_for(config)
    t = token(config, "grace@example.org", "preferences")
    assert client.post(f"/preferences?token={t}", data={"action": "", "tags": "space"}).status_code == 400
    assert not read_overlay(config.state.path).preferences


def test_the_unsubscribe_page_names_the_newsletter_and_the_address(config: Config) -> None:
    page = client_for(config).get(f"/unsubscribe?token={token(config, 'ada@example.com')}")
    assert "Unsubscribe from The Weekly Circuit?" in page.text
    assert "<strong>ada@example.com</strong>" in page.text


# ---------------------------------------------------------------- the webhook key


def test_a_key_pasted_over_several_lines_loads_and_a_damaged_one_is_refused(config: Config) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from digest.errors import ConfigError
    from digest.transports.sendgrid.webhook import load_webhook_key

    signer = Signer()
    wrapped = "\n".join(signer.public_b64[i : i + 40] for i in range(0, len(signer.public_b64), 40))
    assert load_webhook_key("K", {"K": wrapped}) is not None
    for damaged in (signer.public_b64[:20] + "!" + signer.public_b64[20:], signer.public_b64[:-2] + "*="):
        with pytest.raises(ConfigError) as info:
            load_webhook_key("K", {"K": damaged})
        assert str(info.value) == "environment variable K does not hold an EC public key"
    rsa_der = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigError) as info:
        load_webhook_key("K", {"K": base64.b64encode(rsa_der).decode()})
    assert str(info.value) == "environment variable K does not hold an EC public key"


# ---------------------------------------------------------------- what each page says


def heading_and_message(html: str) -> tuple[str, str]:
    import re

    found = re.search(r"<h1>(.*?)</h1>\s*<p>(.*?)</p>", html, re.S)
    assert found, html
    return found.group(1), found.group(2)


def test_every_answer_a_reader_can_meet_says_what_happened(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    config = public_config(tmp_path, "[serve]\nrate_limit = 1\nrate_burst = 2\nlegacy_token_days = 1\n")
    clock = [1_800_000_000.0]
    client = client_for(config, now=lambda: clock[0], monotonic=lambda: 100.0)
    ada = token(config, "ada@example.com")  # makes the first opaque id: the transition starts now
    clock[0] += 2 * 86400  # and is over two days later
    from public_support import legacy

    answers = {
        "no token": client.get("/unsubscribe"),
        "forged": client.get("/unsubscribe?token=v2.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA"),
        "expired address link": client.get(f"/unsubscribe?token={legacy('ada@example.com')}"),
        "no such page": client.get("/admin"),
        "wrong method": client.put(f"/unsubscribe?token={ada}"),
        "too large": client.post(f"/unsubscribe?token={ada}", content=b"x" * (17 * 1024)),
        "unsubscribed": client.post(f"/unsubscribe?token={ada}", content=b"List-Unsubscribe=One-Click"),
        "too many": client.post(f"/unsubscribe?token={ada}", content=b"List-Unsubscribe=One-Click"),
    }
    expected = {
        "no token": (
            400,
            "Incomplete link",
            "This link is incomplete: it carries no token. Use the link from your email.",
        ),
        "forged": (403, "Invalid link", "This link is not valid. Use the link from your most recent email."),
        "expired address link": (
            403,
            "Invalid link",
            "This link has expired. Use the link from your most recent email.",
        ),
        "no such page": (404, "Not found", "There is no such page."),
        "wrong method": (405, "Not allowed", "Method Not Allowed"),
        "too large": (413, "Too large", "Request too large."),
        "unsubscribed": (
            200,
            "You are unsubscribed",
            "ada@example.com will get no more digests from The Weekly Circuit.",
        ),
        "too many": (429, "Too many requests", "Too many requests from your address. Please try again shortly."),
    }
    for name, answer in answers.items():
        status, title, message = expected[name]
        assert (answer.status_code, *heading_and_message(answer.text)) == (status, title, message), name
        assert "The Weekly Circuit" in answer.text, name  # every page names the newsletter
    assert answers["too many"].headers["retry-after"] == "60"


def test_the_preferences_page_shows_the_readers_own_settings(config: Config) -> None:
    client = client_for(config)
    t = token(config, "grace@example.org", "preferences")
    client.post(f"/preferences?token={t}", data={"tags": "space", "categories": "Science; Business"})
    page = client.get(f"/preferences?token={t}").text
    assert 'id="categories" name="categories" value="Science; Business"' in page
    assert '<strong id="status">active</strong>' in page and f'action="?token={t}"' in page
    client.post(f"/preferences?token={t}", data={"action": "unsubscribe"})
    page = client.get(f"/preferences?token={t}").text
    assert '<strong id="status">unsubscribed</strong>' in page and 'value="resubscribe"' in page
    # a bounced address cannot come back by itself: the way back is the newsletter's reply-to address
    post_events(config, Signer(), [ev("bounce", "ada@example.com", 1, reason="550 no such user")])
    page = client.get(f"/preferences?token={token(config, 'ada@example.com', 'preferences')}").text
    assert '<strong id="status">bounced</strong>' in page and 'value="resubscribe"' not in page
    assert 'write to <a href="mailto:editors@circuit.example.com">editors@circuit.example.com</a>' in page


def test_the_server_keeps_no_access_log_and_reads_the_proxys_client_address(config: Config) -> None:
    """Request lines carry tokens: no access log. Behind the reverse proxy, rate limits count the
    client's address from X-Forwarded-For (uvicorn trusts it from the proxy only)."""
    from digest.web.public import uvicorn_config

    settings = uvicorn_config(app_for(config))
    assert (settings.access_log, settings.proxy_headers, settings.log_level) == (False, True, "warning")


def test_each_webhook_event_is_kept_under_its_own_name(config: Config) -> None:
    import sqlite3

    from digest.suppressions import STATE_NAME

    signer = Signer()
    nameless = {"email": "n@example.com", "sg_event_id": "e3", "timestamp": NOW - 5}
    post_events(config, signer, [ev("spamreport", "s@example.com", 1), ev("delivered", "d@example.com", 2), nameless])
    conn = sqlite3.connect(f"file:{config.state.path / STATE_NAME}?mode=ro", uri=True)
    try:
        kept = dict(conn.execute("SELECT event_id, event FROM webhook_events"))
    finally:
        conn.close()
    assert kept == {"e1": "spamreport", "e2": "delivered", "e3": ""}


def test_a_batch_with_items_that_are_not_events_records_the_events(config: Config) -> None:
    answer = post_events(config, Signer(), ["bounce", 42, None, ["x"], ev("spamreport", "s@example.com", 1)])
    assert answer == {"received": 1, "new": 1}
    assert rows(config) == {"s@example.com": {("complained", "webhook", "spam report")}}


def test_a_topic_is_kept_to_100_characters(config: Config) -> None:
    client = client_for(config)
    t = token(config, "grace@example.org", "preferences")
    client.post(f"/preferences?token={t}", data={"tags": "a" * 150 + "; ok"})
    assert read_overlay(config.state.path).preferences["grace@example.org"].tags == ("a" * 100, "ok")
