"""SMTP (smtplib): one MIME message per recipient, the same headers as the .eml files.

One connection is reused for the run. Errors are classified like SendGrid's: a refusal before the
message was handed over fails it (5xx for good, 4xx retried); a connection lost *after* the DATA
was sent is ambiguous, since the server may already have queued it.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import time
from collections.abc import Callable
from datetime import datetime

from digest.config import Config
from digest.errors import AuthError, NotSentError
from digest.message import to_mime
from digest.transports.base import Batch, Outcome, Unschedulable, render_failed


class SmtpTransport(Unschedulable):
    name = "smtp"
    max_batch = 1

    def __init__(
        self,
        host: str,
        port: int,
        *,
        date: datetime,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.host = host
        self.port = port
        self.date = date
        self.security = security
        self._username = username
        self._password = password
        self.timeout = timeout
        self.retries = retries
        self._sleep = sleep
        self._ssl = ssl_context or ssl.create_default_context()
        self._conn: smtplib.SMTP | None = None
        self._down = ""  #: why the relay was given up on for this run, once it was

    def __repr__(self) -> str:  # never the password
        return f"SmtpTransport({self.host!r}, {self.port}, security={self.security!r})"

    @classmethod
    def from_config(cls, config: Config, *, date: datetime, **kwargs: object) -> SmtpTransport:
        s = config.smtp
        username = os.environ.get(s.username_env, "") if s.username_env else ""
        password = os.environ.get(s.password_env, "") if s.password_env else ""
        if s.ca_file is not None and "ssl_context" not in kwargs:
            kwargs["ssl_context"] = ssl.create_default_context(cafile=str(s.ca_file))
        return cls(
            s.host,
            s.port,
            date=date,
            security=s.security,
            username=username,
            password=password,
            timeout=s.timeout,
            **kwargs,  # type: ignore[arg-type]
        )

    def _connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            try:  # a reused connection the server closed while idle must not look like a lost message
                self._conn.noop()
                return self._conn
            except (smtplib.SMTPException, OSError):
                self._drop()
        conn: smtplib.SMTP
        if self.security == "ssl":
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._ssl)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        # Until it is kept in self._conn, nothing else would close this connection (_drop closes
        # only self._conn): a failed STARTTLS or login must close it here.
        try:
            if self.security == "starttls":
                conn.starttls(context=self._ssl)
            if self._username:
                conn.login(self._username, self._password)
        except smtplib.SMTPAuthenticationError:
            conn.close()
            raise AuthError(f"SMTP {self.host}: the user name or password was refused") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def send(self, batch: Batch) -> Outcome:
        (recipient,) = batch.recipients
        try:  # rendered before the relay is contacted: a failure here sent nothing
            msg = to_mime(batch.email_for(recipient), date=self.date, edition_id=batch.edition_id)
        except Exception as exc:  # noqa: BLE001 - any rendering error is this recipient's failure
            return render_failed(exc)
        message_id = str(msg["Message-ID"])
        if self._down:
            # The relay could not be reached with every retry for an earlier recipient: do not
            # spend the same minute of retries on each of the rest (they stay retryable).
            return Outcome("retry", error=self._down)
        last = ""
        connected = False
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(min(30.0, 2.0**attempt))
            try:
                conn = self._connect()
            except ssl.SSLCertVerificationError as exc:
                self._drop()
                # not a passing fault: every retry and every recipient would fail the same way
                raise NotSentError(
                    f"SMTP {self.host}: its TLS certificate is not trusted ({exc.verify_message}); "
                    "set [smtp] ca_file for a private CA"
                ) from None
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                last = f"cannot connect to {self.host}:{self.port}: {exc}"
                continue  # nothing was handed over yet
            connected = True
            try:
                conn.send_message(msg, to_addrs=[recipient.subscriber.email])
                return Outcome("accepted", message_id=message_id)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                if 400 <= code < 500:
                    last = f"{code} {_text(text)}"
                    continue
                return Outcome("failed", error=f"refused: {code} {_text(text)}")
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                if 400 <= exc.smtp_code < 500:
                    last = f"{exc.smtp_code} {_text(exc.smtp_error)}"
                    continue
                return Outcome("failed", error=f"refused: {exc.smtp_code} {_text(exc.smtp_error)}")
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self._drop()
                # We cannot tell whether the server queued the message before the line dropped.
                return Outcome("ambiguous", error=f"connection lost while sending: {exc}")
        error = f"not sent after {self.retries + 1} attempts: {last}"
        if not connected:
            self._down = f"{error} (the relay is not answering; not tried again this run)"
        return Outcome("retry", error=error)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._conn = None


def _text(value: bytes | str) -> str:
    """An SMTP reply's text: smtplib gives bytes, or str for errors it makes up itself."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
