"""Per-recipient fields: rendered as tokens once, filled in per recipient afterwards.

Templates see `recipient.first_name`, `recipient.email`, `recipient.unsubscribe_url`, ... When a
digest is compiled once for many subscribers those print as tokens (`__DG<nonce>_first_name__`);
after MJML and CSS inlining each token is tagged with the context it landed in (HTML text, an HTML
attribute, or plain text: `__DG<nonce>H_first_name__`) so that filling it escapes exactly as lxml
would have had the value been rendered directly. The SendGrid transport sends the same tagged
tokens as substitutions.

Every token carries `NONCE`, random per process. Article titles, URLs and excerpts are rendered
into the same document as the tokens, so a fixed spelling would let an article author write
`__DG_email__` into a cover URL and have each recipient's address (or unsubscribe link) filled in
and sent to a third party. Text nobody could know in advance can never form a live token.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping

from digest.models import Subscriber
from digest.text import one_line

#: Fields every recipient has. Attributes (extra CSV columns) come as `attr_<name>`.
FIELDS = ("first_name", "name", "email", "preferences", "unsubscribe_url", "preferences_url", "click_token")

#: Random per process, never written anywhere but the compiled pieces it is filled out of.
NONCE = secrets.token_hex(12)
_PREFIX = f"__DG{NONCE}"
_FIELD = r"([a-z0-9]+(?:_[a-z0-9]+)*)"
_TOKEN = re.compile(re.escape(_PREFIX) + "_" + _FIELD + "__")
_TAGGED = re.compile(re.escape(_PREFIX) + "([HAP])_" + _FIELD + "__")
_ATTR_KEY = re.compile(r"[^a-z0-9]+")


def attr_field(key: str) -> str:
    return "attr_" + _ATTR_KEY.sub("_", key.casefold()).strip("_")


def token(field: str) -> str:
    return f"{_PREFIX}_{field}__"


def content_token(name: str) -> str:
    """A content-level placeholder (filled once per distinct content, never per recipient)."""
    return f"{_PREFIX}C_{name}__"


class RecipientView:
    """What templates call `recipient`: attribute access looks a field up (a token or a value)."""

    def __init__(self, lookup: Callable[[str], str]):
        self._lookup = lookup

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in FIELDS:
            raise AttributeError(f"recipient has no field {name!r} (fields: {', '.join(FIELDS)})")
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
    # A blank topic ("  " in a list cell) is no topic: it must not turn "all topics" into nothing.
    prefs = ", ".join(t for t in (one_line(t) for t in subscriber.tags + subscriber.categories) if t)
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


def escape_text(value: str) -> str:
    """As lxml serialises a text node."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(value: str) -> str:
    """As lxml serialises an attribute value (double-quoted; single quotes stay)."""
    return escape_text(value).replace('"', "&quot;")


def tag_html(html: str) -> str:
    """Tag each token with its context: `H` inside text, `A` inside a tag (an attribute value).

    Runs once per compiled piece, never per recipient.
    """
    out: list[str] = []
    last = 0
    for m in _TOKEN.finditer(html):
        # Inside a tag when the nearest '<' before the token is later than the nearest '>'.
        in_tag = html.rfind("<", 0, m.start()) > html.rfind(">", 0, m.start())
        out.append(html[last : m.start()])
        out.append(f"{_PREFIX}{'A' if in_tag else 'H'}_{m.group(1)}__")
        last = m.end()
    out.append(html[last:])
    return "".join(out)


def tag_plain(text: str) -> str:
    return _TOKEN.sub(lambda m: f"{_PREFIX}P_{m.group(1)}__", text)


_ESCAPERS = {"H": escape_text, "A": escape_attr, "P": lambda v: v}


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace tagged tokens with values, escaped for their context. Unknown fields become ''."""
    return _TAGGED.sub(lambda m: _ESCAPERS[m.group(1)](values.get(m.group(2), "")), text)


def tokens_in(parts: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """Every distinct tagged token in the parts, as (token, context, field). Once per content."""
    seen: dict[str, tuple[str, str, str]] = {}
    for part in parts:
        for m in _TAGGED.finditer(part):
            seen.setdefault(m.group(0), (m.group(0), m.group(1), m.group(2)))
    return tuple(seen.values())


def substitutions(tokens: tuple[tuple[str, str, str], ...], values: Mapping[str, str]) -> dict[str, str]:
    """Token -> escaped value for one recipient (SendGrid substitutions). `tokens` from `tokens_in`."""
    return {tok: _ESCAPERS[ctx](values.get(name, "")) for tok, ctx, name in tokens}
