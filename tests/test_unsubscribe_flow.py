"""Done when: an unsubscribe through the header, the footer link, the preferences page, a SendGrid
webhook event or a SendGrid suppression each stop the next `digest send` from reaching that
subscriber. Each case starts from the real email `digest build` writes for them."""

from __future__ import annotations

import base64
import csv
import email
import email.policy
import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from send_support import AT, AT_DT, SAMPLE_RECIPIENTS, FakeSendGrid, copy_sample, load, sendgrid_toml
from starlette.testclient import TestClient

from digest.cli import main
from digest.config import Config
from digest.pipeline import open_run
from digest.web.public import PublicSettings, create_public_app

SECRET = "flow-test-secret-5b7d9e1f3a"
VICTIM = "ada@example.com"
ENDPOINT = '\n[sending]\nunsubscribe_url = "https://news.example.com/unsubscribe"\n'


def cli(config: Config, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config.source), *args])
    assert result.exit_code == 0, result.output
    return result.output


def built_email(config: Config) -> email.message.EmailMessage:
    cli(config, "build", "--at", AT, "--subscriber", VICTIM, "--out", str(config.source.parent / "built"))
    raw = (config.source.parent / "built" / f"{VICTIM}.eml").read_bytes()
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == "news.example.com"
    return f"{parts.path}?{parts.query}"


def client_for(config: Config, key: ec.EllipticCurvePublicKey | None = None) -> TestClient:
    return TestClient(
        create_public_app(PublicSettings(config, SECRET.encode(), key)), base_url="https://news.example.com"
    )


def sent_to(config: Config) -> set[str]:
    folder = config.output.path
    return {p.name.removesuffix(".eml") for p in folder.glob("*/*.eml")}


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    return load(copy_sample(tmp_path, ENDPOINT))


def test_the_header_one_click_unsubscribe(config: Config) -> None:
    msg = built_email(config)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (url,) = re.findall(r"<(https://[^>]+)>", msg["List-Unsubscribe"])
    # What Gmail does: POST the body to the header's URL, no cookies, no confirmation.
    response = client_for(config).post(
        path_of(url),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert_next_send_skips_the_victim(config, "status is unsubscribed")


def test_the_footer_link_page_and_its_confirm_button(config: Config) -> None:
    text = built_email(config).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    url = re.search(r"Unsubscribe: (https://\S+)", text).group(1)  # type: ignore[union-attr]
    client = client_for(config)
    page = client.get(path_of(url))
    assert page.status_code == 200
    cli(config, "send", "--yes", "--at", AT, "--subscriber", "grace@example.org")
    assert VICTIM not in sent_to(config)  # the GET alone did nothing ...
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)"', page.text))
    assert client.post(urlsplit(url).path + action, data=fields).status_code == 200  # ... the button does
    assert_next_send_skips_the_victim(config, "status is unsubscribed")


def test_the_preferences_page_pause(config: Config) -> None:
    run = open_run(config, AT_DT)
    (ada,) = run.subscribers_for([VICTIM])
    url = run.values(ada)["preferences_url"]  # what `recipient.preferences_url` prints in a template
    assert url.startswith("https://news.example.com/preferences?token=")
    client = client_for(config)
    assert client.get(path_of(url)).status_code == 200
    assert client.post(path_of(url), data={"action": "pause"}).status_code == 200
    assert_next_send_skips_the_victim(config, "status is paused")


def test_a_sendgrid_webhook_event(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    body = json.dumps([{"email": VICTIM, "event": "spamreport", "sg_event_id": "ev-1", "timestamp": 1}]).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", base64.b64encode(der).decode())
    from digest.web.public import public_settings

    # the settings `digest serve` builds
    client = TestClient(create_public_app(public_settings(config)), base_url="https://news.example.com")
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }
    assert client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 200
    assert_next_send_skips_the_victim(config, "status is complained")


def test_a_sendgrid_suppression_pulled_by_send_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSendGrid() as fake:
        monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
        config = load(copy_sample(tmp_path, sendgrid_toml(fake.url)))
        fake.suppressions["unsubscribes"] = [{"email": VICTIM.upper(), "created": 1}]
        output = cli(config, "send", "--yes", "--at", AT)  # no `digest sync` first: send runs it
        assert "status is unsubscribed" in output
        assert set(fake.delivered_to()) == SAMPLE_RECIPIENTS - {VICTIM}


def assert_next_send_skips_the_victim(config: Config, reason: str) -> None:
    output = cli(config, "send", "--yes", "--at", AT)
    assert f"x {reason}" in output
    got = sent_to(config)
    assert VICTIM not in got
    assert SAMPLE_RECIPIENTS - {VICTIM} <= got  # everyone else still gets theirs


def test_export_writes_the_merged_list_and_never_touches_the_original(config: Config) -> None:
    original = config.subscribers.path.read_bytes()
    client = client_for(config)
    run = open_run(config, AT_DT)
    ada, chloe = run.subscribers_for(["chloe.dubois@example.net", VICTIM])  # in list order
    assert ada.email == VICTIM
    client.post(path_of(run.values(chloe)["preferences_url"]), data={"action": "save", "tags": "space"})
    client.post(path_of(run.unsubscribe_url(ada)), content=b"List-Unsubscribe=One-Click")
    out = config.source.parent / "merged.csv"
    result = CliRunner().invoke(main, ["--config", str(config.source), "subscribers", "export", "--out", str(out)])
    assert result.exit_code == 0 and "2 changed by the state" in result.output
    rows = {r["email"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert rows[VICTIM]["status"] == "unsubscribed" and rows["chloe.dubois@example.net"]["tags"] == "space"
    assert rows["li.lei@example.com"]["tags"] == "space;hardware" and rows["li.lei@example.com"]["company"] == ""
    assert config.subscribers.path.read_bytes() == original
    refused = CliRunner().invoke(
        main, ["--config", str(config.source), "subscribers", "export", "--out", str(config.subscribers.path)]
    )
    assert refused.exit_code == 1 and "refusing to overwrite" in refused.output
    assert config.subscribers.path.read_bytes() == original
    # Read back, the export is a list the tool accepts as it is.
    stdout = CliRunner().invoke(main, ["--config", str(config.source), "subscribers", "export"]).stdout
    assert stdout == out.read_text(encoding="utf-8")


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")
