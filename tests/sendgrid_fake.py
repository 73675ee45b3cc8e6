"""A local stand-in for SendGrid's v3 HTTP API, good enough for the real `sendgrid` client.

Stdlib only, bound to 127.0.0.1. In-process::

    with FakeSendGrid() as fake:
        sg = SendGridAPIClient(fake.api_key, host=fake.url)
        sg.client.timeout = 5          # the client has no timeout of its own
        sg.send(mail)
        assert fake.delivered_to()["a@example.com"] == 1

As its own process (crash tests that kill -9 a client and count deliveries)::

    python tests/sendgrid_fake.py --port 0 --log deliveries.jsonl [--script 429,ok]

prints ``READY http://127.0.0.1:PORT`` once listening, and appends one JSON line per delivered
recipient to the log (flushed and fsynced before the response is sent), and one
``{"cancelled": address}`` line per recipient of a scheduled send cancelled in time, until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

# SendGrid's documented limits (see notes/email-rules.md).
MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CATEGORIES = 10
MAX_CATEGORY_LEN = 255
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SUBSTITUTIONS_BYTES = 10_000
MAX_SEND_AT_AHEAD = 72 * 3600
MAX_GROUPS_TO_DISPLAY = 25
# Scheduled sends can be cancelled/paused no later than 10 minutes before send_at.
CANCEL_LEAD_SECONDS = 600

AUTH_ERROR = "The provided authorization grant is invalid, expired, or revoked"
# Headers SendGrid does not let a sender override (OpenAPI description of `headers`).
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
SUPPRESSION_LISTS = ("unsubscribes", "bounces", "spam_reports", "invalid_emails", "blocks")

_LABEL = r"[^\s@<>(),;:\"\[\]\\.]+"
EMAIL_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*@{_LABEL}(?:\.{_LABEL})+$")


# --------------------------------------------------------------------------- records


@dataclass
class RequestRecord:
    """One HTTP request as the fake saw it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    size: int
    fault: str | None = None
    status: int | None = None  # None: the connection was dropped without an answer
    message_id: str | None = None


@dataclass
class _Accepted:
    """A mail/send body the fake accepted, with per-personalization state."""

    message_id: str
    body: dict[str, Any]
    at: float
    cancelled: set[int] = field(default_factory=set)
    paused: set[int] = field(default_factory=set)


def _render(value: str | None, subs: dict[str, str]) -> str | None:
    """Apply substitutions the simple way SendGrid does: replace each key literally."""
    if value is None:
        return None
    for key, sub in subs.items():
        value = value.replace(key, sub)
    return value


class Message(NamedTuple):
    """One delivered recipient: unpacks as (to_email, subject, personalization, message_id, body).

    `subject` is rendered with the personalization's substitutions; the properties give the
    rest of what this recipient really received.
    """

    to_email: str
    subject: str | None
    personalization: dict[str, Any]
    message_id: str
    body: dict[str, Any]

    @property
    def substitutions(self) -> dict[str, str]:
        return self.personalization.get("substitutions") or {}

    @property
    def content(self) -> list[dict[str, str | None]]:
        """The content blocks after substitution, in request order."""
        return [
            {"type": c.get("type"), "value": _render(c.get("value"), self.substitutions)}
            for c in self.body.get("content") or []
        ]

    def _typed(self, mime: str) -> str | None:
        for block in self.content:
            if str(block["type"]).lower() == mime:
                return block["value"]
        return None

    @property
    def html(self) -> str | None:
        return self._typed("text/html")

    @property
    def text(self) -> str | None:
        return self._typed("text/plain")

    @property
    def headers(self) -> dict[str, str]:
        """Top-level headers overridden by the personalization's."""
        return {**(self.body.get("headers") or {}), **(self.personalization.get("headers") or {})}

    @property
    def custom_args(self) -> dict[str, str]:
        return {
            **(self.body.get("custom_args") or {}),
            **(self.personalization.get("custom_args") or {}),
        }

    @property
    def categories(self) -> list[str]:
        return list(self.body.get("categories") or [])

    @property
    def send_at(self) -> int | None:
        return self.personalization.get("send_at", self.body.get("send_at"))

    @property
    def batch_id(self) -> str | None:
        return self.body.get("batch_id")

    @property
    def from_email(self) -> str | None:
        sender = self.personalization.get("from") or self.body.get("from") or {}
        return sender.get("email")

    @property
    def role(self) -> str:
        """'to', 'cc' or 'bcc'."""
        for kind in ("to", "cc", "bcc"):
            for addr in self.personalization.get(kind) or []:
                if addr.get("email") == self.to_email:
                    return kind
        return "to"


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """A parsed script token."""

    token: str
    kind: str  # ok | status | drop_before | drop_after | slow
    status: int = 0
    reset_in: float | None = 1.0  # 429 only: seconds ahead for X-RateLimit-Reset, None = no header
    delay: float = 0.0


