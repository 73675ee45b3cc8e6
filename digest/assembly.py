"""The fast path: an edition compiled once, each distinct digest assembled from its pieces.

See compose.py's docstring for what the pieces are and why an assembled digest is byte-identical
to a whole compile. This module holds the machinery:

* the pool document (every candidate article, contents line and group heading) is rendered,
  checked for pieces that depend on the selection, compiled once and cut (layout.Pieces);
* every piece is classed by the <head> CSS it brings (MJML alone, no premailer: a fraction of a
  millisecond each), and a digest's *head variant* is its pieces' classes in first-seen order;
* the first digest of each variant is compiled whole: its head, tail and contents frame become
  the variant's, and the digest assembled from them and the pool's pieces must equal that whole
  compile, or the variant stays whole-compiled (exact, slower) and the reason is reported.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import mjml

from digest import personalize
from digest.compose import PREHEADER_TEMPLATE, PREHEADER_TOKEN, SUBJECT_TEMPLATE, Composer, Content
from digest.layout import (
    ARTICLE_MARKER,
    CONTENTS_MARKER,
    END_MARKER,
    GROUP_MARKER,
    ITEM_MARKER,
    ITEMS_END_MARKER,
    MARKERS,
    Layout,
    Pieces,
    group_labels,
    numbered,
)
from digest.models import Article, Edition, Email, Selection


@dataclass(frozen=True)
class Frame:
    """What a head variant owns: the head, the tail and the contents list's opening and closing."""

    head: str
    tail: str
    contents: tuple[str, ...]


@dataclass
class _Variant:
    frame: Frame | None  #: None: digests of this variant are compiled whole
    why: str = ""


