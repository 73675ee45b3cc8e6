"""Reading other tools' subscriber exports as our `Subscriber` records (`digest subscribers import`).

One reader per tool, each mapping that tool's documented export columns, statuses and tag/group
fields; `digest.imports` merges the result into our list. The rules every reader keeps:

- A status or flag it does not know skips the row, with the reason. A guess here would mail
  someone who left; a skipped row is reported and can be fixed.
- A column we do not map becomes an attribute, unless it looks like a subscription flag or status
  (see digest.flags): then a row with a value in it is skipped, never imported "active".
- Private or meaningless columns (IP addresses, coordinates, payment ids, staff notes) are dropped,
  not copied into a list that templates can print.

The columns, from each tool's export (see docs/subscribers.md for the sources):

- mailchimp: the audience export's three files, `subscribed_members_export_*.csv`,
  `unsubscribed_members_export_*.csv` (with `UNSUB_TIME` ...) and `cleaned_members_export_*.csv`
  (with `CLEAN_TIME` ...): `Email Address`, `First Name`, `Last Name`, merge fields, `TAGS`
  (`"Tag A","Tag B"`), `OPTIN_TIME`, `CONFIRM_TIME`, `EUID`, `TIMEZONE` ...
- substack: the subscriber export: `email`, `name`, `email_disabled`, `created_at`, `type` ...;
  addresses at `deletion-request.substack.com` are deletion requests and are skipped.
- buttondown: the subscriber export, by API field name or dashboard column title: `email`,
  `subscriber_type`/`type`/`Status`, `tags`, `metadata` (JSON), `creation_date`/`Subscription date`,
  `Unsubscription date`, `Undeliverability date` ...
- listmonk: the subscribers CSV export: `uuid,email,name,attributes,status,created_at,updated_at`
  with `status` enabled/disabled/blocklisted and `attributes` a JSON object.
- ghost: the members CSV export: `id,email,name,note,subscribed_to_emails,complimentary_plan,
  stripe_customer_id,created_at,deleted_at,labels,tiers`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

from digest import flags
from digest.csvfile import Header, read_rows
from digest.errors import SubscriberError
from digest.models import Problem, Subscriber
from digest.subscribers import LIST_COLUMNS, is_valid_email, split_terms
from digest.text import one_line

SOURCES = ("mailchimp", "substack", "buttondown", "listmonk", "ghost")


@dataclass(frozen=True)
class Mapped:
    """One export row as our subscriber; `note` says why its status is what it is."""

    subscriber: Subscriber
    note: str = ""


@dataclass(frozen=True)
class Skip:
    """One export row not imported, and why."""

    file: str
    line: int
    email: str
    reason: str


class _Row:
    """An export row keyed the way tools spell a field (`Email Address` and `email_address` alike);
    remembers which fields were used, the rest become attributes."""

    def __init__(self, cells: Mapping[str, str | None], names: Mapping[str, str]):
        self.cells = cells  # by original header name
        self.names = names  # key -> original header name
        self.used: set[str] = set()

    def get(self, *keys: str) -> str:
        for k in keys:
            name = self.names.get(k)
            if name is not None:
                self.used.add(k)
                value = (self.cells.get(name) or "").strip()
                if value:
                    return value
        return ""

    def drop(self, *keys: str) -> None:
        self.used.update(keys)

    def rest(self) -> Iterator[tuple[str, str]]:
        for k, name in self.names.items():
            value = (self.cells.get(name) or "").strip()
            if k not in self.used and value:
                yield name, value


class _Tool:
    label = ""
    email_columns: tuple[str, ...] = ("email",)

    def file_note(self, keys: set[str]) -> str:
        """What the file as a whole says (Mailchimp: which of its three exports this is)."""
        return ""

    def map(self, row: _Row, file_note: str) -> tuple[dict[str, Any], str, str]:
        """(fields for Subscriber, status, note); raises ValueError to skip the row."""
        raise NotImplementedError


class _Mailchimp(_Tool):
    label = "Mailchimp"
    email_columns = ("Email Address", "email")
    _DROPPED = (
        "memberrating optinip confirmip latitude longitude gmtoff dstoff cc region lastchanged leid notes"
        " unsubtime unsubcampaigntitle unsubcampaignid unsubreason unsubreasonother"
        " cleantime cleancampaigntitle cleancampaignid"
    ).split()

    def file_note(self, keys: set[str]) -> str:
        if "unsubtime" in keys:
            return "unsubscribed"
        if "cleantime" in keys:
            return "cleaned"
        return ""

    def map(self, row: _Row, file_note: str) -> tuple[dict[str, Any], str, str]:
        name = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p)
        fields = {
            "name": name,
            "tags": _quoted_list(row.get("tags")),
            "subscribed_at": _time(row.get("confirmtime", "optintime")),
            "external_id": row.get("euid"),
            "attributes": _timezone(row.get("timezone")),
        }
        row.drop(*self._DROPPED, "optintime", "confirmtime")
        if file_note:
            return fields, file_note, f"in Mailchimp's {file_note} export"
        return fields, "active", ""


class _Substack(_Tool):
    label = "Substack"
    _DROPPED = ("activesubscription", "expiry", "stripeconnectedcustomerid", "stripecustomerid")

    def map(self, row: _Row, file_note: str) -> tuple[dict[str, Any], str, str]:
        if row.get("email").casefold().endswith("@deletion-request.substack.com"):
            raise ValueError("a Substack deletion request, not a subscriber")
        plan = row.get("type", "subscriptiontype")
        fields = {
            "name": row.get("name"),
            "subscribed_at": _time(row.get("createdat", "subscriptiondate", "startdate")),
            "attributes": {"plan": plan} if plan else {},
        }
        row.drop(*self._DROPPED)
        disabled = row.get("emaildisabled")
        if disabled and flags.parse_bool("email_disabled", disabled):
            return fields, "unsubscribed", "email disabled in Substack"
        return fields, "active", ""


class _Buttondown(_Tool):
    label = "Buttondown"
    email_columns = ("email", "email_address", "Email")
    # subscriber types (https://docs.buttondown.com, SubscriberType) -> our status
    _TYPES = {
        **dict.fromkeys(("regular", "premium", "paid", "trialed", "unpaid", "gifted", "churning", "pastdue"), "active"),
        "unactivated": "pending",
        "paused": "paused",
        "unsubscribed": "unsubscribed",
        "removed": "cleaned",
        "spammy": "cleaned",
        "blocked": "cleaned",
        "undeliverable": "bounced",
        "complained": "complained",
    }
    _DROPPED = (
        "notes referrerurl secondaryid source utmcampaign utmmedium utmsource ipaddress import upgradedate"
        " churndate lastopeneddate lastclickeddate openrate clickrate unsubscriptionreason riskscore"
    ).split()

    def map(self, row: _Row, file_note: str) -> tuple[dict[str, Any], str, str]:
        metadata = _json_object(row.get("metadata"), "metadata")
        lifted = _lift(metadata, "metadata")
        fields = {
            **lifted,
            "tags": split_terms([*_json_or_split(row.get("tags")), *lifted["tags"]]),
            "subscribed_at": _time(row.get("creationdate", "createddate", "subscriptiondate")),
            "external_id": row.get("id"),
            "attributes": metadata,
        }
        row.drop(*self._DROPPED)
        kind = row.get("subscribertype", "type", "status")
        unsubscribed, undeliverable = row.get("unsubscriptiondate"), row.get("undeliverabilitydate")
        if unsubscribed:
            return fields, "unsubscribed", f"unsubscribed in Buttondown on {unsubscribed}"
        if undeliverable:
            return fields, "bounced", f"undeliverable in Buttondown since {undeliverable}"
        status = self._TYPES.get(flags.key(kind)) if kind else "active"
        if status is None:
            known = ", ".join(sorted(self._TYPES))
            raise ValueError(f"unknown Buttondown subscriber type {kind!r} (known: {known})")
        return fields, status, f"Buttondown type {kind}" if status != "active" else ""


class _Listmonk(_Tool):
    label = "listmonk"
    _STATUSES = {"enabled": "active", "disabled": "paused", "blocklisted": "unsubscribed"}

    def map(self, row: _Row, file_note: str) -> tuple[dict[str, Any], str, str]:
        attributes = _json_object(row.get("attributes", "attribs"), "attributes")
        fields = {
            **_lift(attributes, "attributes"),
            "name": row.get("name"),
            "external_id": row.get("uuid"),
            "subscribed_at": _go_time(row.get("createdat")),
            "attributes": attributes,
        }
        row.drop("updatedat", "id")
        status = row.get("status")
        mapped = self._STATUSES.get(status.casefold())
        if mapped is None:
            raise ValueError(f"unknown listmonk status {status!r} (known: {', '.join(self._STATUSES)})")
        return fields, mapped, f"{status} in listmonk" if mapped != "active" else ""


class _Ghost(_Tool):
    label = "Ghost"
    _DROPPED = ("note", "complimentaryplan", "stripecustomerid", "giftid", "error")

    def map(self, row: _Row, file_note: str) -> tuple[dict[str, Any], str, str]:
        tiers = row.get("tiers")
        fields = {
            "name": row.get("name"),
            "external_id": row.get("id"),
            "subscribed_at": _time(row.get("createdat")),
            "tags": split_terms(row.get("labels")),
            "attributes": {"tiers": tiers} if tiers else {},
        }
        row.drop(*self._DROPPED)
        deleted, subscribed = row.get("deletedat"), row.get("subscribedtoemails")
        if deleted:
            return fields, "unsubscribed", f"deleted in Ghost on {deleted}"
        if not subscribed:
            raise ValueError("subscribed_to_emails is empty: whether they want email is not known")
        if not flags.parse_bool("subscribed_to_emails", subscribed):
            return fields, "unsubscribed", "not subscribed to emails in Ghost"
        return fields, "active", ""


_TOOLS: dict[str, _Tool] = {
    "mailchimp": _Mailchimp(),
    "substack": _Substack(),
    "buttondown": _Buttondown(),
    "listmonk": _Listmonk(),
    "ghost": _Ghost(),
}


def read_export(source: str, path: Path) -> Iterator[Mapped | Skip]:
    """Each row of one tool's export, as a subscriber or a skip with its reason."""
    tool = _TOOLS.get(source)
    if tool is None:
        raise SubscriberError(f"unknown export source {source!r} (known: {', '.join(SOURCES)})")
    file = str(path)
    names: dict[str, str] = {}
    note = ""
    for line, item in read_rows(path, normalise=False, email_columns=tool.email_columns):
        if isinstance(item, Header):
            names = {}
            for name in item.names:
                names.setdefault(flags.key(name), name)
            if not {flags.key(e) for e in tool.email_columns} & set(names):
                columns = ", ".join(item.names[:8])
                raise SubscriberError(f"{file}:{line}: no email column ({columns} ...): is this a {tool.label} export?")
            note = tool.file_note(set(names))
            continue
        if isinstance(item, Problem):
            if item.line == 0 or not names:  # the file itself cannot be read
                raise SubscriberError(str(item))
            yield Skip(file, line, "", item.message)
            continue
        row = _Row(item, names)
        email = row.get(*(flags.key(e) for e in tool.email_columns))
        try:
            yield _mapped(tool, row, note, email, file, line)
        except ValueError as exc:
            yield Skip(file, line, email, str(exc))


