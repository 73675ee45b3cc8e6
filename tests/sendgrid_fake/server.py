"""The HTTP side of the fake: a threading server and the request handler that routes SendGrid's
endpoints (mail/send, batches, scheduled sends, suppressions) to the `FakeSendGrid` it serves."""

from __future__ import annotations

import json
import math
import secrets
import socket
import sys
import zlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sendgrid_fake.limits import AUTH_ERROR
from sendgrid_fake.state import OK, RequestRecord
from sendgrid_fake.validation import error_object, is_int, validate_mail

if TYPE_CHECKING:
    from sendgrid_fake.fake import FakeSendGrid


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never wait for a slow handler when the test is done
    request_queue_size = 128  # concurrent senders must not see refused connections
    fake: FakeSendGrid

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or was killed is normal here, not worth a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the FakeSendGrid that owns the server."""

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep pytest output clean

    @property
    def fake(self) -> FakeSendGrid:
        return self.server.fake

    # ---- plumbing

    def _read_body(self) -> tuple[bytes, int, bool]:
        """Read the whole body (so the client always sees our answer): (data, size, too_large)."""
        limit = self.fake.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(65537)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(n)
                self.rfile.readline(3)
                size += len(data)
                if size <= limit:
                    chunks.append(data)
            raw, size = b"".join(chunks), size
        else:
            size = int(self.headers.get("Content-Length") or 0)
            if size > limit:
                left = size
                while left > 0:  # drain and discard, so the 413 reaches the client
                    got = self.rfile.read(min(left, 1 << 20))
                    if not got:
                        break
                    left -= len(got)
                return b"", size, True
            raw = self.rfile.read(size)
        if size > limit:
            return b"", size, True
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = inflater.decompress(raw, limit + 1)
            if len(raw) > limit:
                return b"", len(raw), True
        return raw, size, False

    def _send(
        self,
        rec: RequestRecord | None,
        status: int,
        payload: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = b"" if payload is None else json.dumps(payload).encode("utf-8")
        if rec is not None:
            rec.status = status
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (timeout, killed)

    def _errors(
        self,
        rec: RequestRecord | None,
        status: int,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if errors is None:
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            errors = [error_object(phrase.lower() or "error", None)]
        self._send(rec, status, {"errors": errors}, headers)

    def _status_fault(self, rec: RequestRecord | None, status: int, reset_in: float | None) -> None:
        headers: dict[str, str] = {}
        if status == 429:
            headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
            if reset_in is not None:
                headers["X-RateLimit-Reset"] = str(math.ceil(self.fake.now() + reset_in))
            self._errors(rec, 429, [error_object("too many requests", None)], headers)
        else:
            self._errors(rec, status)

    def _drop(self, rec: RequestRecord | None) -> None:
        """Close the connection without any response."""
        if rec is not None:
            rec.status = None
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _authorized(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() == self.fake.api_key

    def _begin(self) -> tuple[RequestRecord, bytes, bool]:
        split = urlsplit(self.path)
        raw, size, too_large = self._read_body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                body = raw
        rec = RequestRecord(
            method=self.command,
            path=split.path.rstrip("/") or "/",
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            size=size,
            connection=(str(self.client_address[0]), int(self.client_address[1])),
        )
        self.fake._record(rec)
        return rec, raw, too_large

    # ---- dispatch

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if self.command == "POST" and path == "/v3/mail/send":
            self._mail_send()
            return
        rec, _raw, too_large = self._begin()
        if not self._authorized():
            self._errors(rec, 401, [error_object(AUTH_ERROR, None)])
            return
        if too_large:
            self._errors(rec, 413, [error_object("content too large", None)])
            return
        parts = path.split("/")[1:]  # ["v3", ...]
        m = self.command
        if parts[:3] == ["v3", "mail", "batch"]:
            if m == "POST" and len(parts) == 3:
                self._new_batch(rec)
            elif m == "GET" and len(parts) == 4:
                self._get_batch(rec, parts[3])
            else:
                self._errors(rec, 405)
        elif parts[:3] == ["v3", "user", "scheduled_sends"]:
            self._scheduled_sends(rec, m, parts[3] if len(parts) > 3 else None)
        elif parts[:2] == ["v3", "suppression"] and len(parts) == 3 and m == "GET":
            self._suppression_list(rec, parts[2])
        elif parts[:3] == ["v3", "asm", "groups"] and len(parts) == 5 and parts[4] == "suppressions" and m == "GET":
            try:
                group = int(parts[3])
            except ValueError:
                self._errors(rec, 404)
                return
            with self.fake._lock:
                emails = list(self.fake.group_suppressions.get(group, []))
            self._send(rec, 200, emails)
        else:
            self._errors(rec, 404, [error_object("resource not found", None)])

    # ---- mail/send

    def _mail_send(self) -> None:
        fake = self.fake
        fault = fake._next_fault()
        rec, raw, too_large = self._begin()
        rec.fault = fault.token if fault is not OK else None
        if fault.kind == "drop_before":
            self._drop(rec)
            return
        if fault.kind == "status":
            self._status_fault(rec, fault.status, fault.reset_in)
            return
        if not self._authorized():
            self._errors(rec, 401, [error_object(AUTH_ERROR, None)])
            return
        if too_large:
            self._errors(rec, 413, [error_object("content too large", None)])
            return
        if not isinstance(rec.body, dict):
            self._errors(rec, 400, [error_object("Bad Request: the body must be a JSON object.", None)])
            return
        errors = validate_mail(
            rec.body,
            now=fake.now(),
            batch_known=fake._batch_known,
            max_send_at_past=fake.max_send_at_past,
        )
        if errors:
            self._errors(rec, 400, errors)
            return
        failing = fake._failure_for(rec.body)
        if failing is not None:
            email, status = failing
            if status == 429:
                self._status_fault(rec, 429, 1.0)
            else:
                self._errors(rec, status, [error_object(f"Refused for {email} (fake fail_for).", "personalizations")])
            return
        sandbox = (rec.body.get("mail_settings") or {}).get("sandbox_mode") or {}
        if sandbox.get("enable") is True:
            self._send(rec, 200)  # validated, never delivered
            return
        rec.message_id = fake._accept(rec.body)
        if fault.kind == "drop_after":
            self._drop(rec)
            return
        if fault.kind == "slow":
            fake._stop.wait(fault.delay)  # stop() wakes us, so the suite never waits on this
        self._send(rec, 202, None, {"X-Message-Id": rec.message_id})

    # ---- batches and scheduled sends

    def _new_batch(self, rec: RequestRecord) -> None:
        batch_id = secrets.token_urlsafe(24)
        with self.fake._lock:
            self.fake.batches[batch_id] = None
        self._send(rec, 201, {"batch_id": batch_id})

    def _get_batch(self, rec: RequestRecord, batch_id: str) -> None:
        if self.fake._batch_known(batch_id):
            self._send(rec, 200, {"batch_id": batch_id})
        else:
            self._errors(rec, 400, [error_object("invalid batch id", "batch_id")])

    def _scheduled_sends(self, rec: RequestRecord, method: str, batch_id: str | None) -> None:
        fake = self.fake
        if batch_id is None and method == "GET":
            with fake._lock:
                items = [{"batch_id": b, "status": s} for b, s in fake.batches.items() if s]
            self._send(rec, 200, items)
            return
        if batch_id is None and method == "POST":
            body = rec.body if isinstance(rec.body, dict) else {}
            batch_id, status = body.get("batch_id"), body.get("status")
            if not isinstance(batch_id, str) or not fake._batch_known(batch_id):
                self._errors(rec, 400, [error_object("invalid batch id", "batch_id")])
            elif status not in ("cancel", "pause"):
                self._errors(rec, 400, [error_object("status must be either cancel or pause", "status")])
            elif fake.batches.get(batch_id):
                self._errors(rec, 400, [error_object("batch id already has a status; use PATCH", "batch_id")])
            else:
                fake._set_batch_status(batch_id, status)
                self._send(rec, 201, {"batch_id": batch_id, "status": status})
            return
        if batch_id is None or not fake._batch_known(batch_id):
            self._errors(rec, 404, [error_object("batch id not found", "batch_id")])
            return
        if method == "GET":
            status = fake.batches.get(batch_id)
            self._send(rec, 200, [{"batch_id": batch_id, "status": status}] if status else [])
        elif method == "PATCH":
            status = rec.body.get("status") if isinstance(rec.body, dict) else None
            if status not in ("cancel", "pause"):
                self._errors(rec, 400, [error_object("status must be either cancel or pause", "status")])
            else:
                fake._set_batch_status(batch_id, status)
                self._send(rec, 204)
        elif method == "DELETE":
            fake._set_batch_status(batch_id, None)
            self._send(rec, 204)
        else:
            self._errors(rec, 405)

    # ---- suppressions

    def _suppression_list(self, rec: RequestRecord, name: str) -> None:
        fake = self.fake
        with fake._lock:
            if name not in fake.suppressions:
                self._errors(rec, 404, [error_object("resource not found", None)])
                return
            items = [dict(e) for e in fake.suppressions[name]]
        q = rec.query

        def num(key: str) -> int | None:
            return int(q[key][0]) if key in q and q[key][0].lstrip("-").isdigit() else None

        def created(entry: dict[str, Any]) -> int:
            value = entry.get("created", 0)
            return value if is_int(value) else 0

        start, end = num("start_time"), num("end_time")
        if start is not None:
            items = [e for e in items if created(e) >= start]
        if end is not None:
            items = [e for e in items if created(e) <= end]
        offset = num("offset") or 0
        limit = num("limit")
        if fake.suppression_page_limit is not None:
            limit = min(limit or fake.suppression_page_limit, fake.suppression_page_limit)
        items = items[offset:] if limit is None else items[offset : offset + limit]
        self._send(rec, 200, items)
