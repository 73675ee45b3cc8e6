"""Segments: named rules over subscriber fields, with per-segment overrides and test recipients.

`subscribers/segments.toml` holds a list of `[[segment]]` tables (see README, "Segments"). A rule
is a conjunction: every condition it names must hold; a list inside a condition means "any of".
Everything is case-insensitive. A subscriber may be in several segments.

Overrides ordering rule: each override (subject, intro, max_articles, template) comes from the
FIRST matching segment in file order that sets it. Segments only change how the shared composer
is configured; they never add a second way of rendering.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from digest.compose import Composer
from digest.config import Config, read_toml
from digest.errors import DigestError
from digest.models import Problem, Subscriber, frozen_mapping, term_keys
from digest.subscribers import STATUSES, is_valid_email

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: Fields every subscriber has; anything else in `equals`/`contains` is an attribute (CSV column).
BUILTIN_FIELDS = ("email", "name", "status", "tags", "categories", "frequency", "id")


class SegmentError(DigestError):
    """The segments file is invalid (bad TOML, an unknown key, a wrong type ...)."""


class UnknownSegmentError(SegmentError):
    """A segment name that the segments file does not define."""


class EmptySegmentError(SegmentError):
    """A segment no subscriber belongs to."""


@dataclass(frozen=True)
class Rule:
    """Who belongs to a segment. Every condition given must hold; an empty rule matches everyone
    whose status is allowed (active, unless `status` says otherwise)."""

    tags: tuple[str, ...] = ()  #: has any of these tags
    exclude_tags: tuple[str, ...] = ()  #: has none of these tags
    categories: tuple[str, ...] = ()  #: has any of these categories
    exclude_categories: tuple[str, ...] = ()  #: has none of these categories
    status: tuple[str, ...] = ("active",)  #: status is one of these
    equals: Mapping[str, str] = field(default_factory=frozen_mapping)  #: field == value
    contains: Mapping[str, str] = field(default_factory=frozen_mapping)  #: value is a substring of field

    def matches(self, subscriber: Subscriber) -> bool:
        if subscriber.status not in self.status:
            return False
        if self.tags and not subscriber.tag_keys & term_keys(self.tags):
            return False
        if subscriber.tag_keys & term_keys(self.exclude_tags):
            return False
        if self.categories and not subscriber.category_keys & term_keys(self.categories):
            return False
        if subscriber.category_keys & term_keys(self.exclude_categories):
            return False
        for name, wanted in self.equals.items():
            if not any(v == wanted.casefold() for v in field_values(subscriber, name)):
                return False
        for name, wanted in self.contains.items():
            if not any(wanted.casefold() in v for v in field_values(subscriber, name)):
                return False
        return True

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.equals, *self.contains]))


def field_values(subscriber: Subscriber, name: str) -> tuple[str, ...]:
    """A subscriber field's values, case-folded: tags and categories are lists, the rest one value
    (or none when the subscriber lacks that attribute)."""
    key = name.casefold()
    if key == "tags":
        return tuple(subscriber.tag_keys)
    if key == "categories":
        return tuple(subscriber.category_keys)
    if key in ("email", "name", "status"):
        return (str(getattr(subscriber, key)).casefold(),)
    # Fields of their own since lists are read exactly (they used to arrive as attributes):
    # a rule on the list's `frequency` or `id` column keeps matching.
    if key == "frequency":
        return (subscriber.frequency.casefold(),) if subscriber.frequency else ()
    if key == "id":
        return (subscriber.external_id.casefold(),) if subscriber.external_id else ()
    for attr, value in subscriber.attributes.items():
        if attr.casefold() == key:
            return (value.casefold(),)
    return ()


@dataclass(frozen=True)
class Overrides:
    """What a segment changes in its members' digest; None: unchanged."""

    subject: str | None = None  #: a Jinja template (or plain text) replacing subject.j2
    intro: str | None = None  #: replaces newsletter.intro
    max_articles: int | None = None  #: replaces selection.max_articles
    template: str | None = None  #: an MJML template file in the templates folder

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def then(self, later: Overrides) -> Overrides:
        """These overrides, with the gaps filled from a later segment's (earlier ones win)."""
        return Overrides(
            **{
                f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(later, f.name)
                for f in fields(self)
            }
        )

    def config(self, config: Config) -> Config:
        """The config a member of these overrides is selected and composed with."""
        changed = config
        if self.intro is not None:
            changed = replace(changed, newsletter=replace(changed.newsletter, intro=self.intro))
        if self.max_articles is not None:
            selection = changed.selection
            changed = replace(
                changed,
                selection=replace(
                    selection,
                    max_articles=self.max_articles,
                    min_articles=min(selection.min_articles, self.max_articles),
                ),
            )
        return changed

    def composer(self, config: Config) -> Composer:
        """The one composer, configured with these overrides (`config` from `self.config`)."""
        return Composer(config, mjml_template=self.template or "digest.mjml.j2", subject=self.subject)

    def describe(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) is not None]
        return ", ".join(parts)


