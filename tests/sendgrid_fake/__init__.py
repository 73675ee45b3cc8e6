"""A local stand-in for SendGrid's v3 HTTP API, good enough for the real `sendgrid` client.

Stdlib only, bound to 127.0.0.1. In-process::

    with FakeSendGrid() as fake:
        sg = SendGridAPIClient(fake.api_key, host=fake.url)
        sg.client.timeout = 5          # the client has no timeout of its own
        sg.send(mail)
        assert fake.delivered_to()["a@example.com"] == 1

As its own process (crash tests that kill -9 a client and count deliveries)::

    python tests/sendgrid_fake_process.py --port 0 --log deliveries.jsonl [--script 429,ok]

(or `python -m sendgrid_fake ...` with tests/ on the path)

prints ``READY http://127.0.0.1:PORT`` once listening, and appends one JSON line per delivered
recipient to the log (flushed and fsynced before the response is sent), and one
``{"cancelled": address}`` line per recipient of a scheduled send cancelled in time, until
SIGTERM/SIGINT.

The package: limits.py (SendGrid's documented limits, each citing its source), validation.py
(mail/send bodies checked against them, SendGrid's error objects), state.py (requests, accepted
mail, messages, scripted faults), fake.py (`FakeSendGrid`: the state and its answers),
server.py (the HTTP side), __main__.py (the process).
"""

from __future__ import annotations

from sendgrid_fake.fake import FakeSendGrid
from sendgrid_fake.limits import (
    AUTH_ERROR,
    CANCEL_LEAD_SECONDS,
    MAX_BODY_BYTES,
    MAX_CATEGORIES,
    MAX_CATEGORY_LEN,
    MAX_CUSTOM_ARGS_BYTES,
    MAX_GROUPS_TO_DISPLAY,
    MAX_PERSONALIZATIONS,
    MAX_RECIPIENTS,
    MAX_SEND_AT_AHEAD,
    MAX_SUBSTITUTIONS_BYTES,
    RESERVED_HEADERS,
    SUPPRESSION_LISTS,
)
from sendgrid_fake.state import Fault, Message, RequestRecord, parse_fault
from sendgrid_fake.validation import valid_email, validate_mail

__all__ = [
    "AUTH_ERROR",
    "CANCEL_LEAD_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_CATEGORIES",
    "MAX_CATEGORY_LEN",
    "MAX_CUSTOM_ARGS_BYTES",
    "MAX_GROUPS_TO_DISPLAY",
    "MAX_PERSONALIZATIONS",
    "MAX_RECIPIENTS",
    "MAX_SEND_AT_AHEAD",
    "MAX_SUBSTITUTIONS_BYTES",
    "RESERVED_HEADERS",
    "SUPPRESSION_LISTS",
    "Fault",
    "FakeSendGrid",
    "Message",
    "RequestRecord",
    "parse_fault",
    "valid_email",
    "validate_mail",
]
