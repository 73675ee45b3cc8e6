"""SendGrid's suppression lists, read in full: what `digest sync` mirrors into the subscriber state.

Global unsubscribes, bounces, spam reports and invalid addresses (`/v3/suppression/<list>`, paged),
and the asm group's suppressions (`/v3/asm/groups/<id>/suppressions`) when `sendgrid.asm_group_id`
is set, through the official client with a timeout. Every failure is a `SendError` (`AuthError`
for a refused key) naming the list, never the key.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from digest.errors import AuthError, SendError
from digest.suppressions import Reason

#: SendGrid list name -> why an address on it must not be sent to.
LISTS: Mapping[str, Reason] = {
    "unsubscribes": "unsubscribed",
    "bounces": "bounced",
    "spam_reports": "complained",
    "invalid_emails": "invalid",
}
PAGE_SIZE = 500  # SendGrid's largest page
MAX_PAGES = 10_000  # a server that never returns an empty page must not loop forever

#: (email, reason, detail) of each entry on one list, as `SubscriberState.replace_synced` takes them.
Entries = list[tuple[str, Reason, str]]


def read_suppressions(client: SendGridAPIClient, asm_group_id: int) -> dict[str, Entries]:
    """Every list, read in full: list name (`asm_group_<id>` for the group) -> its entries."""
    lists: dict[str, Entries] = {}
    for name, reason in LISTS.items():
        lists[name] = [(email, reason, detail) for email, detail in _entries(client, name)]
    if asm_group_id:
        lists[f"asm_group_{asm_group_id}"] = [
            (e, "group_unsubscribed", d) for e, d in _group_entries(client, asm_group_id)
        ]
    return lists


def _get(what: str, request: Callable[[], Any]) -> Any:
    """One GET; any failure becomes a SendError naming the list, never the key."""
    try:
        response = request()
    except HTTPError as exc:
        if exc.status_code == 401:
            raise AuthError(f"sync: SendGrid: the API key was refused (401) reading {what}") from None
        detail = exc.body[:200].decode("utf-8", "replace") if isinstance(exc.body, bytes) else ""
        hint = " (is the API key allowed to read suppressions?)" if exc.status_code == 403 else ""
        raise SendError(
            f"sync: SendGrid answered HTTP {exc.status_code} for {what}{hint}: {detail}".rstrip(": ")
        ) from None
    except (TimeoutError, URLError, OSError, http.client.HTTPException) as exc:
        # HTTPException: a truncated or garbled answer (IncompleteRead, BadStatusLine)
        reason = getattr(exc, "reason", exc)
        raise SendError(f"sync: cannot reach SendGrid for {what}: {reason}") from None
    try:
        return json.loads(response.body or b"[]")
    except ValueError:
        raise SendError(f"sync: SendGrid answered {what} with something that is not JSON") from None


def _entries(client: SendGridAPIClient, name: str) -> list[tuple[str, str]]:
    """(email, detail) of every entry on one list, page by page until an empty page.

    An empty page, not a short one, ends the list: a server may cap the page below what we asked.
    """
    out: list[tuple[str, str]] = []
    endpoint = getattr(client.client.suppression, name)
    offset = 0
    for _ in range(MAX_PAGES):
        page = _get(
            f"/v3/suppression/{name}",
            partial(lambda o: endpoint.get(query_params={"limit": PAGE_SIZE, "offset": o}), offset),
        )
        if not isinstance(page, list):
            raise SendError(f"sync: SendGrid answered /v3/suppression/{name} with something that is not a list")
        if not page:
            return out
        for item in page:
            if isinstance(item, dict) and isinstance(item.get("email"), str):
                out.append((item["email"], str(item.get("reason") or item.get("status") or "")))
        offset += len(page)
    raise SendError(f"sync: /v3/suppression/{name} did not end after {MAX_PAGES} pages")


def _group_entries(client: SendGridAPIClient, group: int) -> list[tuple[str, str]]:
    what = f"/v3/asm/groups/{group}/suppressions"
    page = _get(what, lambda: client.client.asm.groups._(group).suppressions.get())
    if not isinstance(page, list):
        raise SendError(f"sync: SendGrid answered {what} with something that is not a list")
    return [(e, f"asm group {group}") for e in page if isinstance(e, str)]
