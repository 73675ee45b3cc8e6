"""The values of an article's fields, read one way from a file's front matter (content.py) and
from a feed entry (feeds.py): dates in any of the forms met in the wild, tag and category terms,
and the web URLs an article may link to. Nothing here reads a file."""

from __future__ import annotations

import email.utils
import re
import warnings as pywarnings
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from dateutil import parser as dateutil_parser
from dateutil.tz import tzoffset

from digest.flags import from_epoch
from digest.text import one_line

FILENAME_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[-_](.*))?$")
# '2023-12-25 00:00:00 +0000': fromisoformat wants no space before the offset
_SPACE_OFFSET = re.compile(r"\s+([+-]\d{2}:?\d{2}|Z)$")
_TEXT_DATE_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%B %d %Y", "%Y/%m/%d")
_WEB_SCHEMES = ("http", "https")
#: Free-form dates go to dateutil only after the strict forms, and only this long (a date is short).
_MAX_DATE_CHARS = 100
#: 03/04/2021: April 3rd or March 4th? Refused rather than guessed (see _parse_free_form).
_AMBIGUOUS_NUMERIC = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2,4})\b")
#: Zone abbreviations seen in blog front matter; dateutil knows only UTC/GMT/Z by itself.
_ZONE_NAMES = {
    name: tzoffset(name, int(hours * 3600))
    for name, hours in {
        "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
        "AKST": -9, "AKDT": -8, "HST": -10, "BST": 1, "IST": 5.5, "CET": 1, "CEST": 2, "EET": 2,
        "EEST": 3, "WET": 0, "WEST": 1, "JST": 9, "KST": 9, "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13,
    }.items()
}  # fmt: skip


# --- dates ---------------------------------------------------------------------------------------


def parse_date(value: Any, tz: ZoneInfo) -> datetime | None:
    """Any of the date forms seen in the wild -> aware UTC datetime. Naive means the newsletter's zone."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime.combine(value, time())
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # epoch seconds, as some importers write, or milliseconds, as headless CMS exports do;
        # a number below 10**8 (1973) is something else
        return from_epoch(value) if value > 10**8 else None
    elif isinstance(value, str):
        parsed = _parse_date_string(value.strip())
        if parsed is None:
            return None
        dt = parsed
    else:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it: no such instant in UTC
        return None


def _parse_date_string(text: str) -> datetime | None:
    if not text:
        return None
    candidate = _SPACE_OFFSET.sub(r"\1", text)
    try:
        return datetime.fromisoformat(candidate)
    except ValueError:
        pass
    for fmt in _TEXT_DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    if _RFC_2822.match(text):  # as in RSS: 'Mon, 21 Jul 2025 10:00:00 +0000'
        # only on its own shape: the stdlib reader is loose and drops what it does not know
        # ('July 27, 2021 10:00 AM PDT' would come back naive)
        try:
            return email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            pass
    return _parse_free_form(text)


_RFC_2822 = re.compile(r"^(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{1,2}:\d{2}")


#: Two defaults that differ in year, month and day: a field the text lacks shows as a difference.
_DEFAULTS = (datetime(2000, 1, 1), datetime(2001, 2, 2))


def _parse_free_form(text: str) -> datetime | None:
    """Anything else dateutil reads as a whole date: Jekyll's `2024-03-21 4:00:00 +0000`,
    `Jul 08 2022`, `Tuesday, July 27, 2021 10:00 AM PDT` ...

    dateutil fills a missing year, month or day from a default, so `March 2021` or `10:00` would
    become some date: parsing with two defaults and refusing when they disagree rejects those.
    A numeric date whose day and month could be swapped (03/04/2021) is refused, not guessed."""
    if len(text) > _MAX_DATE_CHARS or is_ambiguous_date(text):
        return None
    results = []
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")  # an unknown zone name: read as naive (the newsletter's zone)
        for default in _DEFAULTS:
            try:
                results.append(dateutil_parser.parse(text, default=default, tzinfos=_ZONE_NAMES))
            except (ValueError, OverflowError, TypeError):
                return None
    first, second = results
    return first if first == second else None


def is_ambiguous_date(text: str) -> bool:
    """`03/04/2021`: day and month both 12 or less, and different."""
    match = _AMBIGUOUS_NUMERIC.match(text)
    return match is not None and int(match[1]) <= 12 and int(match[2]) <= 12 and match[1] != match[2]


def date_from_filename(stem: str, tz: ZoneInfo) -> datetime | None:
    match = FILENAME_DATE.match(stem)
    if not match:
        return None
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    return parse_date(day, tz)


# --- tags and links ---


def as_list(value: Any, separator: str = "comma") -> list[Any]:
    """A front-matter value as a list; a string is split at commas, or at spaces where the
    generator says so (Jekyll: `[content] term_separator = "space"`)."""
    if value is None:
        return []
    if isinstance(value, str):
        return re.split(r"[\s,]+", value) if separator == "space" else value.split(",")
    if isinstance(value, list | tuple):
        return list(value)
    return []


def normalise_terms(value: Any, separator: str = "comma") -> tuple[str, ...]:
    """Tags or categories from a list, a string or a comma- (or space-) separated string.

    Non-strings (None, numbers) are dropped; duplicates differing only in case count once,
    keeping the first spelling for display.
    """
    seen: set[str] = set()
    out: list[str] = []
    for item in as_list(value, separator):
        if not isinstance(item, str):
            continue
        term = one_line(item)
        key = term.casefold()
        if term and key not in seen:
            seen.add(key)
            out.append(term)
    return tuple(out)


def is_web_url(url: str) -> bool:
    """An absolute http(s) URL with a host: the only kind an article may put in a link or image."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in _WEB_SCHEMES and bool(parts.netloc)
