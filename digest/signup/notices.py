"""The signup emails: the confirmation (double opt-in) and the welcome.

Both are rendered by the digest's own composer from the theme's templates (`confirm.mjml.j2` +
`confirm.txt.j2`, `welcome.mjml.j2` + `welcome.txt.j2`: a user overrides them file by file like
any other), carry the same raw List-* headers, and leave through the configured transport as a
one-recipient batch. They are not digests: the ledger does not hold them, and each gets an
edition id of its own (`signup-confirm-...`, `signup-welcome-...`) so no two share a Message-ID.

- The confirmation's List-Unsubscribe is the request's cancel link: a mail app's unsubscribe
  button (RFC 8058 one-click) on an unwanted confirmation cancels that request, never confirms it.
- The welcome's are the subscriber's own unsubscribe link, exactly as in every digest.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from digest import personalize
from digest.compose import Composer, Content
from digest.config import Config
from digest.models import Email, Selection, Subscriber
from digest.transports import Batch, Outcome, Recipient, make_transport

log = logging.getLogger("digest.signup")

CONFIRM_TEMPLATES = ("confirm.mjml.j2", "confirm.txt.j2")
WELCOME_TEMPLATES = ("welcome.mjml.j2", "welcome.txt.j2")


@dataclass(frozen=True)
class Story:
    """An article of the last edition, as the welcome email lists it."""

    title: str
    url: str


def _named(text: str, config: Config) -> str:
    # A plain replace, not str.format: a config value must never reach attribute lookups.
    return text.replace("{newsletter}", config.newsletter.name)


def hours_label(hours: int) -> str:
    if hours % 24 == 0:
        days = hours // 24
        return f"{days} day" + ("s" if days != 1 else "")
    return f"{hours} hour" + ("s" if hours != 1 else "")


class Notices:
    """Renders and sends the signup emails of one config. Thread-safe to share: it keeps only the
    composer's template cache."""

    def __init__(self, config: Config):
        self.config = config
        self.composer = Composer(config)

    def consent_text(self) -> str:
        return _named(self.config.signup.consent_text, self.config)

    def confirmation(
        self,
        subscriber: Subscriber,
        *,
        confirm_url: str,
        cancel_url: str,
        consent_text: str,
        topics: Sequence[str] = (),
        cadence: str = "",
    ) -> Email:
        values = self._values(subscriber, unsubscribe_url=cancel_url)
        subject = _named(self.config.signup.confirm_subject, self.config)
        preheader = "One click and you are subscribed. Not you? Ignore this email."
        html, text = self.composer.render_notice(
            *CONFIRM_TEMPLATES,
            recipient=personalize.values_view(values),
            confirm_url=confirm_url,
            cancel_url=cancel_url,
            expires_label=hours_label(self.config.signup.confirm_hours),
            consent_text=consent_text,
            topics=list(topics),
            cadence=cadence,
            preheader=preheader,
        )
        return self._email(subscriber, subject, preheader, html, text, values)

    def welcome(
        self,
        subscriber: Subscriber,
        *,
        unsubscribe_url: str,
        preferences_url: str,
        stories: Sequence[Story] = (),
        edition_label: str = "",
    ) -> Email:
        values = self._values(subscriber, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url)
        subject = _named(self.config.signup.welcome_subject, self.config)
        preheader = f"You are subscribed to {self.config.newsletter.name}."
        html, text = self.composer.render_notice(
            *WELCOME_TEMPLATES,
            recipient=personalize.values_view(values),
            articles=[{"title": s.title, "url": s.url} for s in stories],
            edition_label=edition_label or "the last edition",
            preheader=preheader,
        )
        return self._email(subscriber, subject, preheader, html, text, values)

    def _values(self, subscriber: Subscriber, **links: str) -> dict[str, str]:
        return personalize.recipient_values(subscriber, default_name=self.config.newsletter.default_name, **links)

    def _email(
        self, subscriber: Subscriber, subject: str, preheader: str, html: str, text: str, values: dict[str, str]
    ) -> Email:
        return self.composer.make_email(
            subscriber, subject=subject, preheader=preheader, html=html, text=text, article_ids=(), values=values
        )

    def send(self, email: Email, kind: str, at: datetime) -> Outcome:
        """Hand one signup email to the configured transport (one recipient, final content)."""
        edition_id = f"signup-{kind}-{at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
        content = Content((), (), email.subject, email.preheader, email.html, email.text)
        selection = Selection(email.subscriber, (), at, at)
        recipient = Recipient(selection, {}, dict(email.headers))
        transport = make_transport(self.config, at=at)
        try:
            outcome = transport.send(Batch(edition_id, content, (recipient,), lambda _: email))
        except Exception as exc:  # noqa: BLE001 - a transport that raises: the request may have left
            outcome = Outcome("ambiguous", error=f"{type(exc).__name__}: {exc}")
        finally:
            transport.close()
        if outcome.kind != "accepted":
            log.warning("signup: the %s email was not sent (%s): %s", kind, outcome.kind, outcome.error[:300])
        return outcome
