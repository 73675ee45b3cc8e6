"""How one email is laid out, and the pieces the fast path assembles it from.

A `Layout` says in which order a selection's stories appear, under which topic headings, and
whether a contents list opens the email. `Pieces` is an edition compiled once and cut at the
markers the templates print: the frame (head, tail), each article block, each contents line and
each topic heading. Selection-dependent values inside a piece (a story's number) are content-level
tokens filled per position at assembly, so an assembled email equals a direct compile.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from digest import personalize
from digest.errors import TemplateError
from digest.models import Article

ARTICLE_MARKER = "<!--digest:article-->"
END_MARKER = "<!--digest:end-->"
#: Selection-dependent parts are compiled once per edition as pieces of their own, cut at these:
CONTENTS_MARKER = "<!--digest:contents-->"  #: before the contents section (up to its first item)
ITEM_MARKER = "<!--digest:item-->"  #: before each contents line
ITEMS_END_MARKER = "<!--digest:items-end-->"  #: after the last contents line (to the next marker)
GROUP_MARKER = "<!--digest:group-->"  #: before each group heading
MARKERS = re.compile(r"<!--digest:(article|end|contents|item|items-end|group)-->")
#: A story's position in one email: printed into its block and contents line, filled at assembly.
NUMBER_TOKEN = personalize.content_token("number")


@dataclass(frozen=True)
class Layout:
    """How one selection is laid out: story order, groups and whether a contents list opens it."""

    groups: tuple[tuple[str, tuple[Article, ...]], ...]  #: (label, articles); one ("", all) ungrouped
    contents: bool

    @cached_property
    def articles(self) -> tuple[Article, ...]:
        """In reading order (grouping may move a story up next to its group's first)."""
        return tuple(a for _, group in self.groups for a in group)

    @cached_property
    def key(self) -> tuple[str, ...]:
        """Emails with equal keys are equal but for per-recipient fields."""
        if len(self.groups) == 1:
            return tuple(a.id for a in self.articles)
        return tuple(part for label, group in self.groups for part in ("\0" + label, *(a.id for a in group)))


def numbered(piece: str, number: int) -> str:
    return piece.replace(NUMBER_TOKEN, str(number))


def group_labels(pool: Sequence[Article]) -> tuple[str, ...]:
    """Every heading a grouped email of this edition can have: each tag and category of the pool."""
    return tuple(dict.fromkeys(t for a in pool for t in (*a.tags, *a.categories)))


@dataclass(frozen=True)
class Pieces:
    """A compiled edition cut at its markers (see Composer._render_pool_mjml for the order)."""

    head: str
    contents: tuple[str, ...]  #: (opening, closing), or () without a contents list
    items: tuple[str, ...]  #: contents lines, one per article, in pool order
    groups: tuple[str, ...]  #: group headings, one per label
    articles: tuple[str, ...]  #: article blocks, in pool order
    tail: str

    @classmethod
    def cut(cls, html: str, n_articles: int, n_groups: int, template: str) -> Pieces:
        parts = MARKERS.split(html)
        head, pieces = parts[0], list(zip(parts[1::2], parts[2::2], strict=True))
        kinds = [k for k, _ in pieces]
        by_kind: dict[str, list[str]] = {}
        for kind, piece in pieces:
            by_kind.setdefault(kind, []).append(piece)
        has_contents = "contents" in by_kind
        expected = (
            (["contents", *["item"] * n_articles, "items-end"] if has_contents else [])
            + ["group"] * n_groups
            + ["article"] * n_articles
            + ["end"]
        )
        if kinds != expected:
            raise TemplateError(
                f"{template}: put {{{{ article_start }}}} before each article block and {{{{ articles_end }}}} "
                "after the loop, {{ group_start }} before each group heading, and (for a contents list) "
                "{{ contents_start }} before its section, {{ contents_item }} before each line and "
                "{{ contents_end }} after the last (needed to compile each piece once)"
            )
        contents = (by_kind["contents"][0], by_kind["items-end"][0]) if has_contents else ()
        return cls(
            head,
            contents,
            tuple(by_kind.get("item", ())),
            tuple(by_kind.get("group", ())),
            tuple(by_kind.get("article", ())),
            by_kind["end"][0],
        )
