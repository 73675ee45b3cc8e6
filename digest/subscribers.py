"""Reading subscriber lists (CSV, or a JSON list of objects) into `Subscriber` records, and writing
them back as CSV.

A bad row (invalid address, duplicate, a subscription flag we cannot read) is reported with file
and line and skipped; the rest of the list goes on. What a row says about consent is read by
`digest.flags`, exactly or not at all; CSV traps (huge cells, unbalanced quotes) by `digest.csvfile`.

The JSON shape of the seed site (`data/subscribers.json`) is read as that site meant it:

    {"id": "mbgvrk1r15166symjkm", "email": "reader.one@example.com",
     "subscribedAt": "2025-06-03T18:57:08.415Z", "isActive": true,
     "preferences": {"frequency": "weekly", "categories": ["General AI", "Productivity"]}}

`id` is kept as the external id, `subscribedAt` as the subscription time, `isActive` is the flag,
`preferences.frequency` the cadence and `preferences.categories` / `preferences.tags` the topics.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

from digest import flags
from digest.csvfile import MAX_ROW_CHARS, Header, read_rows
from digest.csvfile import writer as csv_writer
from digest.models import Problem, Subscriber
from digest.text import SURROGATE_ESCAPE, one_line, without_lone_surrogates

STATUSES = flags.STATUSES
#: Columns (and JSON keys) with a meaning of their own; everything else that is not a subscription
#: flag is an attribute. Compared as `flags.key` spells them.
KNOWN_COLUMNS = frozenset({"email", "name", "tags", "categories", "category", "id", "frequency", "preferences"})
#: The consent record `digest subscribers export` adds: the state's, never read back as attributes.
#: Named like consent on purpose, so they are told apart from a flag we cannot read by name.
CONSENT_COLUMNS = ("consent_at", "consent_source", "consent_text", "consent_ip", "confirmed_at")
_RECORD_KEYS = frozenset(flags.key(c) for c in CONSENT_COLUMNS)
#: The columns `write_list` writes, in order, before the attributes.
LIST_COLUMNS = ("email", "name", "tags", "categories", "status", "id", "subscribed_at", "frequency")

# Deliberately simple: one @, no spaces, a dotted domain. Full RFC 5322 parsing accepts addresses
# no mailbox provider does; anything stricter belongs to the provider's own validation.
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_SPLIT = re.compile(r"[;,]")
_NESTING = 4  # how deep nested JSON objects are searched for flag lookalikes


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
    try:
        # a list's cells repeat (a few thousand distinct ones in a million rows): split each once
        cell = value if isinstance(value, str) else tuple(value) if isinstance(value, list) else None
        cached = _CELLS.get(cell)  # type: ignore[arg-type]
    except TypeError:  # a list holding something unhashable
        return _split_terms(value)
    if cached is None:
        cached = _split_terms(value)
        if cell is not None and len(_CELLS) < 100_000:
            _CELLS[cell] = cached
    return cached


def _split_terms(value: Any) -> tuple[str, ...]:
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
_CELLS: dict[str | tuple[Any, ...], tuple[str, ...]] = {}
_VALUES: dict[str, str] = {}


def load_subscribers(path: Path) -> SubscriberList:
    """Read a CSV or JSON subscriber list."""
    if not path.is_file():
        return SubscriberList((), (Problem(str(path), "subscriber list not found"),))
    is_json = path.suffix.lower() == ".json"
    rows = _json_rows(path) if is_json else _csv_rows(path)
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    file = str(path)
    for line, row in rows:
        if isinstance(row, Problem):
            problems.append(row)
            continue
        try:
            sub = subscriber_from_row(row, file, line, problems, nested_json=is_json)
        except ValueError as exc:
            problems.append(Problem(file, str(exc), line=line))
            continue
        if sub.id in first_line:
            problems.append(
                Problem(file, f"duplicate address {sub.email} (first on line {first_line[sub.id]})", line=line)
            )
            continue
        first_line[sub.id] = line
        subscribers.append(sub)
    return SubscriberList(tuple(subscribers), tuple(problems))


def subscriber_from_row(
    row: Mapping[str, Any], file: str, line: int, problems: list[Problem], *, nested_json: bool = True
) -> Subscriber:
    """One row (CSV cells or a flattened JSON object) as a Subscriber; raises ValueError when the
    row must not be used; warnings go to `problems`. `nested_json=False`: the values are all
    strings (a CSV row), no nested object to search."""
    plan = _plan(tuple(row))
    email = str(row[plan.email] or "").strip() if plan.email else ""
    if not email:
        raise ValueError("no email")
    if not is_valid_email(email):
        raise ValueError(f"invalid email address {email!r}")
    # Only whether a date or a lookalike has a value matters: pass that, so the few distinct
    # combinations of a list are each judged once (flags.consent_of remembers them).
    pairs = tuple((n, row[n] if exact else not flags.is_empty(row[n]) or "") for n, exact in plan.consent)
    # `preferences.unsubscribed` is as much a flag as a top-level one, and must not pass unseen
    inner = tuple(_nested_flags(row)) if nested_json else ()
    consent = flags.consent(iter(pairs + inner)) if inner else flags.consent_of(pairs)
    if consent.warning:
        problems.append(Problem(file, consent.warning, line=line, severity="warning"))
    frequency = flags.parse_frequency(plan.frequency, row[plan.frequency]) if plan.frequency else None
    subscribed_at = None
    for name in plan.subscribed_at:
        value = row[name]
        if not flags.is_empty(value):
            subscribed_at = flags.parse_time(value)
            if subscribed_at is None:
                message = f"{name} {value!r} is not a date and time (ISO 8601 expected); ignored"
                problems.append(Problem(file, message, line=line, severity="warning"))
            break
    external_id = row[plan.id] if plan.id else None
    attributes = {}
    for k in plan.attributes:
        v = row[k]
        if v not in (None, "") and isinstance(v, str | int | float):
            v = one_line(str(v))
            # shared: a list's timezones, companies and plans repeat across many rows
            attributes[k] = _VALUES.setdefault(v, v) if len(_VALUES) < 100_000 else v
    categories = [split_terms(row[k]) for k in plan.categories]
    return Subscriber(
        email=email,
        name=one_line(str(row[plan.name] or "")) if plan.name else "",
        tags=split_terms(row[plan.tags]) if plan.tags else (),
        categories=categories[0] if len(categories) == 1 else split_terms([c for cs in categories for c in cs]),
        status=sys.intern(consent.status),
        attributes=attributes,
        file=file,
        line=line,
        external_id=one_line(str(external_id)) if isinstance(external_id, str | int) else "",
        subscribed_at=subscribed_at,
        frequency=frequency,
    )


@dataclass(frozen=True)
class _Plan:
    """What each field of a row is, worked out once per set of field names (once per CSV file)."""

    email: str | None
    name: str | None
    tags: str | None
    categories: tuple[str, ...]  #: `categories` and `category`
    id: str | None
    frequency: str | None
    subscribed_at: tuple[str, ...]
    #: The fields read by digest.flags: (name, whether its exact value matters); for an opt-out
    #: date or a lookalike only whether it has a value does.
    consent: tuple[tuple[str, bool], ...]
    attributes: tuple[str, ...]


@lru_cache(maxsize=1024)
def _plan(names: tuple[str, ...]) -> _Plan:
    by_key: dict[str, str] = {}
    for name in names:
        by_key.setdefault(flags.key(name), name)
    return _Plan(
        email=by_key.get("email"),
        name=by_key.get("name"),
        tags=by_key.get("tags"),
        categories=tuple(by_key[k] for k in ("categories", "category") if k in by_key),
        id=by_key.get("id"),
        frequency=by_key.get("frequency"),
        subscribed_at=tuple(n for n in names if flags.key(n) in flags.SUBSCRIBED_AT),
        consent=tuple(
            (n, flags.key(n) in flags.CONSENT and flags.key(n) not in flags.OPTOUT_DATES)
            for n in names
            if (flags.key(n) in flags.CONSENT or flags.looks_like_flag(n)) and flags.key(n) not in _RECORD_KEYS
        ),
        attributes=tuple(n for n in names if _is_attribute(n)),
    )


def _is_attribute(name: str) -> bool:
    k = flags.key(name)
    if not k or k in KNOWN_COLUMNS or k in _RECORD_KEYS or k in flags.RECOGNISED:
        return False
    return not flags.looks_like_flag(name)


def _nested_flags(row: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """The (dotted name, value) of every field nested in a JSON row's objects that is named like a
    subscription flag (all of them are lookalikes: only top-level fields are read as flags)."""
    for name, value in row.items():
        if isinstance(value, dict | list):
            yield from _nested(value, name, 1)


def _nested(value: dict[str, Any] | list[Any], prefix: str, depth: int) -> Iterator[tuple[str, Any]]:
    # A parent named like a flag is caught at its own level, so each name is judged alone.
    if depth > _NESTING:
        return
    items = enumerate(value) if isinstance(value, list) else value.items()
    for name, inner in items:
        if isinstance(name, str) and flags.speaks_of_consent(name):
            yield f"{prefix}.{name}", inner
        if isinstance(inner, dict) or (isinstance(inner, list) and inner and not isinstance(inner[0], str)):
            yield from _nested(inner, f"{prefix}.{name}", depth + 1)


def _csv_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | Problem]]:
    # Streamed, not read whole: a million-row list should not sit in memory twice.
    source = str(path)
    for line, item in read_rows(path):
        if isinstance(item, Header):
            if not item.names or item.names == ("",):
                yield line, Problem(source, "empty subscriber list", line=line)
                return
            if "email" not in item.names:
                yield line, Problem(source, "no 'email' column in the header" + _import_hint(item.names), line=line)
                return
            doubled = sorted({n for n in item.names if n and item.names.count(n) > 1})
            if doubled:
                # Which of two `status` columns counts is a guess; guesses here mail people who left.
                message = f"column(s) {', '.join(map(repr, doubled))} appear more than once in the header"
                yield line, Problem(source, message + "; the list is not read", line=line)
                return
            continue
        if isinstance(item, Problem) and item.message == "empty file":
            yield line, Problem(source, "empty subscriber list", line=line)
            return
        yield line, item


#: Address columns other tools export under (read lower-cased): their files are exports to import,
#: never lists to read as they are (a Mailchimp "unsubscribed" export has no status column).
_EXPORT_EMAIL_COLUMNS = frozenset({"email address", "email_address", "e-mail", "e-mail address"})


def _import_hint(names: tuple[str, ...]) -> str:
    found = next((n for n in names if n in _EXPORT_EMAIL_COLUMNS), None)
    if found is None:
        return ""
    return (
        f" ({found!r} looks like another tool's export: for Mailchimp, Substack, Buttondown, listmonk"
        " or Ghost, bring it in with `digest subscribers import --from TOOL FILE`; otherwise rename the"
        " column to 'email')"
    )


def _json_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | Problem]]:
    """Rows of a JSON list, each with the line its object starts on (for messages).

    Each object is decoded on its own, in one pass, so a 300,000-object list reads in seconds and
    an error names its line; a syntax error ends the list there (what follows cannot be found)."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        yield 0, Problem(source, f"cannot read: {exc}")
        return
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if text.startswith("{", pos):
        # {"subscribers": [...]}: rare, small; decode it whole to find where the list starts.
        try:
            whole = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            yield from _json_error(source, exc)
            return
        found = re.search(r'"subscribers"\s*:\s*\[', text)
        if not isinstance(whole, dict) or not isinstance(whole.get("subscribers"), list) or found is None:
            yield 1, Problem(source, "expected a JSON list of subscriber objects", line=1)
            return
        pos = found.end() - 1
    if not text.startswith("[", pos):
        if pos >= len(text):
            yield 1, Problem(source, "empty subscriber list", line=1)
        else:
            yield 1, Problem(source, "expected a JSON list of subscriber objects", line=1)
        return
    line, counted = 1, 0
    pos += 1
    # JSON may spell a lone half of a surrogate pair (`"\ud800"`); no email can carry it (UTF-8
    # cannot encode it), so it would fail that reader's email at every send. One scan of the
    # text, and only the objects that spell one are looked at.
    escaped_surrogates = SURROGATE_ESCAPE.search(text) is not None
    while True:
        pos = _skip_space(text, pos)
        if text.startswith("]", pos):
            return
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            item, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            yield from _json_error(source, exc, line)
            return
        if end - pos > MAX_ROW_CHARS:
            yield line, Problem(source, f"object longer than {MAX_ROW_CHARS:,} characters; skipped", line=line)
        elif not isinstance(item, dict):
            yield line, Problem(source, "expected an object", line=line)
        else:
            if escaped_surrogates and SURROGATE_ESCAPE.search(text, pos, end):
                item, fields = without_lone_surrogates(item, depth=_NESTING)
                if fields:
                    message = f"{', '.join(fields)}: an unpaired UTF-16 surrogate (\\uD800-\\uDFFF), shown as U+FFFD"
                    yield line, Problem(source, message, line=line, severity="warning")
            yield line, _flatten_json(item)
        pos = _skip_space(text, end)
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            line += text.count("\n", counted, pos)
            yield line, Problem(source, "not valid JSON: expected ',' or ']' after an object", line=line)
            return


