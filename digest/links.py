"""The signed links each email carries: unsubscribe and preferences URLs.

Each link holds a token naming the subscriber's opaque id (tokens.py), never the address. Ids live
in the subscriber state; the first link a run makes fetches (and creates, where missing) the ids of
every active subscriber in ONE call, one transaction, so a send to 100,000 people is one write and
not 100,000. Anyone else (a test recipient, an address asked for by hand) is fetched on its own.

A run that must write nothing (a preview, `digest check`, a test send) reads existing ids only and
gives a subscriber without one a throwaway id: the email looks exactly as it will be sent (same
length, same layout), but that link resolves to nobody until a real send or build makes the id.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from functools import cached_property
from urllib.parse import urljoin

from digest.config import Config
from digest.models import Subscriber
from digest.store import open_existing_state, open_state
from digest.tokens import Signer, new_token_id, secret_from_env


def preferences_base(config: Config) -> str:
    """`sending.preferences_url`, else the `preferences` page next to the unsubscribe endpoint."""
    s = config.sending
    if s.preferences_url:
        return s.preferences_url
    return urljoin(s.unsubscribe_url, "preferences") if s.unsubscribe_url else ""


class Links:
    """Link maker for one run. Safe to share between threads (the send path may render in several)."""

    def __init__(
        self, config: Config, recipients: Sequence[Subscriber], *, persist: bool = True, secret: bytes | None = None
    ):
        """`secret`: the signing secret when the caller holds it already (`digest serve`), else
        it is read from the environment on first use."""
        self.config = config
        self._secret = secret
        self._recipients = recipients
        self._persist = persist
        self._ids: dict[str, str] | None = None
        self._throwaway: dict[str, str] = {}  #: click ids of a run that writes nothing
        self._lock = threading.Lock()

    @cached_property
    def secret(self) -> bytes | None:
        """The signing secret when an endpoint is configured (a missing one is an error here)."""
        if not (self.config.sending.unsubscribe_url or self.config.sending.preferences_url):
            return None
        return self._secret or secret_from_env(self.config.sending.secret_env)

    @cached_property
    def _signer(self) -> Signer | None:
        return Signer(self.secret) if self.secret is not None else None

    @cached_property
    def _bases(self) -> tuple[str, str]:
        """The unsubscribe and preferences URLs, each up to where its token goes ('' for none):
        worked out once, not twice per recipient."""
        s = self.config.sending
        prefs = preferences_base(self.config)
        return (
            _with_token(s.unsubscribe_url, "") if s.unsubscribe_url else "",
            _with_token(prefs, "") if prefs else "",
        )

    def unsubscribe_url(self, subscriber: Subscriber) -> str:
        """The signed one-click URL when an endpoint is configured, else a mailto to the sender."""
        base = self._bases[0]
        if base and self._signer is not None:
            return base + self._signer.token(self.token_id(subscriber.id), "unsubscribe")
        return f"mailto:{self.config.newsletter.from_email}?subject=unsubscribe"

    def preferences_url(self, subscriber: Subscriber) -> str:
        """The signed preferences page URL (its own token purpose), or '' without an endpoint."""
        base = self._bases[1]
        if not base or self._signer is None:
            return ""
        return base + self._signer.token(self.token_id(subscriber.id), "preferences")

    def click_token(self, subscriber: Subscriber) -> str:
        """The reader's part of a first-party click link (clicks.py), or '' when clicks are not tracked.

        A run that writes nothing (a preview, a check, a test send) always uses a throwaway id:
        the link looks as it will be sent, but an editor's or a tester's click counts for nobody.
        """
        if not (self.config.tracking.clicks and self.config.sending.unsubscribe_url) or self.secret is None:
            return ""
        if self._persist:
            token_id = self.token_id(subscriber.id)
        else:
            with self._lock:
                token_id = self._throwaway.setdefault(subscriber.id, new_token_id())
        assert self._signer is not None
        return self._signer.token(token_id, "click")

    def token_id(self, subscriber_id: str) -> str:
        with self._lock:
            if self._ids is None:
                self._ids = self._fetch([s.id for s in self._recipients if s.active])
            found = self._ids.get(subscriber_id)
            if found is None:
                found = self._ids[subscriber_id] = self._fetch([subscriber_id])[subscriber_id]
            return found

    def _fetch(self, subscriber_ids: list[str]) -> dict[str, str]:
        if self._persist:
            with open_state(self.config) as state:
                return state.token_ids(subscriber_ids)
        existing = open_existing_state(self.config)
        found: dict[str, str] = {}
        if existing is not None:
            with existing:
                found = existing.token_ids(subscriber_ids, create=False)
        return {s: found.get(s) or new_token_id() for s in subscriber_ids}


def edition_slug(edition_id: str) -> str:
    """An edition id as one safe path segment of the web archive: 2026-W48 stays 2026-W48; anything
    else is cleaned and given a hash of the id, so two ids never share a page."""
    slug = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "-" for ch in edition_id).strip(".-")
    if slug != edition_id:
        slug = f"{slug or 'edition'}-{hashlib.sha256(edition_id.encode()).hexdigest()[:8]}"
    return slug


def web_version_url(config: Config, edition_id: str) -> str:
    """The edition's page in the web archive (`[archive] base_url`), or '' without an archive.

    The same for every reader of the edition, so the frame that carries it stays compile-once."""
    base = config.archive.base_url
    if not base:
        return ""
    return f"{base.rstrip('/')}/{edition_slug(edition_id)}/"


def _with_token(base: str, token: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}token={token}"
