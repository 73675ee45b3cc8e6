"""One bounded HTTP GET: a deadline for the whole request and a cap on the body, whatever the peer does.

Used for feeds (feeds.py). A socket timeout alone restarts with every byte, so a server dripping
one byte a second would never trip it: a watchdog shuts the socket at the deadline instead. The
body is read in chunks and counted after decompression, so a stream that never ends or a gzip
bomb is refused at the cap, never held in memory.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from digest.errors import FeedError

MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Response:
    status: int  #: 200 or 304
    url: str  #: after redirects
    headers: Mapping[str, str]  #: lower-case names
    body: bytes = b""


def fetch(url: str, headers: Mapping[str, str], *, timeout: float, max_bytes: int) -> Response:
    """GET `url` (following up to 5 redirects, http(s) only) within `timeout` seconds in all.

    Raises `FeedError` for anything but a 200 or 304, a body over `max_bytes` (after
    decompression), or the deadline passing at any point: connecting, waiting, or reading."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        try:
            parts = urlsplit(url)
        except ValueError:
            raise FeedError(f"not a valid URL: {url[:100]!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FeedError(f"not an http(s) URL: {url[:100]!r}")
        status, response_headers, body = _request(parts, headers, deadline, max_bytes)
        if status in (301, 302, 303, 307, 308):
            location = response_headers.get("location")
            if not location:
                raise FeedError(f"HTTP {status} without a Location")
            url = urljoin(url, location.strip())
            continue
        if status == 304:
            return Response(304, url, response_headers)
        if status != 200:
            raise FeedError(f"HTTP {status}")
        return Response(200, url, response_headers, body)
    raise FeedError(f"more than {MAX_REDIRECTS} redirects")


def _request(
    parts: SplitResult, headers: Mapping[str, str], deadline: float, max_bytes: int
) -> tuple[int, dict[str, str], bytes]:
    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FeedError("timed out")
        return remaining

    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise FeedError(f"bad port in {parts.netloc!r}") from None
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=left(), context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=left())
    # A watchdog ends the request at the deadline whatever the peer does: a socket timeout alone
    # restarts with every byte, so a server dripping one byte a second would never trip it.
    watchdog = threading.Timer(left(), _shut, args=(conn,))
    watchdog.daemon = True
    try:
        watchdog.start()
        conn.connect()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path, headers=dict(headers))
        response = conn.getresponse()
        response_headers = {k.lower(): v for k, v in response.getheaders()}
        if response.status != 200:
            return response.status, response_headers, b""
        length = response_headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise FeedError(f"larger than {max_bytes // 1_000_000} MB ({int(length) // 1_000_000} MB announced)")
        body = _read_body(response, response_headers.get("content-encoding", ""), max_bytes, left)
        return response.status, response_headers, body
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= deadline:
            raise FeedError("timed out") from None
        raise FeedError(_describe(exc)) from None
    finally:
        watchdog.cancel()
        conn.close()


def _shut(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv, unlike close()
        except OSError:
            pass


def _read_body(response: http.client.HTTPResponse, encoding: str, max_bytes: int, left: Callable[[], float]) -> bytes:
    encoding = encoding.strip().lower()
    inflate: zlib._Decompress | None
    if encoding in ("gzip", "x-gzip"):
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
    elif encoding == "deflate":
        inflate = zlib.decompressobj()
    elif encoding in ("", "identity"):
        inflate = None
    else:
        raise FeedError(f"unsupported Content-Encoding {encoding!r}")
    chunks: list[bytes] = []
    size = 0
    too_big = FeedError(f"larger than {max_bytes // 1_000_000} MB")
    while True:
        left()
        chunk = response.read1(65536)
        if not chunk:
            break
        if inflate is not None:
            # max_length: a gzip bomb inflates at most one cap's worth before it is refused
            chunk = inflate.decompress(chunk, max_bytes - size + 1)
            if inflate.unconsumed_tail:
                raise too_big
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        chunks.append(chunk)
    if inflate is not None:
        rest = inflate.flush()
        size += len(rest)
        if size > max_bytes:
            raise too_big
        chunks.append(rest)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")
