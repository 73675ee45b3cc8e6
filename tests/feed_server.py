"""A local HTTP server that serves feed files the way real sites do (ETag, Last-Modified, 304,
redirects, gzip) and misbehaves on request (endless, dripping, bombs, errors). 127.0.0.1 only."""

from __future__ import annotations

import functools
import gzip
import hashlib
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FEEDS = Path(__file__).resolve().parent / "data" / "feeds"


@functools.cache
def gzip_bomb(megabytes: int = 100) -> bytes:
    """About 100 KB of gzip that inflates to `megabytes` MB of spaces (made without holding them)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b" " * 1_000_000
    parts = [packer.compress(b"<rss>")] + [packer.compress(block) for _ in range(megabytes)]
    return b"".join([*parts, packer.flush()])


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "application/rss+xml; charset=UTF-8"
    status: int = 200
    #: "file" (conditional GETs honoured), "forever" (an endless fast stream), "drip" (one byte
    #: every 0.2 s, forever), "drip_headers" (the same inside a header), "gzip_bomb", "redirect" (to `location`), "status" (just `status`)
    mode: str = "file"
    location: str = ""
    conditional: bool = True  #: answer If-None-Match / If-Modified-Since with 304
    gzip: bool = False  #: compress when the client accepts gzip
    last_modified: str = field(default_factory=lambda: formatdate(1795000000, usegmt=True))

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'

    @classmethod
    def file(cls, name: str, **kwargs: object) -> Route:
        return cls(body=(FEEDS / name).read_bytes(), **kwargs)  # type: ignore[arg-type]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    status: int


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                route = server.routes.get(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                if route is not None and route.mode == "drip_headers":
                    server.requests.append(Seen(self.path, headers, 200))
                    # a header that never ends: only a deadline on the whole request stops a reader
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    try:
                        while not server._stop.is_set():
                            time.sleep(0.2)
                            self.wfile.write(b"a")
                            self.wfile.flush()
                    except OSError:
                        pass
                    return
                status = route.status if route is not None else 404
                if route is not None and route.mode == "file" and route.conditional:
                    if headers.get("if-none-match") == route.etag or (
                        "if-none-match" not in headers and headers.get("if-modified-since") == route.last_modified
                    ):
                        status = 304
                server.requests.append(Seen(self.path, headers, status))
                if route is None or route.mode == "status":
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route.mode == "redirect":
                    self.send_response(route.status)
                    self.send_header("Location", route.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if status == 304:
                    self.send_response(304)
                    self.send_header("ETag", route.etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", route.content_type)
                if route.mode == "file":
                    body = route.body
                    if route.gzip and "gzip" in headers.get("accept-encoding", ""):
                        body = gzip.compress(body)
                        self.send_header("Content-Encoding", "gzip")
                    self.send_header("ETag", route.etag)
                    self.send_header("Last-Modified", route.last_modified)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if route.mode == "gzip_bomb":
                    body = gzip_bomb()
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("Connection", "close")  # no length: the body ends when we close
                self.end_headers()
                try:
                    for chunk in self._endless(route.mode):
                        if server._stop.is_set():
                            break
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except OSError:
                    pass  # the client gave up: what the test wants

            def _endless(self, mode: str) -> Iterator[bytes]:
                yield b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
                item = b"<item><title>again</title><link>https://x.example/a</link></item>" * 1000
                while True:
                    if mode == "drip":
                        time.sleep(0.2)
                        yield b" "
                    else:
                        yield item

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
