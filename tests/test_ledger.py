"""The send ledger, on both engines: claims are exclusive, outcomes stick, selection history comes from it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from digest.ledger import ClaimItem

pytestmark = pytest.mark.usefixtures("engine")

AT = datetime(2026, 11, 30, tzinfo=UTC)


def item(sub: str, articles: tuple[str, ...] = ("a1",), at: datetime = AT) -> ClaimItem:
    return ClaimItem(sub, sub, articles, at)


def test_a_claimed_row_cannot_be_claimed_again(new_ledger) -> None:
    with new_ledger() as ledger:
        assert ledger.claim("E1", "run1", [item("a"), item("b")], transport="outbox") == ("a", "b")
        assert ledger.claim("E1", "run2", [item("a"), item("c")], transport="outbox") == ("c",)
        assert ledger.rows("E1")["a"].run_id == "run1"


def test_accepted_is_final_failed_and_cancelled_are_retryable(new_ledger) -> None:
    with new_ledger() as ledger:
        ledger.claim("E1", "r1", [item("a"), item("b"), item("c")], transport="sendgrid")
        ledger.settle("E1", ["a"], "accepted", run_id="r1", message_id="m-1")
        ledger.settle("E1", ["b"], "failed", run_id="r1", error="HTTP 400: bad")
        ledger.settle("E1", ["c"], "cancelled", run_id="r1")
        assert ledger.claim("E1", "r2", [item("a"), item("b"), item("c")], transport="sendgrid") == ("b", "c")
        rows = ledger.rows("E1")
        assert rows["a"].state == "accepted" and rows["a"].message_id == "m-1"
        assert rows["b"].attempts == 2 and rows["b"].error == ""


def test_ambiguous_is_claimed_only_when_asked(new_ledger) -> None:
    with new_ledger() as ledger:
        ledger.claim("E1", "r1", [item("a")], transport="sendgrid")
        ledger.settle("E1", ["a"], "ambiguous", run_id="r1", error="lost")
        assert ledger.claim("E1", "r2", [item("a")], transport="sendgrid") == ()
        assert ledger.claim("E1", "r2", [item("a")], transport="sendgrid", also_from=("ambiguous",)) == ("a",)


def test_settle_with_run_id_only_touches_that_runs_rows(new_ledger) -> None:
    with new_ledger() as ledger:
        ledger.claim("E1", "r1", [item("a")], transport="outbox")
        assert ledger.settle("E1", ["a"], "accepted", run_id="other") == 0
        assert ledger.rows("E1")["a"].state == "claimed"


def test_history_window_and_sent_articles(new_ledger) -> None:
    earlier = datetime(2026, 11, 23, tzinfo=UTC)
    with new_ledger() as ledger:
        ledger.claim("W47", "r1", [item("a", ("x", "y"), earlier)], transport="outbox")
        ledger.settle("W47", ["a"], "accepted", run_id="r1")
        ledger.claim("W48", "r2", [item("a", ("z",))], transport="outbox")
        ledger.settle("W48", ["a"], "ambiguous", run_id="r2")
        ledger.claim("W48", "r2", [item("b", ("q",))], transport="outbox")
        ledger.settle("W48", ["b"], "failed", run_id="r2")
        history = ledger.histories(exclude_edition="W49")
        # the window starts at the last *accepted* delivery; maybe-sent articles are never resent
        assert history["a"].last_delivery == earlier
        assert history["a"].sent_article_ids == {"x", "y", "z"}
        assert "b" not in history  # a failed send delivered nothing
        # the edition being sent does not count against itself (a retry keeps its selection)
        assert ledger.histories(exclude_edition="W48")["a"].sent_article_ids == {"x", "y"}


def test_two_processes_claim_each_row_once(new_ledger) -> None:
    new_ledger().close()
    items = [item(f"s{i}") for i in range(200)]
    results: list[tuple[str, ...]] = []

    def worker(run: str) -> None:
        with new_ledger() as ledger:
            for start in range(0, len(items), 10):
                results.append(ledger.claim("E1", run, items[start : start + 10], transport="x"))

    threads = [threading.Thread(target=worker, args=(f"run{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [s for r in results for s in r]
    assert sorted(claimed) == sorted(i.subscriber for i in items)  # each exactly once


def test_status_summaries(new_ledger, engine) -> None:
    with new_ledger() as ledger:
        if engine == "sqlite":
            assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        ledger.claim("W47", "r", [item("a"), item("b")], transport="x")
        ledger.settle("W47", ["a"], "accepted", run_id="r")
        ledger.claim("W48", "r", [item("a")], transport="x")
        assert ledger.summary("W47") == {"accepted": 1, "claimed": 1}
        assert [e.edition for e in ledger.editions()] == ["W48", "W47"]


@pytest.mark.sqlite_only  # SQLite's own durability settings
def test_claims_are_committed_with_full_sync_and_settles_leave_it_on(tmp_path):
    """Claims must reach the disk before a request leaves (FULL); settles may skip the fsync,
    but the connection must be back to FULL for the next claim."""
    from datetime import UTC, datetime

    from digest.ledger import ClaimItem
    from digest.store.sqlite_ledger import SqliteLedger

    with SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        sync = lambda: ledger._db.execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731
        assert sync() == 2  # FULL
        item = ClaimItem("a@example.com", "a@example.com", ("x",), datetime(2026, 11, 30, tzinfo=UTC))
        assert ledger.claim("e1", "run1", [item], transport="outbox") == ("a@example.com",)
        assert ledger.settle("e1", ["a@example.com"], "accepted", run_id="run1") == 1
        assert sync() == 2


def test_histories_since_a_horizon_and_shared_between_equal_histories(new_ledger):
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from digest.ledger import ClaimItem

    week = timedelta(days=7)
    t0 = datetime(2026, 11, 2, 9, tzinfo=ZoneInfo("Europe/London"))
    with new_ledger() as ledger:
        for n, edition in enumerate(("w45", "w46", "w47")):
            at = t0 + n * week
            items = [ClaimItem(s, s, (f"{edition}-a",), at) for s in ("a@x.org", "b@x.org")]
            ledger.claim(edition, "r", items, transport="outbox")
            ledger.settle(edition, ["a@x.org", "b@x.org"], "accepted", run_id="r")
        everything = ledger.histories("w48")
        assert everything["a@x.org"].sent_article_ids == {"w45-a", "w46-a", "w47-a"}
        recent = ledger.histories("w48", since=(t0 + week).astimezone(UTC))
        assert recent["a@x.org"].sent_article_ids == {"w46-a", "w47-a"}
        assert recent["a@x.org"].last_delivery == t0 + 2 * week
        assert recent["a@x.org"] is recent["b@x.org"]  # equal histories are one object
        assert ledger.oldest_last_delivery("w48") == t0 + 2 * week
        assert ledger.oldest_last_delivery("w47", since=t0 + 2 * week) is None


def test_a_row_reads_back_every_field_it_was_written_with(new_ledger) -> None:
    # what `digest status`, the report and recovery read: each field as the send recorded it
    from digest.ledger import Delivery

    when = datetime(2026, 11, 30, 7, 5, 3, 250, tzinfo=UTC)
    with new_ledger() as ledger:
        items = [ClaimItem("ann@x.org", "Ann@X.org", ("a1", "a2"), when), ClaimItem("bo@x.org", "bo@x.org", (), when)]
        ledger.claim("W48", "run-7", items, transport="sendgrid", batch_id="batch-9", send_at=1_764_486_000)
        ledger.settle("W48", ["ann@x.org"], "accepted", run_id="run-7", message_id="msg-1")
        ledger.settle("W48", ["bo@x.org"], "failed", run_id="run-7", error="HTTP 400: bad address")
        ledger.claim("W49", "run-8", [ClaimItem("ann@x.org", "Ann@X.org", ("a3",), when)], transport="outbox")
        rows = ledger.rows("W48") | ledger.rows("W49")
        ann, bo = rows["ann@x.org"], ledger.rows("W48")["bo@x.org"]
        assert ann == Delivery(
            edition="W49",
            subscriber="ann@x.org",
            email="Ann@X.org",
            state="claimed",
            run_id="run-8",
            attempts=1,
            article_ids=("a3",),
            selected_at=when,
            updated_at=ann.updated_at,
            transport="outbox",
        )
        assert ledger.rows("W48")["ann@x.org"] == Delivery(
            edition="W48",
            subscriber="ann@x.org",
            email="Ann@X.org",
            state="accepted",
            run_id="run-7",
            attempts=1,
            article_ids=("a1", "a2"),
            selected_at=when,
            updated_at=ledger.rows("W48")["ann@x.org"].updated_at,
            transport="sendgrid",
            message_id="msg-1",
            batch_id="batch-9",
            send_at=1_764_486_000,
        )
        assert (bo.state, bo.error, bo.article_ids, bo.message_id) == ("failed", "HTTP 400: bad address", (), "")
        assert ann.updated_at.utcoffset() is not None


def test_the_window_starts_at_the_newest_accepted_edition_whatever_order_they_were_sent_in(new_ledger) -> None:
    # an older edition sent late (a resend) must not pull the window back: those articles would repeat
    w46, w47, w48 = (datetime(2026, 11, d, 9, tzinfo=UTC) for d in (16, 23, 30))
    with new_ledger() as ledger:
        for edition, at in (("w48", w48), ("w46", w46), ("w47", w47)):
            ledger.claim(edition, "r", [item("a", (edition,), at), item("b", (edition,), at)], transport="outbox")
            ledger.settle(edition, ["a"], "accepted", run_id="r")
        ledger.settle("w48", ["b"], "accepted", run_id="r")
        ledger.settle("w46", ["b"], "accepted", run_id="r")
        ledger.settle("w47", ["b"], "ambiguous", run_id="r")
        history = ledger.histories("w49")
        assert history["a"].last_delivery == w48 and history["a"].sent_article_ids == {"w46", "w47", "w48"}
        assert history["b"].last_delivery == w48 and history["b"].sent_article_ids == {"w46", "w47", "w48"}
        assert history["a"] is history["b"]


def test_subscribers_who_may_have_the_same_articles_keep_their_own_windows(new_ledger) -> None:
    # b's last edition may not have arrived (ambiguous): its articles are never resent, but b's
    # window still starts at the last edition that surely reached b, not at a's
    w47, w48 = datetime(2026, 11, 23, 9, tzinfo=UTC), datetime(2026, 11, 30, 9, tzinfo=UTC)
    with new_ledger() as ledger:
        for edition, at in (("w47", w47), ("w48", w48)):
            ledger.claim(edition, "r", [item("a", (edition,), at), item("b", (edition,), at)], transport="outbox")
            ledger.settle(edition, ["a"], "accepted", run_id="r")
        ledger.settle("w47", ["b"], "accepted", run_id="r")
        ledger.settle("w48", ["b"], "ambiguous", run_id="r")
        history = ledger.histories("w49")
        assert history["a"].sent_article_ids == history["b"].sent_article_ids == {"w47", "w48"}
        assert (history["a"].last_delivery, history["b"].last_delivery) == (w48, w47)


def test_a_horizon_means_the_same_instant_on_a_machine_in_another_time_zone(new_ledger, machine_zone) -> None:
    # senders on several machines share one ledger: rows written in UTC by one are read from a
    # horizon by another set to Tokyo time; the delivery five hours after the horizon is inside it
    machine_zone("UTC")
    sent = datetime(2026, 11, 23, 5, 0, 0, 41, tzinfo=UTC)
    horizon = datetime(2026, 11, 23, 0, 0, 0, 41, tzinfo=UTC)
    with new_ledger() as ledger:
        ledger.claim("w47", "r", [item("a", ("x",), sent)], transport="outbox")
        ledger.settle("w47", ["a"], "accepted", run_id="r")
        machine_zone("Asia/Tokyo")
        history = ledger.histories("w48", since=horizon)
        assert history["a"].last_delivery == sent and history["a"].sent_article_ids == {"x"}
        assert ledger.oldest_last_delivery("w48", since=horizon) == sent
