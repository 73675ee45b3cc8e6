"""`digest subscribers import --from TOOL FILE...`: merge another tool's export into our list.

`plan_import` is pure: given the list as it is, the subscriber state's opt-outs and the export's
rows (digest.importers), it returns the records to write and a report of every row (added,
updated, unchanged or skipped, and why). A `ListStore` writes them: `CsvListStore` for our CSV
list today; a database store (PostgreSQL) only has to implement `load` and `save`.

The rules, in the order they apply to each row:

0. An address erased with `digest subscribers forget` (kept only as a hash in the state) is never
   imported again: its rows are skipped, whatever the export says.
1. An opt-out in the subscriber state (an unsubscribe link, a bounce, a complaint) is never lifted:
   an imported "active" row for that address is written with the opted-out status.
2. An import never re-subscribes: a row that is not active in our list stays as it is, whatever the
   export says. Any opt-out in the export wins over our "active" (a Mailchimp unsubscribed or
   cleaned export, Ghost's `subscribed_to_emails=false` ...).
3. Other fields merge, ours first: tags and categories are united; the name, attributes, external
   id, subscription time and cadence are filled in only where ours are empty (the list is the
   record; an export adds to it, it does not overwrite what the list already says).
4. The same address twice in one import (Mailchimp's three files given together) merges by the
   same rules, so the result does not depend on the order of the files.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

from digest.errors import SubscriberError
from digest.importers import Mapped, Skip, read_export
from digest.models import Subscriber
from digest.signup.store import address_key
from digest.subscribers import SubscriberList, load_subscribers, write_list
from digest.suppressions import Overlay, optout_status

Action = Literal["added", "updated", "unchanged", "skipped"]


@dataclass(frozen=True)
class RowResult:
    """What happened to one row of an export."""

    file: str
    line: int
    email: str
    action: Action
    reason: str = ""

    def __str__(self) -> str:
        who = f" {self.email}" if self.email else ""
        return f"{self.file}:{self.line}:{who} {self.action}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class ImportReport:
    source: str
    target: str
    results: tuple[RowResult, ...]
    written: bool  #: False for a dry run (or when nothing changed)
    added: tuple[Subscriber, ...] = ()  #: new active subscribers written (their consent gets recorded)

    def count(self, action: Action) -> int:
        return sum(1 for r in self.results if r.action == action)

    @property
    def summary(self) -> str:
        counts = ", ".join(f"{self.count(a)} {a}" for a in ("added", "updated", "unchanged", "skipped"))
        where = f"into {self.target}" if self.written else f"(nothing written to {self.target})"
        return f"{self.source} import: {counts} {where}"


@dataclass(frozen=True)
class ImportPlan:
    upserts: tuple[Subscriber, ...]  #: new and changed records, each once, in the order first seen
    results: tuple[RowResult, ...]


class ListStore(Protocol):
    """Where the list lives. `load` the current list; `save` upserts records by address."""

    name: str

    def load(self) -> Sequence[Subscriber]: ...

    def save(self, upserts: Sequence[Subscriber]) -> None: ...


class CsvListStore:
    """Our CSV list. The file is rewritten whole (in our column layout), atomically: a crash
    leaves the old list or the new one, never half of one."""

    def __init__(self, path: Path):
        self.path = path
        self.name = str(path)
        self._current: SubscriberList | None = None

    def load(self) -> Sequence[Subscriber]:
        if self.path.suffix.lower() != ".csv":
            raise SubscriberError(f"{self.path}: an import writes a CSV list; give --into a .csv file")
        if not self.path.exists():
            self._current = SubscriberList((), ())
            return ()
        current = load_subscribers(self.path)
        bad = [p for p in current.problems if p.severity == "error"]
        if bad:
            # Rewriting the file would drop the rows we cannot read.
            raise SubscriberError(
                f"{self.path} has {len(bad)} row(s) that cannot be read (first: {bad[0]}); "
                "fix them first (see `digest check`): an import rewrites the list"
            )
        self._current = current
        return current.subscribers

    def save(self, upserts: Sequence[Subscriber]) -> None:
        existing = self._current.subscribers if self._current else ()
        changed = {s.id: s for s in upserts}
        merged = [changed.pop(s.id, s) for s in existing]
        merged.extend(changed.values())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".import-", suffix=".csv", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                write_list(merged, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def plan_import(
    existing: Iterable[Subscriber],
    rows: Iterable[Mapped | Skip],
    overlay: Overlay,
    forgotten: Mapping[str, str] | None = None,
) -> ImportPlan:
    """What an import would write, and a result for every row (pure: nothing is read or written).
    `forgotten`: the state's erased addresses (address key -> reason, digest.signup.store)."""
    current = {s.id: s for s in existing}
    planned: dict[str, Subscriber] = {}
    first_seen: dict[str, str] = {}
    results: list[RowResult] = []
    for row in rows:
        if isinstance(row, Skip):
            results.append(RowResult(row.file, row.line, row.email, "skipped", row.reason))
            continue
        incoming, notes = row.subscriber, [row.note] if row.note else []
        if forgotten and address_key(incoming.email) in forgotten:
            reason = "erased at the subscriber's request (digest subscribers forget): never imported again"
            results.append(RowResult(incoming.file, incoming.line, incoming.email, "skipped", reason))
            continue
        where = f"{incoming.file}:{incoming.line}"
        optouts = overlay.optouts.get(incoming.id)
        if optouts and incoming.active:
            first = optouts[0]
            status = optout_status(optouts)
            notes.append(f"kept {status}: opted out on {first.at:%Y-%m-%d} ({first.source})")
            incoming = replace(incoming, status=status)
        if incoming.id in first_seen:
            notes.append(f"also on {first_seen[incoming.id]}")
        else:
            first_seen[incoming.id] = where
        before = planned.get(incoming.id) or current.get(incoming.id)
        if before is None:
            planned[incoming.id] = incoming
            if not incoming.active:
                notes.insert(0, f"as {incoming.status}")
            results.append(RowResult(incoming.file, incoming.line, incoming.email, "added", "; ".join(notes)))
            continue
        after, changes = _merge(before, incoming)
        if before.status != "active" and incoming.active:
            notes.append(f"stays {before.status}: an import never re-subscribes")
        if not changes:
            results.append(RowResult(incoming.file, incoming.line, incoming.email, "unchanged", "; ".join(notes)))
            continue
        planned[incoming.id] = after
        results.append(
            RowResult(incoming.file, incoming.line, incoming.email, "updated", "; ".join([*changes, *notes]))
        )
    return ImportPlan(tuple(planned.values()), tuple(results))


