"""A signup from request to welcome: double opt-in, with the abuse limits that belong to an address.

    request --(checks below)--> pending signup + consent record --email--> confirmation link
    GET link  -> a page with one button (link scanners follow GETs; they never confirm)
    POST link -> the record confirmed, once -> the signup active -> welcome email

What a request is checked against, in order (each answered the same way to the visitor, so the
form never tells whether an address is known; the web app does this work off the request path):

1. the address was erased with a bounce or complaint kept, or the state or the list holds a
   bounce, complaint or invalid-address suppression: nothing is sent (a form never lifts those);
2. it is already subscribed (active or paused): nothing is sent, nothing changes;
3. it had `signup.per_address_per_day` confirmation emails in the last 24 hours, whoever asked:
   nothing is sent (no one can flood an inbox through the form);
4. otherwise a pending signup and its consent record are written and the confirmation is sent.

Someone who unsubscribed comes back the same way: confirming lifts their own unsubscribes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from digest.config import Config
from digest.models import Subscriber
from digest.signup.form import consent_text, signup_url
from digest.signup.merge import listed_status, one_subscriber
from digest.signup.notices import Notices, Story
from digest.signup.store import BLOCKING_STATUSES, LIFTABLE, Consent, PurgeCounts, SignupRequest
from digest.store import load_list, open_signups, open_state
from digest.suppressions import Overlay
from digest.tokens import make_token, new_token_id

log = logging.getLogger("digest.signup")

Verdict = Literal["sent", "already", "suppressed", "limited", "failed"]
ConfirmOutcome = Literal["confirmed", "used", "expired", "unknown", "suppressed"]
#: The window of the per-address limit on confirmation emails.
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Confirmed:
    outcome: ConfirmOutcome
    consent: Consent | None = None
    subscriber: Subscriber | None = None  #: as the next send sees them, once confirmed


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SignupFlow:
    """The signup steps for one config. `listed` finds an address's row in the subscriber list
    (the public app passes its O(1) index; by default the list file is read)."""

    def __init__(
        self,
        config: Config,
        secret: bytes,
        *,
        clock: Callable[[], datetime] = _utc_now,
        listed: Callable[[str], Subscriber | None] | None = None,
        notices: Notices | None = None,
    ):
        self.config = config
        self.secret = secret
        self.clock = clock
        self.listed = listed or self._read_listed
        self.notices = notices or Notices(config)

    def _read_listed(self, subscriber: str) -> Subscriber | None:
        return next((s for s in load_list(self.config).subscribers if s.id == subscriber), None)

    # ---- links

    def confirm_url(self, consent_id: str) -> str:
        return f"{signup_url(self.config).rstrip('/')}/confirm?token={make_token(consent_id, self.secret, 'confirm')}"

    def cancel_url(self, consent_id: str) -> str:
        return f"{signup_url(self.config).rstrip('/')}/cancel?token={make_token(consent_id, self.secret, 'cancel')}"

    # ---- a request

    def request(self, request: SignupRequest) -> Verdict:
        """Decide and act on one request (see the module's docstring); the verdict is for logs and
        tests only, never for the visitor."""
        now = self.clock()
        key = request.subscriber
        listed = self.listed(key)
        overlay = self._overlay(key)
        consent_id = new_token_id()
        limit = self.config.signup.per_address_per_day
        with open_signups(self.config) as store:
            kept = store.forgotten_reason(request.email)
            if _blocked(listed, overlay, kept):
                return "suppressed"
            current = one_subscriber(listed, store.signup(key), kept, overlay)
            if current is not None and current.status in ("active", "paused"):
                return "already"
            expires = now + timedelta(hours=self.config.signup.confirm_hours)
            if not store.add_request(request, consent_id, now, expires, limit=limit, since=now - DAY):
                return "limited"
        email = self.notices.confirmation(
            listed or Subscriber(email=request.email, name=request.name),
            confirm_url=self.confirm_url(consent_id),
            cancel_url=self.cancel_url(consent_id),
            consent_text=request.consent_text,
            topics=(*request.tags, *request.categories),
            cadence=request.cadence,
        )
        outcome = self.notices.send(email, "confirm", now)
        return "sent" if outcome.kind == "accepted" else "failed"

    def _overlay(self, subscriber: str) -> Overlay:
        with open_state(self.config) as state:
            return state.overlay_for(subscriber)

    # ---- the link

    def pending(self, consent_id: str) -> tuple[ConfirmOutcome | Literal["open"], Consent | None]:
        """What the link's GET page shows: "open" (a button), or why it cannot be used."""
        with open_signups(self.config) as store:
            consent = store.consent(consent_id)
        if consent is None:
            return "unknown", None
        state = consent.state(self.clock())
        return ("open" if state == "awaiting confirmation" else "used" if state == "confirmed" else "expired"), consent

    def confirm(self, consent_id: str) -> Confirmed:
        """The POST of the link: confirm once (what a second POST, an expired or unknown link gets
        is said in the outcome)."""
        now = self.clock()
        with open_signups(self.config) as store:
            consent = store.consent(consent_id)
            if consent is None:
                return Confirmed("unknown")
            listed = self.listed(consent.subscriber)
            overlay = self._overlay(consent.subscriber)
            if _blocked(listed, overlay, store.forgotten_reason(consent.email)):
                return Confirmed("suppressed", consent)
            done = store.confirm(consent_id, now, listed_status(listed))
            if done is None:
                return Confirmed("used" if consent.confirmed_at else "expired", consent)
            signup = store.signup(consent.subscriber)
        current = one_subscriber(listed, signup, None, self._overlay(consent.subscriber))
        log.info("signup: a subscription was confirmed (%s)", done.source)
        return Confirmed("confirmed", done, current)

    def cancel(self, consent_id: str) -> Literal["cancelled", "unsubscribed", "nothing"]:
        """The cancel link (and the confirmation email's one-click List-Unsubscribe): withdraw an
        open request; after it was confirmed, unsubscribe, as a mail app's button promises."""
        now = self.clock()
        with open_signups(self.config) as store:
            if store.cancel(consent_id, now) is not None:
                return "cancelled"
            consent = store.consent(consent_id)
        if consent is None or consent.confirmed_at is None:
            return "nothing"
        with open_state(self.config) as state:
            state.opt_out(consent.email, "unsubscribed", "confirmation email")
        return "unsubscribed"

    # ---- after confirming

    def welcome(self, subscriber: Subscriber) -> Verdict:
        """Send the welcome email (the subscriber's own links; the last edition's top stories)."""
        from digest.links import Links

        links = Links(self.config, [subscriber], secret=self.secret)
        label, stories = self.top_stories()
        email = self.notices.welcome(
            subscriber,
            unsubscribe_url=links.unsubscribe_url(subscriber),
            preferences_url=links.preferences_url(subscriber),
            stories=stories,
            edition_label=label,
        )
        outcome = self.notices.send(email, "welcome", self.clock())
        return "sent" if outcome.kind == "accepted" else "failed"

    def top_stories(self) -> tuple[str, list[Story]]:
        """The last recorded edition's label and its most clicked articles (`signup.welcome_articles`)."""
        wanted = self.config.signup.welcome_articles
        if not wanted:
            return "", []
        from digest.store import open_existing_events

        events = open_existing_events(self.config)
        if events is None:
            return "", []
        with events:
            editions = events.editions()
            if not editions:
                return "", []
            last = editions[-1]
            articles = {a.article: a for a in events.articles(last.edition)}
            clicked = [c.article for c in events.article_clicks(last.edition) if c.article in articles]
        order = list(dict.fromkeys([*clicked, *articles]))[:wanted]
        return last.label, [Story(articles[a].title, articles[a].url) for a in order]

    # ---- housekeeping

    def purge(self) -> PurgeCounts:
        """Drop stale pending signups and requests; erase client addresses past their keeping."""
        s = self.config.signup
        now = self.clock()
        with open_signups(self.config) as store:
            return store.purge(
                pending_before=now - timedelta(days=s.pending_days),
                ip_before=now - timedelta(days=s.keep_ip_days) if s.keep_ip_days else None,
            )


def _blocked(listed: Subscriber | None, overlay: Overlay, kept: str | None) -> bool:
    """A suppression no form may lift: the provider's word (bounce, complaint, invalid), or an
    erasure that kept one."""
    if kept is not None and kept != "forgotten":
        return True
    if listed is not None and listed.status in BLOCKING_STATUSES:
        return True
    return any(o.reason not in LIFTABLE for opts in overlay.optouts.values() for o in opts)


def resubscribe(config: Config, current: Subscriber, listed: Subscriber | None, at: datetime) -> bool:
    """Subscribe again from the preferences page (its signed link proves the address): the
    person's own unsubscribes lifted, a consent record kept. False for a suppression no form
    may lift (a bounce, a complaint, an invalid address)."""
    key = current.id
    with open_state(config) as state:
        overlay = state.overlay_for(key)
    with open_signups(config) as store:
        if _blocked(listed, overlay, store.forgotten_reason(key)) or current.status in BLOCKING_STATUSES:
            return False
        store.resubscribe(
            current.email,
            new_token_id(),
            at,
            source="preferences page",
            consent_text=consent_text(config),
            listed_status=listed_status(listed),
        )
    log.info("signup: subscribed again from the preferences page")
    return True
