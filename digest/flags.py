"""What a subscriber row says about consent: its subscription flags and statuses, read exactly.

Lists come from many tools, and each spells "this person still wants the newsletter" its own way:
`active`, `isActive`, `is_active`, `subscribed`, `unsubscribed`, `status`, an `unsubscribed_at`
date. A spelling we do not know must never become a template attribute and leave its row "active":
that is how people who left get mailed (issue 19: the seed site's `isActive: false` readers were).
So every field is sorted into one of:

- a recognised signal (below): its value must be understood, or the row is an error (not mailed);
- a field that looks like a flag or status but is not one we read (`opted_out`, `email_disabled`,
  `subscription_status`, `deleted_at` ...): an error when it holds a value, never an attribute;
- anything else: an attribute templates may print.

Precedence when several signals are present: any opt-out wins. The row is active only when every
signal it carries says active; otherwise it takes the most serious status among them (complained,
bounced, cleaned, unsubscribed, paused, pending, in that order). A row with no signal at all is
active: being on the list is the subscription. When signals disagree the row is also reported as a
warning, so the disagreement is seen and fixed at the source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

#: The statuses a subscriber can have; only "active" gets email.
STATUSES = frozenset({"active", "unsubscribed", "bounced", "complained", "cleaned", "pending", "paused"})
#: Most serious first: when signals disagree, the first of these present wins.
SEVERITY = ("complained", "bounced", "cleaned", "unsubscribed", "paused", "pending")

#: `status` values other tools write, mapped onto ours (keys compared case-insensitively, with
#: spaces, dashes and underscores removed).
STATUS_ALIASES: Mapping[str, str] = {
    **{s: s for s in STATUSES},
    "subscribed": "active",
    "confirmed": "active",
    "enabled": "active",
    "optedin": "active",
    "optin": "active",
    "unsubscribe": "unsubscribed",
    "optedout": "unsubscribed",
    "optout": "unsubscribed",
    "inactive": "unsubscribed",
    "disabled": "unsubscribed",
    "blocklisted": "unsubscribed",
    "blacklisted": "unsubscribed",
    "blocked": "unsubscribed",
    "deleted": "unsubscribed",
    "archived": "cleaned",
    "invalid": "cleaned",
    "hardbounce": "bounced",
    "hardbounced": "bounced",
    "spam": "complained",
    "spamreport": "complained",
    "unconfirmed": "pending",
    "unverified": "pending",
    "transactional": "pending",
}
_STATUS_HELP = "active/subscribed, unsubscribed, cleaned, bounced, complained, pending, paused"

_TRUE = frozenset({"true", "yes", "y", "1", "t", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "f", "off"})
_BOOL_HELP = "true/false, yes/no, 1/0"

#: Field names (normalised by `key`) and what they are.
ACTIVE_FLAGS = frozenset({"active", "isactive", "subscribed", "issubscribed"})  #: true: subscribed
OPTOUT_FLAGS = frozenset({"unsubscribed", "isunsubscribed"})  #: true: opted out
STATUS_FIELDS = frozenset({"status"})
#: Any value in one of these (a date, usually) means the subscriber opted out.
OPTOUT_DATES = frozenset({"unsubscribedat", "unsubscribedon", "unsubscribeddate", "unsubscribedate"})
SUBSCRIBED_AT = frozenset({"subscribedat", "subscribedon", "subscribeddate", "subscriptiondate"})
FREQUENCIES = ("daily", "weekly", "monthly")
#: The fields whose value decides a row's status (for OPTOUT_DATES only whether there is one).
CONSENT = ACTIVE_FLAGS | OPTOUT_FLAGS | STATUS_FIELDS | OPTOUT_DATES
RECOGNISED = CONSENT | SUBSCRIBED_AT

#: The spellings, for messages and docs.
FLAG_SPELLINGS = "active, isActive, is_active, subscribed, unsubscribed, status, unsubscribed_at"

# Names that look like consent. Substrings of the normalised name: `last_active`, `email_disabled`,
# `opted_out`, `subscription_status`, `gdpr_consent`, `deleted_at`, `newsletter` (yes/no) ...
# Deliberately broad: a false alarm costs a rename; a miss mails someone who left.
_LOOKALIKE = re.compile(
    r"active|activated|subscribe(?!r)|subscription|unsub|optin|optout|optedin|optedout|consent|status"
    r"|enabled|disabled|blocked|blocklist|blacklist|suppress|bounce|cleaned|deleted|archived|spam"
    r"|complain|confirmed|paused|donotemail|donotmail|nomail|noemail|mailable|newsletter"
)
_KEY = re.compile(r"[\W_]")


@lru_cache(maxsize=4096)  # a list has a few dozen field names, read on each of its rows
def key(name: str) -> str:
    """A field name compared as tools spell it: `isActive`, `is_active`, `Is Active` are one."""
    return _KEY.sub("", name.casefold())


@lru_cache(maxsize=4096)
def looks_like_flag(name: str) -> bool:
    """A field named like a subscription flag or status that is not one we read."""
    k = key(name)
    return k not in RECOGNISED and bool(_LOOKALIKE.search(k))


def speaks_of_consent(name: str) -> bool:
    """A nested or imported field that names consent, recognised spelling or lookalike: only a
    list's own top-level fields are read as flags, so anywhere else each of these is refused."""
    return key(name) in RECOGNISED or looks_like_flag(name)


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value in ([], {})


