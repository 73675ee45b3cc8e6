"""`Email` -> a MIME message (for .eml files, the outbox and SMTP)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from digest.models import Email


def to_mime(email: Email, *, date: datetime, edition_id: str = "") -> EmailMessage:
    """multipart/alternative with the text part first (clients show the last part they can)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = email.from_addr
    msg["To"] = email.to_addr
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(date)
    domain = email.from_addr.rsplit("@", 1)[-1].rstrip(">") or "localhost"
    # Stable per (edition, recipient): a resent copy is recognisably the same message.
    digest = hashlib.sha256(f"{edition_id}\0{email.subscriber.id}".encode()).hexdigest()[:24]
    msg["Message-ID"] = f"<{edition_id or 'digest'}.{digest}@{domain}>"
    if email.reply_to:
        msg["Reply-To"] = email.reply_to
    for name, value in email.headers.items():
        msg[name] = value
    msg.set_content(email.text, subtype="plain", charset="utf-8")
    msg.add_alternative(email.html, subtype="html", charset="utf-8")
    return msg


def to_bytes(email: Email, *, date: datetime, edition_id: str = "") -> bytes:
    return to_mime(email, date=date, edition_id=edition_id).as_bytes()
