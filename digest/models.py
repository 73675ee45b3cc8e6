"""The typed, immutable data that flows between the stages.

content + subscribers -> selection -> composition -> transport. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from digest.text import body_to_text, cut_words, reading_minutes

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where it is and why. Reported, never fatal to a run."""

    source: str  #: a file path (or "config", "templates" ...)
    message: str
    line: int | None = None
    severity: Severity = "error"
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class Skipped:
    """A content file that is not an article on purpose (a list page, a draft): counted, not an error."""

    source: str  #: the file path
    reason: str  #: "list page", "pagination page", "draft" ... (what `digest check --verbose` counts by)
    detail: str = ""  #: why it is that, e.g. "layout: home"

    def __str__(self) -> str:
        return f"{self.source}: skipped: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Edition:
    """One issue of the newsletter: its id (e.g. 2026-W48), a label for readers, and its moment."""

    id: str
    label: str
    at: datetime  #: aware; selection and "now" for this edition


@dataclass(frozen=True)
class Article:
    """One article of the content folder, normalised from whatever front-matter dialect it used."""

    id: str  #: stable id: the path relative to the content folder, without suffix
    path: Path
    title: str
    date: datetime  #: always timezone-aware, UTC
    url: str  #: absolute link to the article on the site
    slug: str = ""
    author: str = ""
    tags: tuple[str, ...] = ()  #: display forms, de-duplicated case-insensitively
    categories: tuple[str, ...] = ()
    cover_url: str = ""
    cover_alt: str = ""
    draft: bool = False
    summary: str = ""  #: the front matter's excerpt, cleaned and cut; "" when it had none
    body_head: str = field(default="", repr=False)  #: start of the body, for a derived excerpt
    body_is_html: bool = False
    excerpt_chars: int = 280
    words: int = 0  #: about how many words the body holds (see text.word_count)

    @cached_property
    def excerpt(self) -> str:
        """Plain text, cut at a word boundary; untrusted (escape when rendering).

        Derived on first use: deriving it for every article of a 12,000-article folder costs
        more than reading the folder, and only the few in a digest are ever shown.
        """
        if self.summary:
            return self.summary
        return cut_words(body_to_text(self.body_head, is_html=self.body_is_html), self.excerpt_chars)

    @property
    def reading_minutes(self) -> int:
        return reading_minutes(self.words)

    # cached: selection asks for these once per (subscriber, article) pair
    @cached_property
    def tag_keys(self) -> frozenset[str]:
        return frozenset(t.casefold() for t in self.tags)

    @cached_property
    def category_keys(self) -> frozenset[str]:
        return frozenset(c.casefold() for c in self.categories)


_EMPTY: Mapping[str, str] = MappingProxyType({})


def frozen_mapping(value: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """A read-only copy of `value` (one shared empty mapping for none): records stay immutable."""
    return MappingProxyType(dict(value)) if value else _EMPTY


# A million subscribers share a few thousand preference sets: one frozenset per set, not per row.
_KEYS: dict[tuple[str, ...], frozenset[str]] = {}


def term_keys(terms: tuple[str, ...]) -> frozenset[str]:
    """Tags or categories as the case-folded keys they are matched by."""
    keys = _KEYS.get(terms)
    if keys is None:
        if len(_KEYS) > 100_000:
            _KEYS.clear()
        keys = _KEYS[terms] = frozenset(t.casefold() for t in terms)
    return keys


@dataclass(frozen=True)
class ContentIndex:
    """All readable articles of a folder, and what was wrong with the others."""

    articles: tuple[Article, ...]
    problems: tuple[Problem, ...]
    skipped: tuple[Skipped, ...] = ()  #: list pages, drafts ...: not articles, not errors either


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One row of the subscriber list.

    Slotted, with its derived keys computed once and shared: send holds every subscriber of a
    list at once, and at a million rows each hundred bytes is 100 MB.
    """

    email: str
    name: str = ""
    tags: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: str = "active"
    attributes: Mapping[str, str] = field(default_factory=frozen_mapping)
    file: str = ""  #: the list the row came from (one shared string for the whole list)
    line: int = 0  #: its line there
    external_id: str = ""  #: the list's own id for this subscriber (e.g. the seed site's `id`), kept as given
    subscribed_at: datetime | None = None  #: when they subscribed, as the list says (aware, UTC when unzoned)
    #: The cadence they chose: "daily", "weekly" or "monthly"; None when the list does not say.
    #: Read and kept; scheduling by cadence is not implemented yet (see docs/subscribers.md).
    frequency: str | None = None
    #: The key of this subscriber in the ledger: the address, case-folded.
    id: str = field(init=False, repr=False, compare=False)
    tag_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    category_keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: derived fields are set once, here
        folded = self.email.casefold()
        set_(self, "id", self.email if folded == self.email else folded)  # most addresses: one string
        set_(self, "tag_keys", term_keys(self.tags))
        set_(self, "category_keys", term_keys(self.categories))
        if not isinstance(self.attributes, MappingProxyType):
            set_(self, "attributes", frozen_mapping(self.attributes))

    @property
    def source(self) -> str:
        """'file:line' the row came from, for messages."""
        return f"{self.file}:{self.line}" if self.line else self.file

    @property
    def has_preferences(self) -> bool:
        return bool(self.tags or self.categories)

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else ""

    def __hash__(self) -> int:  # attributes is a mapping; identity is the address
        return hash(self.id)


@dataclass(frozen=True)
class Choice:
    """An article chosen for one subscriber, and why."""

    article: Article
    reason: str  #: e.g. "matched: ai, robotics" or "newest"
    score: int = 0


@dataclass(frozen=True, slots=True)
class Selection:
    """What one subscriber gets at one moment (possibly nothing, with the reason).

    Slotted: a send holds one per subscriber. Subscribers with the same preferences share one
    choice (`for_subscriber`), so its tuples are computed once and shared.
    """

    subscriber: Subscriber
    choices: tuple[Choice, ...]
    at: datetime
    window_start: datetime
    skipped: str | None = None  #: why no email, when there is none
    articles: tuple[Article, ...] = field(init=False, repr=False, compare=False)
    #: Subscribers with the same key receive identical content (bar per-recipient fields).
    content_key: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        articles = tuple(c.article for c in self.choices)
        object.__setattr__(self, "articles", articles)
        object.__setattr__(self, "content_key", tuple(a.id for a in articles))

    @property
    def gets_email(self) -> bool:
        return self.skipped is None and bool(self.choices)

    def for_subscriber(self, subscriber: Subscriber) -> Selection:
        """This same choice for another subscriber (one with the same preferences and history)."""
        twin = object.__new__(Selection)
        for name in Selection.__slots__:
            object.__setattr__(twin, name, getattr(self, name))
        object.__setattr__(twin, "subscriber", subscriber)
        return twin


@dataclass(frozen=True)
class Email:
    """One subscriber's composed digest, ready for a transport.

    `html`, `text` and `subject` are final: per-recipient fields are filled in.
    """

    subscriber: Subscriber
    from_addr: str
    to_addr: str
    subject: str
    preheader: str
    html: str
    text: str
    article_ids: tuple[str, ...]
    headers: Mapping[str, str] = field(default_factory=frozen_mapping)
    reply_to: str = ""

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))