def parse_fault(token: str) -> Fault:
    """Parse "ok", "429[:reset=N|:noreset]", "<4xx/5xx>", "drop_before", "drop_after", "slow:S"."""
    tok = token.strip()
    head, _, arg = tok.partition(":")
    if tok in ("ok", "drop_before", "drop_after"):
        return Fault(tok, tok)
    if head == "slow":
        try:
            delay = float(arg)
        except ValueError:
            raise ValueError(f"bad script token {token!r}: use slow:SECONDS") from None
        return Fault(tok, "slow", delay=delay)
    if head.isdigit() and 400 <= int(head) <= 599:
        status = int(head)
        reset_in: float | None = 1.0
        if arg:
            if status != 429:
                raise ValueError(f"bad script token {token!r}: only 429 takes options")
            if arg == "noreset":
                reset_in = None
            elif arg.startswith("reset="):
                reset_in = float(arg[len("reset=") :])
            else:
                raise ValueError(f"bad script token {token!r}")
        return Fault(tok, "status", status=status, reset_in=reset_in)
    raise ValueError(f"unknown script token {token!r}")


_OK = Fault("ok", "ok")


# --------------------------------------------------------------------------- validation


def _err(message: str, field_: str | None) -> dict[str, Any]:
    return {"message": message, "field": field_, "help": None}


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _is_int(value: Any) -> bool:
    # JSON true/false parse to bool, a subclass of int: SendGrid would reject them.
    return isinstance(value, int) and not isinstance(value, bool)


def valid_email(address: Any) -> bool:
    """A cheap syntax check, close to SendGrid's 'Does not contain a valid address'."""
    return isinstance(address, str) and len(address) <= 320 and bool(EMAIL_RE.match(address))


