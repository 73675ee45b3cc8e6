"""Helpers for the public app's tests: a newsletter with a public endpoint, SendGrid's webhook
signer, the app run by real uvicorn (as `digest serve` runs it) on a free port, and raw HTTP."""

from __future__ import annotations

import base64
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.testclient import TestClient

from digest.config import Config, load_config
from digest.store import open_state
from digest.tokens import make_legacy_token, make_token
from digest.transports.sendgrid.webhook import load_webhook_key
from digest.web.preview import bind
from digest.web.public import PublicSettings, create_public_app, uvicorn_config

ROOT = Path(__file__).resolve().parent.parent
SECRET = "public-support-secret-7c1e9a3b5d"
PUBLIC = "news.example.com"
BASE_URL = f"https://{PUBLIC}"
ENDPOINT = f'[sending]\nunsubscribe_url = "{BASE_URL}/unsubscribe"\n'


def public_config(dest: Path, extra_toml: str = "") -> Config:
    """The sample newsletter with the public endpoint configured (and `extra_toml` appended)."""
    for name in ("content", "templates", "subscribers"):
        shutil.copytree(ROOT / name, dest / name)
    text = (ROOT / "digest.toml").read_text(encoding="utf-8") + "\n" + ENDPOINT + extra_toml
    (dest / "digest.toml").write_text(text, encoding="utf-8")
    return load_config(dest / "digest.toml")


class Signer:
    """Plays SendGrid: a P-256 key pair; signs `timestamp + body` and sends base64 DER signatures."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_b64 = base64.b64encode(der).decode()  # as SendGrid's settings page shows it

    @property
    def key(self) -> ec.EllipticCurvePublicKey:
        key = load_webhook_key("K", {"K": self.public_b64})
        assert key is not None
        return key

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
        }


def app_for(config: Config, signer: Signer | None = None, **settings: object) -> Starlette:
    key = signer.key if signer else None
    return create_public_app(PublicSettings(config, SECRET.encode(), key, **settings))  # type: ignore[arg-type]


def client_for(config: Config, signer: Signer | None = None, **settings: object) -> TestClient:
    return TestClient(app_for(config, signer, **settings), base_url=BASE_URL)


def token_id(config: Config, email: str) -> str:
    """The subscriber's opaque id, made as a send makes it."""
    with open_state(config) as state:
        return state.token_ids([email.casefold()])[email.casefold()]


def token(config: Config, email: str, purpose: str = "unsubscribe", secret: str = SECRET) -> str:
    return make_token(token_id(config, email), secret.encode(), purpose)


def legacy(email: str, purpose: str = "unsubscribe", secret: str = SECRET) -> str:
    """A link as digest made them before opaque ids: the address inside."""
    return make_legacy_token(email.casefold(), secret.encode(), purpose)


@contextmanager
def real_server(app: Starlette) -> Iterator[tuple[str, int]]:
    """`app` under real uvicorn, configured as `digest serve` configures it, on 127.0.0.1 and a
    free port; yields (host, port)."""
    sock = bind("127.0.0.1", 0)
    with serving(uvicorn.Server(uvicorn_config(app)), sock) as address:
        yield address


@contextmanager
def serving(server: uvicorn.Server, sock: socket.socket) -> Iterator[tuple[str, int]]:
    """Run a uvicorn `server` on `sock` in a thread until the block ends; yields (host, port)."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the public server did not start")
        time.sleep(0.02)
    try:
        yield sock.getsockname()[:2]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def raw_request(address: tuple[str, int], request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send `request` as given (headers and all, nothing added) and return the raw answer."""
    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(request)
        return read_answer(conn)


def read_answer(conn: socket.socket) -> bytes:
    """Everything up to the end of the first answer (by Content-Length) or until the peer closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        None,
    )
    while length is not None and len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def head_of(answer: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (names lower-cased) of a raw answer."""
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if ":" in line)}
    return status, headers