def _merge(ours: Subscriber, theirs: Subscriber) -> tuple[Subscriber, list[str]]:
    """Our record with the export's laid over it by the rules above; and what changed."""
    changes: list[str] = []
    status = ours.status
    if ours.active and not theirs.active:
        status = theirs.status
        changes.append(f"status {ours.status} -> {theirs.status}")
    name = ours.name or theirs.name
    if name != ours.name:
        changes.append("name")
    tags = _union(ours.tags, theirs.tags)
    categories = _union(ours.categories, theirs.categories)
    for label, old, new in (("tags", ours.tags, tags), ("categories", ours.categories, categories)):
        if new != old:
            changes.append(f"{label} + {', '.join(new[len(old) :])}")
    attributes = {**ours.attributes, **{k: v for k, v in theirs.attributes.items() if k not in ours.attributes}}
    if attributes != dict(ours.attributes):
        changes.append("attributes + " + ", ".join(k for k in attributes if k not in ours.attributes))
    merged = replace(
        ours,
        status=status,
        name=name,
        tags=tags,
        categories=categories,
        attributes=attributes,
        external_id=ours.external_id or theirs.external_id,
        subscribed_at=ours.subscribed_at or theirs.subscribed_at,
        frequency=ours.frequency or theirs.frequency,
    )
    changes.extend(k for k in ("external_id", "subscribed_at", "frequency") if getattr(merged, k) != getattr(ours, k))
    return merged, changes


def _union(ours: tuple[str, ...], theirs: tuple[str, ...]) -> tuple[str, ...]:
    seen = {t.casefold() for t in ours}
    extra = []
    for t in theirs:
        if t.casefold() not in seen:
            seen.add(t.casefold())
            extra.append(t)
    return (*ours, *extra)


def import_subscribers(
    source: str,
    files: Sequence[Path],
    store: ListStore,
    overlay: Overlay,
    *,
    dry_run: bool = False,
    forgotten: Mapping[str, str] | None = None,
) -> ImportReport:
    """Read each export file of `source`, plan the merge into `store`'s list, and save it (unless
    `dry_run`). Raises SubscriberError when a file or the list cannot be read."""
    existing = store.load()

    def rows() -> Iterable[Mapped | Skip]:
        for path in files:
            if not path.is_file():
                raise SubscriberError(f"{path}: no such file")
            yield from read_export(source, path)

    plan = plan_import(existing, rows(), overlay, forgotten)
    write = bool(plan.upserts) and not dry_run
    if write:
        store.save(plan.upserts)
    known = {s.id for s in existing}
    added = tuple(s for s in plan.upserts if s.id not in known and s.active) if write else ()
    return ImportReport(source, store.name, plan.results, written=write, added=added)
