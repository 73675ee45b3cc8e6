"""SendGrid v3 mail/send through the official `sendgrid` client.

One request carries one shared content for up to 1000 personalizations; per-recipient fields are
SendGrid substitutions of the tagged tokens the composer left in, already escaped for where they
sit. We build the JSON body ourselves instead of with `sendgrid.helpers.mail.Mail`, whose
add_personalization prepends and whose headers/categories come out reversed: the order we write
is the order SendGrid gets (text/plain before text/html, as it requires).

The client has no timeout and no retries of its own; both live here. How an error is classified
decides exactly-once:

- an HTTP answer: 202 accepted; 429, 500, 502 and 503 retried; 401 stops the run; other 4xx fail;
- 504 is a gateway's timeout: SendGrid behind it may have queued the mail, so it is a lost answer
  (ambiguous; in scheduled mode cancelled and re-issued), never retried blindly;
- `URLError` is raised while urllib is still *sending* (refused, DNS, connect timeout): the
  body never fully left, so SendGrid cannot have queued it: retried, then "retry" (safe);
- anything after the body left (dropped connection, timeout waiting for the answer) is ambiguous.
"""

from __future__ import annotations

import http.client
import json
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError

from digest import personalize
from digest.config import Config
from digest.errors import AuthError, SendError
from digest.transports.base import Batch, Outcome, Recipient, render_failed
from digest.transports.sendgrid.client import api_key, make_client
from digest.transports.sendgrid.limits import CANCEL_CUTOFF_SECONDS

RETRY_STATUSES = frozenset({429, 500, 502, 503})
#: A gateway timed out waiting for SendGrid, which may have queued the request all the same.
LOST_STATUSES = frozenset({504})


class _Retry(Exception):
    """A failed attempt that may be retried: why, and how long the server asked us to wait."""

    def __init__(self, why: str, wait: float | None = None):
        super().__init__(why)
        self.wait = wait


