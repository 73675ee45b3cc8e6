"""Property: whatever cadences readers switch between, and whenever, no article reaches anyone
twice and none is lost. Hypothesis draws readers (a starting frequency and a history of switches
made on the preferences page) and articles at random minutes over ten weeks that include the
spring clock change; every daily, weekly and monthly slot of those weeks is then run in time
order with the real pieces of a send: the run of that cadence's edition (its audience, its catch-up
reach), the subscriber state the switches were recorded in, selection, and the SQLite ledger that
is claimed and settled. Only composing and dispatching emails, which choose nothing, are left out.

Daily, weekly and monthly slots all fall at 09:00, so on Mondays and on the 1st two cadences run
at the same moment, one after the other, as `send --scheduled` runs them.
"""

from __future__ import annotations

import csv
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.cadences import Cadences
from digest.config import Config, parse_config
from digest.ledger import ClaimItem
from digest.models import Article, ContentIndex
from digest.pipeline import open_run
from digest.schedule import Slot
from digest.selection import NO_HISTORY
from digest.store import open_state
from digest.store.sqlite_ledger import SqliteLedger

ROOT = Path(__file__).resolve().parent.parent
START = datetime.fromisoformat("2026-03-02T00:00:00+00:00")  # a Monday; London springs forward on the 29th
DAYS = 70
MINUTES = DAYS * 24 * 60
WINDOW = timedelta(days=7)
FREQUENCIES = ("daily", "weekly", "monthly")

reader = st.tuples(
    st.sampled_from((None, *FREQUENCIES)),  # the list's frequency (None: the default, weekly)
    st.lists(st.tuples(st.integers(0, MINUTES), st.sampled_from(FREQUENCIES)), max_size=8),  # switches
)


