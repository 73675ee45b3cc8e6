"""POST /webhooks/sendgrid: signed like SendGrid signs (ECDSA P-256 over timestamp + raw body),
de-duplicated, replay-limited; a bad signature writes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import public_support
import pytest
from cryptography.hazmat.primitives import serialization
from starlette.testclient import TestClient

from digest.audience import read_overlay
from digest.config import Config, load_config
from digest.errors import ConfigError
from digest.suppressions import STATE_NAME
from digest.transports.sendgrid.webhook import load_webhook_key
from digest.web.public import PublicSettings, create_public_app

SECRET = b"webhook-tests-secret-0123456789"
NOW = 1_790_000_000
#: No public URL is configured here: the app answers loopback names only.
BASE_URL = "http://127.0.0.1"


class Signer(public_support.Signer):
    """SendGrid's signer, at this module's fixed clock unless told otherwise."""

    def headers(self, body: bytes, timestamp: int | None = NOW) -> dict[str, str]:
        return super().headers(body, timestamp)


def event(kind: str, email: str = "ada@example.com", eid: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"email": email, "event": kind, "sg_event_id": eid or f"{kind}-{email}", "timestamp": NOW - 60, **extra}


@pytest.fixture
def signer() -> Signer:
    return Signer()


def make_config(tmp_path: Path, asm_group_id: int = 0) -> Config:
    (tmp_path / "digest.toml").write_text(
        f'[newsletter]\nname = "Test"\n[state]\npath = "state"\n[sendgrid]\nasm_group_id = {asm_group_id}\n',
        encoding="utf-8",
    )
    return load_config(tmp_path / "digest.toml")


def client_for(config: Config, signer: Signer | None) -> TestClient:
    key = load_webhook_key("K", {"K": signer.public_b64}) if signer else None
    return TestClient(create_public_app(PublicSettings(config, SECRET, key, now=lambda: NOW)), base_url=BASE_URL)


def post(client: TestClient, signer: Signer, events: list[dict[str, Any]], **kw: Any) -> Any:
    body = json.dumps(events).encode()
    return client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, **kw))


def reasons(config: Config) -> dict[str, set[str]]:
    return {sub: {o.reason for o in rows} for sub, rows in read_overlay(config).optouts.items()}


def test_each_suppressing_event_is_recorded_and_others_are_not(tmp_path: Path, signer: Signer) -> None:
    config = make_config(tmp_path, asm_group_id=7)
    client = client_for(config, signer)
    events = [
        event("bounce", "b@example.com", reason="550 no such user"),
        event("bounce", "blocked@example.com", type="blocked"),  # temporary: not the address's fault
        event("dropped", "d@example.com", reason="Bounced Address"),
        event("dropped", "content@example.com", reason="Spam Content (if spam checker app enabled)"),
        event("spamreport", "s@example.com"),
        event("unsubscribe", "u@example.com"),
        event("group_unsubscribe", "g@example.com", asm_group_id=7),
        event("delivered", "ok@example.com"),
        event("open", "ok@example.com"),
    ]
    response = post(client, signer, events)
    assert response.status_code == 200 and response.json() == {"received": 9, "new": 9}
    assert reasons(config) == {
        "b@example.com": {"bounced"},
        "d@example.com": {"bounced"},
        "s@example.com": {"complained"},
        "u@example.com": {"unsubscribed"},
        "g@example.com": {"group_unsubscribed"},
    }


def test_repeated_events_are_harmless(tmp_path: Path, signer: Signer) -> None:
    config = make_config(tmp_path, asm_group_id=7)
    client = client_for(config, signer)
    assert post(client, signer, [event("group_unsubscribe", eid="e0", asm_group_id=7)]).json()["new"] == 1
    assert reasons(config) == {"ada@example.com": {"group_unsubscribed"}}
    events = [
        event("group_unsubscribe", eid="e1", asm_group_id=7),
        event("group_resubscribe", eid="e2", asm_group_id=7),
    ]
    events[1]["timestamp"] = NOW - 30
    assert post(client, signer, events).json() == {"received": 2, "new": 2}
    assert reasons(config) == {}  # unsubscribed, then resubscribed
    # SendGrid delivers again: the unsubscribe must not come back on its own.
    assert post(client, signer, [events[0]]).json() == {"received": 1, "new": 0}
    assert reasons(config) == {}


def test_events_in_one_batch_apply_in_the_order_they_happened(tmp_path: Path, signer: Signer) -> None:
    config = make_config(tmp_path, asm_group_id=7)
    resub = event("group_resubscribe", eid="late", asm_group_id=7)
    unsub = event("group_unsubscribe", eid="early", asm_group_id=7)
    unsub["timestamp"], resub["timestamp"] = NOW - 100, NOW - 50
    post(client_for(config, signer), signer, [resub, unsub])  # SendGrid does not promise order
    assert reasons(config) == {}
    # the other way round ends unsubscribed: the order, not the batch, decides
    again = [event("group_unsubscribe", eid="u2", asm_group_id=7), event("group_resubscribe", eid="r2", asm_group_id=7)]
    again[0]["timestamp"], again[1]["timestamp"] = NOW - 10, NOW - 20
    post(client_for(config, signer), signer, again)
    assert reasons(config) == {"ada@example.com": {"group_unsubscribed"}}


def test_another_lists_group_is_ignored(tmp_path: Path, signer: Signer) -> None:
    config = make_config(tmp_path, asm_group_id=42)
    post(
        client_for(config, signer),
        signer,
        [
            event("group_unsubscribe", "other@example.com", asm_group_id=9),
            event("group_unsubscribe", "nogroup@example.com"),  # no group named: not ours either
            event("group_unsubscribe", asm_group_id=42),
        ],
    )
    assert reasons(config) == {"ada@example.com": {"group_unsubscribed"}}


def test_without_a_group_configured_every_group_event_is_ignored(tmp_path: Path, signer: Signer) -> None:
    config = make_config(tmp_path)  # asm_group_id = 0: no group is ours
    events = [
        event("group_unsubscribe", "any@example.com", asm_group_id=9),
        event("group_unsubscribe", "nogroup@example.com"),
        event("unsubscribe", "u@example.com"),
    ]
    assert post(client_for(config, signer), signer, events).json() == {"received": 3, "new": 3}
    assert reasons(config) == {"u@example.com": {"unsubscribed"}}


@pytest.mark.parametrize("attack", ["no headers", "wrong key", "tampered body", "garbage signature", "moved timestamp"])
def test_a_bad_signature_gets_401_and_writes_nothing(tmp_path: Path, signer: Signer, attack: str) -> None:
    config = make_config(tmp_path)
    client = client_for(config, signer)
    body = json.dumps([event("unsubscribe")]).encode()
    headers = signer.headers(body)
    if attack == "no headers":
        headers = {}
    elif attack == "wrong key":
        headers = Signer().headers(body)
    elif attack == "tampered body":
        body = body.replace(b"ada@", b"bob@")
    elif attack == "garbage signature":
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "not base64!!"
    else:
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(NOW - 1)
    response = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 401
    assert not (config.state.path / STATE_NAME).exists()


def test_a_replayed_request_outside_the_window_is_refused(tmp_path: Path, signer: Signer) -> None:
    config = make_config(tmp_path)
    client = client_for(config, signer)
    stale = NOW - config.sendgrid.webhook_max_age - 1
    response = post(client, signer, [event("unsubscribe")], timestamp=stale)
    assert response.status_code == 401 and "stale" in response.text
    assert not (config.state.path / STATE_NAME).exists()
    assert post(client, signer, [event("unsubscribe")], timestamp=NOW - 5).status_code == 200


def test_without_a_key_the_webhook_accepts_nothing(tmp_path: Path, signer: Signer) -> None:
    config = make_config(tmp_path)
    response = post(client_for(config, None), signer, [event("unsubscribe")])
    assert response.status_code == 503
    assert not (config.state.path / STATE_NAME).exists()


def test_a_signed_body_that_is_not_an_event_list_is_400(tmp_path: Path, signer: Signer) -> None:
    config = make_config(tmp_path)
    client = client_for(config, signer)
    body = b'{"event": "unsubscribe"}'
    assert client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body)).status_code == 400
    assert client.get("/webhooks/sendgrid").status_code == 405


def test_the_key_loads_as_sendgrid_shows_it_or_as_pem_and_a_bad_one_is_an_error(signer: Signer) -> None:
    pem = (
        signer.private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert load_webhook_key("K", {"K": pem}) is not None
    assert load_webhook_key("K", {"K": signer.public_b64}) is not None
    assert load_webhook_key("K", {}) is None
    with pytest.raises(ConfigError, match="K does not hold an EC public key") as info:
        load_webhook_key("K", {"K": "c2VjcmV0LXZhbHVl"})
    assert "c2VjcmV0LXZhbHVl" not in str(info.value)


def test_real_time_is_the_default_clock(tmp_path: Path, signer: Signer) -> None:
    """Without an injected clock the window is measured against now (a fresh request passes)."""
    config = make_config(tmp_path)
    key = load_webhook_key("K", {"K": signer.public_b64})
    client = TestClient(create_public_app(PublicSettings(config, SECRET, key)), base_url=BASE_URL)
    body = json.dumps([event("unsubscribe")]).encode()
    assert client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, int(time.time()))).json() == {
        "received": 1,
        "new": 1,
    }


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")


def test_two_replicas_given_the_same_events_at_once_apply_each_once(tmp_path: Path, signer: Signer) -> None:
    """Two `digest serve` replicas (two apps, two connections or pools) on one state, SendGrid
    delivering the same batch to both at the same moment: the unique key decides, not a read."""
    import threading

    config = make_config(tmp_path)
    events = [event("unsubscribe", f"r{i}@example.com") for i in range(150)]
    events += [event("group_resubscribe", f"r{i}@example.com", eid=f"lift-{i}") for i in range(0, 150, 3)]
    replicas = [client_for(config, signer), client_for(config, signer)]
    barrier = threading.Barrier(2)
    answers: list[Any] = []

    def deliver(client: TestClient) -> None:
        barrier.wait(timeout=60)
        answers.append(post(client, signer, events))

    threads = [threading.Thread(target=deliver, args=(c,)) for c in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [a.status_code for a in answers] == [200, 200]
    from digest.store import open_state

    with open_state(config) as state:
        recorded = list(state.export_table("webhook_events"))  # type: ignore[attr-defined]
    assert len(recorded) == len(events)  # each event once, whoever won it
    assert set(reasons(config)) == {f"r{i}@example.com" for i in range(150)}
