"""Text helpers for excerpts: HTML/markdown -> plain text, cutting at word boundaries.

Pure functions, used lazily: an article's derived excerpt is computed only if it is ever shown.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Any


class _TextExtractor(HTMLParser):
    """HTML -> text; script/style contents are dropped, block ends become spaces."""

    _SKIP = {"script", "style", "template", "noscript"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: Iterable[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


_MD_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    # (a substring the rule needs, the rule, its replacement)
    ("```", re.compile(r"^```.*?^```[^\n]*$", re.S | re.M), " "),  # fenced code
    ("~~~", re.compile(r"^~~~.*?^~~~[^\n]*$", re.S | re.M), " "),
    ("port", re.compile(r"^(import|export)\s.*$", re.M), " "),  # MDX
    ("![", re.compile(r"!\[([^\]]*)\]\([^)]*\)"), " "),  # images
    ("](", re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),  # links
    ("][", re.compile(r"\[([^\]]*)\]\[[^\]]*\]"), r"\1"),  # reference links
    ("#", re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""),  # headings
    (">", re.compile(r"^\s{0,3}>\s?", re.M), ""),  # quotes
    # rules before bullets: `- - -` and `* * *` would otherwise lose their first mark as a bullet
    ("", re.compile(r"^\s*(\*\s*){3,}$|^\s*(-\s*){3,}$|^\s*(_\s*){3,}$", re.M), " "),  # rules
    ("", re.compile(r"^\s*[-*+]\s+", re.M), ""),  # bullets
    ("", re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    ("", re.compile(r"(?<![\w*])[*_](\S(?:.*?\S)?)[*_](?![\w*])"), r"\1"),
    ("`", re.compile(r"`([^`]*)`"), r"\1"),
)


# Control characters are invalid in XML (MJML refuses the whole document) and meaningless in mail.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """Untrusted one-line text (titles, names, tags, headers): control characters dropped,
    whitespace runs (newlines included: no header injection) collapsed to one space."""
    if text.isprintable() and "  " not in text and text == text.strip():
        return text  # the common case, ~10x cheaper than the general one
    return " ".join(_CONTROL.sub("", text).split())


#: How much of a body is kept to derive an excerpt from: an excerpt never needs more.
BODY_HEAD_CHARS = 2500


def body_to_text(body: str, *, is_html: bool = False, max_chars: int = BODY_HEAD_CHARS) -> str:
    """A plain-text rendering of the start of a body, for derived excerpts.

    Only the start is looked at: an excerpt never needs more, and a 12,000-article folder must
    load in seconds, so no full markdown render here.
    """
    head = body[:max_chars]
    if not is_html:
        for trigger, pattern, repl in _MD_RULES:
            if trigger in head:  # most rules cannot apply to most bodies: skip the regex
                head = pattern.sub(repl, head)
    parser = _TextExtractor()
    parser.feed(head)
    parser.close()
    return one_line("".join(parser.parts))


def cut_words(text: str, limit: int) -> str:
    """Cut at a word boundary and end with an ellipsis when anything was dropped."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else text[:limit]
    return cut.rstrip(" ,;:-–—") + "…"


_CUT_TAIL = re.compile(r"(?:\.\.\.|…)\s*$")


def clean_excerpt(text: str, limit: int) -> str:
    """A front-matter excerpt, shown cleanly.

    Feed importers cut excerpts mid-word ("... collaborations, ex..."): a word fragment glued to
    the dots is dropped, and the cut shows as one ellipsis.
    """
    text = one_line(text)
    if _CUT_TAIL.search(text):
        body = _CUT_TAIL.sub("", text)
        if body and body[-1].isalnum() and " " in body:
            body = body[: body.rfind(" ")]
        body = body.rstrip(" ,;:-–—")
        # The cut shows as cut_words shows its own: up to `limit` characters, then the ellipsis.
        return body + "…" if len(body) <= limit else cut_words(body, limit)
    return cut_words(text, limit)


# --- reading time and plain-text layout ----------------------------------------------------------

WORDS_PER_MINUTE = 230
#: Chinese and Japanese readers take in about 500 characters a minute: one character is worth
#: WORDS_PER_MINUTE / CJK_CHARS_PER_MINUTE words.
CJK_CHARS_PER_MINUTE = 500
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def word_count(body: str) -> int:
    """About how many words a body holds, for a reading time.

    Counts separators rather than splitting (a 40 MB folder of posts costs ~0.1 s, not ~0.5 s):
    an estimate is all a reading time needs. Ideographs count as a fraction of a word each.
    """
    words = body.count(" ") + body.count("\n") + (1 if body.strip() else 0)
    if _CJK.search(body):
        words += len(_CJK.findall(body)) * WORDS_PER_MINUTE // CJK_CHARS_PER_MINUTE
    return words


def reading_minutes(words: int) -> int:
    """Minutes to read `words`, rounded, never under one."""
    return max(1, round(words / WORDS_PER_MINUTE))


#: Plain-text parts are folded at 78 columns (RFC 5322's recommended line length).
TEXT_WIDTH = 78


def wrap(text: str, width: int = TEXT_WIDTH) -> str:
    """Fold each line of `text` at `width` columns at spaces only.

    A URL (or any word) longer than the width is never broken: it gets a line of its own, so it
    stays clickable. Blank lines and lines already short enough are kept as they are.
    """
    return "\n".join(
        line if len(line) <= width else textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False)
        for line in str(text).split("\n")
    )


#: JSON spelling half a UTF-16 surrogate pair: `\ud800` .. `\udfff` (a lone one survives decoding).
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(value: Any, name: str = "", *, depth: int = 4) -> tuple[Any, list[str]]:
    """Decoded JSON with each unpaired surrogate replaced by U+FFFD, and the dotted names of the
    fields that had one (a key with one is reported as its parent's name, or "a field name").

    JSON may spell half a surrogate pair (`"\\ud800"`): the decoder keeps it, and UTF-8 cannot
    encode it, so it fails whatever email or hash it reaches. A pair spelt as two escapes is one
    character by then, and left alone. Containers deeper than `depth` are left as they are."""
    fields: list[str] = []

    def clean(value: Any, name: str, level: int) -> Any:
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                fields.append(name or "a field name")
                return _LONE_SURROGATE.sub("\ufffd", value)
            return value
        if level > depth:
            return value
        if isinstance(value, list):
            return [clean(v, name, level + 1) for v in value]
        if isinstance(value, dict):
            return {
                clean(k, name, level): clean(v, f"{name}.{_shown(k)}" if name else _shown(k), level + 1)
                for k, v in value.items()
            }
        return value

    cleaned = clean(value, name, 0)
    return cleaned, list(dict.fromkeys(fields))


def _shown(key: Any) -> str:
    return _LONE_SURROGATE.sub("\ufffd", key) if isinstance(key, str) else str(key)
