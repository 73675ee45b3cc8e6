"""What stands in front of the public app's views: security headers on every answer, the Host
names it answers to, per-client rate limits, and body size and nesting limits.

Each guard is small and runs before anything is parsed or written, so abuse costs the server as
little as possible: a refused Host never reaches a view, a flood of POSTs is refused before its
body is read, an oversized body is refused while it arrives (never buffered whole), and a webhook
body nested deeper than any SendGrid batch is refused before the JSON parser could recurse.
"""

from __future__ import annotations

import ipaddress
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from itertools import accumulate
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the page URL carries the token
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
_RAW_HEADERS = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]


class SecurityHeaders:
    """Adds the security headers to every response the app sends, whatever produced it: a page, a
    JSON answer of the webhook, a 429, or the 400 of the Host check."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _RAW_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def trusted_hosts(configured: Iterable[str], urls: Iterable[str]) -> list[str]:
    """The Host names to answer: the configured list, else the hosts of the public URLs emails link
    to plus loopback (a health check or `curl` on the machine itself)."""
    hosts = [h.lower() for h in configured]
    if hosts:
        return hosts
    derived = [urlsplit(u).hostname or "" for u in urls if u]
    return list(dict.fromkeys([*(h for h in derived if h), "127.0.0.1", "localhost"]))


# ---------------------------------------------------------------- rate limits


class RateLimiter:
    """A token bucket per client address, in this process's memory.

    `per_minute` requests a minute on average, `burst` at once. It is per process: with several
    replicas behind a balancer each keeps its own buckets, so a client gets up to that many times
    the limit; a global limit belongs in the reverse proxy (nginx `limit_req`). The table holds at
    most `max_clients` addresses (least recently seen dropped first), so many source addresses
    cannot exhaust memory; a dropped client simply starts again with a full bucket.
    """

    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ):
        self.rate = per_minute / 60.0
        self.burst = float(max(burst, 1))
        self._clock = clock
        self._max = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float:
        """0 when `key` may go on (a token is spent); otherwise the seconds until it may."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return wait


def retry_after(wait: float) -> str:
    """Retry-After in whole seconds, never 0 (a client told 0 would retry at once)."""
    return str(max(1, math.ceil(wait)))


def client_key(request: Request) -> str:
    """Whom a request counts against: the client address as uvicorn reports it (behind the reverse
    proxy, from X-Forwarded-For of a trusted proxy only: uvicorn's `forwarded_allow_ips`). IPv6
    clients count per /64, the block one subscriber line usually gets, or one host could rotate
    through 2^64 addresses."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped or address) if address.version == 6 else str(address)


# ---------------------------------------------------------------- bodies


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to pass `limit`: by its Content-Length before
    reading anything, or while it streams in (chunked bodies declare no length)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, without parsing it.

    Linear time, no recursion: escapes are dropped first (so an escaped quote cannot end a string
    early), then strings (brackets inside them do not count), then everything but brackets. For
    text that is not valid JSON the figure is still an upper bound of what a parser would reach
    before it gave up, which is all this is for.
    """
    text = _NOT_BRACKET.sub(b"", _STRING.sub(b"", _ESCAPE.sub(b"", body)))
    if not text:
        return 0
    return max(0, max(accumulate(map(_STEP.__getitem__, text)), default=0))
