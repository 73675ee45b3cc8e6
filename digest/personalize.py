"""Per-recipient fields: rendered as tokens once, filled in per recipient afterwards.

Templates see `recipient.first_name`, `recipient.email`, `recipient.unsubscribe_url`, ... When a
digest is compiled once for many subscribers those print as tokens (`__DG<nonce>_first_name__`);
after MJML and CSS inlining each token is tagged with the context it landed in (HTML text, an HTML
attribute, or plain text: `__DG<nonce>H_first_name__`) so that filling it writes exactly what lxml
would have written had the value been rendered directly. The SendGrid transport sends the same
tagged tokens as substitutions.

An attribute is tagged whole, quotes included (`__DG<nonce>A__ ... __DG<nonce>Z__` around its
value, fields inside as `__DG<nonce>V_email__`), because libxml2 serialises an attribute value as a
whole: it picks the quote character from the finished value (single quotes when it holds `"` but no
`'`), and in URL attributes (href, src, action; name on <a>) it percent-encodes spaces and
non-ASCII characters. Filling rebuilds the value and serialises it by the same rules.

Every token carries `NONCE`, random per process. Article titles, URLs and excerpts are rendered
into the same document as the tokens, so a fixed spelling would let an article author write
`__DG_email__` into a cover URL and have each recipient's address (or unsubscribe link) filled in
and sent to a third party. Text nobody could know in advance can never form a live token.
"""

from __future__ import annotations

import functools
import html as html_lib
import re
import secrets
from collections.abc import Callable, Mapping

import markupsafe

from digest.errors import TemplateError
from digest.models import Subscriber
from digest.text import one_line

#: Fields every recipient has. Attributes (extra CSV columns) come as `attr_<name>`.
FIELDS = ("first_name", "name", "email", "preferences", "unsubscribe_url", "preferences_url", "click_token")

