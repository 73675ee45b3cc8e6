"""The signed links each email carries: unsubscribe and preferences URLs.

Each link holds a token naming the subscriber's opaque id (tokens.py), never the address. Ids live
in the subscriber state; the first link a run makes fetches (and creates, where missing) the ids of
every active subscriber in ONE call, one transaction, so a build for 100,000 people is one write and
not 100,000. Anyone else (a test recipient, an address asked for by hand) is fetched on its own.

A send reads them lease by lease instead (`by_lease`, `prefetch`): the ids of the rows it is about
to send, one read each through one open connection, making any that are missing. It never holds
the whole list's ids (200 MB at a million subscribers), and a sender sharing an edition with others
reads only the ids of what it sends.

A run that must write nothing (a preview, `digest check`, a test send) reads existing ids only and
gives a subscriber without one a throwaway id: the email looks exactly as it will be sent (same
length, same layout), but that link resolves to nobody until a real send or build makes the id.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from urllib.parse import urljoin

from digest.config import Config
from digest.models import Subscriber
from digest.store import open_existing_state, open_state
from digest.suppressions import SubscriberState
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
        self._unminted: dict[str, str] = {}  #: link ids of a run that writes nothing, for those without one
        self._lock = threading.Lock()
        self._lease_state: SubscriberState | None = None  #: the state a send reads each lease's ids through (by_lease)
        self._lease_thread = 0  #: the thread that opened it: a connection belongs to one thread
        self._leases: deque[dict[str, str]] = deque(maxlen=4)  #: the ids of a send's last leases

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
            for ids in self._leases:  # a send's last few leases (see prefetch), newest first
                found = ids.get(subscriber_id)
                if found is not None:
                    return found
            if self._ids is None:
                self._ids = {} if self._leases else self._fetch([s.id for s in self._recipients if s.active])
            found = self._ids.get(subscriber_id)
            if found is None:
                found = self._ids[subscriber_id] = self._fetch([subscriber_id], self._state_here())[subscriber_id]
            return found

    @contextmanager
    def by_lease(self) -> Iterator[None]:
        """For the block (one sender's pass over its leases), `prefetch` reads through one open
        state connection, opened and closed in this process (a forked worker opens its own)."""
        state = open_state(self.config) if self._persist else open_existing_state(self.config)
        if state is None:  # a run that writes nothing, before any state exists: throwaway ids
            yield
            return
        with state:
            self._lease_state, self._lease_thread = state, threading.get_ident()
            try:
                yield
            finally:
                self._lease_state, self._lease_thread = None, 0

    def prefetch(self, subscriber_ids: Sequence[str]) -> None:
        """The ids of just these subscribers (the rows a sender has leased, about to be sent), in
        one read that makes any missing; the last few leases' ids are kept. From the first call
        on, the whole list's ids are never fetched: a miss is fetched on its own."""
        fetched = self._fetch(list(subscriber_ids), self._state_here())
        with self._lock:
            # Requests of earlier leases may still be in flight, their emails made by the sender
            # threads: the last few leases stay (what one sender has in hand is two leases at most).
            self._leases.appendleft(fetched)

    def _state_here(self) -> SubscriberState | None:
        """The lease state when this thread opened it (a connection belongs to one thread), else None."""
        return self._lease_state if self._lease_thread == threading.get_ident() else None

    def _fetch(self, subscriber_ids: list[str], state: SubscriberState | None = None) -> dict[str, str]:
        if self._persist:
            if state is not None:
                return state.token_ids(subscriber_ids)
            with open_state(self.config) as opened:
                return opened.token_ids(subscriber_ids)
        found: dict[str, str] = {}
        if state is not None:
            found = state.token_ids(subscriber_ids, create=False)
        elif (existing := open_existing_state(self.config)) is not None:
            with existing:
                found = existing.token_ids(subscriber_ids, create=False)
        return {s: found.get(s) or self._throwaway_id(s) for s in subscriber_ids}

    def _throwaway_id(self, subscriber_id: str) -> str:
        """One throwaway id per subscriber for the whole run, however often it is fetched: a run
        that writes nothing reads ids lease by lease, and one email's links must agree."""
        return self._unminted.setdefault(subscriber_id, new_token_id())


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
