"""The keep-alive pool behind the official SendGrid client (digest/transports/sendgrid/pool.py),
against real local servers: TLS with certificate checks, proxies (plain and CONNECT tunnels), the
bound on idle connections, a reset while the body is sent, and the library's own per-call options.

SendGrid is HTTPS; these servers are TLS on 127.0.0.1 with a certificate made here, so the checks
run exactly as they do against api.sendgrid.com, only with a different trusted root.
"""

from __future__ import annotations

import http.server
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from urllib.error import URLError

import pytest
from tls_support import make_certificate

from digest.transports.sendgrid.pool import ConnectionPool, pooled


class Server:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 (TLS when given a certificate) that answers 200
    with what it was sent: `seen` holds (request line, headers, body) of each request."""

    def __init__(self, tls: tuple[Path, Path] | None = None, together: int = 1) -> None:
        self.seen: list[tuple[str, Message, bytes]] = []  # headers: case-insensitive
        barrier = threading.Barrier(together, timeout=10)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append((self.requestline, self.headers, body))
                if together > 1:  # answer only once `together` requests are in flight at once
                    barrier.wait()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TunnelProxy:
    """An HTTP proxy that only does CONNECT (what HTTPS_PROXY is used for): `tunnels` records each
    CONNECT target, then bytes are passed both ways untouched (TLS runs end to end through it)."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
        self.tunnels.append(f"{method} {target}")
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pair = {client: upstream, upstream: client}
        while True:
            readable, _, _ = select.select(list(pair), [], [], 5)
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    client.close()
                    upstream.close()
                    return
                pair[sock].sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    yield monkeypatch


def trusting(cert_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_path))


def get(pool: ConnectionPool, url: str, body: bytes | None = None) -> int:
    status, _reason, _headers, _body = pool.request("POST" if body else "GET", url, body, {}, 5.0)
    return status


@pytest.mark.usefixtures("no_proxy_env")
def test_https_is_verified_and_its_connection_kept_alive(cert: tuple[Path, Path]) -> None:
    server = Server(tls=cert)
    try:
        pool = ConnectionPool(context=trusting(cert[0]))
        assert [get(pool, f"{server.url}/v3/scopes") for _ in range(3)] == [200, 200, 200]
        assert pool.opened == 1  # one TLS handshake for three requests
        pool.close()
        # a certificate nobody trusts (the system's roots do not include it): refused before any
        # request is sent, so the transport may retry it safely (URLError, never ambiguous)
        stranger = ConnectionPool()
        with pytest.raises(URLError) as refused:
            get(stranger, f"{server.url}/v3/mail/send", b"{}")
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value.reason)
        assert [line for line, _, _ in server.seen] == ["GET /v3/scopes HTTP/1.1"] * 3
    finally:
        server.close()


def test_https_goes_through_the_https_proxy_as_a_tunnel(
    cert: tuple[Path, Path], no_proxy_env: pytest.MonkeyPatch
) -> None:
    server, proxy = Server(tls=cert), TunnelProxy()
    no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
    try:
        pool = ConnectionPool(context=trusting(cert[0]))
        assert get(pool, f"{server.url}/v3/mail/send", b'{"a": 1}') == 200
        assert get(pool, f"{server.url}/v3/mail/send", b'{"a": 2}') == 200
        pool.close()
    finally:
        server.close()
        proxy.close()
    # one tunnel, kept alive for both requests; the server saw the path, not the proxy form
    assert proxy.tunnels == [f"CONNECT 127.0.0.1:{server.port}"]
    assert [(line, body) for line, _, body in server.seen] == [
        ("POST /v3/mail/send HTTP/1.1", b'{"a": 1}'),
        ("POST /v3/mail/send HTTP/1.1", b'{"a": 2}'),
    ]


def test_plain_http_goes_to_the_http_proxy_with_the_whole_url(no_proxy_env: pytest.MonkeyPatch) -> None:
    proxy = Server()  # a forward proxy is sent the absolute URL; this one answers for the origin
    no_proxy_env.setenv("HTTP_PROXY", proxy.url.removeprefix("http://"))  # host:port, no scheme
    try:
        pool = ConnectionPool()
        assert get(pool, "http://sendgrid.invalid/v3/scopes?limit=5") == 200
        pool.close()
        # and NO_PROXY is honoured: straight to the origin
        no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
        direct = Server()
        try:
            assert get(ConnectionPool(), f"{direct.url}/v3/scopes") == 200
        finally:
            direct.close()
    finally:
        proxy.close()
    assert [line for line, _, _ in proxy.seen] == ["GET http://sendgrid.invalid/v3/scopes?limit=5 HTTP/1.1"]
    assert [line for line, _, _ in direct.seen] == ["GET /v3/scopes HTTP/1.1"]


@pytest.mark.usefixtures("no_proxy_env")
@pytest.mark.parametrize(("keep", "opened"), [(1, 3), (2, 2)])
def test_at_most_keep_idle_connections_are_kept(keep: int, opened: int) -> None:
    """Two requests in flight open two connections; with keep=1 one is closed when both are done,
    so the next two in flight need a new one."""
    server = Server(together=2)  # both requests of a round are in flight at once
    pool = ConnectionPool(keep=keep)
    try:
        for _ in range(2):
            threads = [threading.Thread(target=get, args=(pool, f"{server.url}/v3/x")) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert (len(server.seen), pool.opened) == (4, opened)
    finally:
        pool.close()
        server.close()


@pytest.mark.usefixtures("no_proxy_env")
def test_a_reset_while_the_body_is_sent_is_retryable_not_ambiguous() -> None:
    """A server that drops the connection before reading the request: the body cannot have been
    acted on, so the pool says URLError (the transport retries it), not an ambiguous error."""
    listener = socket.create_server(("127.0.0.1", 0))

    def reset_each() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()  # linger 0: a RST, not a FIN

    threading.Thread(target=reset_each, daemon=True).start()
    pool = ConnectionPool()
    try:
        with pytest.raises(URLError):
            get(pool, f"http://127.0.0.1:{listener.getsockname()[1]}/v3/mail/send", b"x" * 8_000_000)
    finally:
        listener.close()
        pool.close()


@pytest.mark.usefixtures("no_proxy_env")
def test_per_call_headers_and_a_body_that_is_not_json_are_sent_as_the_library_sends_them() -> None:
    from sendgrid import SendGridAPIClient

    server = Server()
    client = SendGridAPIClient("SG.k", host=server.url)
    pool = pooled(client, timeout=5)
    try:
        answer = client.client.templates.post(request_body={"name": "Weekly"}, request_headers={"On-Behalf-Of": "sub"})
        assert answer.status_code == 200
        csv = client.client.contactdb.recipients.post(
            request_body="email\nada@example.com\n", request_headers={"Content-Type": "text/csv"}
        )
        assert csv.status_code == 200
    finally:
        pool.close()
        server.close()
    (first, h1, b1), (second, h2, b2) = server.seen
    assert (first, h1["On-Behalf-Of"], h1["Content-Type"], b1) == (
        "POST /v3/templates HTTP/1.1",
        "sub",
        "application/json",
        b'{"name": "Weekly"}',
    )
    assert (second, h2["Content-Type"], b2) == (
        "POST /v3/contactdb/recipients HTTP/1.1",
        "text/csv",
        b"email\nada@example.com\n",
    )
    assert h1["Authorization"] == h2["Authorization"] == "Bearer SG.k"
