"""Reading subscriber lists (CSV, or a JSON list of objects) into `Subscriber` records.

A bad row (invalid address, duplicate, unknown status) is reported with file and line and
skipped; the rest of the list goes on.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digest.models import Problem, Subscriber
from digest.text import one_line

STATUSES = frozenset({"active", "unsubscribed", "bounced", "complained", "cleaned", "pending", "paused"})
# Spellings other tools export, mapped onto ours.
STATUS_ALIASES = {"subscribed": "active", "enabled": "active", "": "active", "spam": "complained"}
KNOWN_COLUMNS = frozenset({"email", "name", "tags", "categories", "category", "status"})

# Deliberately simple: one @, no spaces, a dotted domain. Full RFC 5322 parsing accepts addresses
# no mailbox provider does; anything stricter belongs to the provider's own validation.
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_SPLIT = re.compile(r"[;,]")


@dataclass(frozen=True)
class SubscriberList:
    subscribers: tuple[Subscriber, ...]
    problems: tuple[Problem, ...]

    @property
    def active(self) -> tuple[Subscriber, ...]:
        return tuple(s for s in self.subscribers if s.active)


def is_valid_email(address: str) -> bool:
    return bool(_EMAIL.match(address)) and len(address) <= 254


def split_terms(value: Any) -> tuple[str, ...]:
    """A preference cell: 'ai; robotics' or 'ai, robotics' or a list; case-insensitive de-dup."""
    items = _SPLIT.split(value) if isinstance(value, str) else value if isinstance(value, list) else []
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            continue
        term = one_line(item)
        if term and term.casefold() not in seen:
            seen.add(term.casefold())
            out.append(term)
    terms = tuple(out)
    # shared: a million rows name the same few dozen topics
    return _TERMS.setdefault(terms, terms) if len(_TERMS) < 100_000 else terms


_TERMS: dict[tuple[str, ...], tuple[str, ...]] = {}


def load_subscribers(path: Path) -> SubscriberList:
    """Read a CSV or JSON subscriber list."""
    if not path.is_file():
        return SubscriberList((), (Problem(str(path), "subscriber list not found"),))
    rows = _json_rows(path) if path.suffix.lower() == ".json" else _csv_rows(path)
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    file = str(path)
    for line, row in rows:
        if isinstance(row, Problem):
            problems.append(row)
            continue
        try:
            sub = _subscriber(row, file, line)
        except ValueError as exc:
            problems.append(Problem(str(path), str(exc), line=line))
            continue
        if sub.id in first_line:
            problems.append(
                Problem(str(path), f"duplicate address {sub.email} (first on line {first_line[sub.id]})", line=line)
            )
            continue
        first_line[sub.id] = line
        subscribers.append(sub)
    return SubscriberList(tuple(subscribers), tuple(problems))


def _subscriber(row: dict[str, Any], file: str, line: int) -> Subscriber:
    email = str(row.get("email") or "").strip()
    if not email:
        raise ValueError("no email")
    if not is_valid_email(email):
        raise ValueError(f"invalid email address {email!r}")
    status = str(row.get("status") or "").strip().lower()
    status = sys.intern(STATUS_ALIASES.get(status, status))
    if status not in STATUSES:
        raise ValueError(f"unknown status {row.get('status')!r} (known: {', '.join(sorted(STATUSES))})")
    attributes = {
        k: one_line(str(v))
        for k, v in row.items()
        if k not in KNOWN_COLUMNS and v not in (None, "") and isinstance(v, str | int | float)
    }
    categories = split_terms(row.get("categories")) + split_terms(row.get("category"))
    return Subscriber(
        email=email,
        name=one_line(str(row.get("name") or "")),
        tags=split_terms(row.get("tags")),
        categories=split_terms(list(categories)),
        status=status,
        attributes=attributes,
        file=file,
        line=line,
    )


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    # Streamed, not read whole: a million-row list should not sit in memory twice. Bytes that are
    # not UTF-8 are carried as surrogates so that only their row is reported, not the whole file.
    try:
        f = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        yield 0, Problem(str(path), f"cannot read: {exc.strerror or exc}")
        return
    with f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            yield 1, Problem(str(path), "empty subscriber list", line=1)
            return
        reader.fieldnames = [(name or "").strip().lower() for name in reader.fieldnames]
        if "email" not in reader.fieldnames:
            yield 1, Problem(str(path), "no 'email' column in the header", line=1)
            return
        for row in reader:
            line = reader.line_num
            if None in row:  # more cells than header columns: a shifted row would mis-file data
                yield line, Problem(str(path), "more cells than header columns", line=line)
                continue
            values = [v for v in row.values() if v]
            if not any(v.strip() for v in values):
                continue
            if any(_NOT_UTF8.search(v) for v in values):
                yield line, Problem(str(path), "not valid UTF-8", line=line)
                continue
            yield line, row


_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    """Rows of a JSON list, each with the line its object starts on (for messages)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        yield 0, Problem(str(path), f"cannot read: {exc}")
        return
    except json.JSONDecodeError as exc:
        yield exc.lineno, Problem(str(path), f"not valid JSON: {exc.msg}", line=exc.lineno)
        return
    start = 0
    if isinstance(data, dict) and isinstance(data.get("subscribers"), list):
        data = data["subscribers"]
        start = re.search(r'"subscribers"\s*:\s*', text).end()  # type: ignore[union-attr]
    if not isinstance(data, list):
        yield 1, Problem(str(path), "expected a JSON list of subscriber objects", line=1)
        return
    decoder = json.JSONDecoder()
    pos = text.index("[", start) + 1
    for item in data:
        while text[pos] in " \t\r\n,":
            pos += 1
        _, end = decoder.raw_decode(text, pos)
        line = text.count("\n", 0, pos) + 1
        pos = end
        if not isinstance(item, dict):
            yield line, Problem(str(path), "expected an object", line=line)
            continue
        yield line, _flatten_json(item)


def _flatten_json(item: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in item.items() if k not in ("preferences", "active")}
    prefs = item.get("preferences")
    if not isinstance(prefs, dict):
        prefs = {}
    for key in ("tags", "categories"):
        value = prefs.get(key, item.get(key))
        if value is not None:
            row[key] = value
    if "status" not in row and "active" in item:
        row["status"] = "active" if item["active"] is True else "unsubscribed"
    return row
