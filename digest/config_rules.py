"""What a config value may be: the rules each option declares with `config.opt`, checked at load.

Every value in a config file ends up somewhere that breaks on a bad one: a header (a CR/LF in
`from_name` is a header injection, and the email package refuses it only at build time), a
`str.format` pattern (`{0}` is an IndexError, `{slug.__class__}` reads attributes), a timedelta
(`window_days = 100000000` overflows), a sleep or a timeout (`nan`, `-1`). So each value is checked
once, at load, and a bad one is one line naming the file and the key.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import Field
from typing import Any
from urllib.parse import urlsplit

from digest.errors import ConfigError

#: The fields `content.article_url` may use (content.py fills them).
ARTICLE_URL_FIELDS = ("slug", "year", "month", "day", "path")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  #: a multi-line text keeps \n and \t
_ADDRESS = re.compile(r"[^\s@<>()\[\]\\,;:\"]{1,64}@[^\s@<>()\[\]\\,;:\"]{1,253}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: RFC 2919: dot-atom text with at least one dot (list-label "." namespace).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LIST_ID = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})+")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
#: Characters that end or break a URL in a header or an HTML attribute.
_URL_BREAKERS = re.compile(r"[\s<>\"`\\^{|}]")
_DEFAULT_MAX_LEN = {"text": 5000}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_rules(value: Any, spec: Field[Any], where: str) -> None:
    """Raise ConfigError (one line naming `where`) unless `value` meets the field's rules."""
    meta = spec.metadata
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        _check_number(value, meta.get("bounds"), where)
        return
    if isinstance(value, list):
        if len(value) > meta.get("max_items", 1000):
            raise ConfigError(f"{where} holds at most {meta['max_items']} entries, got {len(value)}")
        for item in value:
            _check_string(item, meta, f"{where} entry {_shown(item)}", required=True)
        return
    _check_string(str(value), meta, where, required=meta.get("required", False))


def _check_number(value: float, bounds: tuple[float, float] | None, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value}")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        low, high = (f"{b:g}" if isinstance(b, float) else str(b) for b in bounds)
        raise ConfigError(f"{where} must be between {low} and {high}, got {value}")


def _check_string(value: str, meta: Any, where: str, *, required: bool) -> None:
    kind = meta.get("kind", "line")
    choices = meta.get("choices") or ()
    if choices:
        if value not in choices:
            raise ConfigError(f"{where} must be {' or '.join(choices)}, got {_shown(value)}")
        return
    limit = meta.get("max_len") or _DEFAULT_MAX_LEN.get(kind, 2000)
    if len(value) > limit:
        raise ConfigError(f"{where} is {len(value)} characters long; at most {limit}")
    bad = (_TEXT_CONTROL if kind == "text" else _CONTROL).search(value)
    if bad:
        what = "a line break" if bad.group() in "\r\n\u2028\u2029" else f"the control character {bad.group()!r}"
        raise ConfigError(f"{where} must not contain {what}: {_shown(value)}")
    if not value:
        if required:
            raise ConfigError(f"{where} must not be empty")
        return
    check = _KINDS.get(kind)
    if check is not None:
        check(value, where)


def _email(value: str, where: str) -> None:
    if not _ADDRESS.fullmatch(value):
        raise ConfigError(f"{where} must be one email address like news@example.com, got {_shown(value)}")


def _url(value: str, where: str, schemes: tuple[str, ...] = ("http", "https")) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname or not value.startswith(f"{parts.scheme}://"):
        want = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{where} must be an {want} URL, got {_shown(value)}")
    if _URL_BREAKERS.search(value):
        raise ConfigError(f"{where} must not contain spaces, quotes, <, > or braces: {_shown(value)}")


def _https(value: str, where: str) -> None:
    # RFC 8058 one-click needs HTTPS, and a token in a plain-HTTP link can be read on the way
    _url(value, where, ("https",))
    if not value.isascii():  # it goes into List-Unsubscribe as written
        raise ConfigError(f"{where} must be ASCII (percent-encode other characters): {_shown(value)}")


def _env(value: str, where: str) -> None:
    if not _ENV_NAME.fullmatch(value):
        raise ConfigError(
            f"{where} must be the name of an environment variable (letters, digits, _), got {_shown(value)}"
        )


def _list_id(value: str, where: str) -> None:
    if len(value) > 255 or not _LIST_ID.fullmatch(value):
        raise ConfigError(
            f"{where} must look like weekly.example.com (letters, digits, dots; no <>, spaces), got {_shown(value)}"
        )


def _host(value: str, where: str) -> None:
    if not _HOST.fullmatch(value):
        raise ConfigError(f"{where} must be a host name or IP address, got {_shown(value)}")


def _pattern(value: str, where: str) -> None:
    """A `str.format` pattern using only the documented fields, whole (no attributes, indexes,
    conversions or format specs): anything else is an IndexError, a KeyError or an attribute read
    at build time."""
    known = " ".join(f"{{{f}}}" for f in ARTICLE_URL_FIELDS)
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ConfigError(f"{where} is not a valid pattern: {exc} (write {{{{ and }}}} for a literal brace)") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in ARTICLE_URL_FIELDS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ConfigError(f"{where} may only use the fields {known}, got {shown}")
    try:
        _url(value.format(**dict.fromkeys(ARTICLE_URL_FIELDS, "x")), where)
    except ConfigError:
        raise ConfigError(f"{where} must make an http:// or https:// URL, got {_shown(value)}") from None


_KINDS = {
    "email": _email,
    "url": _url,
    "https": _https,
    "env": _env,
    "list_id": _list_id,
    "host": _host,
    "pattern": _pattern,
}