def _mapped(tool: _Tool, row: _Row, file_note: str, email: str, file: str, line: int) -> Mapped:
    if not email:
        raise ValueError("no email")
    if not is_valid_email(email):
        raise ValueError(f"invalid email address {email!r}")
    fields, status, note = tool.map(row, file_note)
    attributes = {_attribute_name(k, tool): one_line(str(v)) for k, v in fields.pop("attributes", {}).items()}
    for name, value in row.rest():
        attributes.setdefault(_attribute_name(name, tool), one_line(value))
        if flags.speaks_of_consent(name):
            raise ValueError(
                f"column {name!r} looks like a subscription flag or status that the {tool.label} import does not "
                "read; this row is skipped (remove the column, or import it as our own CSV list)"
            )
    return Mapped(
        Subscriber(
            email=email,
            name=one_line(fields.get("name") or ""),
            tags=fields.get("tags") or (),
            categories=fields.get("categories") or (),
            status=status,
            attributes={k: v for k, v in attributes.items() if v},
            file=file,
            line=line,
            external_id=one_line(fields.get("external_id") or ""),
            subscribed_at=fields.get("subscribed_at"),
            frequency=fields.get("frequency"),
        ),
        note,
    )


def _attribute_name(name: str, tool: _Tool) -> str:
    """`ZIP Code` -> `zip_code`; a name our list uses for its own columns gets the tool's prefix."""
    snake = re.sub(r"[\W_]+", "_", name.strip()).strip("_").lower() or "field"
    return f"{tool.label.lower()}_{snake}" if snake in LIST_COLUMNS else snake