def newsletter(folder: Path, readers: list[tuple[str | None, list]], catch_up_days: int) -> Config:
    with (folder / "subscribers.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "frequency"])
        writer.writerows([f"reader{n}@example.com", frequency or ""] for n, (frequency, _) in enumerate(readers))
    data = {
        "newsletter": {"timezone": "Europe/London"},
        "subscribers": {"path": "subscribers.csv", "segments": "none.toml"},
        "templates": {"path": str(ROOT / "templates")},
        "selection": {"window_days": 7, "max_articles": 200, "catch_up_days": catch_up_days},
        "schedule": {"daily": "0 9 * * *", "weekly": "0 9 * * MON", "monthly": "0 9 1 * *"},
        "state": {"path": "state"},
    }
    return parse_config(data, base=folder, source=str(folder / "digest.toml"))


def article(minute: int) -> Article:
    moment = START + timedelta(minutes=minute)
    return Article(f"a{minute:06d}", Path(f"a{minute}.md"), f"At {minute}", moment, f"https://x.org/{minute}")


def deliver(config: Config, content: ContentIndex, ledger: SqliteLedger, slot: Slot) -> None:
    """One slot's edition, as `digest send` plans it, recorded as sent."""
    run = open_run(config, slot.at, slot.edition_id, content=content, cadence=slot.cadence, persist_links=False)
    run, histories = run.with_history(ledger)  # the history and reach-back send, test-send and schedule use
    chosen = [run.select(s, histories.get(s.id, NO_HISTORY)) for s in run.subscribers_for()]
    items = [ClaimItem(s.subscriber.id, s.subscriber.email, s.content_key, run.at) for s in chosen if s.gets_email]
    claimed = ledger.claim(run.edition.id, "simulation", items, transport="none")
    assert len(claimed) == len(items)  # nobody had a row in this edition yet
    ledger.settle(run.edition.id, claimed, "accepted")


def simulate(readers: list[tuple[str | None, list]], minutes: list[int], catch_up_days: int) -> None:
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        folder = Path(tmp)
        config = newsletter(folder, readers, catch_up_days)
        cadences = Cadences.from_config(config)
        articles = {m: article(m) for m in minutes}
        content = ContentIndex(tuple(articles.values()), ())
        slots = sorted(
            (s for t in cadences.tables for s in t.slots_between(START, START + timedelta(minutes=MINUTES))),
            key=lambda s: (s.at, FREQUENCIES.index(s.cadence)),
        )
        switches = sorted(
            (START + timedelta(minutes=m), n, f) for n, (_, changes) in enumerate(readers) for m, f in changes
        )
        # what each reader's cadence was at each slot, by the documented rule (their latest choice, or weekly)
        due: dict[int, list[Slot]] = {n: [] for n in range(len(readers))}
        with SqliteLedger(folder / "state" / "ledger.sqlite3") as ledger, open_state(folder / "state") as state:
            pending = list(switches)
            current = {n: frequency or "weekly" for n, (frequency, _) in enumerate(readers)}
            for slot in slots:
                while pending and pending[0][0] < slot.at:
                    _, n, frequency = pending.pop(0)
                    state.set_frequency(f"reader{n}@example.com", frequency, source="preferences page")
                    current[n] = frequency
                for n, cadence in current.items():
                    if cadence == slot.cadence:
                        due[n].append(slot)
                deliver(config, content, ledger, slot)
            rows = [r for e in ledger.editions(10_000) for r in ledger.rows(e.edition).values()]
        by_id = {s.edition_id: s for s in slots}
        for n in range(len(readers)):
            mine = sorted((r for r in rows if r.email == f"reader{n}@example.com"), key=lambda r: r.selected_at)
            got = [a for r in mine for a in r.article_ids]
            # never twice, across every edition and cadence
            assert len(got) == len(set(got)), f"reader{n} got {sorted(a for a in got if got.count(a) > 1)} twice"
            # only the editions of the cadence they had at the time
            assert all(by_id[r.edition] in due[n] for r in mine)
            if not mine:
                # nothing went out to them: every window they were due had nothing in it
                assert not any(s.at - WINDOW <= a.date <= s.at for s in due[n] for a in articles.values())
                continue
            first, last_due = mine[0].selected_at, due[n][-1].at
            # nothing lost: from their first edition's window to their last due slot, everything once
            wanted = {a.id for a in articles.values() if first - WINDOW <= a.date <= last_due}
            assert set(got) == wanted, f"reader{n}: lost {sorted(wanted - set(got))}, extra {sorted(set(got) - wanted)}"
            # and before their first edition, every slot they were due found nothing
            assert not any(s.at - WINDOW <= a.date <= s.at for s in due[n] if s.at < first for a in articles.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    readers=st.lists(reader, min_size=1, max_size=3),
    minutes=st.lists(st.integers(-8 * 24 * 60, MINUTES), min_size=1, max_size=40, unique=True),
)
def test_switching_cadences_any_way_never_repeats_or_loses_an_article(readers: list, minutes: list[int]) -> None:
    """Any switches at any minutes; catch_up_days covers the ten weeks, so no window is ever cut."""
    simulate(readers, minutes, catch_up_days=90)


# One switch per five weeks at most: between two deliveries a reader switches at most once, which is
# what the raised catch-up reach is made for (see Cadences.reach); catch_up_days stays at its
# default of 28, shorter than a monthly reader's month.
spaced_reader = st.tuples(
    st.sampled_from((None, *FREQUENCIES)),
    st.lists(st.sampled_from(FREQUENCIES), max_size=1).flatmap(
        lambda fs: st.tuples(*[st.tuples(st.integers(35 * 24 * 60, MINUTES), st.just(f)) for f in fs]).map(list)
    ),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    readers=st.lists(spaced_reader, min_size=1, max_size=3),
    minutes=st.lists(st.integers(-8 * 24 * 60, MINUTES), min_size=30, max_size=60, unique=True),
)
def test_with_the_default_catch_up_a_switch_between_deliveries_loses_nothing(readers: list, minutes: list[int]) -> None:
    simulate(readers, minutes, catch_up_days=28)
