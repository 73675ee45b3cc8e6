"""Consent records for people: `digest subscribers show EMAIL` (what we hold about one address),
`digest subscribers forget EMAIL` (erase it), and the consent columns `export` adds.

Forgetting erases the address from everything digest writes:

- the subscriber state: signups, consent records, opt-outs, preferences, link ids (their rows are
  deleted) and engagement events (kept for the counts, but naming a pseudonym, details dropped);
- the send ledger: its rows stay (exactly-once and the counts need them) under the pseudonym;
- the list file: a CSV loses the address's records (every other byte stays as it was); a JSON list
  is rewritten without its objects;
- .eml files the outbox or `digest build` wrote for it under the output folder.

What stays is one row in `forgotten`: a one-way hash of the address and the most serious
suppression it carried. The address is then never imported again, never mailed if an old list
brings it back, and a bounce or complaint stays one. Backups taken before are not touched (say so
to whoever asked; they age out with your backup rotation).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.audience import load_effective, read_overlay
from digest.config import Config
from digest.csvfile import Header, read_rows
from digest.errors import DigestError
from digest.models import Problem, Subscriber
from digest.signup.merge import merge_signups, read_signup_state
from digest.signup.store import Consent, Signup, address_key
from digest.store import (
    ledger_exists,
    load_list,
    open_existing_signups,
    open_existing_state,
    open_ledger,
    open_signups,
)
from digest.subscribers import CONSENT_COLUMNS, is_valid_email, write_list
from digest.suppressions import OptOut, Preference, effective_subscribers

#: Suppressions a forgotten address keeps, most serious first.
_KEPT_REASONS = ("complained", "bounced", "invalid", "suppressed")
_LIST_REASON = {"complained": "complained", "bounced": "bounced", "cleaned": "invalid"}


def pseudonym(email: str) -> str:
    """What the ledger and the events name instead of an erased address."""
    return "forgotten:" + address_key(email)[:20]


def _address(email: str) -> str:
    email = email.strip()
    if not is_valid_email(email):
        raise DigestError(f"{email!r} is not an email address")
    return email


# ---------------------------------------------------------------- show


@dataclass(frozen=True)
class Record:
    """Everything digest holds about one address."""

    email: str
    status: str | None  #: as the next send sees it; None: not on the list at all
    listed: Subscriber | None  #: the list file's row
    signup: Signup | None
    consents: tuple[Consent, ...]
    optouts: tuple[OptOut, ...]
    preference: Preference | None
    deliveries: tuple[tuple[str, datetime], ...]  #: (edition, when) accepted
    forgotten: str | None  #: the kept reason, when the address was erased

    def to_json(self) -> dict[str, Any]:
        def when(moment: datetime | None) -> str | None:
            return None if moment is None else moment.astimezone(UTC).isoformat()

        return {
            "email": self.email,
            "status": self.status,
            "list": None
            if self.listed is None
            else {
                "source": self.listed.source,
                "status": self.listed.status,
                "name": self.listed.name,
                "subscribed_at": when(self.listed.subscribed_at),
            },
            "signup": None
            if self.signup is None
            else {
                "status": self.signup.status,
                "source": self.signup.source,
                "requested_at": when(self.signup.created_at),
                "confirmed_at": when(self.signup.confirmed_at),
                "tags": list(self.signup.tags),
                "categories": list(self.signup.categories),
                "cadence": self.signup.cadence,
            },
            "consents": [
                {
                    "source": c.source,
                    "at": when(c.at),
                    "confirmed_at": when(c.confirmed_at),
                    "expires_at": when(c.expires_at),
                    "ip": c.ip,
                    "consent_text": c.consent_text,
                }
                for c in self.consents
            ],
            "opt_outs": [{"reason": o.reason, "source": o.source, "at": when(o.at)} for o in self.optouts],
            "preferences": None
            if self.preference is None
            else {
                "tags": None if self.preference.tags is None else list(self.preference.tags),
                "categories": None if self.preference.categories is None else list(self.preference.categories),
                "paused": self.preference.paused,
            },
            "deliveries": [{"edition": e, "at": when(at)} for e, at in self.deliveries],
            "forgotten": self.forgotten,
        }


def show(config: Config, email: str) -> Record:
    """What digest holds about `email` (reads only; creates nothing)."""
    email = _address(email)
    key = email.casefold()
    merged = load_effective(config)
    current = next((s for s in merged.subscribers if s.id == key), None)
    listed = next((s for s in load_list(config).subscribers if s.id == key), None)
    signup, forgotten = None, None
    consents: tuple[Consent, ...] = ()
    store = open_existing_signups(config)
    if store is not None:
        with store:
            signup = store.signup(key)
            consents = tuple(store.consents_for(key))
            forgotten = store.forgotten_reason(email)
    optouts: tuple[OptOut, ...] = ()
    preference = None
    state = open_existing_state(config)
    if state is not None:
        with state:
            overlay = state.overlay_for(key)
        optouts = overlay.optouts.get(key, ())
        preference = overlay.preferences.get(key)
    deliveries: tuple[tuple[str, datetime], ...] = ()
    if ledger_exists(config):
        with open_ledger(config) as ledger:
            deliveries = tuple(ledger.accepted_for([key]).get(key, ()))
    return Record(
        email=current.email if current else email,
        status=current.status if current else None,
        listed=listed,
        signup=signup,
        consents=consents,
        optouts=optouts,
        preference=preference,
        deliveries=deliveries,
        forgotten=forgotten,
    )


def describe(record: Record, now: datetime) -> list[str]:
    """`digest subscribers show` as lines."""

    def when(moment: datetime | None) -> str:
        return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")

    lines = [record.email]
    if record.forgotten:
        lines.append(f"  erased at their request; kept only as a hashed suppression ({record.forgotten})")
    lines.append(f"  status for the next send: {record.status or 'not on the list'}")
    if record.listed is not None:
        since = f", subscribed {when(record.listed.subscribed_at)}" if record.listed.subscribed_at else ""
        lines.append(f"  list: {record.listed.source} (status {record.listed.status}{since})")
    if record.signup is not None:
        s = record.signup
        state = (
            f"active since {when(s.confirmed_at)}" if s.status == "active" else f"pending since {when(s.created_at)}"
        )
        lines.append(f"  signup: {state} ({s.source})")
        topics = ", ".join((*s.tags, *s.categories)) or "all topics"
        lines.append(f"  asked for: {topics}" + (f"; cadence {s.cadence}" if s.cadence else ""))
    if record.preference is not None:
        p = record.preference
        if p.tags is not None and p.categories is not None:
            lines.append(f"  topics (their choice): {', '.join((*p.tags, *p.categories)) or 'all topics'}")
        if p.paused:
            lines.append("  paused")
    lines.append(f"  consent records: {len(record.consents) or 'none'}")
    for c in record.consents:
        ip = f", from {c.ip}" if c.ip else ""
        lines.append(
            f"    {when(c.at)}  {c.source}{ip}: {c.state(now)}"
            + (f" {when(c.confirmed_at)}" if c.confirmed_at and c.confirmed_at != c.at else "")
        )
        if c.consent_text:
            lines.append(f"      shown: {c.consent_text}")
    for o in record.optouts:
        lines.append(f"  opt-out: {o.reason} ({o.source}) {when(o.at)}")
    last = f" (last: {record.deliveries[-1][0]})" if record.deliveries else ""
    lines.append(f"  digests received: {len(record.deliveries)}{last}")
    return lines


# ---------------------------------------------------------------- forget


@dataclass(frozen=True)
class ForgetReport:
    email: str
    kept_reason: str  #: what the hashed suppression says
    state: Mapping[str, int]  #: rows deleted per state table
    events: int
    deliveries: int  #: ledger rows now naming the pseudonym
    list_rows: int  #: records removed from the list file
    files: int  #: .eml files deleted
    notes: tuple[str, ...] = field(default=())  #: what could not be erased, and why


def forget(config: Config, email: str, *, now: datetime | None = None) -> ForgetReport:
    """Erase `email` everywhere digest wrote it (see the module's docstring)."""
    email = _address(email)
    key = email.casefold()
    now = now or datetime.now(UTC)
    notes: list[str] = []
    reason = _kept_reason(config, key)
    with open_signups(config) as store:
        erased = store.forget(email, reason, now)
    from digest.store import open_events

    with open_events(config) as events:
        event_rows = events.forget(key, pseudonym(email))
    deliveries = 0
    if ledger_exists(config):
        with open_ledger(config) as ledger:
            deliveries = ledger.forget(key, pseudonym(email))
    list_rows = erased.get("subscribers", 0)  # the subscribers table, when the list lives there
    path = config.subscribers.path
    if config.subscribers.source != "database" and path.is_file():
        try:
            list_rows = erase_from_list(path, key)
        except (OSError, ValueError) as exc:
            notes.append(f"{path}: could not rewrite the list ({exc}); remove the address by hand")
    files = _erase_files(config.output.path, key)
    return ForgetReport(email, reason, erased, event_rows, deliveries, list_rows, files, tuple(notes))


def reapply_erasures(where: Any, now: datetime | None = None) -> int:
    """After a restore: every address erased (kept as a hash) that the restored rows name again
    (the backup was older than the erasure) is erased again, from the state, the events and the
    ledger. Returns how many addresses that was."""
    from digest.store import open_events

    store = open_existing_signups(where)
    if store is None:
        return 0
    now = now or datetime.now(UTC)
    with store:
        forgotten = store.forgotten()
        if not forgotten:
            return 0
        named = store.named()
    if ledger_exists(where):
        with open_ledger(where) as ledger:
            named.update(str(row[1]) for row in ledger.export_rows())  # (edition, subscriber, ...)
    hits = sorted(s for s in named if address_key(s) in forgotten)
    for subscriber in hits:
        with open_signups(where) as store:
            store.forget(subscriber, forgotten[address_key(subscriber)], now)
        with open_events(where) as events:
            events.forget(subscriber, pseudonym(subscriber))
        if ledger_exists(where):
            with open_ledger(where) as ledger:
                ledger.forget(subscriber, pseudonym(subscriber))
    return len(hits)


def _kept_reason(config: Config, key: str) -> str:
    """The most serious suppression the address carries now (state or list), else 'forgotten'."""
    reasons: set[str] = set()
    state = open_existing_state(config)
    if state is not None:
        with state:
            reasons.update(o.reason for o in state.overlay_for(key).optouts.get(key, ()))
    listed = next((s for s in load_list(config).subscribers if s.id == key), None)
    if listed is not None and listed.status in _LIST_REASON:
        reasons.add(_LIST_REASON[listed.status])
    store = open_existing_signups(config)
    if store is not None:
        with store:
            earlier = store.forgotten_reason(key)
        if earlier:
            reasons.add(earlier)
    return next((r for r in _KEPT_REASONS if r in reasons), "forgotten")


def erase_from_list(path: Path, subscriber: str) -> int:
    """Remove the address's records from a CSV or JSON list; how many were removed."""
    if path.suffix.lower() == ".json":
        return _erase_from_json(path, subscriber)
    return _erase_from_csv(path, subscriber)


def _erase_from_csv(path: Path, subscriber: str) -> int:
    """Drop each record whose email cell is the address, and each unreadable row that holds it;
    every other line stays byte for byte (a record spans from its first line to the next one's)."""
    starts: list[int] = []
    drop: set[int] = set()
    for line, item in read_rows(path):
        starts.append(line)
        if isinstance(item, Header):
            continue
        if isinstance(item, Problem):
            drop.add(line)  # decided below, on the line's text
        elif (item.get("email") or "").strip().casefold() == subscriber:
            drop.add(line)
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        lines = f.readlines()
    bom = path.read_bytes().startswith(b"\xef\xbb\xbf")
    bounds = sorted(set(starts))
    spans = {s: (s, bounds[i + 1] if i + 1 < len(bounds) else len(lines) + 1) for i, s in enumerate(bounds)}
    removed_lines: set[int] = set()
    removed = 0
    for start in sorted(drop):
        first, end = spans[start]
        text = "".join(lines[first - 1 : end - 1])
        if subscriber not in text.casefold():
            continue  # an unreadable row of someone else
        removed += 1
        removed_lines.update(range(first, end))
    if not removed:
        return 0
    kept = "".join(line for n, line in enumerate(lines, 1) if n not in removed_lines)
    _replace(path, ("\ufeff" if bom else "") + kept)
    return removed


def _erase_from_json(path: Path, subscriber: str) -> int:
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    items = data.get("subscribers") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError("not a list of subscriber objects")

    def named(item: object) -> bool:
        return isinstance(item, dict) and str(item.get("email", "")).strip().casefold() == subscriber

    kept = [i for i in items if not named(i)]
    removed = len(items) - len(kept)
    if removed:
        if isinstance(data, dict):
            data["subscribers"] = kept
        else:
            data = kept
        _replace(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    return removed


def _replace(path: Path, text: str) -> None:
    """Write `text` over `path` atomically (a crash leaves the old list or the new one)."""
    fd, tmp = tempfile.mkstemp(prefix=".forget-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _erase_files(folder: Path, subscriber: str) -> int:
    """The .eml files written for the address (the outbox's and `digest build`'s)."""
    if not folder.is_dir():
        return 0
    from digest.message import eml_name

    name = eml_name(Subscriber(email=subscriber))
    count = 0
    for path in folder.rglob(name):
        if path.is_file():
            path.unlink()
            count += 1
    return count


# ---------------------------------------------------------------- export


def consent_cells(where: Any) -> dict[str, dict[str, str]]:
    """Subscriber id -> the consent columns of `digest subscribers export` (their latest consent)."""
    store = open_existing_signups(where)
    if store is None:
        return {}
    with store:
        latest = store.latest_consents()
    at, source, text, ip, confirmed = CONSENT_COLUMNS
    return {
        sub: {
            at: c.at.astimezone(UTC).isoformat(),
            source: c.source,
            text: c.consent_text,
            ip: c.ip or "",
            confirmed: c.confirmed_at.astimezone(UTC).isoformat() if c.confirmed_at else "",
        }
        for sub, c in latest.items()
    }


def record_imports(where: Any, source: str, files: Sequence[Path], added: Sequence[Subscriber], now: datetime) -> int:
    """A consent record for each subscriber an import added: when the export says they subscribed
    (else now), from which tool and file. The consent itself was given to that tool."""
    if not added:
        return 0
    from digest.tokens import new_token_id

    names = ", ".join(p.name for p in files)
    text = f"imported from a {source} export ({names}); consent as recorded there"
    records = [
        Consent(
            consent_id=new_token_id(),
            subscriber=s.id,
            email=s.email,
            source=f"import:{source}",
            consent_text=text[:1000],
            ip=None,
            name=s.name,
            tags=s.tags,
            categories=s.categories,
            cadence=s.frequency or "",
            at=s.subscribed_at or now,
            expires_at=None,
            confirmed_at=s.subscribed_at or now,
        )
        for s in added
    ]
    with open_signups(where) as store:
        return store.record_consents(records)


# ---------------------------------------------------------------- digest subscribers export


@dataclass(frozen=True)
class ExportReport:
    written: int
    changed: int  #: rows that differ from the list (status or topics)
    skipped_rows: int  #: invalid rows of the list, not exported
    signups: int = 0  #: confirmed signups that are not on the list, exported after its rows


def export_subscribers(config: Config, out: Path | None) -> tuple[ExportReport, str]:
    """The merged list as CSV, with each subscriber's latest consent record; written to `out`, or
    returned as text when `out` is None."""
    if out is not None and out.resolve() == config.subscribers.path.resolve():
        raise DigestError(f"{out}: refusing to overwrite the subscriber list; export to another file")
    original = load_list(config)
    merged = effective_subscribers(merge_signups(original, read_signup_state(config)), read_overlay(config))
    buffer = io.StringIO()
    # formula-looking cells neutralised (digest.csvfile)
    write_list(merged.subscribers, buffer, extra=consent_cells(config))
    listed = len(original.subscribers)
    changed = sum(1 for a, b in zip(original.subscribers, merged.subscribers[:listed], strict=True) if a != b)
    skipped = sum(1 for p in original.problems if p.severity == "error")
    report = ExportReport(len(merged.subscribers), changed, skipped, len(merged.subscribers) - listed)
    if out is None:
        return report, buffer.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(buffer.getvalue(), encoding="utf-8")
    return report, ""
