"""Helpers for the engagement tests: a newsletter sent for real (through FakeSendGrid or the
outbox), SendGrid's signed webhook batches, and engagement events shaped as SendGrid posts them."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from public_support import BASE_URL, ENDPOINT, SECRET, Signer
from send_support import AT_DT, copy_sample, sendgrid_toml
from starlette.testclient import TestClient

from digest.config import Config, load_config
from digest.send import SendOptions, SendReport, send
from digest.web.public import PublicSettings, create_public_app

API_KEY = "SG.test-key"


def newsletter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_url: str = "", extra: str = "") -> Config:
    """The sample newsletter with the public endpoint, sending through the fake when given."""
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    toml = sendgrid_toml(fake_url, one_click=False).replace("[sending]\n", ENDPOINT) if fake_url else ENDPOINT
    return load_config(copy_sample(tmp_path, toml + extra))


def send_edition(config: Config, at: Any = AT_DT, **options: Any) -> SendReport:
    """`digest send --yes` as the library runs it (sync, edition record, ledger, transport)."""
    return send(config, at, SendOptions(**options))


def public_client(config: Config, signer: Signer, now: float) -> TestClient:
    app = create_public_app(PublicSettings(config, SECRET.encode(), signer.key, now=lambda: now))
    return TestClient(app, base_url=BASE_URL, follow_redirects=False)


def post(client: TestClient, signer: Signer, events: list[dict[str, Any]], timestamp: int) -> Any:
    body = json.dumps(events).encode()
    response = client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, timestamp))
    assert response.status_code == 200, response.text
    return response


def engagement(delivered: dict[str, Any], kind: str, **extra: Any) -> dict[str, Any]:
    """An open or click SendGrid would post later for the same message (same custom_args)."""
    keep = {k: v for k, v in delivered.items() if k not in ("event", "sg_event_id", "response")}
    return {**keep, "event": kind, "sg_event_id": secrets.token_urlsafe(16), **extra}


def state_rows(config: Config, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query on the state's tables, on whichever engine the test runs (`?` placeholders)."""
    from digest.store import open_events

    with open_events(config) as store, store._read() as db:  # type: ignore[attr-defined]
        return [tuple(r) for r in db.execute(sql, args).fetchall()]
