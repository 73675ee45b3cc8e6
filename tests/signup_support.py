"""Helpers for the signup tests: the sample newsletter with signups on, a settable clock, filling
the form as a browser would, and reading the emails the outbox (or an SMTP peer) captured."""

from __future__ import annotations

import email
import re
import threading
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from public_support import BASE_URL, client_for, public_config
from starlette.testclient import TestClient

from digest.audience import load_effective
from digest.config import Config

SIGNUP = "[signup]\nenabled = true\n"
NEW = "new.reader@example.org"
_STARTED = re.compile(r'name="started" value="([^"]+)"')
_LINK = re.compile(r"(https://news\.example\.com/subscribe/(?:confirm|cancel)\?token=[A-Za-z0-9._-]+)")


class Clock:
    """The app's clock (`PublicSettings.now`): real time plus what a test moved it on by."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def signup_config(tmp_path: Path, extra: str = "") -> Config:
    return public_config(tmp_path, SIGNUP + extra)


def signup_client(config: Config, clock: Clock | None = None, **settings: Any) -> TestClient:
    return client_for(config, now=clock or Clock(), **settings)


def views(client: TestClient) -> Any:
    return client.app.state.signup  # type: ignore[attr-defined]


def drain(client: TestClient) -> None:
    assert views(client).worker.drain(60), "the signup worker did not finish"


def stamp_of(page: str) -> str:
    found = _STARTED.search(page)
    assert found, "the form carries no fill-time stamp"
    return found.group(1)


def form(client: TestClient, clock: Clock, address: str, **fields: Any) -> dict[str, Any]:
    """What a person's browser posts: the page fetched, the form filled, some seconds later."""
    page = client.get("/subscribe")
    assert page.status_code == 200
    clock.advance(10)
    data: dict[str, Any] = {
        "email": address,
        "name": "",
        "consent": "yes",
        "website": "",
        "started": stamp_of(page.text),
    }
    data.update(fields)
    return data


def subscribe(client: TestClient, clock: Clock, address: str = NEW, **fields: Any) -> Any:
    answer = client.post("/subscribe", data=form(client, clock, address, **fields))
    drain(client)
    return answer


def outbox_messages(config: Config, kind: str) -> list[tuple[bytes, EmailMessage]]:
    """(raw bytes, parsed) of every `kind` ("confirm", "welcome") email the outbox holds."""
    out = []
    for path in sorted(config.output.path.glob(f"signup-{kind}-*/*.eml")):
        raw = path.read_bytes()
        out.append((raw, parse(raw)))
    return out


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def link(msg: EmailMessage, kind: str = "confirm") -> str:
    """The path (with its token) of the confirm or cancel link in an email's text part."""
    for url in _LINK.findall(text_of(msg)):
        if f"/subscribe/{kind}?" in url:
            return url.removeprefix(BASE_URL)
    raise AssertionError(f"no {kind} link in the email")


def status_of(config: Config, address: str) -> str | None:
    found = [s for s in load_effective(config).subscribers if s.id == address]
    return found[0].status if found else None


def stored_bytes(config: Config) -> bytes:
    """Everything the state and the ledger hold: on SQLite their files' bytes (free pages and the
    write-ahead log included), on PostgreSQL every row of every table as text."""
    from digest.store import locate

    where = locate(config)
    if not where.url:
        return b"".join(p.read_bytes() for p in sorted(config.state.path.glob("*.sqlite3*")))
    import psycopg

    out = []
    with psycopg.connect(where.url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            out += [r[0] for r in conn.execute(f'SELECT t::text FROM "{table}" t')]
    return "\n".join(out).encode()


class Gate:
    """A job that holds the signup worker until released: what runs after it waits."""

    def __init__(self, client: TestClient) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

        def hold() -> None:
            self.started.set()
            self.release.wait(60)

        assert views(client).worker.submit(hold)
        assert self.started.wait(10)

    def open(self) -> None:
        self.release.set()