def _skip_space(text: str, pos: int) -> int:
    return _SPACE.match(text, pos).end()  # type: ignore[union-attr]  # always matches


_SPACE = re.compile(r"[ \t\r\n]*")


def _json_error(source: str, exc: Exception, line: int = 1) -> Iterator[tuple[int, Problem]]:
    if isinstance(exc, json.JSONDecodeError):
        yield exc.lineno, Problem(source, f"not valid JSON: {exc.msg}; the list stops here", line=exc.lineno)
    else:
        yield line, Problem(source, "not valid JSON: nested too deeply; the list stops here", line=line)


def _flatten_json(item: dict[str, Any]) -> dict[str, Any]:
    """The topics and cadence in `preferences` lifted to the top (they win over top-level keys of
    the same name); everything else stays where it is, to be read or refused by its name."""
    prefs = item.get("preferences")
    if not isinstance(prefs, dict):
        return item
    row = dict(item)
    for name in ("tags", "categories", "frequency"):
        if prefs.get(name) is not None:
            row[name] = prefs[name]
    return row


# ---------------------------------------------------------------- writing


def write_list(
    subscribers: Sequence[Subscriber], out: TextIO, extra: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """The list as CSV in our own format (read back by `load_subscribers` as the same list).

    Optional columns (`id`, `subscribed_at`, `frequency`) appear only when someone has them; every
    cell is neutralised against spreadsheet formulas (see digest.csvfile). `extra`: more columns
    per subscriber id (the consent record of `digest subscribers export`), after the list's own."""
    attributes: dict[str, None] = {}
    for s in subscribers:
        attributes.update(dict.fromkeys(s.attributes))
    extra = extra or {}
    extra_columns = list(dict.fromkeys(c for cells in extra.values() for c in cells))
    optional = {
        "id": any(s.external_id for s in subscribers),
        "subscribed_at": any(s.subscribed_at for s in subscribers),
        "frequency": any(s.frequency for s in subscribers),
    }
    columns = [c for c in LIST_COLUMNS if optional.get(c, True)]
    w = csv_writer(out)
    w.writerow([*columns, *extra_columns, *attributes])
    none: Mapping[str, str] = {}
    for s in subscribers:
        cells = {
            "email": s.email,
            "name": s.name,
            "tags": ";".join(s.tags),
            "categories": ";".join(s.categories),
            "status": s.status,
            "id": s.external_id,
            "subscribed_at": s.subscribed_at.isoformat() if s.subscribed_at else "",
            "frequency": s.frequency or "",
        }
        own = extra.get(s.id, none)
        w.writerow(
            [
                *(cells[c] for c in columns),
                *(own.get(c, "") for c in extra_columns),
                *(s.attributes.get(k, "") for k in attributes),
            ]
        )