#: Random per process, never written anywhere but the compiled pieces it is filled out of.
NONCE = secrets.token_hex(12)
_PREFIX = f"__DG{NONCE}"
_FIELD = r"([a-z0-9]+(?:_[a-z0-9]+)*)"
_TOKEN = re.compile(re.escape(_PREFIX) + "_" + _FIELD + "__")
_P = re.escape(_PREFIX)
#: A tagged token: a field in HTML text, plain text or a comment (groups 1, 2), or a whole attribute
#: value (groups 3, 4: "A", or "U" for a URL attribute, and the value as compiled, fields inside).
_TAGGED = re.compile(_P + r"(?:([HPM])_" + _FIELD + r"__|([AU])__(.*?)" + _P + "Z__)", re.S)
_IN_ATTRIBUTE = re.compile(_P + "V_" + _FIELD + "__")
#: What libxml2 writes outside text: comments, and tags whose quoted values may hold '<' and '>'.
_MARKUP = re.compile(r"""<!--.*?-->|<[A-Za-z!/?][^>"']*(?:(?:"[^"]*"|'[^']*')[^>"']*)*>""", re.S)
#: A start tag's name, then its attributes (libxml2 always quotes values).
_TAG_NAME = re.compile(r"<([^\s/>]+)")
_ATTRIBUTE = re.compile(r"""\s*([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
#: Attributes libxml2's HTML serialiser treats as URLs (`name` only on <a>).
_URL_ATTRIBUTES = frozenset({"href", "src", "action"})
#: In an attribute, libxml2 copies a server-side include (`<!--` to the next `-->`) and an HTML 4
#: `&{...}` script entity as they are, and escapes `&`, `<` and `>` elsewhere.
_IN_ATTRIBUTE_SPECIAL = re.compile(r"<(?=!--).*?-->|&\{.*?\}|[&<>]", re.S)
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BLANKS = " \t\n\r"
_ATTR_KEY = re.compile(r"[^a-z0-9]+")
#: A token lxml lower-cased: it was an attribute's or a tag's name, never a value (NONCE is lower-case hex).
_LOWERED = re.compile(re.escape(_PREFIX.lower()) + "_" + _FIELD + "__")


def attr_field(key: str) -> str:
    return "attr_" + _ATTR_KEY.sub("_", key.casefold()).strip("_")


def token(field: str) -> str:
    return f"{_PREFIX}_{field}__"


def content_token(name: str) -> str:
    """A content-level placeholder (filled once per distinct content, never per recipient)."""
    return f"{_PREFIX}C_{name}__"


def no_field(name: str) -> str:
    """What an author reads for `recipient.<name>` when there is no such field (compose's Jinja
    undefined says this, not Python's "object has no attribute")."""
    return f"recipient has no field {name!r} (fields: {', '.join(FIELDS)}, attributes.<column>)"


class RecipientView:
    """What templates call `recipient`: attribute access looks a field up (a token or a value)."""

    def __init__(self, lookup: Callable[[str], str]):
        self._lookup = lookup

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in FIELDS:
            raise AttributeError(no_field(name))
        return self._lookup(name)

    @property
    def attributes(self) -> _AttributesView:
        return _AttributesView(self._lookup)


class _AttributesView:
    def __init__(self, lookup: Callable[[str], str]):
        self._lookup = lookup

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._lookup(attr_field(name))

    __getitem__ = __getattr__


TOKENS = RecipientView(token)


def values_view(values: Mapping[str, str]) -> RecipientView:
    return RecipientView(lambda f: values.get(f, ""))


def recipient_values(
    subscriber: Subscriber,
    *,
    default_name: str,
    unsubscribe_url: str,
    preferences_url: str = "",
    click_token: str = "",
) -> dict[str, str]:
    """The raw (unescaped) value of every field for one subscriber."""
    prefs = _preferences(subscriber.tags, subscriber.categories)
    values = {
        "first_name": subscriber.first_name or default_name,
        "name": subscriber.name or default_name,
        "email": subscriber.email,
        "preferences": prefs or "all topics",
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url or unsubscribe_url,
        "click_token": click_token,  #: the reader's part of first-party click links (clicks.py)
    }
    for key, value in subscriber.attributes.items():
        values[attr_field(key)] = value
    # Values are filled in after MJML has run, so they must already be what MJML would have kept.
    return {k: one_line(v) for k, v in values.items()}


@functools.lru_cache(maxsize=16_384)
def _preferences(tags: tuple[str, ...], categories: tuple[str, ...]) -> str:
    """The topics line; a list holds a few thousand distinct preference sets, each joined once."""
    # A blank topic ("  " in a list cell) is no topic: it must not turn "all topics" into nothing.
    return ", ".join(t for t in (one_line(t) for t in tags + categories) if t)


def escape_text(value: str) -> str:
    """As lxml serialises a text node."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(value: str) -> str:
    """As lxml serialises a double-quoted attribute value (single quotes stay)."""
    return _IN_ATTRIBUTE_SPECIAL.sub(lambda m: _ENTITIES.get(m.group(0), m.group(0)), value).replace('"', "&quot;")


def quote_attr(value: str) -> str:
    """An attribute value with its quotes, as libxml2's HTML serialiser writes it: double quotes,
    unless the value holds `"` and no `'` (then single quotes, and the `"` stays as it is)."""
    if '"' in value and "'" not in value:
        return "'" + _IN_ATTRIBUTE_SPECIAL.sub(lambda m: _ENTITIES.get(m.group(0), m.group(0)), value) + "'"
    return f'"{escape_attr(value)}"'


def escape_url(value: str) -> str:
    """As libxml2 writes a URL attribute: printable ASCII kept as it is (`%`, quotes and brackets
    too), everything else (space, controls, non-ASCII) percent-encoded as UTF-8 bytes."""
    if value.isascii() and value.isprintable() and " " not in value:
        return value  # the common case: a URL made of URL characters
    return "".join(c if "!" <= c <= "~" else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in value)


def escape_markup(value: str) -> str:
    """As Jinja's autoescape wrote the value into the template: what a comment keeps verbatim."""
    return str(markupsafe.escape(value))


def _attribute_at(html: str, tag_start: int, pos: int) -> tuple[int, int, bool]:
    """The quoted value (start, end, is a URL) of the attribute of the tag at `tag_start` that holds `pos`."""
    name = _TAG_NAME.match(html, tag_start)
    i = name.end() if name else tag_start + 1
    while (m := _ATTRIBUTE.match(html, i)) and m.end() > i:
        value_start, value_end = m.span(2)
        if value_start <= pos < value_end and html[value_start] in "\"'":
            attr = m.group(1).casefold()
            tag = name.group(1).casefold() if name else ""
            return value_start, value_end, attr in _URL_ATTRIBUTES or (attr == "name" and tag == "a")
        i = m.end()
    snippet = html[tag_start : html.find(">", pos) + 1][:200]
    raise TemplateError(f"a recipient field inside a tag but outside an attribute value: {snippet}")


def refuse_field_names(html: str) -> None:
    """Refuse compiled HTML in which a field was a tag's or an attribute's name.

    `<a {{ recipient.first_name }}>`: lxml lower-cases names, so the token no longer matches and
    would be sent as it is, a junk attribute carrying NONCE in every email. A field can only be text
    or (part of) an attribute's value.
    """
    if (lowered := _LOWERED.search(html)) is not None:
        start = html.rfind("<", 0, lowered.start())
        tag = html[start : html.find(">", lowered.end()) + 1][:200]
        field = "{{ recipient." + lowered.group(1) + " }}"
        raise TemplateError(f"a recipient field used as a name, not a value: {tag.replace(lowered.group(0), field)}")


def tag_html(html: str) -> str:
    """Tag each token with its context: `H` in text, `M` in a comment (kept verbatim, so as Jinja
    escaped it), and inside a tag its whole attribute value.

    Runs once per compiled piece, never per recipient.
    """
    m = _TOKEN.search(html)
    if m is None:
        return html
    out: list[str] = []
    last = 0
    markup = _MARKUP.finditer(html)
    span = next(markup, None)
    while m is not None:
        while span is not None and span.end() <= m.start():
            span = next(markup, None)
        inside = span is not None and span.start() < m.start()
        if inside and span is not None and span.group(0).startswith("<!--"):
            out.append(html[last : m.start()])
            out.append(f"{_PREFIX}M_{m.group(1)}__")
            last = m.end()
        elif inside and span is not None:
            start, end, url = _attribute_at(html, span.start(), m.start())
            inner = _TOKEN.sub(lambda t: f"{_PREFIX}V_{t.group(1)}__", html[start + 1 : end - 1])
            out.append(html[last:start])
            out.append(f"{_PREFIX}{'U' if url else 'A'}__{inner}{_PREFIX}Z__")
            last = end
        else:
            out.append(html[last : m.start()])
            out.append(f"{_PREFIX}H_{m.group(1)}__")
            last = m.end()
        m = _TOKEN.search(html, last)
    out.append(html[last:])
    return "".join(out)


def tag_plain(text: str) -> str:
    return _TOKEN.sub(lambda m: f"{_PREFIX}P_{m.group(1)}__", text)


def _attribute(kind: str, compiled: str, values: Mapping[str, str]) -> str:
    """A tagged attribute value filled in: the compiled text around the fields read back (it was
    serialised once already), each field's value added (percent-encoded in a URL, where libxml2
    also drops blanks the value starts with), then the whole serialised again as libxml2 would."""
    parts: list[str] = []
    last = 0
    for m in _IN_ATTRIBUTE.finditer(compiled):
        parts.append(html_lib.unescape(compiled[last : m.start()]))
        value = values.get(m.group(1), "")
        if kind == "U":
            value = escape_url(value if any(parts) else value.lstrip(_BLANKS))
        parts.append(value)
        last = m.end()
    parts.append(html_lib.unescape(compiled[last:]))
    return quote_attr("".join(parts))


_ESCAPERS: dict[str, Callable[[str], str]] = {"H": escape_text, "M": escape_markup, "P": str}


def _filled(context: str, field_or_value: str, values: Mapping[str, str]) -> str:
    """One tagged token filled in: a field (H, M, P) or an attribute's compiled value (A, U)."""
    if context in ("A", "U"):
        return _attribute(context, field_or_value, values)
    return _ESCAPERS[context](values.get(field_or_value, ""))


def _parts(m: re.Match[str]) -> tuple[str, str, str]:
    context, name, kind, compiled = m.groups()
    return (m.group(0), kind, compiled) if kind else (m.group(0), context, name)


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace tagged tokens with values, escaped for their context. Unknown fields become ''.

    `values` are what `recipient_values` gives: one line each, as MJML would have kept them.
    """
    return _TAGGED.sub(lambda m: _filled(*_parts(m)[1:], values), text)


def tokens_in(parts: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """Every distinct tagged token in the parts, as (token, context, field), or for an attribute
    (token, "A" or "U", its compiled value with the fields inside). Once per content."""
    seen: dict[str, tuple[str, str, str]] = {}
    for part in parts:
        for m in _TAGGED.finditer(part):
            seen.setdefault(m.group(0), _parts(m))
    return tuple(seen.values())


def substitutions(tokens: tuple[tuple[str, str, str], ...], values: Mapping[str, str]) -> dict[str, str]:
    """Token -> filled value for one recipient (SendGrid substitutions). `tokens` from `tokens_in`."""
    return {tok: _filled(context, name, values) for tok, context, name in tokens}
