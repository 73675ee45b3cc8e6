"""Finding one subscriber per request in O(1): the public app must never read the whole list per hit.

- `SubscriberIndex`: the subscriber list by id, read once and again only when its file changes
  (inode, size or mtime), so an edited or replaced list is seen at the next request.
- The state's rows for that one subscriber (primary-key lookups, `SubscriberState.overlay_for`).
- `LinkResolver`: a verified token's claim -> the subscriber it names (an opaque id through the
  state's id table; an address, from a link made before opaque ids, only during the transition).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from digest.config import Config
from digest.models import Subscriber
from digest.store import open_existing_state, open_subscriber_table
from digest.subscribers import SubscriberList, load_subscribers
from digest.tokens import Claim

log = logging.getLogger("digest.public")

_Signature = tuple[int, int, int]


def _signature(path: Path) -> _Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class SubscriberIndex:
    """The list by subscriber id. Thread-safe: one reload at a time, readers wait for it."""

    def __init__(self, path: Path, loader: Callable[[Path], SubscriberList] = load_subscribers):
        self.path = path
        self._loader = loader
        self._signature: _Signature | None = None
        self._by_id: dict[str, Subscriber] = {}
        self._loaded = False
        self._lock = threading.Lock()
        self.loads = 0  #: how many times the file was read (a test and the benchmark look)

    def get(self, subscriber_id: str) -> Subscriber | None:
        self.refresh()
        return self._by_id.get(subscriber_id)

    def refresh(self) -> None:
        """Re-read the list if its file changed since the last read (one stat per request)."""
        if self._loaded and _signature(self.path) == self._signature:
            return
        with self._lock:
            # The stat is taken before reading: a file rewritten during the read has a newer
            # signature than the one kept, so the next request reads it again.
            signature = _signature(self.path)
            if self._loaded and signature == self._signature:
                return  # another thread reloaded it while this one waited
            loaded = self._loader(self.path)
            by_id: dict[str, Subscriber] = {}
            for subscriber in loaded.subscribers:
                by_id.setdefault(subscriber.id, subscriber)
            self._by_id, self._signature, self._loaded = by_id, signature, True
            self.loads += 1
            log.info("subscriber list read: %d subscribers", len(by_id))


class TableIndex:
    """The subscribers table (`[subscribers] source = "database"`): one primary-key lookup per
    request, so an import is seen at once and nothing is held in memory."""

    loads = 0

    def __init__(self, config: Config):
        self.config = config

    def get(self, subscriber_id: str) -> Subscriber | None:
        with open_subscriber_table(self.config) as table:
            return table.get(subscriber_id)

    def refresh(self) -> None:
        with open_subscriber_table(self.config):
            pass  # an unreachable or unmigrated database fails at start, not on the first click


def subscriber_index(config: Config) -> SubscriberIndex | TableIndex:
    if config.subscribers.source == "database":
        return TableIndex(config)
    return SubscriberIndex(config.subscribers.path)


def current_subscriber(index: SubscriberIndex | TableIndex, where: Config, subscriber_id: str) -> Subscriber | None:
    """The subscriber as the next run will see them: the list's row or their confirmed signup,
    with their state laid over (digest.signup.merge's rules, for this one address)."""
    from digest.signup.merge import one_subscriber
    from digest.store import open_existing_signups

    listed = index.get(subscriber_id)
    state = open_existing_state(where)
    if state is None:
        return listed
    with state:
        overlay = state.overlay_for(subscriber_id)
    store = open_existing_signups(where)
    signup, kept = None, None
    if store is not None:
        with store:
            signup = store.signup(subscriber_id)
            kept = store.forgotten_reason(subscriber_id)
    return one_subscriber(listed, signup, kept, overlay)


class LinkResolver:
    """Which subscriber a verified claim names, or why none: "unknown" or "expired"."""

    def __init__(self, where: Config, legacy_days: int, now: Callable[[], float] = time.time):
        self.where = where
        self.legacy_days = legacy_days
        self._now = now
        self._opaque_since: float | None = None  # cached once known: it never changes

    def resolve(self, claim: Claim) -> tuple[str | None, str]:
        if claim.kind == "address":
            return (claim.value.casefold(), "") if self.legacy_open() else (None, "expired")
        state = open_existing_state(self.where)
        if state is None:
            return None, "unknown"
        with state:
            subscriber = state.subscriber_for_token_id(claim.value)
        if subscriber is None:
            # Correctly signed, so we made it: the state that knew this id is gone or was replaced.
            log.warning("a signed link names an id the subscriber state does not hold (state replaced?)")
            return None, "unknown"
        return subscriber, ""

    def legacy_open(self) -> bool:
        """Whether links carrying the address still work: until `legacy_days` after the first
        opaque id was made. Before that moment they are the only links in inboxes."""
        if self.legacy_days <= 0:
            return False
        if self._opaque_since is None:
            state = open_existing_state(self.where)
            if state is None:
                return True
            with state:
                first = state.first_token_id_at()
            if first is None:
                return True
            self._opaque_since = first.timestamp()
        return self._now() < self._opaque_since + timedelta(days=self.legacy_days).total_seconds()
