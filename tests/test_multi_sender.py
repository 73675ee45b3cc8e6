"""Several senders on one ledger, on both engines: the queue's leases are exclusive, a dead
sender's leases go back to the queue (never ambiguous), `--workers N` and concurrent `send`s
share an edition without overlap."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from send_support import AT_DT, copy_sample, hold_run, ledger_for, load, many_subscribers

from digest.ledger import ClaimItem
from digest.recovery import free_dead_leases
from digest.send import SendOptions, send
from digest.transports.outbox import OutboxTransport

pytestmark = pytest.mark.usefixtures("engine")

EDITION = "2026-W49"
AT = datetime(2026, 11, 30, tzinfo=UTC)


def items(n: int, key: str = "k") -> list[ClaimItem]:
    return [ClaimItem(f"s{i:04d}@x.org", f"s{i:04d}@x.org", ("a",), AT, f"{key}{i % 7}") for i in range(n)]


def test_four_takers_at_once_lease_every_row_exactly_once(new_ledger, engine) -> None:
    wanted = items(400)
    with new_ledger() as ledger:
        assert ledger.enqueue(EDITION, wanted) == 400
        assert ledger.summary(EDITION) == {"queued": 400}
    got: list[list[str]] = []
    barrier = threading.Barrier(4)

    def taker(run: str) -> None:
        with new_ledger() as ledger:
            ledger.set_scope(EDITION, [i.subscriber for i in wanted])
            barrier.wait(timeout=60)
            mine: list[str] = []
            after = ("", "")
            while batch := ledger.take(EDITION, run, 13, after):
                after = batch[-1]
                mine += [sub for _, sub in batch]
            got.append(mine)

    threads = [threading.Thread(target=taker, args=(f"r{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everyone = [sub for mine in got for sub in mine]
    assert Counter(everyone) == Counter(i.subscriber for i in wanted)  # all of them, nobody twice
    with new_ledger() as ledger:
        rows = ledger.rows(EDITION).values()
        assert {r.state for r in rows} == {"queued"} and all(r.run_id for r in rows)  # leased, none claimed
        if engine == "postgresql":  # SKIP LOCKED: takers never wait on each other, all four got rows
            assert {r.run_id for r in rows} == {"r0", "r1", "r2", "r3"}


def test_take_follows_the_queue_order_and_the_scope(new_ledger) -> None:
    with new_ledger() as ledger:
        ledger.enqueue(EDITION, items(20))
        ledger.set_scope(EDITION, ["s0003@x.org", "s0010@x.org", "s0017@x.org"])  # all three in group k3
        taken = ledger.take(EDITION, "r", 10)
        assert [sub for _, sub in taken] == ["s0003@x.org", "s0010@x.org", "s0017@x.org"]
        assert ledger.take(EDITION, "r", 10, after=taken[-1]) == []


def test_enqueue_requeues_retryable_rows_only(new_ledger) -> None:
    with new_ledger() as ledger:
        first = items(4)
        ledger.claim(EDITION, "old", first, transport="outbox")
        ledger.settle(EDITION, [first[0].subscriber], "accepted", run_id="old")
        ledger.settle(EDITION, [first[1].subscriber], "failed", run_id="old")
        ledger.settle(EDITION, [first[2].subscriber], "ambiguous", run_id="old")
        # first[3] stays claimed by "old"
        assert ledger.enqueue(EDITION, first) == 1  # only the failed row
        states = {s: r.state for s, r in ledger.rows(EDITION).items()}
        assert list(states.values()) == ["accepted", "queued", "ambiguous", "claimed"]
        assert ledger.enqueue(EDITION, first, also_from=("ambiguous",)) == 1  # resend: the ambiguous one too
        assert ledger.rows(EDITION)[first[2].subscriber].state == "queued"


def test_a_dead_senders_leases_go_back_to_the_queue_and_a_live_ones_stay(new_ledger, engine, tmp_path) -> None:
    cfg = load(copy_sample(tmp_path / "n"))
    with new_ledger(cfg.state.path) as ledger:
        ledger.enqueue(EDITION, items(10))
        live = hold_run(cfg, "alive")
        try:
            assert len(ledger.take(EDITION, "alive", 4)) == 4
            ledger.set_scope(EDITION, [i.subscriber for i in items(10)])
            taken_by_gone = ledger.take(EDITION, "gone", 3)
            assert len(taken_by_gone) == 3
            assert ledger.leased_runs(EDITION) == {"alive", "gone"}
            assert free_dead_leases(ledger, EDITION) == 3  # "gone" holds no run lock
            assert ledger.leased_runs(EDITION) == {"alive"}
            rows = ledger.rows(EDITION)
            assert all(r.state == "queued" for r in rows.values())  # a lease is never ambiguous
            assert sum(r.run_id == "" for r in rows.values()) == 6
        finally:
            live.release()


def test_workers_share_the_edition_and_each_reader_gets_one_email(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    emails = many_subscribers(config, 240)
    cfg = load(config)
    report = send(cfg, AT_DT, SendOptions(workers=3))
    planned = send(cfg, AT_DT, SendOptions(dry_run=True))
    assert planned.recipients == 0  # nothing left to send
    files = Counter(p.name for p in cfg.output.path.rglob("*.eml"))
    assert set(files.values()) == {1}
    assert len(report.accepted) == len(files) == len(set(report.accepted)) > 150
    assert set(report.accepted) <= set(emails)
    with ledger_for(cfg) as ledger:
        rows = ledger.rows(EDITION)
    assert Counter(r.state for r in rows.values()) == {"accepted": len(files)}
    runs = Counter(r.run_id for r in rows.values())
    assert len(runs) >= 2 and all(run.startswith(report.run_id + "-w") for run in runs)  # shared, by workers


class SlowOutbox(OutboxTransport):
    """The outbox, 10 ms a request: long enough for two senders to overlap."""

    def send(self, batch):  # type: ignore[no-untyped-def]
        import time

        time.sleep(0.01)
        return super().send(batch)


def test_two_senders_at_once_split_the_edition_without_overlap(tmp_path: Path) -> None:
    from digest.pipeline import open_run
    from digest.send import send_edition

    config = copy_sample(tmp_path)
    many_subscribers(config, 200)
    cfg = load(config)
    reports = []
    barrier = threading.Barrier(2)

    def sender() -> None:
        run = open_run(cfg, AT_DT)
        with ledger_for(cfg) as ledger:
            barrier.wait(timeout=60)  # a sender that failed to start must not hang the suite
            reports.append(send_edition(run, ledger, SlowOutbox(cfg.output.path, date=AT_DT), SendOptions()))

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = reports
    assert a.accepted and b.accepted  # both did part of the work
    assert not set(a.accepted) & set(b.accepted)
    files = Counter(p.name for p in cfg.output.path.rglob("*.eml"))
    assert set(files.values()) == {1} and len(files) == len(a.accepted) + len(b.accepted)
    # each names the other's share, not as a failure
    assert {why for _, why in a.skipped + b.skipped} >= {"sent by another run"}


class RecordedTakes:
    """A ledger whose leases are written down as they are taken (everything else passes through)."""

    def __init__(self, ledger):  # type: ignore[no-untyped-def]
        self._ledger = ledger
        self.leases: list[list[tuple[str, str]]] = []

    def take(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        taken = self._ledger.take(*args, **kwargs)
        self.leases.append(taken)
        return taken

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._ledger, name)


def test_a_sender_leases_only_the_requests_it_is_about_to_send(tmp_path: Path) -> None:
    """A lease is rows no other sender may take: sized in requests (two per sending thread), not
    in rows. A lease of 8,000 rows (a hundred requests) left one sender sending alone long after
    the others had found the queue empty."""
    from send_support import FakeSendGrid, sendgrid_toml, transport

    from digest.pipeline import open_run
    from digest.send import send_edition

    with FakeSendGrid() as fake:
        config = copy_sample(tmp_path, sendgrid_toml(fake.url))
        many_subscribers(config, 400)
        cfg = load(config)
        run = open_run(cfg, AT_DT)
        with ledger_for(cfg) as ledger:
            recorded = RecordedTakes(ledger)
            report = send_edition(run, recorded, transport(cfg), SendOptions(concurrency=2))
    window = 2 * 2  # two requests per sending thread
    assert len(report.accepted) == len({sub for lease in recorded.leases for _, sub in lease}) == 400
    groups_per_lease = [len({key for key, _ in lease}) for lease in recorded.leases if lease]
    assert sum(groups_per_lease) > 3 * window  # enough requests for several leases
    assert groups_per_lease[0] == 1  # the first request alone: a refused key stops the run there
    # alone on the queue, a lease ends where a group ends: no request is cut in two by a lease
    assert sum(groups_per_lease) == len({key for lease in recorded.leases for key, _ in lease})
    assert max(groups_per_lease) <= window


def test_queueing_an_edition_never_waits_on_rows_another_sender_holds(new_ledger, engine) -> None:
    """Senders that start together each queue the whole edition. A row another sender holds (a
    lease or claim being written) is left alone: queueing inserts only what is missing and touches
    only rows to retry. (On PostgreSQL an upsert with a WHERE locked every row it met, so the second
    sender's queue write waited for the first's transactions, row after row. SQLite has one writer
    at a time and no row locks: there the counts are checked.)"""
    import contextlib
    import os

    from digest.store import DATABASE_URL_ENV

    wanted = items(50)
    with new_ledger() as first:
        assert first.enqueue(EDITION, wanted) == 50
    failed = wanted[:3]
    with new_ledger() as ledger:
        ledger.claim(EDITION, "old", failed, transport="outbox")
        ledger.settle(EDITION, [i.subscriber for i in failed], "failed", run_id="old")
    with contextlib.ExitStack() as stack:
        if engine == "postgresql":
            import psycopg

            holder = stack.enter_context(psycopg.connect(os.environ[DATABASE_URL_ENV]))
            stack.enter_context(holder.transaction())
            # another sender in the middle of a claim: these rows are locked until it commits
            holder.execute(
                "SELECT 1 FROM deliveries WHERE edition = %s AND subscriber = ANY(%s) FOR UPDATE",
                (EDITION, [i.subscriber for i in wanted[10:40]]),
            )
        with new_ledger() as second:
            if engine == "postgresql":
                second._conn.execute("SET lock_timeout = '2s'")  # a wait fails the test, never hangs it
            assert second.enqueue(EDITION, [*wanted, *items(60)[50:]]) == 10 + 3  # new rows, failed ones
    with new_ledger() as ledger:
        assert ledger.summary(EDITION) == {"queued": 60}


def test_one_sender_queues_an_edition_at_a_time(new_ledger, engine) -> None:
    """Senders started together plan the same rows: on PostgreSQL the second waits for the first's
    queue write (an advisory lock per edition) and then finds nothing missing, instead of writing
    the same 300,000 rows side by side (14.5 s each on 2 cores, 8 s alone); another edition's queue
    is not held up. (SQLite has one writer at a time already.) On both engines a queue write that
    finds every planned row there writes nothing, and one that finds a row missing writes it."""
    wanted = items(30)
    if engine == "postgresql":
        import os

        import psycopg

        from digest.store import DATABASE_URL_ENV
        from digest.store.pg_ledger import _QUEUE_LOCKS, _run_key

        done: list[int] = []
        with psycopg.connect(os.environ[DATABASE_URL_ENV], autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s, %s)", (_QUEUE_LOCKS, _run_key(EDITION)))

            def queue() -> None:
                with new_ledger() as ledger:
                    done.append(ledger.enqueue(EDITION, wanted))

            waiting = threading.Thread(target=queue)
            waiting.start()
            with new_ledger() as other:  # another edition queues meanwhile
                assert other.enqueue("2026-W50", wanted) == 30
            waiting.join(timeout=1.0)
            assert waiting.is_alive() and done == []  # still waiting for the lock
            with new_ledger() as ledger:
                assert ledger.summary(EDITION) == {}
            holder.execute("SELECT pg_advisory_unlock(%s, %s)", (_QUEUE_LOCKS, _run_key(EDITION)))
        waiting.join(timeout=30)
        assert done == [30]
    else:
        with new_ledger() as ledger:
            assert ledger.enqueue(EDITION, wanted) == 30
    with new_ledger() as ledger:
        assert ledger.enqueue(EDITION, wanted) == 0  # nothing missing, nothing to retry
        assert ledger.enqueue(EDITION, items(31)) == 1  # one missing: written
        assert ledger.summary(EDITION) == {"queued": 31}


def test_a_large_queue_is_written_in_slices_and_requeued_across_them(new_ledger) -> None:
    """Queue writes go in slices of 20,000 rows: every slice's new rows are written, and rows to
    retry are requeued in whichever slice they fall."""
    wanted = items(20_005)
    with new_ledger() as ledger:
        assert ledger.enqueue(EDITION, wanted) == 20_005
        retry = [wanted[5], wanted[20_003]]  # one in each slice
        ledger.claim(EDITION, "old", retry, transport="outbox")
        ledger.settle(EDITION, [i.subscriber for i in retry], "failed", run_id="old")
        assert ledger.enqueue(EDITION, wanted) == 2
        assert ledger.summary(EDITION) == {"queued": 20_005}
        row = ledger.rows(EDITION)[wanted[20_003].subscriber]
        assert row.state == "queued" and row.run_id == ""  # free for any sender again