class SendGridTransport:
    name = "sendgrid"
    can_schedule = True
    cancel_cutoff = CANCEL_CUTOFF_SECONDS
    concurrent = True  #: send() may run in several threads at once
    #: send() is mostly CPU of its own (a JSON body of up to 1000 personalizations): worth a
    #: process, so that it runs beside the composing (dispatch.Senders)
    processes = True

    def __init__(
        self,
        api_key: str,
        *,
        host: str,
        from_email: str,
        from_name: str = "",
        reply_to: str = "",
        categories: tuple[str, ...] = (),
        asm_group_id: int = 0,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_wait: float = 60.0,
        max_batch: int = 1000,
        sandbox: bool = False,
        open_tracking: bool = False,
        click_tracking: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        #: how to make this transport again in a sender process (see `__reduce__`); never printed
        self._recipe = {
            "api_key": api_key,
            "host": host,
            "from_email": from_email,
            "from_name": from_name,
            "reply_to": reply_to,
            "categories": categories,
            "asm_group_id": asm_group_id,
            "timeout": timeout,
            "max_retries": max_retries,
            "max_wait": max_wait,
            "max_batch": max_batch,
            "sandbox": sandbox,
        }
        # keep-alive connections shared by the sending threads
        self._client, self.pool = make_client(api_key, host=host, timeout=timeout, keep=16)
        self.host = host
        self.from_email = from_email
        self.from_name = from_name
        self.reply_to = reply_to
        self.categories = categories
        self.asm_group_id = asm_group_id
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.max_batch = max_batch
        self.sandbox = sandbox
        self.open_tracking = open_tracking
        self.click_tracking = click_tracking
        self._sleep = sleep
        self._now = now
        self._rng = rng or random.Random()

    def __repr__(self) -> str:  # never the key
        return f"SendGridTransport(host={self.host!r})"

    @classmethod
    def from_config(
        cls, config: Config, *, sandbox: bool = False, need_key: bool = True, **kwargs: Any
    ) -> SendGridTransport:
        sg = config.sendgrid
        key = api_key(config, required=need_key)
        n = config.newsletter
        return cls(
            key,
            host=sg.host,
            from_email=n.from_email,
            from_name=config.from_name,
            reply_to=n.reply_to,
            categories=tuple(sg.categories),
            asm_group_id=sg.asm_group_id,
            timeout=sg.timeout,
            max_retries=sg.max_retries,
            max_wait=sg.max_wait,
            max_batch=sg.max_per_request,
            sandbox=sandbox,
            open_tracking=sg.open_tracking,
            click_tracking=sg.click_tracking,
            **kwargs,
        )

    # ---- the request body

    def body(self, batch: Batch) -> dict[str, Any]:
        content = batch.content
        body: dict[str, Any] = {
            "personalizations": [self._personalization(batch, r) for r in batch.recipients],
            "from": {"email": self.from_email, **({"name": self.from_name} if self.from_name else {})},
            "subject": content.subject,
            # SendGrid requires text/plain first, each type once.
            "content": [{"type": "text/plain", "value": content.text}, {"type": "text/html", "value": content.html}],
        }
        if self.reply_to:
            body["reply_to"] = {"email": self.reply_to}
        if self.categories:
            body["categories"] = list(self.categories)
        if self.asm_group_id:
            body["asm"] = {"group_id": self.asm_group_id}
        # Always said, on or off: the account's own defaults must not switch tracking on unasked.
        body["tracking_settings"] = {
            "open_tracking": {"enable": self.open_tracking},
            "click_tracking": {"enable": self.click_tracking, "enable_text": self.click_tracking},
        }
        if self.sandbox:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        if batch.schedule is not None:
            body["batch_id"] = batch.schedule.batch_id
            body["send_at"] = batch.schedule.send_at
        return body

    def _personalization(self, batch: Batch, recipient: Recipient) -> dict[str, Any]:
        subscriber = recipient.subscriber
        to = {"email": subscriber.email, **({"name": subscriber.name} if subscriber.name else {})}
        p: dict[str, Any] = {
            "to": [to],
            "custom_args": {"edition": batch.edition_id, "subscriber": subscriber.id},
        }
        subs = personalize.substitutions(batch.content.tokens, recipient.values)
        if subs:
            p["substitutions"] = subs
        if recipient.headers:
            p["headers"] = dict(recipient.headers)
        return p

    # ---- sending

    def send(self, batch: Batch) -> Outcome:
        try:  # built before the request: a failure here sent nothing
            body = self.body(batch)
        except Exception as exc:  # noqa: BLE001 - any error building the body fails this request
            return render_failed(exc)
        try:
            response = self._call("mail/send", lambda: self._client.client.mail.send.post(request_body=body))
        except _Fatal as exc:
            return Outcome("failed", error=str(exc))
        except _NotSent as exc:
            return Outcome("retry", error=str(exc))
        except _Lost as exc:
            return Outcome("ambiguous", error=str(exc))
        if self.sandbox:  # 200, validated, never delivered; the caller keeps no ledger for it
            return Outcome("accepted", message_id="sandbox")
        message_id = (response.headers.get("X-Message-Id") or "") if response.headers else ""
        return Outcome("accepted", message_id=message_id)

    def new_batch(self) -> str:
        try:
            response = self._call("mail/batch", lambda: self._client.client.mail.batch.post())
        except _SendGridFailure as exc:
            raise SendError(f"could not create a SendGrid batch id: {exc}") from None
        return str(json.loads(response.body)["batch_id"])

    def cancel(self, batch_id: str) -> bool:
        """Cancel a scheduled batch; True when SendGrid confirmed (or it was already cancelled)."""
        request = {"batch_id": batch_id, "status": "cancel"}
        try:
            self._call("scheduled_sends", lambda: self._client.client.user.scheduled_sends.post(request_body=request))
        except _Fatal:
            # A batch that already has a status is refused; that status may be "pause" (which
            # still delivers once resumed), not "cancel": ask which.
            return self._status(batch_id) == "cancel"
        except _SendGridFailure:
            return False
        return True

    def _status(self, batch_id: str) -> str:
        """A batch's scheduled-send status (cancel, pause), or '' when it has none or cannot be read."""
        endpoint = self._client.client.user.scheduled_sends._(batch_id)
        try:
            response = self._call(f"scheduled_sends/{batch_id}", lambda: endpoint.get())
            items = json.loads(response.body or b"[]")
        except (_SendGridFailure, ValueError):
            return ""
        if isinstance(items, dict):
            items = [items]
        statuses = [i.get("status") for i in items if isinstance(i, dict) and i.get("batch_id", batch_id) == batch_id]
        return str(statuses[0]) if len(statuses) == 1 and statuses[0] else ""

    def close(self) -> None:
        self.pool.close()

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled as its settings (for a sender process, which makes its own connections); the
        key travels with them, through the pipe to that child, and nowhere else."""
        return (_remade, (self._recipe,))

    def _call(self, what: str, request: Callable[[], Any]) -> Any:
        """One API call with bounded retries. Raises AuthError, _Fatal, _NotSent or _Lost."""
        attempt = 0
        while True:
            try:
                return self._attempt(request)
            except _Retry as exc:
                if attempt >= self.max_retries:
                    raise _NotSent(f"{what}: gave up after {attempt + 1} attempts: {exc}") from None
                self._sleep(self._delay(attempt, exc.wait))
                attempt += 1

    def _attempt(self, request: Callable[[], Any]) -> Any:
        try:
            return request()
        except HTTPError as exc:
            status = int(exc.status_code)
            if status == 401:
                raise AuthError("SendGrid: the API key was refused (401)") from None
            if status in LOST_STATUSES:
                raise _Lost(f"HTTP {status} (gateway timeout): SendGrid may have queued the request") from None
            if status in RETRY_STATUSES:
                raise _Retry(f"HTTP {status}", self._reset_wait(exc) if status == 429 else None) from None
            raise _Fatal(f"HTTP {status}: {_error_text(exc.body)}") from None
        except URLError as exc:
            # Raised while the request was still being sent: SendGrid cannot have queued it.
            raise _Retry(f"request not sent: {exc.reason}") from None
        except (http.client.HTTPException, OSError) as exc:
            # The body left; the answer did not arrive (dropped, reset, read timeout).
            raise _Lost(f"no answer after the request was sent ({type(exc).__name__}: {exc})") from None

    def _reset_wait(self, exc: HTTPError) -> float | None:
        headers = exc.headers or {}
        reset = headers.get("X-RateLimit-Reset")
        try:
            return max(0.0, float(reset) - self._now()) if reset is not None else None
        except ValueError:
            return None

    def _delay(self, attempt: int, wait: float | None) -> float:
        if wait is None:  # exponential backoff with full jitter
            wait = self._rng.uniform(0, min(self.max_wait, 0.5 * 2**attempt))
        return min(self.max_wait, wait)


def _remade(recipe: dict[str, Any]) -> SendGridTransport:
    return SendGridTransport(**recipe)


class _SendGridFailure(Exception):
    pass


class _Fatal(_SendGridFailure):
    """A final answer refusing the request (400, 403, 413 ...)."""


class _NotSent(_SendGridFailure):
    """Retries exhausted; the request never got through."""


class _Lost(_SendGridFailure):
    """It may have been accepted: the answer is missing."""


def _error_text(body: Any) -> str:
    """SendGrid's own error messages, one line."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        errors = json.loads(body).get("errors") or []
        text = "; ".join(f"{e.get('message')}" + (f" ({e['field']})" if e.get("field") else "") for e in errors)
        return text or str(body)[:300]
    except (ValueError, AttributeError, TypeError):
        return str(body)[:300]
