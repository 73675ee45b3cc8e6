"""`digest subscribers import FILE`: a CSV or JSON list upserted into the subscribers table.

The file is read by the same reader as `[subscribers] path` (subscribers.py), so a row means the
same thing in both places; invalid rows are reported with their line and skipped. Rows are written
1,000 per transaction while the file is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from digest.config import Config
from digest.models import Problem, Subscriber
from digest.store import open_subscriber_table
from digest.subscribers import load_subscribers


@dataclass(frozen=True)
class ImportReport:
    added: int
    updated: int
    unchanged: int
    invalid: int
    total: int
    problems: tuple[Problem, ...]


def import_file(config: Config, path: Path) -> ImportReport:
    """Upsert the file's rows; an address erased with `digest subscribers forget` is skipped."""
    from digest.signup.merge import read_signup_state
    from digest.signup.store import address_key

    found = load_subscribers(path)
    forgotten = read_signup_state(config).forgotten
    rows, problems = list(found.subscribers), list(found.problems)
    if forgotten:
        erased = [s for s in rows if address_key(s.email) in forgotten]
        rows = [s for s in rows if address_key(s.email) not in forgotten]
        problems += [
            Problem(
                str(path),
                f"{s.email}: erased at the subscriber's request; not imported",
                line=s.line,
                severity="warning",
            )
            for s in erased
        ]
    errors = tuple(p for p in problems if p.severity == "error")
    with open_subscriber_table(config) as table:
        counts = table.upsert(rows)
        total = table.count()
    return ImportReport(counts.added, counts.updated, counts.unchanged, len(errors), total, tuple(problems))


class TableListStore:
    """The subscribers table as an imports.ListStore: `digest subscribers import --from TOOL` merges
    another tool's export into it by the same rules as into a CSV list (digest/imports.py)."""

    def __init__(self, config: Config):
        self.config = config
        self.name = "the subscribers table"

    def load(self) -> Sequence[Subscriber]:
        with open_subscriber_table(self.config) as table:
            return tuple(table.stream())

    def save(self, upserts: Sequence[Subscriber]) -> None:
        with open_subscriber_table(self.config) as table:
            table.upsert(upserts)