def validate_mail(
    body: Any,
    *,
    now: float,
    batch_known: Callable[[str], bool],
    max_send_at_past: float = MAX_SEND_AT_AHEAD,
) -> list[dict[str, Any]]:
    """Return SendGrid-style error objects for a mail/send body ([] when it is valid)."""
    errors: list[dict[str, Any]] = []
    err = lambda message, fld: errors.append(_err(message, fld))  # noqa: E731

    if not isinstance(body, dict):
        return [_err("The request body must be a JSON object.", None)]
    template_id = body.get("template_id")
    if template_id is not None and not isinstance(template_id, str):
        err("The template_id must be a string.", "template_id")
    dynamic = isinstance(template_id, str) and template_id.startswith("d-")

    def check_address(obj: Any, fld: str, what: str) -> None:
        if not isinstance(obj, dict) or "email" not in obj:
            err(f"The {what} must be an object with an email parameter.", fld)
            return
        if not valid_email(obj.get("email")):
            err("Does not contain a valid address.", f"{fld}.email")
        if "name" in obj and obj["name"] is not None and not isinstance(obj["name"], str):
            err(f"The {what} name must be a string.", f"{fld}.name")

    def check_string_map(obj: Any, fld: str, what: str) -> bool:
        if not isinstance(obj, dict):
            err(f"The {what} must be an object.", fld)
            return False
        bad = [k for k, v in obj.items() if not isinstance(v, str)]
        if bad:
            err(f"The {what} values must be strings (not {bad[0]!r}).", f"{fld}.{bad[0]}")
            return False
        return True

    def check_headers(obj: Any, fld: str) -> None:
        if not check_string_map(obj, fld, "headers"):
            return
        for name in obj:
            if name.lower() in RESERVED_HEADERS:
                err(f"The {name} header is reserved and may not be overridden.", f"{fld}.{name}")

    def check_send_at(value: Any, fld: str) -> None:
        if not _is_int(value):
            err("The send_at parameter must be a UNIX timestamp (integer).", fld)
        elif value > now + MAX_SEND_AT_AHEAD:
            err("The send_at parameter cannot be more than 72 hours in the future.", fld)
        elif value < now - max_send_at_past:
            err("The send_at parameter is too far in the past.", fld)

    # from / reply_to
    if "from" not in body:
        err(
            "The from object must be provided for every email send. It is an object that requires"
            " the email parameter, but may also contain a name parameter.",
            "from.email",
        )
    else:
        check_address(body["from"], "from", "from object")
    if "reply_to" in body:
        check_address(body["reply_to"], "reply_to", "reply_to object")
    if "reply_to_list" in body:
        rtl = body["reply_to_list"]
        if "reply_to" in body:
            err("You may not use both reply_to and reply_to_list.", "reply_to_list")
        if not isinstance(rtl, list) or len(rtl) > 1000:
            err("The reply_to_list must be an array of at most 1000 items.", "reply_to_list")
        else:
            for i, obj in enumerate(rtl):
                check_address(obj, f"reply_to_list.{i}", "reply_to_list item")

    # personalizations
    pers = body.get("personalizations")
    if not isinstance(pers, list) or not pers:
        err(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
        pers = []
    elif len(pers) > MAX_PERSONALIZATIONS:
        err(
            f"The personalizations field may not have more than {MAX_PERSONALIZATIONS} items.",
            "personalizations",
        )
    top_custom = body.get("custom_args")
    top_custom_ok = "custom_args" not in body or check_string_map(top_custom, "custom_args", "custom_args")
    if top_custom_ok and top_custom is not None and _json_size(top_custom) > MAX_CUSTOM_ARGS_BYTES:
        err(f"The custom_args may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes.", "custom_args")

    seen: dict[str, str] = {}  # lower-cased address -> where it first appeared
    recipients = 0
    every_p_has_subject = bool(pers)
    for i, p in enumerate(pers):
        pf = f"personalizations.{i}"
        if not isinstance(p, dict):
            err("Each personalization must be an object.", pf)
            every_p_has_subject = False
            continue
        to = p.get("to")
        if not isinstance(to, list) or not to:
            err(
                "The to array is required for all personalization objects, and must have at least"
                " one email object with a valid email address.",
                f"{pf}.to",
            )
        for kind in ("to", "cc", "bcc"):
            addrs = p.get(kind)
            if addrs is None:
                continue
            if not isinstance(addrs, list):
                err(f"The {kind} field must be an array.", f"{pf}.{kind}")
                continue
            for j, addr in enumerate(addrs):
                check_address(addr, f"{pf}.{kind}.{j}", f"{kind} object")
                recipients += 1
                email = addr.get("email") if isinstance(addr, dict) else None
                if isinstance(email, str):
                    key = email.lower()
                    if key in seen:
                        err(
                            "Each email address in the personalization block should be unique"
                            " between to, cc, and bcc. We found the first duplicate instance of"
                            f" [{email}] in the {pf}.{kind} field.",
                            f"{pf}.{kind}",
                        )
                    else:
                        seen[key] = f"{pf}.{kind}"
        if "from" in p:
            check_address(p["from"], f"{pf}.from", "from object")
        if "subject" in p:
            if not isinstance(p["subject"], str) or not p["subject"]:
                err("The subject must be a string at least one character long.", f"{pf}.subject")
        else:
            every_p_has_subject = False
        if "headers" in p:
            check_headers(p["headers"], f"{pf}.headers")
        if "substitutions" in p:
            subs = p["substitutions"]
            if dynamic:
                err("Substitutions may not be used with dynamic templating.", f"{pf}.substitutions")
            if check_string_map(subs, f"{pf}.substitutions", "substitutions"):
                if _json_size(subs) > MAX_SUBSTITUTIONS_BYTES:
                    err(
                        f"The substitutions may not exceed {MAX_SUBSTITUTIONS_BYTES} bytes per personalization.",
                        f"{pf}.substitutions",
                    )
        if "custom_args" in p and check_string_map(p["custom_args"], f"{pf}.custom_args", "custom_args"):
            # The limit is on what travels with each email: top-level merged with this one.
            merged = {**(top_custom if top_custom_ok and top_custom else {}), **p["custom_args"]}
            if _json_size(merged) > MAX_CUSTOM_ARGS_BYTES:
                err(
                    f"The custom_args may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes.",
                    f"{pf}.custom_args",
                )
        if "dynamic_template_data" in p and not isinstance(p["dynamic_template_data"], dict):
            err("The dynamic_template_data must be an object.", f"{pf}.dynamic_template_data")
        if "send_at" in p:
            check_send_at(p["send_at"], f"{pf}.send_at")
    if recipients > MAX_RECIPIENTS:
        err(
            f"The total number of recipients (to, cc and bcc) may not exceed {MAX_RECIPIENTS}.",
            "personalizations",
        )

    # subject
    if "subject" in body:
        if not isinstance(body["subject"], str) or not body["subject"]:
            err("The subject must be a string at least one character long.", "subject")
    elif not template_id and not every_p_has_subject:
        err(
            "The subject is required. You can get around this requirement if you use a template"
            " with a subject defined or if every personalization has a subject defined.",
            "subject",
        )

    # content
    if "content" in body:
        content = body["content"]
        if not isinstance(content, list) or not content:
            err("The content must be an array with at least one content block.", "content")
        else:
            types: list[str] = []
            for i, block in enumerate(content):
                if not isinstance(block, dict):
                    err("Each content block must be an object.", f"content.{i}")
                    continue
                ctype, value = block.get("type"), block.get("value")
                if not isinstance(ctype, str) or not ctype:
                    err(
                        "The content type must be a string at least one character long.",
                        f"content.{i}.type",
                    )
                    continue
                if not isinstance(value, str) or not value:
                    err(
                        "The content value must be a string at least one character in length.",
                        f"content.{i}.value",
                    )
                if ctype.lower() in types:
                    err(f"The content type {ctype} may only be used once.", f"content.{i}.type")
                types.append(ctype.lower())
            order_msg = (
                "If present, text/plain content must be first, followed by text/html, followed by any other content."
            )
            if "text/plain" in types and types.index("text/plain") != 0:
                err(order_msg, "content")
            elif "text/html" in types and any(
                t not in ("text/plain", "text/html") for t in types[: types.index("text/html")]
            ):
                err(order_msg, "content")
    elif not template_id:
        err(
            "Unless a valid template_id is provided, the content parameter is required. There must"
            " be at least one defined content block. We typically suggest both text/plain and"
            " text/html blocks are included, but only one block is required.",
            "content",
        )

    # categories
    if "categories" in body:
        cats = body["categories"]
        if not isinstance(cats, list):
            err("The categories must be an array of strings.", "categories")
        else:
            if len(cats) > MAX_CATEGORIES:
                err(
                    f"You may not have more than {MAX_CATEGORIES} categories per request.",
                    "categories",
                )
            for i, cat in enumerate(cats):
                if not isinstance(cat, str):
                    err("A category must be a string.", f"categories.{i}")
                elif len(cat) > MAX_CATEGORY_LEN:
                    err(
                        f"A category cannot be longer than {MAX_CATEGORY_LEN} characters.",
                        f"categories.{i}",
                    )
                elif cats.index(cat) != i:
                    err(
                        f"The category {cat!r} is duplicated; categories must be unique.",
                        f"categories.{i}",
                    )

    if "headers" in body:
        check_headers(body["headers"], "headers")
    if "send_at" in body:
        check_send_at(body["send_at"], "send_at")
    if "batch_id" in body:
        bid = body["batch_id"]
        if not isinstance(bid, str) or not batch_known(bid):
            err("The batch id is not valid.", "batch_id")

    if "asm" in body:
        asm = body["asm"]
        if not isinstance(asm, dict) or not _is_int(asm.get("group_id")):
            err("The asm object requires an integer group_id.", "asm.group_id")
        elif "groups_to_display" in asm:
            groups = asm["groups_to_display"]
            if not isinstance(groups, list) or not all(_is_int(g) for g in groups):
                err("The groups_to_display must be an array of integers.", "asm.groups_to_display")
            elif len(groups) > MAX_GROUPS_TO_DISPLAY:
                err(
                    f"The groups_to_display may not have more than {MAX_GROUPS_TO_DISPLAY} items.",
                    "asm.groups_to_display",
                )

    if "ip_pool_name" in body:
        pool = body["ip_pool_name"]
        if not isinstance(pool, str) or not 2 <= len(pool) <= 64:
            err("The ip_pool_name must be a string of 2 to 64 characters.", "ip_pool_name")

    if "attachments" in body:
        atts = body["attachments"]
        if not isinstance(atts, list):
            err("The attachments must be an array.", "attachments")
        else:
            for i, att in enumerate(atts):
                af = f"attachments.{i}"
                if not isinstance(att, dict):
                    err("Each attachment must be an object.", af)
                    continue
                if not isinstance(att.get("content"), str) or not att["content"]:
                    err("The attachment content must be a Base64 encoded string.", f"{af}.content")
                if not isinstance(att.get("filename"), str) or not att["filename"]:
                    err("The attachment filename is required.", f"{af}.filename")
                if "disposition" in att and att["disposition"] not in ("inline", "attachment"):
                    err("The disposition must be inline or attachment.", f"{af}.disposition")

    # Settings: every `enable` must be a real JSON boolean ("true" as a string is a classic bug).
    for group in ("mail_settings", "tracking_settings"):
        if group not in body:
            continue
        settings = body[group]
        if not isinstance(settings, dict):
            err(f"The {group} must be an object.", group)
            continue
        for name, setting in settings.items():
            if not isinstance(setting, dict):
                err(f"The {group}.{name} setting must be an object.", f"{group}.{name}")
            elif "enable" in setting and not isinstance(setting["enable"], bool):
                given = type(setting["enable"]).__name__
                err(f"Invalid type. Expected: boolean, given: {given}.", f"{group}.{name}.enable")
    return errors


# --------------------------------------------------------------------------- the fake


class _Server(ThreadingHTTPServer):
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


def _event_id() -> str:
    """An sg_event_id as SendGrid spells them: 22 URL-safe base64 characters."""
    return secrets.token_urlsafe(16)


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
        self._accepted: list[_Accepted] = []
        self._server: _Server | None = None
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
        handler = type("Handler", (_Handler,), {"timeout": self.handler_timeout})
        server = _Server(("127.0.0.1", self.port), handler)
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
                subject = _render(p.get("subject", rec.body.get("subject")), p.get("substitutions") or {})
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
                out.append({**base, "event": "dropped", "reason": "Unsubscribed Address", "sg_event_id": _event_id()})
                continue
            out.append({**base, "event": "processed", "sg_event_id": _event_id()})
            out.append({**base, "event": "delivered", "response": "250 OK", "sg_event_id": _event_id()})
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
            return self._script.popleft() if self._script else _OK

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
        rec = _Accepted(message_id, body, self.now())
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
                    subject = _render(p.get("subject", body.get("subject")), p.get("substitutions") or {})
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


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the FakeSendGrid that owns the server."""

    protocol_version = "HTTP/1.1"
    server: _Server

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
            errors = [_err(phrase.lower() or "error", None)]
        self._send(rec, status, {"errors": errors}, headers)

    def _status_fault(self, rec: RequestRecord | None, status: int, reset_in: float | None) -> None:
        headers: dict[str, str] = {}
        if status == 429:
            headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
            if reset_in is not None:
                headers["X-RateLimit-Reset"] = str(math.ceil(self.fake.now() + reset_in))
            self._errors(rec, 429, [_err("too many requests", None)], headers)
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
            self._errors(rec, 401, [_err(AUTH_ERROR, None)])
            return
        if too_large:
            self._errors(rec, 413, [_err("content too large", None)])
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
            self._errors(rec, 404, [_err("resource not found", None)])

    # ---- mail/send

    def _mail_send(self) -> None:
        fake = self.fake
        fault = fake._next_fault()
        rec, raw, too_large = self._begin()
        rec.fault = fault.token if fault is not _OK else None
        if fault.kind == "drop_before":
            self._drop(rec)
            return
        if fault.kind == "status":
            self._status_fault(rec, fault.status, fault.reset_in)
            return
        if not self._authorized():
            self._errors(rec, 401, [_err(AUTH_ERROR, None)])
            return
        if too_large:
            self._errors(rec, 413, [_err("content too large", None)])
            return
        if not isinstance(rec.body, dict):
            self._errors(rec, 400, [_err("Bad Request: the body must be a JSON object.", None)])
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
                self._errors(rec, status, [_err(f"Refused for {email} (fake fail_for).", "personalizations")])
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
            self._errors(rec, 400, [_err("invalid batch id", "batch_id")])

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
                self._errors(rec, 400, [_err("invalid batch id", "batch_id")])
            elif status not in ("cancel", "pause"):
                self._errors(rec, 400, [_err("status must be either cancel or pause", "status")])
            elif fake.batches.get(batch_id):
                self._errors(rec, 400, [_err("batch id already has a status; use PATCH", "batch_id")])
            else:
                fake._set_batch_status(batch_id, status)
                self._send(rec, 201, {"batch_id": batch_id, "status": status})
            return
        if batch_id is None or not fake._batch_known(batch_id):
            self._errors(rec, 404, [_err("batch id not found", "batch_id")])
            return
        if method == "GET":
            status = fake.batches.get(batch_id)
            self._send(rec, 200, [{"batch_id": batch_id, "status": status}] if status else [])
        elif method == "PATCH":
            status = rec.body.get("status") if isinstance(rec.body, dict) else None
            if status not in ("cancel", "pause"):
                self._errors(rec, 400, [_err("status must be either cancel or pause", "status")])
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
                self._errors(rec, 404, [_err("resource not found", None)])
                return
            items = [dict(e) for e in fake.suppressions[name]]
        q = rec.query

        def num(key: str) -> int | None:
            return int(q[key][0]) if key in q and q[key][0].lstrip("-").isdigit() else None

        def created(entry: dict[str, Any]) -> int:
            value = entry.get("created", 0)
            return value if _is_int(value) else 0

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


# --------------------------------------------------------------------------- process mode


def main(argv: list[str] | None = None) -> int:
    """Run the fake as a process until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--log", help="append one JSON line per delivered recipient (fsynced)")
    ap.add_argument("--api-key", default="SG.test-key")
    ap.add_argument("--script", default="", help="comma-separated fault tokens, e.g. 429,ok")
    args = ap.parse_args(argv)

    fake = FakeSendGrid(args.api_key, port=args.port, log_path=args.log)
    if args.script:
        fake.script(args.script.split(","))
    # A plain flag, not a threading.Event: the handler runs in the main thread, and Event.set()
    # there deadlocks when the signal lands while Event.wait() holds the Event's own lock (seen
    # as a fake that ignored SIGTERM forever after a test).
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    fake.start()
    print(f"READY {fake.url}", flush=True)
    try:
        while not stopping:
            time.sleep(0.05)
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
