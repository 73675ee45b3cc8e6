"""Kept-alive connections against a new connection per request, through the official client.

    .venv/bin/python benchmarks/connections.py [--requests 600] [--threads 4] [--kb 100]

Starts a local SendGrid-like endpoint (HTTP, and HTTPS with a throwaway self-signed certificate)
in another process, then posts the same mail/send bodies with the stock `SendGridAPIClient` (a
new urllib opener, so a new TCP and TLS connection, per request) and with the same client
behind `transports/sendgrid/pool.py` (kept-alive connections), from --threads threads. Prints requests per
second and connections opened for each. On loopback the handshake is cheap; over the internet each
new connection also costs round trips. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEY = "SG.benchmark-key"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections = 0
    lock = threading.Lock()

    def setup(self) -> None:
        super().setup()
        with self.lock:
            type(self).connections += 1

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.send_header("X-Message-Id", "x")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        body = str(type(self).connections).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(folder: Path, tls: bool) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
    (folder / ("port-tls" if tls else "port")).write_text(str(server.server_address[1]))
    server.serve_forever()


def certificate(folder: Path) -> None:
    """cert.pem and key.pem for 127.0.0.1 in `folder`: the tests' own certificate maker."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tls_support import make_certificate  # type: ignore[import-not-found]

    make_certificate(folder)


def run(host: str, pooled: bool, requests: int, threads: int, body: dict[str, object]) -> float:
    """Requests per second."""
    sys.path.insert(0, str(ROOT))
    from sendgrid import SendGridAPIClient

    from digest.transports.sendgrid.pool import ConnectionPool
    from digest.transports.sendgrid.pool import pooled as pool_behind

    local = threading.local()

    def client() -> SendGridAPIClient:
        if not hasattr(local, "client"):
            local.client = SendGridAPIClient(KEY, host=host)
            local.client.client.timeout = 30
            if pooled:
                pool_behind(local.client, timeout=30, pool=shared)
        return local.client

    shared = ConnectionPool(keep=threads)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: client().client.mail.send.post(request_body=body), range(requests)))
    elapsed = time.perf_counter() - started
    shared.close()
    return requests / elapsed


def _connections(host: str) -> int:
    with urllib.request.urlopen(f"{host}/c") as answer:
        return int(answer.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--kb", type=int, default=100, help="size of each request body")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.tls)

    folder = Path(tempfile.mkdtemp(prefix="digest-connections-"))
    certificate(folder)
    servers = [subprocess.Popen([sys.executable, __file__, "--serve", str(folder), *t]) for t in ([], ["--tls"])]
    try:
        for name in ("port", "port-tls"):
            while not (folder / name).exists() or not (folder / name).read_text():
                time.sleep(0.05)
        os.environ["SSL_CERT_FILE"] = str(folder / "cert.pem")  # both clients trust the throwaway certificate
        body = {
            "personalizations": [{"to": [{"email": "a@example.com"}]}],
            "from": {"email": "news@example.com"},
            "subject": "Hi",
            "content": [{"type": "text/plain", "value": "x" * (args.kb * 1000)}],
        }
        print(
            f"{args.requests} requests of {args.kb} KB from {args.threads} threads, load average {os.getloadavg()[0]:.2f}"
        )
        for scheme, name in (("http", "port"), ("https", "port-tls")):
            host = f"{scheme}://127.0.0.1:{(folder / name).read_text()}"
            for pooled in (False, True):
                before = _connections(host) if scheme == "http" else None
                rate = run(host, pooled, args.requests, args.threads, body)
                label = "kept alive" if pooled else "new each  "
                extra = ""
                if before is not None:
                    after = _connections(host)
                    extra = f", {after - before - 1} connection(s)"
                print(f"  {scheme:5} {label}: {rate:7.0f} requests/s{extra}")
    finally:
        for server in servers:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