def _quoted_list(cell: str) -> tuple[str, ...]:
    """Mailchimp's TAGS cell: `"Tag A","Tag B"` (a CSV line of its own)."""
    if not cell:
        return ()
    return split_terms([t.strip() for t in next(csv.reader([cell]), [])])


def _json_or_split(cell: str) -> tuple[str, ...]:
    if cell.startswith("["):
        try:
            value = json.loads(cell)
        except (ValueError, RecursionError):
            raise ValueError(f"tags {cell[:40]!r} is not a JSON list") from None
        return split_terms(value if isinstance(value, list) else [])
    return split_terms(cell)


def _json_object(cell: str, field: str) -> dict[str, Any]:
    """A JSON object cell (listmonk's attributes, Buttondown's metadata): its scalar values; tags,
    categories and frequency kept as they are for the caller."""
    if not cell:
        return {}
    try:
        value = json.loads(cell)
    except (ValueError, RecursionError):
        raise ValueError(f"{field} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{field} is not a JSON object")
    out: dict[str, Any] = {}
    for k, v in value.items():
        if flags.speaks_of_consent(k) and not flags.is_empty(v):
            raise ValueError(f"{field}.{k} names a subscription flag or status, which the import does not read there")
        if k in ("tags", "categories") or (k == "frequency" and isinstance(v, str)):
            out[k] = v
        elif isinstance(v, str | int | float) and not isinstance(v, bool) and str(v).strip():
            out[k] = v
    return out


def _lift(attributes: dict[str, Any], field: str) -> dict[str, Any]:
    """Topics and cadence kept in a tool's JSON attributes, taken out of them as our own fields."""
    return {
        "tags": split_terms(attributes.pop("tags", None)),
        "categories": split_terms(attributes.pop("categories", None)),
        "frequency": flags.parse_frequency(f"{field}.frequency", attributes.pop("frequency", None)),
    }


def _time(text: str) -> datetime | None:
    return flags.parse_time(text) if text else None


_GO_TIME = re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(\.\d+)? ([+-]\d\d)(\d\d)(?: \S+)?$")


def _go_time(text: str) -> datetime | None:
    """listmonk writes Go's time.String(): `2024-03-05 10:12:33.123456789 +0000 UTC`."""
    found = _GO_TIME.match(text)
    if not found:
        return _time(text)
    whole, fraction, hours, minutes = found.groups()
    return flags.parse_time(f"{whole}{(fraction or '')[:7]}{hours}:{minutes}")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _timezone(value: str) -> dict[str, str]:
    """Mailchimp's TIMEZONE, kept as our `timezone` attribute (the scheduler's) when it is a zone name."""
    return {"timezone": value} if value in _zones() else {}
