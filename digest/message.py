"""`Email` -> a MIME message (for .eml files, the outbox and SMTP)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from digest.errors import TemplateError
from digest.models import Email, Subscriber

#: Headers whose value is a list of `<...>` entries (RFC 2369 List-Unsubscribe, RFC 8058's
#: List-Unsubscribe-Post, RFC 2919 List-Id). Mailbox providers parse them as written: an RFC 2047
#: encoded-word there (what the email package makes of a long URL with no spaces) is forbidden
#: and costs every recipient the one-click button.
LIST_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post", "list-id"})
_LINE = 78  #: fold at this length when a header has more than one entry
_MAX_LINE = 998  #: RFC 5322: no line may be longer, folded or not
_BETWEEN = re.compile(r"(?<=>)\s*,\s*(?=<)")  #: the comma between two `<...>` entries
#: Allowed unescaped in a URI (RFC 3986 reserved + unreserved, and `%` of existing escapes).
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


def fold_list_header(name: str, value: str, linesep: str = "\r\n") -> str:
    """`Name: <a>, <b>` as raw ASCII, folded only between entries and never encoded.

    Non-ASCII characters (an internationalised mailto address) are percent-encoded, as RFC 3987
    maps an IRI to a URI. A control character, or one entry too long for a line, is an error:
    there is no correct way to write it.
    """
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise TemplateError(f"{name} header: control character in {value!r}")
    value = quote(value, safe=_URI_SAFE + ' <>"') if not value.isascii() else value
    # `<a>, <b>`: the entries; List-Unsubscribe-Post or a List-Id with a phrase is one entry
    entries = _BETWEEN.split(value.strip())
    single = f"{name}: {', '.join(entries)}"
    if len(single) <= _LINE or len(entries) == 1:
        lines = [single]
    else:
        lines = [f"{name}: {entries[0]},", *(f" {e}," for e in entries[1:-1]), f" {entries[-1]}"]
    if any(len(line) > _MAX_LINE for line in lines):
        raise TemplateError(f"{name} header: an entry is longer than the {_MAX_LINE} characters a line may hold")
    return linesep.join(lines) + linesep


class _Policy(EmailPolicy):
    """policy.SMTP, except that the list headers are written by `fold_list_header`."""

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in LIST_HEADERS:
            return fold_list_header(name, str(value), self.linesep)
        folded: str = super().fold(name, value)
        return folded

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in LIST_HEADERS:
            return fold_list_header(name, str(value), self.linesep).encode("ascii")
        return super().fold_binary(name, value)


#: What every message is written with (smtplib's send_message keeps it, cloned for SMTPUTF8).
POLICY = _Policy(linesep="\r\n")


def _headers(email: Email, date: datetime, edition_id: str) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = email.from_addr
    msg["To"] = email.to_addr
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id(email, edition_id)
    if email.reply_to:
        msg["Reply-To"] = email.reply_to
    for name, value in email.headers.items():
        msg[name] = value
    return msg


def message_id(email: Email, edition_id: str) -> str:
    # Stable per (edition, recipient): a resent copy is recognisably the same message.
    domain = email.from_addr.rsplit("@", 1)[-1].rstrip(">") or "localhost"
    digest = hashlib.sha256(f"{edition_id}\0{email.subscriber.id}".encode()).hexdigest()[:24]
    return f"<{edition_id or 'digest'}.{digest}@{domain}>"


def to_mime(email: Email, *, date: datetime, edition_id: str = "") -> EmailMessage:
    """multipart/alternative with the text part first (clients show the last part they can)."""
    msg = _headers(email, date, edition_id)
    msg.set_content(email.text, subtype="plain", charset="utf-8")
    # base64: MJML lines can pass SMTP's 998-byte limit
    msg.add_alternative(email.html, subtype="html", charset="utf-8", cte="base64")
    return msg


def to_bytes(email: Email, *, date: datetime, edition_id: str = "") -> bytes:
    """The same message as `to_mime(...).as_bytes()` means, written directly.

    The stdlib generator spends ~4 ms per digest writing body lines one by one; the bodies here
    are encoded by binascii in C and only the headers go through the email package.
    """
    head = _headers(email, date, edition_id).as_bytes()  # headers + blank line
    boundary = "==digest_" + hashlib.sha256(email.html.encode()).hexdigest()[:32]
    text = binascii.b2a_qp(email.text.encode("utf-8"), header=False).replace(b"\r\n", b"\n")
    html = base64.encodebytes(email.html.encode("utf-8"))
    return b"".join(
        [
            head.rstrip(b"\r\n").replace(b"\r\n", b"\n"),
            b"\nMIME-Version: 1.0\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'.encode(),
            f"--{boundary}\n".encode(),
            b'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n',
            text + b"\n",  # the newline before a boundary belongs to the boundary
            f"--{boundary}\n".encode(),
            b'Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: base64\n\n',
            html,
            f"--{boundary}--\n".encode(),
        ]
    )


def eml_name(subscriber: Subscriber) -> str:
    """A file name for a subscriber's .eml: the address itself when it is file-safe; otherwise a
    cleaned form plus a hash of the address, so `a!b@x` and `a#b@x` never overwrite each other."""
    address = subscriber.email.casefold()
    safe = "".join(ch if ch.isalnum() or ch in "@._-+" else "_" for ch in address)
    if safe != address:
        safe += "-" + hashlib.sha256(address.encode()).hexdigest()[:10]
    return f"{safe}.eml"
