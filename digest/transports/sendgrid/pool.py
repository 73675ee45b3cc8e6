"""Persistent, pooled HTTP connections behind the official `sendgrid` client.

python-http-client (the `sendgrid` package's HTTP layer) builds a new urllib opener, and so a new
TCP and TLS connection, for every request: at a thousand requests a send that is seconds of
handshakes. `PooledClient` is its `Client` with the one hook the library keeps for this
(`_make_request`) answered from a small pool of keep-alive `http.client` connections; URL
building, headers, the response object and the error classes a status maps to stay the
library's. Its per-call `http_request` is mirrored, less the opener it builds and a debug line
that formats every body even with logging off.

The pool is stdlib `http.client` rather than urllib3 on purpose: exactly-once needs to know
*where* a request failed. urllib3 reports a connection reset while the body is still being sent
and a lost answer as the same ProtocolError; here the phases stay apart, as urllib kept them:

* connecting (refused, DNS, TLS handshake, connect timeout) and sending the request (a reset
  mid-body, a pooled connection the server had closed): the server never got a whole request, so
  it cannot have acted on it. Raised as `URLError`, which the transport retries.
* waiting for or reading the answer: the request may have been acted on. Raised as the OSError or
  `http.client.HTTPException` it is, which the transport calls ambiguous.

A pooled connection is checked before reuse (a closed one is readable at EOF) and dropped rather
than reused when the server asked to close it.
"""

from __future__ import annotations

import http.client
import io
import json
import select
import ssl
import threading
import urllib.request
from typing import Any, cast
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from python_http_client import Client
from python_http_client.client import Response
from python_http_client.exceptions import handle_error


class ConnectionPool:
    """Idle keep-alive connections per origin, shared by threads; at most `keep` idle per origin."""

    def __init__(self, *, keep: int = 8, context: ssl.SSLContext | None = None):
        self.keep = keep
        self._context = context or ssl.create_default_context()
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self.opened = 0  #: connections made so far (a figure for tests and benchmarks)

    def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float | None
    ) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        """(status, reason, headers, body) of one request; see the module docstring for errors."""
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        origin = (parts.scheme, parts.hostname or "", parts.port or (443 if secure else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self._take(origin)
        try:
            if conn is None:
                conn = self._connect(origin, timeout)
            elif timeout is not None and conn.sock is not None:
                conn.sock.settimeout(timeout)
            proxied = conn.host != origin[1] and not secure  # an http proxy takes the whole URL
            conn.request(method, url if proxied else target, body=body, headers=headers)
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
            raise URLError(exc) from None  # nothing complete reached the server
        try:
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._give(origin, conn)
        return response.status, response.reason, response.msg, data

    def _connect(self, origin: tuple[str, str, int], timeout: float | None) -> http.client.HTTPConnection:
        scheme, host, port = origin
        proxy = _proxy_for(scheme, host)
        conn: http.client.HTTPConnection
        if scheme == "https":
            if proxy is not None:
                conn = http.client.HTTPSConnection(proxy[0], proxy[1], timeout=timeout, context=self._context)
                conn.set_tunnel(host, port)
            else:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context)
        else:
            conn = http.client.HTTPConnection(*(proxy or (host, port)), timeout=timeout)
        conn.connect()
        with self._lock:
            self.opened += 1
        return conn

    def _take(self, origin: tuple[str, str, int]) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                conn = idle.pop() if idle else None
            if conn is None or _usable(conn):
                return conn
            conn.close()

    def _give(self, origin: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.keep:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _usable(conn: http.client.HTTPConnection) -> bool:
    """An idle connection the server has not closed: nothing to read yet (EOF would be readable)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """The proxy urllib would have used for this host (HTTPS_PROXY, NO_PROXY ...), as (host, port)."""
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parts.hostname or "", parts.port or 80


class _Answer:
    """What python-http-client's `Response` reads from urllib's response object."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self._status, self._headers, self._body = status, headers, body

    def getcode(self) -> int:
        return self._status

    def read(self) -> bytes:
        return self._body

    def info(self) -> http.client.HTTPMessage:
        return self._headers


class PooledClient(Client):  # type: ignore[misc]  # python-http-client is untyped
    """python-http-client's `Client`, sending through a `ConnectionPool` instead of a new urllib
    opener per call. Child clients (`client.mail.send`) share the pool."""

    def __init__(self, *args: Any, pool: ConnectionPool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pool = pool

    def _build_client(self, name: str | None = None) -> PooledClient:
        url_path = self._url_path + [name] if name else self._url_path
        return PooledClient(
            host=self.host,
            version=self._version,
            request_headers=self.request_headers,
            url_path=url_path,
            append_slash=self.append_slash,
            timeout=self.timeout,
            pool=self.pool,
        )

    def __getattr__(self, name: str) -> Any:
        if name not in self.methods:
            return super().__getattr__(name)  # a URL segment (`client.mail.send`), or `version`
        method = name.upper()

        def http_request(
            request_body: Any = None,
            query_params: Any = None,
            request_headers: dict[str, str] | None = None,
            timeout: float | None = None,
            **_: Any,
        ) -> Response:
            """python-http-client's own `http_request`, less two costs a pool makes useless: a new
            urllib opener per call, and a debug log line that formats the whole body (~100 KB,
            4 % of a 300,000-recipient send's CPU) even with debug logging off."""
            if request_headers:
                self._update_headers(request_headers)
            if request_body is None:
                data = None
            elif self.request_headers.get("Content-Type", "application/json") != "application/json":
                data = request_body.encode("utf-8")  # not JSON: sent as given, as the library does
            else:
                self.request_headers.setdefault("Content-Type", "application/json")
                data = json.dumps(request_body).encode("utf-8")
            request = urllib.request.Request(
                self._build_url(query_params), headers=self.request_headers, data=data, method=method
            )
            return Response(self._make_request(None, request, timeout=timeout))

        return http_request

    def _make_request(self, opener: Any, request: urllib.request.Request, timeout: float | None = None) -> _Answer:
        url = request.get_full_url()
        status, reason, headers, body = self.pool.request(
            request.get_method(),
            url,
            cast(bytes | None, request.data),
            dict(request.header_items()),
            timeout or self.timeout,
        )
        if not 200 <= status < 300:
            # the library's own error classes, built the way its urllib path builds them
            raise handle_error(HTTPError(url, status, reason, headers, io.BytesIO(body)))
        return _Answer(status, headers, body)


def pooled(client: Any, *, timeout: float, pool: ConnectionPool | None = None) -> ConnectionPool:
    """Put a `PooledClient` behind a `SendGridAPIClient` (same host, headers and API version);
    returns its pool (close it when done)."""
    pool = pool or ConnectionPool()
    base = client.client
    client.client = PooledClient(
        host=base.host, request_headers=base.request_headers, version=base._version, timeout=timeout, pool=pool
    )
    return pool
