"""The signup store on its own, on both engines: what its constraints guarantee under concurrent
use (a link works once, the daily limit holds), expiry, cancelling, purging and erasing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digest.signup.store import SignupRequest, SignupStore, address_key
from digest.store import locate, open_signups, open_state
from digest.tokens import new_token_id

pytestmark = pytest.mark.usefixtures("engine")

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def opener(tmp_path: Path) -> Callable[[], SignupStore]:
    """Opens the store as each process would: its own connection (the engine's: SQLite files in
    tmp_path, or the test's PostgreSQL database)."""
    return lambda: open_signups(locate(tmp_path))


@pytest.fixture
def store(opener: Callable[[], SignupStore]) -> Iterator[SignupStore]:
    with opener() as s:
        yield s


def request(email: str = "a@example.org", **kw: Any) -> SignupRequest:
    return SignupRequest(email=email, consent_text="Yes please.", **kw)


def add(store: SignupStore, req: SignupRequest, at: datetime = T0, *, limit: int = 100) -> str:
    cid = new_token_id()
    assert store.add_request(req, cid, at, at + timedelta(hours=48), limit=limit, since=at - DAY)
    return cid


def in_threads(n: int, work: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait(timeout=60)
        results[i] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_a_confirmation_succeeds_once_however_many_race_for_it(store, opener) -> None:
    cid = add(store, request(tags=("Climate",)))

    def confirm() -> bool:
        with opener() as own:
            return own.confirm(cid, T0 + timedelta(hours=1), "") is not None

    assert sorted(in_threads(8, confirm)) == [False] * 7 + [True]
    signup = store.signup("a@example.org")
    assert signup is not None and signup.status == "active" and signup.tags == ("Climate",)


def test_the_daily_limit_holds_under_concurrent_requests(store, opener) -> None:
    def ask() -> bool:
        with opener() as own:
            cid = new_token_id()
            return own.add_request(request("V@example.org"), cid, T0, T0 + DAY, limit=3, since=T0 - DAY)

    assert sorted(in_threads(10, ask)) == [False] * 7 + [True] * 3
    assert store.requests_since("v@example.org", T0 - DAY) == 3
    # a day later the window has moved on
    later = T0 + DAY + timedelta(seconds=1)
    assert store.add_request(request("v@example.org"), new_token_id(), later, later + DAY, limit=3, since=later - DAY)


def test_expired_links_do_not_confirm_and_cancelled_ones_neither(store) -> None:
    old = add(store, request())
    assert store.confirm(old, T0 + timedelta(hours=48, seconds=1), "") is None
    fresh = add(store, request(), T0 + DAY)
    cancelled = store.cancel(fresh, T0 + DAY + timedelta(minutes=1))
    assert cancelled is not None and store.signup("a@example.org") is None
    assert store.confirm(fresh, T0 + DAY + timedelta(minutes=2), "") is None
    assert store.cancel(fresh, T0 + DAY + timedelta(minutes=3)) is None  # nothing left to cancel


def test_a_new_request_never_downgrades_an_active_signup(store) -> None:
    store.confirm(add(store, request(tags=("Climate",))), T0, "")
    add(store, request(tags=("Space",)), T0 + timedelta(hours=1))
    signup = store.signup("a@example.org")
    assert signup is not None and (signup.status, signup.tags) == ("active", ("Climate",))


def test_confirming_lifts_the_persons_own_unsubscribes_only(store, tmp_path: Path) -> None:
    with open_state(locate(tmp_path)) as state:
        state.opt_out("a@example.org", "unsubscribed", "one-click")
        state.opt_out("a@example.org", "group_unsubscribed", "webhook")
        state.opt_out("a@example.org", "bounced", "webhook")
    store.confirm(add(store, request()), T0, "")
    with open_state(locate(tmp_path)) as state:
        assert [o.reason for o in state.optouts()["a@example.org"]] == ["bounced"]
        assert state.preferences()["a@example.org"].tags == ()


def test_purge_drops_stale_requests_and_erases_old_client_addresses(store) -> None:
    keep = add(store, request("kept@example.org", ip="203.0.113.9"))
    store.confirm(keep, T0, "")
    add(store, request("stale@example.org", ip="203.0.113.10"))
    counts = store.purge(pending_before=T0 + timedelta(seconds=1), ip_before=T0 + timedelta(seconds=1))
    assert (counts.pending, counts.requests, counts.addresses) == (1, 1, 1)
    assert store.signup("stale@example.org") is None and store.consents_for("stale@example.org") == []
    [kept] = store.consents_for("kept@example.org")
    assert kept.ip is None and kept.confirmed_at == T0


def test_forget_keeps_only_the_hash_and_the_most_serious_reason(store) -> None:
    store.confirm(add(store, request("Gone@Example.org")), T0, "")
    erased = store.forget("gone@example.org", "complained", T0)
    assert erased["signups"] == 1 and erased["consents"] == 1
    assert store.signup("gone@example.org") is None and store.consents_for("gone@example.org") == []
    assert store.forgotten() == {address_key("GONE@example.org"): "complained"}
    assert store.forgotten_reason("gone@EXAMPLE.org") == "complained"
    assert "gone" not in address_key("gone@example.org")


def test_latest_consents_is_each_subscribers_last_confirmed_one(store) -> None:
    first = add(store, request())
    store.confirm(first, T0, "")
    second = add(store, request(), T0 + DAY)
    store.confirm(second, T0 + DAY, "")
    add(store, request(), T0 + 2 * DAY)  # unconfirmed: not a consent yet
    assert store.latest_consents()["a@example.org"].consent_id == second