NO_OVERRIDES = Overrides()


@dataclass(frozen=True)
class Segment:
    name: str
    description: str = ""
    rule: Rule = field(default_factory=Rule)
    overrides: Overrides = NO_OVERRIDES
    test_recipients: tuple[str, ...] = ()

    def members(self, subscribers: Iterable[Subscriber]) -> tuple[Subscriber, ...]:
        """Members in list order."""
        return tuple(s for s in subscribers if self.rule.matches(s))


@dataclass(frozen=True)
class Segments:
    """The segments of one file, in file order (the order overrides are resolved in)."""

    segments: tuple[Segment, ...] = ()
    path: Path | None = None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.segments)

    def __len__(self) -> int:
        return len(self.segments)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    def get(self, name: str) -> Segment:
        for segment in self.segments:
            if segment.name.casefold() == name.casefold():
                return segment
        if not self.segments:
            raise UnknownSegmentError(f"unknown segment {name!r}: no segments are defined ({self.path} is missing)")
        raise UnknownSegmentError(f"unknown segment {name!r} (segments: {', '.join(self.names)})")

    def members(self, name: str, subscribers: Iterable[Subscriber]) -> tuple[Subscriber, ...]:
        """A segment's members; an unknown or empty segment is an error."""
        segment = self.get(name)
        members = segment.members(subscribers)
        if not members:
            raise EmptySegmentError(f"segment {segment.name!r} is empty: no subscriber matches its rule")
        return members

    def overrides_for(self, subscriber: Subscriber) -> Overrides:
        """This subscriber's effective overrides: for each one, the first matching segment that sets it."""
        effective = NO_OVERRIDES
        for segment in self.segments:
            if segment.overrides and segment.rule.matches(subscriber):
                effective = effective.then(segment.overrides)
        return effective


NO_SEGMENTS = Segments()


# ---------------------------------------------------------------- loading

_SEGMENT_KEYS = ("name", "description", "rule", "overrides", "test_recipients")
_RULE_LISTS = ("tags", "exclude_tags", "categories", "exclude_categories", "status")
_RULE_MAPS = ("equals", "contains")


def load_segments(path: Path) -> Segments:
    """Read a segments file; no file means no segments. Raises SegmentError on any mistake."""
    try:
        data = read_toml(path, SegmentError)
    except FileNotFoundError:
        return Segments((), path)
    return parse_segments(data, path)


def parse_segments(data: Mapping[str, Any], path: Path) -> Segments:
    unknown = set(data) - {"segment"}
    if unknown:
        raise SegmentError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))} (use [[segment]] tables)")
    items = data.get("segment", [])
    if not isinstance(items, list):
        raise SegmentError(f"{path}: `segment` must be an array of tables ([[segment]])")
    segments: list[Segment] = []
    seen: set[str] = set()
    for i, item in enumerate(items, 1):
        segment = _segment(item, f"{path}: segment #{i}")
        if segment.name.casefold() in seen:
            raise SegmentError(f"{path}: segment name {segment.name!r} is used twice")
        seen.add(segment.name.casefold())
        segments.append(segment)
    return Segments(tuple(segments), path)