class PreparedEdition:
    """An edition's templates compiled once; `content(selection)` gives each distinct content.

    Thread-safe: the preview serves pages from several threads."""

    #: Distinct contents kept: a send takes each content's subscribers together, so a small LRU
    #: hits as well as an unbounded dict, and memory stays flat with thousands of contents.
    cache_size = 64

    def __init__(self, composer: Composer, pool: Sequence[Article], edition: Edition):
        self.composer = composer
        self.pool = tuple(pool)
        self.edition = edition
        self.labels = group_labels(self.pool) if composer.config.templates.group_by == "tag" else ()
        #: Why parts of the fast path are off (those digests are compiled whole, once each).
        self.fast_path_off: list[str] = []
        self._lock = threading.RLock()
        self._cache: OrderedDict[tuple[str, ...], Content] = OrderedDict()
        self._pieces: Pieces | None = None  #: the pool's, tagged; None when the fast path is off
        self._articles: dict[str, str] = {}
        self._items: dict[str, str] = {}
        self._groups: dict[str, str] = {}
        self._classes: dict[tuple[str, str], int] = {}  #: (kind, key) -> head-CSS class
        self._variants: dict[tuple[int, ...], _Variant] = {}

    @classmethod
    def compile(cls, composer: Composer, pool: Sequence[Article], edition: Edition) -> PreparedEdition:
        prepared = cls(composer, pool, edition)
        prepared._prepare()
        return prepared

    @property
    def fast(self) -> bool:
        """Whether every digest is assembled from compiled-once pieces."""
        return not self.fast_path_off

    @property
    def blocks(self) -> Mapping[str, str]:
        """Each pool article's compiled HTML block (tagged)."""
        return self._articles

    @property
    def head_variants(self) -> int:
        """How many head variants have been met so far."""
        return len(self._variants)

    # --- preparing -----------------------------------------------------------------------------

    def _prepare(self) -> None:
        c, pool, labels = self.composer, self.pool, self.labels
        source = c.render_pool_mjml(pool, self.edition, labels)
        compiled = Pieces.cut(c.compile_mjml(source), len(pool), len(labels), c.mjml_template)
        src = Pieces.cut(source, len(pool), len(labels), c.mjml_template)
        if not self._independent(src):
            return
        tag = personalize.tag_html
        self._pieces = compiled
        self._articles = {a.id: tag(p) for a, p in zip(pool, compiled.articles, strict=True)}
        self._items = {a.id: tag(p) for a, p in zip(pool, compiled.items, strict=False)}
        self._groups = {label: tag(p) for label, p in zip(labels, compiled.groups, strict=True)}
        # each piece with the frame alone, through MJML only: its <head> is what the piece brings
        heads: dict[str, int] = {}

        def classify(kind: str, key: str, document: str) -> None:
            html = mjml.mjml2html(document, fonts={}, include_loader=c.theme.read_include)
            self._classes[(kind, key)] = heads.setdefault(html[: html.find("<body")], len(heads))

        for article, piece in zip(pool, src.articles, strict=True):
            classify("article", article.id, src.head + ARTICLE_MARKER + piece + END_MARKER + src.tail)
        for label, piece in zip(labels, src.groups, strict=True):
            classify("group", label, src.head + GROUP_MARKER + piece + END_MARKER + src.tail)
        if src.contents and src.items:
            opening, closing = src.contents
            document = src.head + CONTENTS_MARKER + opening + ITEM_MARKER + src.items[0] + ITEMS_END_MARKER
            classify("contents", "", document + closing + END_MARKER + src.tail)

    def _independent(self, src: Pieces) -> bool:
        """Whether the frame and each piece render the same for other selections (the pool
        rotated by one, and the pool less its last article): the condition for cutting at all."""
        c, pool, labels = self.composer, self.pool, self.labels
        if len(pool) < 2:
            return True
        for other in (pool[1:] + pool[:1], pool[:-1]):
            text = c.render_pool_mjml(other, self.edition, labels)
            alt = Pieces.cut(text, len(other), len(labels), c.mjml_template)
            if (alt.head, alt.tail) != (src.head, src.tail) or (alt.contents and alt.contents != src.contents):
                self.fast_path_off.append(
                    f"{c.mjml_template}: the frame around the stories depends on which articles are chosen "
                    "(e.g. a count or the first title outside the article loop)"
                )
                return False
            mine = dict(zip(pool, src.articles, strict=True))
            items = dict(zip(pool, src.items, strict=False))
            moved = [a for a, piece in zip(other, alt.articles, strict=True) if mine[a] != piece]
            moved += [a for a, piece in zip(other, alt.items, strict=False) if items.get(a) != piece]
            if moved or alt.groups != src.groups:
                self.fast_path_off.append(
                    f"{c.mjml_template}: a story, contents line or heading depends on its position or its "
                    "neighbours (e.g. loop.index or loop.last): number stories with item.number"
                )
                return False
        return True

    # --- head variants -------------------------------------------------------------------------

    def _variant_key(self, layout: Layout) -> tuple[int, ...] | None:
        """Whether the layout has a contents list (its frame holds the list's opening and closing),
        then its pieces' classes in first-seen order; None if a piece is unknown."""
        contents = bool(layout.contents and self._pieces is not None and self._pieces.contents)
        keys: list[tuple[str, str]] = []
        if contents:
            keys.append(("contents", ""))
        for label, group in layout.groups:
            if label:
                keys.append(("group", label))
            keys += [("article", a.id) for a in group]
        try:
            return (int(contents), *dict.fromkeys(self._classes[k] for k in keys))
        except KeyError:
            return None

    def _html(self, layout: Layout) -> str:
        key = self._variant_key(layout) if self._pieces is not None else None
        if key is None:
            return self._whole(layout)
        variant = self._variants.get(key)
        if variant is not None:
            return self._assemble_html(variant.frame, layout) if variant.frame is not None else self._whole(layout)
        # A new variant: compile this digest whole, take its frame, and keep it only if the digest
        # assembled from that frame and the pool's pieces is exactly the whole compile.
        source = self.composer.render_mjml(layout, self.edition, personalize.TOKENS, PREHEADER_TOKEN)
        compiled = self.composer.compile_mjml(source)
        whole = personalize.tag_html(MARKERS.sub("", compiled))
        frame = _frame(compiled)
        variant = self._variants[key] = _Variant(frame)
        if frame is None or self._assemble_html(frame, layout) != whole:
            variant.frame = None
            variant.why = (
                f"{self.composer.mjml_template}: a digest assembled from compiled-once pieces differed from its "
                f"whole compile (stories {', '.join(a.id for a in layout.articles)}); digests with the same kinds "
                "of pieces are compiled whole"
            )
            self.fast_path_off.append(variant.why)
        return whole

    def _assemble_html(self, frame: Frame, layout: Layout) -> str:
        parts = [frame.head]
        if layout.contents and frame.contents:
            parts.append(frame.contents[0])
            parts += (numbered(self._items[a.id], n) for n, a in enumerate(layout.articles, 1))
            parts.append(frame.contents[1])
        number = 0
        for label, group in layout.groups:
            if label:
                parts.append(self._groups[label])
            for article in group:
                number += 1
                parts.append(numbered(self._articles[article.id], number))
        parts.append(frame.tail)
        return "".join(parts)

    def _whole(self, layout: Layout) -> str:
        c = self.composer
        source = c.render_mjml(layout, self.edition, personalize.TOKENS, PREHEADER_TOKEN)
        return personalize.tag_html(MARKERS.sub("", c.compile_mjml(source)))

    # --- contents ------------------------------------------------------------------------------

    def content(self, selection: Selection) -> Content:
        """The content shared by everyone whose selection has this layout."""
        layout = self.composer.layout(selection)
        key = layout.key
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            content = self._content(layout, selection.content_key)
            self._cache[key] = content
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return content

    def _content(self, layout: Layout, article_ids: tuple[str, ...]) -> Content:
        c, edition, tokens = self.composer, self.edition, personalize.TOKENS
        preheader = c.render_line(PREHEADER_TEMPLATE, layout, edition, tokens)
        html = self._html(layout)
        # The preheader sits in the frame but depends on the articles: it is a content-level token,
        # escaped as the text node it is (its own recipient tokens are then tagged as HTML text).
        html = html.replace(PREHEADER_TOKEN, personalize.tag_html(personalize.escape_text(preheader)))
        return Content(
            key=layout.key,
            article_ids=article_ids,
            subject=personalize.tag_plain(c.render_line(SUBJECT_TEMPLATE, layout, edition, tokens)),
            preheader=personalize.tag_plain(preheader),
            html=html,
            text=personalize.tag_plain(c.render_text(layout, edition, tokens)),
        )

    def email(self, selection: Selection, values: Mapping[str, str]) -> Email:
        """One subscriber's final email: shared content with their fields filled in."""
        return self.composer.personalize(self.content(selection), selection.subscriber, values)

    def check(self, selections: Iterable[Selection]) -> list[str]:
        """Meet every head variant these selections need (each one's first digest compiled whole
        and compared, as a send does), then say why any part is off the fast path."""
        with self._lock:
            for selection in selections:
                if self._pieces is None:
                    break
                layout = self.composer.layout(selection)
                key = self._variant_key(layout)
                if key is not None and key not in self._variants and selection.articles:
                    self._html(layout)
            return list(self.fast_path_off)


def _frame(compiled: str) -> Frame | None:
    """The head, tail and contents list frame of one digest's whole compile (markers still in)."""
    parts = MARKERS.split(compiled)
    kinds = parts[1::2]
    if not kinds or kinds[-1] != "end":
        return None
    pieces = dict(zip(kinds, parts[2::2], strict=True))  # contents and items-end occur once each
    contents = (pieces["contents"], pieces["items-end"]) if "contents" in pieces and "items-end" in pieces else ()
    tag = personalize.tag_html
    return Frame(tag(parts[0]), tag(parts[-1]), tuple(tag(p) for p in contents))
