"""`FakeSendGrid`: SendGrid's v3 API on 127.0.0.1, with fault injection (see the package docstring).

What it holds and how it answers; the HTTP side (routing, bodies, status codes) is server.py.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sendgrid_fake.limits import CANCEL_LEAD_SECONDS, MAX_BODY_BYTES, MAX_SEND_AT_AHEAD, SUPPRESSION_LISTS
from sendgrid_fake.server import Handler, Server
from sendgrid_fake.state import OK, Accepted, Fault, Message, RequestRecord, event_id, parse_fault, render


class FakeSendGrid:
    """SendGrid v3 look-alike on 127.0.0.1 with fault injection. See the module docstring."""

    def __init__(
        self,
        api_key: str = "SG.test-key",
        *,
        port: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        handler_timeout: float = 10.0,
    ) -> None:
        self.api_key = api_key
        self.port = port
        self.log_path = os.fspath(log_path) if log_path is not None else None
        self.handler_timeout = handler_timeout
        # Injectable clock (epoch seconds) for send_at checks, 429 reset and cancel cut-offs.
        self.now: Callable[[], float] = time.time
        self.max_body_bytes = MAX_BODY_BYTES
        self.max_send_at_past = float(MAX_SEND_AT_AHEAD)
        self.cancel_lead_seconds = CANCEL_LEAD_SECONDS
        # Configured suppressions: lists of {"email": ..., "created": epoch, ...} per list name,
        # and asm group id -> list of addresses.
        self.suppressions: dict[str, list[dict[str, Any]]] = {n: [] for n in SUPPRESSION_LISTS}
        self.group_suppressions: dict[int, list[str]] = {}
        # When set, suppression GETs return at most this many items per page (tests pagination).
        self.suppression_page_limit: int | None = None
        # Off by default so a test proves the tool filters suppressed addresses itself.
        self.drop_suppressed = False
        self.batches: dict[str, str | None] = {}  # batch_id -> None | "pause" | "cancel"
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._script: deque[Fault] = deque()
        self._failures: dict[str, int] = {}
        self._requests: list[RequestRecord] = []
        self._accepted: list[Accepted] = []
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._log: Any = None

    # ---- lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSendGrid is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeSendGrid:
        """Bind and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stop.clear()
        handler = type("Handler", (Handler,), {"timeout": self.handler_timeout})
        server = Server(("127.0.0.1", self.port), handler)
        server.fake = self
        if self.log_path is not None:
            self._log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="FakeSendGrid",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes handlers sleeping on a `slow:` fault."""
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget requests, deliveries, script, failures and batches (keeps suppressions)."""
        with self._lock:
            self._requests.clear()
            self._accepted.clear()
            self._script.clear()
            self._failures.clear()
            self.batches.clear()

    # ---- configuration

    def script(self, tokens: Iterable[str]) -> None:
        """Queue faults, consumed one per mail/send request (then normal behaviour resumes)."""
        parsed = [parse_fault(t) for t in tokens]  # fail fast on a typo
        with self._lock:
            self._script.extend(parsed)

    @property
    def script_remaining(self) -> list[str]:
        with self._lock:
            return [f.token for f in self._script]

    def fail_for(self, email: str, status: int | None = 400) -> None:
        """Any mail/send containing `email` answers `status` from now on (None removes it)."""
        with self._lock:
            if status is None:
                self._failures.pop(email.lower(), None)
            else:
                self._failures[email.lower()] = int(status)

    # ---- inspection

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Every accepted mail/send body (sandbox requests excluded, cancelled included)."""
        with self._lock:
            return [a.body for a in self._accepted]

    def _iter_messages(self) -> Iterator[tuple[str, Message]]:
        with self._lock:
            records = list(self._accepted)
        for rec in records:
            for i, p in enumerate(rec.body.get("personalizations") or []):
                subject = render(p.get("subject", rec.body.get("subject")), p.get("substitutions") or {})
                for kind in ("to", "cc", "bcc"):
                    for addr in p.get(kind) or []:
                        msg = Message(addr["email"], subject, p, rec.message_id, rec.body)
                        if i in rec.cancelled:
                            state = "cancelled"
                        elif i in rec.paused:
                            state = "paused"
                        elif self.drop_suppressed and self._suppressed(msg):
                            state = "dropped"
                        else:
                            state = "delivered"
                        yield state, msg

    @property
    def messages(self) -> list[Message]:
        """Delivered recipients, in order (not cancelled, paused or dropped)."""
        return [m for s, m in self._iter_messages() if s == "delivered"]

    @property
    def cancelled(self) -> list[Message]:
        return [m for s, m in self._iter_messages() if s == "cancelled"]

    @property
    def paused(self) -> list[Message]:
        return [m for s, m in self._iter_messages() if s == "paused"]

    @property
    def dropped(self) -> list[Message]:
        """Recipients dropped for a suppression (only with `drop_suppressed = True`)."""
        return [m for s, m in self._iter_messages() if s == "dropped"]

    def delivered_to(self) -> Counter[str]:
        """How many messages each (lower-cased) address received."""
        return Counter(m.to_email.lower() for m in self.messages)

    def messages_for(self, email: str) -> list[Message]:
        return [m for m in self.messages if m.to_email.lower() == email.lower()]

    def events(self, at: int | None = None) -> list[dict[str, Any]]:
        """The Event Webhook's view of what was accepted: `processed` then `delivered` for each
        delivered recipient, `dropped` for a suppressed one, shaped as SendGrid posts them (the
        message's custom_args flattened into each event, `sg_message_id` = the request's
        X-Message-Id plus a filter suffix, a unique `sg_event_id`). Cancelled and paused sends
        produce none. Engagement (opens, clicks) is the test's to add: people do that, not SendGrid.
        """
        stamp = int(self.now()) if at is None else at
        out: list[dict[str, Any]] = []
        for n, (state, msg) in enumerate(self._iter_messages()):
            if state not in ("delivered", "dropped"):
                continue
            base = {
                "email": msg.to_email,
                "timestamp": stamp,
                "smtp-id": f"<{msg.message_id}@ismtpd-fake>",
                "sg_message_id": f"{msg.message_id}.filterdrecv-fake-{n}-0",
                "category": msg.categories,
                **msg.custom_args,
            }
            if state == "dropped":
                out.append({**base, "event": "dropped", "reason": "Unsubscribed Address", "sg_event_id": event_id()})
                continue
            out.append({**base, "event": "processed", "sg_event_id": event_id()})
            out.append({**base, "event": "delivered", "response": "250 OK", "sg_event_id": event_id()})
        return out

    @staticmethod
    def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Parse a --log file, ignoring a torn last line."""
        out: list[dict[str, Any]] = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    # ---- internals used by the handler

    def _next_fault(self) -> Fault:
        with self._lock:
            return self._script.popleft() if self._script else OK

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._requests.append(rec)

    def _batch_known(self, batch_id: str) -> bool:
        with self._lock:
            return batch_id in self.batches

    def _failure_for(self, body: dict[str, Any]) -> tuple[str, int] | None:
        with self._lock:
            if not self._failures:
                return None
            for p in body.get("personalizations") or []:
                for kind in ("to", "cc", "bcc"):
                    for addr in p.get(kind) or []:
                        status = self._failures.get(addr["email"].lower())
                        if status is not None:
                            return addr["email"], status
        return None

    def _suppressed(self, msg: Message) -> bool:
        settings = msg.body.get("mail_settings") or {}
        on = lambda name: bool((settings.get(name) or {}).get("enable"))  # noqa: E731
        if on("bypass_list_management"):
            return False
        lists = ["invalid_emails"]
        if not on("bypass_bounce_management"):
            lists.append("bounces")
        if not on("bypass_spam_management"):
            lists.append("spam_reports")
        if not on("bypass_unsubscribe_management"):
            lists.append("unsubscribes")
        email = msg.to_email.lower()
        with self._lock:
            for name in lists:
                if any(str(e.get("email", "")).lower() == email for e in self.suppressions.get(name, [])):
                    return True
            group = (msg.body.get("asm") or {}).get("group_id")
            return email in {e.lower() for e in self.group_suppressions.get(group, [])}

    def _accept(self, body: dict[str, Any]) -> str:
        """Record a delivery and append it durably to the log before anyone is answered."""
        message_id = secrets.token_urlsafe(16)
        rec = Accepted(message_id, body, self.now())
        with self._lock:
            state = self.batches.get(body.get("batch_id") or "")
            count = len(body["personalizations"])
            if state == "cancel":
                rec.cancelled.update(range(count))
            elif state == "pause":
                rec.paused.update(range(count))
            self._accepted.append(rec)
            if self._log is not None:
                for i, p in enumerate(body["personalizations"]):
                    subject = render(p.get("subject", body.get("subject")), p.get("substitutions") or {})
                    for kind in ("to", "cc", "bcc"):
                        for addr in p.get(kind) or []:
                            line = {
                                "ts": rec.at,
                                "message_id": message_id,
                                "to": addr["email"],
                                "role": kind,
                                "personalization_index": i,
                                "subject": subject,
                                "batch_id": body.get("batch_id"),
                                "send_at": p.get("send_at", body.get("send_at")),
                                "custom_args": {
                                    **(body.get("custom_args") or {}),
                                    **(p.get("custom_args") or {}),
                                },
                            }
                            self._log.write(json.dumps(line, ensure_ascii=False) + "\n")
                self._log.flush()
                os.fsync(self._log.fileno())
        return message_id

    def _set_batch_status(self, batch_id: str, status: str | None) -> None:
        """Apply pause/cancel to already accepted sends not yet due (10-minute cut-off)."""
        now = self.now()
        with self._lock:
            self.batches[batch_id] = status
            for rec in self._accepted:
                if rec.body.get("batch_id") != batch_id:
                    continue
                for i, p in enumerate(rec.body["personalizations"]):
                    if status is None:
                        rec.paused.discard(i)
                        rec.cancelled.discard(i)
                        continue
                    send_at = p.get("send_at", rec.body.get("send_at"))
                    # Without send_at (or too close to it) SendGrid has already sent it.
                    if send_at is None or send_at <= now + self.cancel_lead_seconds:
                        continue
                    if status == "cancel":
                        rec.paused.discard(i)
                        if i not in rec.cancelled and self._log is not None:
                            # process mode: the log says who will not get this mail after all
                            for kind in ("to", "cc", "bcc"):
                                for addr in p.get(kind) or []:
                                    line = {"cancelled": addr["email"], "message_id": rec.message_id}
                                    self._log.write(json.dumps(line, ensure_ascii=False) + "\n")
                            self._log.flush()
                            os.fsync(self._log.fileno())
                        rec.cancelled.add(i)
                    else:
                        rec.paused.add(i)