def _segment(item: Any, where: str) -> Segment:
    if not isinstance(item, dict):
        raise SegmentError(f"{where} must be a table")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SegmentError(f"{where}: `name` must be letters, digits, - or _ (got {name!r})")
    where = f"{where.rsplit(':', 1)[0]}: segment {name!r}"
    _known(item, _SEGMENT_KEYS, where)
    description = item.get("description", "")
    if not isinstance(description, str):
        raise SegmentError(f"{where}: `description` must be a string")
    recipients = _strings(item.get("test_recipients", []), f"{where}: test_recipients")
    for address in recipients:
        if not is_valid_email(address):
            raise SegmentError(f"{where}: test_recipients: invalid email address {address!r}")
    return Segment(
        name=name,
        description=description,
        rule=_rule(item.get("rule", {}), f"{where}: rule"),
        overrides=_overrides(item.get("overrides", {}), f"{where}: overrides"),
        test_recipients=recipients,
    )


def _rule(value: Any, where: str) -> Rule:
    if not isinstance(value, dict):
        raise SegmentError(f"{where} must be a table")
    _known(value, _RULE_LISTS + _RULE_MAPS, where)
    lists = {k: _strings(value[k], f"{where}.{k}") for k in _RULE_LISTS if k in value}
    if "status" in lists:
        bad = [s for s in lists["status"] if s.casefold() not in STATUSES]
        if bad or not lists["status"]:
            raise SegmentError(f"{where}.status: unknown status {bad!r} (known: {', '.join(sorted(STATUSES))})")
        lists["status"] = tuple(s.casefold() for s in lists["status"])
    maps: dict[str, Mapping[str, str]] = {}
    for key in _RULE_MAPS:
        table = value.get(key, {})
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise SegmentError(f'{where}.{key} must be a table of field = "text"')
        maps[key] = frozen_mapping(table)
    return Rule(**lists, **maps)  # type: ignore[arg-type]  # keys checked against Rule's fields above


def _overrides(value: Any, where: str) -> Overrides:
    if not isinstance(value, dict):
        raise SegmentError(f"{where} must be a table")
    _known(value, tuple(f.name for f in fields(Overrides)), where)
    for key in ("subject", "intro", "template"):
        if key in value and not isinstance(value[key], str):
            raise SegmentError(f"{where}.{key} must be a string")
    max_articles = value.get("max_articles")
    if max_articles is not None and (
        not isinstance(max_articles, int) or isinstance(max_articles, bool) or max_articles < 1
    ):
        raise SegmentError(f"{where}.max_articles must be a whole number of at least 1")
    template = value.get("template")
    if template is not None and (not template or Path(template).is_absolute() or ".." in Path(template).parts):
        raise SegmentError(f"{where}.template must be a file name inside the templates folder")
    return Overrides(value.get("subject"), value.get("intro"), max_articles, template)


def _known(table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SegmentError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SegmentError(f"{where} must be a string or a list of strings")
    return tuple(v.strip() for v in value if v.strip())


# ---------------------------------------------------------------- checking and listing


def rule_problems(segments: Segments, subscribers: Iterable[Subscriber]) -> list[Problem]:
    """Rules naming a field no subscriber has: a typo that would silently empty the segment."""
    subscribers = tuple(subscribers)
    present = {a.casefold() for s in subscribers for a in s.attributes}
    source = str(segments.path or "segments")
    problems = []
    for segment in segments:
        for name in segment.rule.field_names:
            if name.casefold() not in BUILTIN_FIELDS and name.casefold() not in present:
                known = ", ".join([*BUILTIN_FIELDS, *sorted(present)])
                problems.append(
                    Problem(source, f"segment {segment.name!r}: no subscriber has a field {name!r} (fields: {known})")
                )
        if subscribers and not segment.members(subscribers):
            problems.append(Problem(source, f"segment {segment.name!r} is empty", severity="warning"))
    return problems


@dataclass(frozen=True)
class SegmentSummary:
    segment: Segment
    members: int
    example: Subscriber | None


def summarize(segments: Segments, subscribers: Iterable[Subscriber]) -> list[SegmentSummary]:
    subscribers = tuple(subscribers)
    out = []
    for segment in segments:
        members = segment.members(subscribers)
        out.append(SegmentSummary(segment, len(members), members[0] if members else None))
    return out