def parse_bool(field: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{field} {_show(value)} is not a yes/no value ({_BOOL_HELP}); this row is not mailed")


def parse_status(field: str, value: Any) -> str:
    status = STATUS_ALIASES.get(key(str(value))) if isinstance(value, str) else None
    if status is None:
        raise ValueError(f"unknown {field} {_show(value)} (known: {_STATUS_HELP}); this row is not mailed")
    return status


def parse_frequency(field: str, value: Any) -> str | None:
    if is_empty(value):
        return None
    text = str(value).strip().casefold() if isinstance(value, str) else ""
    if text not in FREQUENCIES:
        raise ValueError(f"{field} {_show(value)} is not one of {', '.join(FREQUENCIES)}")
    return text


def from_epoch(value: float) -> datetime | None:
    """A Unix time in UTC: seconds, or milliseconds above 10**11 (JavaScript's Date.now(); 10**11
    seconds is the year 5138, 10**11 ms is 1973). None past the year 9999, or for inf and nan."""
    seconds = value / 1000 if value > 10**11 else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        return None


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 date or time (`2025-06-03T18:57:08.415Z`, `2018-02-12 10:54:27`) or a Unix
    time in seconds or milliseconds; in UTC (read as UTC when it had no zone). None when it is none
    of these, or when it lies outside the years 1 to 9999 in UTC."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return from_epoch(value)
    try:
        if isinstance(value, str):
            text = value.strip()
            # a Unix time in a CSV cell; eight digits or fewer are a date (20250603) or a year
            if len(text) > 8 and text.isascii() and text.isdigit():
                return from_epoch(int(text))
            parsed = datetime.fromisoformat(text)
            # as an instant in UTC: 9999-12-31T23:59-23:00 is past the end of time there, and
            # would stop whatever converts it later (`digest subscribers show`, a report)
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


@dataclass(frozen=True)
class Consent:
    """What one row says: its status, and a warning when its signals disagree."""

    status: str
    warning: str = ""


def consent_of(fields: tuple[tuple[str, Any], ...]) -> Consent:
    """`consent` for (name, value) pairs, remembered when they are hashable: a flag of a JSON list
    that holds an object or a list is judged alone (and refused), never a crash of the whole list."""
    try:
        return _consent_of(fields)
    except TypeError:  # unhashable: lru_cache cannot key it
        return consent(iter(fields))


@lru_cache(maxsize=4096)  # a list's rows carry a handful of distinct flag combinations
def _consent_of(fields: tuple[tuple[str, Any], ...]) -> Consent:
    return consent(iter(fields))


def consent(fields: Iterator[tuple[str, Any]]) -> Consent:
    """The status of a row from its (field name, value) pairs; raises ValueError for a signal that
    is not understood or a flag lookalike with a value (the row must not be mailed)."""
    signals: list[tuple[str, str]] = []
    for name, value in fields:
        k = key(name)
        if k in RECOGNISED:
            if is_empty(value):
                continue
            if k in ACTIVE_FLAGS:
                signals.append((name, "active" if parse_bool(name, value) else "unsubscribed"))
            elif k in OPTOUT_FLAGS:
                signals.append((name, "unsubscribed" if parse_bool(name, value) else "active"))
            elif k in STATUS_FIELDS:
                signals.append((name, parse_status(name, value)))
            elif k in OPTOUT_DATES:
                signals.append((name, "unsubscribed"))
        elif looks_like_flag(name) and not is_empty(value):
            raise ValueError(lookalike_message(name))
    statuses = {s for _, s in signals}
    if not statuses or statuses == {"active"}:
        return Consent("active")
    worst = next(s for s in SEVERITY if s in statuses)
    warning = ""
    if "active" in statuses:
        said = ", ".join(f"{n} says {s}" for n, s in signals)
        warning = f"subscription fields disagree ({said}): treated as {worst} (an opt-out always wins)"
    return Consent(worst, warning)


def lookalike_message(name: str) -> str:
    return (
        f"field {name!r} looks like a subscription flag or status but is not one digest reads "
        f"({FLAG_SPELLINGS}); this row is not mailed: rename or remove the field"
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
