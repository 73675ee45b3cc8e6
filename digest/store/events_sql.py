"""The event store (events.py) in the SQL both engines share: every query, behind `EventLog`.

The tables (state migration 3, schema.py) sit with the subscriber state: on SQLite in its file
(`state/subscribers.sqlite3`), next to the consent record they share a process with (`digest
serve`); on PostgreSQL in the same database. The engines supply the sessions (sqlite_state.py,
pg_state.py) and `arrival`, the column that orders events received in the same second (SQLite's
rowid, PostgreSQL's identity column `seq`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from digest.db import now_stamp
from digest.events import (
    ArticleClicks,
    Click,
    Counts,
    EditionArticle,
    EditionRecord,
    Event,
    SubscriberActivity,
    bare_link,
    canonical_link,
)
from digest.store.state_sql import Session


def _article_at(db: Session, edition: str, link: str) -> str:
    row = db.execute(
        "SELECT article FROM edition_articles WHERE edition = ? AND link = ? ORDER BY article LIMIT 1",
        (edition, link),
    ).fetchone()
    return str(row[0]) if row else ""


class SqlEvents:
    """events.EventLog over `_read`/`_write` sessions (see the engines)."""

    #: the column that orders events of the same second by arrival
    arrival = "rowid"

    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _erasing(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing

    def record(self, events: Iterable[Event]) -> int:
        """Keep each event once (by its id); returns how many were new. One transaction."""
        new = 0
        with self._write() as db:
            for e in events:
                article, link = e.article, ""
                if e.kind == "click":
                    link = canonical_link(e.url)
                    if not article:
                        article = _article_at(db, e.edition, link)
                    if not article:
                        link = bare_link(e.url)  # not an article: keep no query (tokens live there)
                cur = db.execute(
                    "INSERT INTO engagement_events (event_id, source, kind, edition, subscriber, message_id, at,"
                    " machine, article, link, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (event_id) DO NOTHING",
                    (
                        e.event_id,
                        e.source,
                        e.kind,
                        e.edition,
                        e.subscriber,
                        e.message_id,
                        e.at,
                        int(e.machine),
                        article,
                        link,
                        e.detail,
                    ),
                )
                new += cur.rowcount
        return new

    def record_edition(self, edition: EditionRecord, articles: Sequence[EditionArticle]) -> None:
        """The edition and its candidate articles, before its first email leaves. A rerun adds what
        is new and refreshes what changed (a corrected title): earlier links keep resolving."""
        with self._write() as db:
            db.execute(
                "INSERT INTO editions (edition, label, at, recorded_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (edition) DO UPDATE SET label = excluded.label",
                (edition.edition, edition.label, edition.at.astimezone(UTC).isoformat(), now_stamp("seconds")),
            )
            db.executemany(
                "INSERT INTO edition_articles (edition, article, url, link, title, tags, categories)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (edition, article) DO UPDATE SET url = excluded.url,"
                " link = excluded.link, title = excluded.title, tags = excluded.tags, categories = excluded.categories",
                [
                    (
                        edition.edition,
                        a.article,
                        a.url,
                        a.link,
                        a.title,
                        json.dumps(list(a.tags)),
                        json.dumps(list(a.categories)),
                    )
                    for a in articles
                ],
            )

    # ---- reading

    def edition_url(self, edition: str, article: str) -> str | None:
        """Where a first-party click on `article` in `edition` goes; None unless it was in it."""
        with self._read() as db:
            row = db.execute(
                "SELECT url FROM edition_articles WHERE edition = ? AND article = ?", (edition, article)
            ).fetchone()
        return str(row[0]) if row else None

    def editions(self) -> list[EditionRecord]:
        """Every recorded edition, oldest first."""
        with self._read() as db:
            cur = db.execute("SELECT edition, label, at FROM editions ORDER BY at, edition")
            return [EditionRecord(e, label, datetime.fromisoformat(at)) for e, label, at in cur]

    def articles(self, edition: str) -> list[EditionArticle]:
        with self._read() as db:
            cur = db.execute(
                "SELECT article, url, link, title, tags, categories FROM edition_articles WHERE edition = ?"
                " ORDER BY article",
                (edition,),
            )
            return [
                EditionArticle(edition, a, url, link, title, tuple(json.loads(tags)), tuple(json.loads(cats)))
                for a, url, link, title, tags, cats in cur
            ]

    def counts(self, edition: str) -> Counts:
        with self._read() as db:
            return self._counts(db, edition)

    def _counts(self, db: Session, edition: str) -> Counts:
        by_kind = dict(
            db.execute(
                "SELECT kind, COUNT(DISTINCT subscriber) FROM engagement_events"
                " WHERE edition = ? AND subscriber != '' GROUP BY kind",
                (edition,),
            ).fetchall()
        )
        human, machine_only = db.execute(
            "SELECT COALESCE(SUM(human), 0), COALESCE(SUM(1 - human), 0) FROM ("
            " SELECT MAX(CASE WHEN machine = 0 THEN 1 ELSE 0 END) AS human FROM engagement_events"
            " WHERE edition = ? AND kind = 'open' GROUP BY subscriber) AS per_subscriber",
            (edition,),
        ).fetchone()
        clicks, clickers = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT NULLIF(subscriber, '')) FROM engagement_events"
            " WHERE edition = ? AND kind = 'click'",
            (edition,),
        ).fetchone()
        return Counts(by_kind, int(human), int(machine_only), int(clicks), int(clickers))

    def article_clicks(self, edition: str) -> list[ArticleClicks]:
        """The edition's articles by clicks (most first), clicks on other links left out."""
        with self._read() as db:
            cur = db.execute(
                "SELECT e.article, COALESCE(a.title, e.article), COUNT(*), COUNT(DISTINCT NULLIF(e.subscriber, ''))"
                " FROM engagement_events e LEFT JOIN edition_articles a"
                " ON a.edition = e.edition AND a.article = e.article"
                " WHERE e.edition = ? AND e.kind = 'click' AND e.article != ''"
                " GROUP BY e.article, a.title ORDER BY COUNT(*) DESC, COUNT(DISTINCT e.subscriber) DESC, e.article",
                (edition,),
            )
            return [ArticleClicks(a, title, int(n), int(u)) for a, title, n, u in cur]

    def activity(self, edition: str) -> dict[str, SubscriberActivity]:
        """Per subscriber: what they did with the edition."""
        out: dict[str, dict[str, Any]] = {}
        with self._read() as db:
            rows = db.execute(
                "SELECT subscriber, kind, machine, article, message_id FROM engagement_events"
                f" WHERE edition = ? AND subscriber != '' ORDER BY subscriber, at, {self.arrival}",
                (edition,),
            ).fetchall()
        for subscriber, kind, machine, article, message_id in rows:
            row = out.setdefault(
                subscriber, {"kinds": set(), "human": False, "machine": False, "clicks": 0, "articles": {}, "ids": {}}
            )
            row["kinds"].add(kind)
            if kind == "open":
                row["machine" if machine else "human"] = True
            if kind == "click":
                row["clicks"] += 1
                if article:
                    row["articles"].setdefault(article, None)
            if message_id:
                row["ids"].setdefault(message_id, None)
        return {
            s: SubscriberActivity(
                s,
                frozenset(r["kinds"]),
                r["human"],
                r["machine"] and not r["human"],
                r["clicks"],
                tuple(r["articles"]),
                tuple(r["ids"]),
            )
            for s, r in out.items()
        }

    def opt_out_events(self) -> list[tuple[str, str, str, int]]:
        """(subscriber, kind, edition, at) of every spam report and unsubscribe SendGrid reported."""
        with self._read() as db:
            cur = db.execute(
                "SELECT subscriber, kind, edition, at FROM engagement_events"
                f" WHERE kind IN ('spamreport', 'unsubscribe', 'group_unsubscribe') ORDER BY at, {self.arrival}"
            )
            return [(s, k, e, int(at)) for s, k, e, at in cur]

    def clicks(self, editions: Sequence[str]) -> list[Click]:
        """Article clicks in these editions, one per (edition, subscriber, article), with the
        article's topics as they went out."""
        out: list[Click] = []
        wanted = list(dict.fromkeys(editions))
        for i in range(0, len(wanted), 400):
            chunk = wanted[i : i + 400]
            marks = ",".join("?" * len(chunk))
            with self._read() as db:
                topics = {
                    (edition, article): (tuple(json.loads(tags)), tuple(json.loads(cats)))
                    for edition, article, tags, cats in db.execute(
                        f"SELECT edition, article, tags, categories FROM edition_articles WHERE edition IN ({marks})",
                        chunk,
                    )
                }
                cur = db.execute(
                    "SELECT DISTINCT edition, subscriber, article FROM engagement_events"
                    f" WHERE kind = 'click' AND subscriber != '' AND article != '' AND edition IN ({marks})"
                    " ORDER BY edition, subscriber, article",
                    chunk,
                ).fetchall()
            for edition, subscriber, article in cur:
                found = topics.get((edition, article))
                if found is not None:
                    out.append(Click(edition, subscriber, *found))
        return out

    def forget(self, subscriber: str, pseudonym: str) -> int:
        """Name `pseudonym` instead of the subscriber in their events, and drop the details (a
        bounce's text may quote the address): reports still count them, for nobody."""
        with self._erasing() as db:
            cur = db.execute(
                "UPDATE engagement_events SET subscriber = ?, detail = '' WHERE subscriber = ?", (pseudonym, subscriber)
            )
            return int(cur.rowcount)

    def tag_clicks(self, editions: Sequence[str]) -> Counter[str]:
        """Per tag (display form): readers who clicked an article carrying it, summed over these
        editions (a reader counts once per article and edition, however often they clicked)."""
        totals: Counter[str] = Counter()
        wanted = list(dict.fromkeys(editions))
        for i in range(0, len(wanted), 400):
            chunk = wanted[i : i + 400]
            marks = ",".join("?" * len(chunk))
            with self._read() as db:
                cur = db.execute(
                    "SELECT a.tags, c.readers FROM (SELECT edition, article, COUNT(DISTINCT subscriber) AS readers"
                    " FROM engagement_events WHERE kind = 'click' AND subscriber != '' AND article != ''"
                    f" AND edition IN ({marks}) GROUP BY edition, article) c"
                    " JOIN edition_articles a ON a.edition = c.edition AND a.article = c.article",
                    chunk,
                ).fetchall()
            for tags, readers in cur:
                for tag in json.loads(tags):
                    totals[tag] += readers
        return totals
