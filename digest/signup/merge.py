"""The list every command sees: the list's rows, plus confirmed signups, minus forgotten addresses
(opt-outs, pauses and topic changes are laid over all of it afterwards, see suppressions.py).

Precedence, for an address both on the list and signed up:

- the list row is the record (its name, topics, attributes); only its status can change;
- a confirmed signup makes a row that says unsubscribed, pending or paused active again, but only
  while the row still says what it said when the signup was confirmed (`listed_status`): a list
  that changed since (a new export marking the address unsubscribed or bounced) is newer news,
  and wins;
- a bounced, complained or cleaned row is never made active by a signup.

A forgotten address (`digest subscribers forget`) that reappears on the list (an old export pasted
back) is never mailed: its row takes the status its suppression carried. A new, confirmed signup
after the erasure lifts a plain erasure (it is a new consent), never a bounce or a complaint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from digest.models import Subscriber
from digest.signup.store import BLOCKING_STATUSES, Signup, address_key
from digest.subscribers import SubscriberList
from digest.suppressions import Overlay, apply_overlay

#: The list status a forgotten address takes, by the reason kept with it.
FORGOTTEN_STATUS: Mapping[str, str] = {
    "complained": "complained",
    "bounced": "bounced",
    "invalid": "cleaned",
    "suppressed": "cleaned",
}
#: Statuses a confirmed signup may turn back into active.
OVERRIDABLE = frozenset({"unsubscribed", "pending", "paused"})


@dataclass(frozen=True)
class SignupState:
    """What the merge needs from the state, read once per run."""

    signups: tuple[Signup, ...] = ()  #: active ones, in the order they were confirmed
    forgotten: Mapping[str, str] = field(default_factory=dict)  #: address key -> reason


NO_SIGNUPS = SignupState()


def read_signup_state(where: Any) -> SignupState:
    """Active signups and forgotten keys of `where` (a Config or a store Location); nothing when
    there is no state yet (nothing is created)."""
    from digest.store import open_existing_signups

    store = open_existing_signups(where)
    if store is None:
        return NO_SIGNUPS
    with store:
        return SignupState(tuple(store.signups("active")), store.forgotten())


def merge_signups(listed: SubscriberList, state: SignupState) -> SubscriberList:
    """The list with the signups added and the forgotten addresses kept out (pure)."""
    if not state.signups and not state.forgotten:
        return listed
    signed = {s.subscriber: s for s in state.signups}
    out: list[Subscriber] = []
    changed = False
    for row in listed.subscribers:
        merged = _merged_row(row, signed.pop(row.id, None), state.forgotten)
        changed = changed or merged is not row
        out.append(merged)
    for signup in signed.values():
        if state.forgotten and address_key(signup.email) in state.forgotten:
            continue  # cannot happen through the flow (a confirmation lifts it): belt and braces
        out.append(signup.as_subscriber())
        changed = True
    return replace(listed, subscribers=tuple(out)) if changed else listed


def _merged_row(row: Subscriber, signup: Signup | None, forgotten: Mapping[str, str]) -> Subscriber:
    if forgotten:
        reason = forgotten.get(address_key(row.email))
        if reason is not None:
            status = FORGOTTEN_STATUS.get(reason, "unsubscribed")
            return row if row.status == status else replace(row, status=status)
    if (
        signup is not None
        and row.status in OVERRIDABLE
        and row.status not in BLOCKING_STATUSES
        and row.status == signup.listed_status
    ):
        return replace(row, status="active")
    return row


def listed_status(row: Subscriber | None) -> str:
    """What a signup records of the list row it was confirmed against ('' when not on the list)."""
    return "" if row is None else row.status


def one_subscriber(
    listed: Subscriber | None, signup: Signup | None, forgotten: str | None, overlay: Overlay
) -> Subscriber | None:
    """One address as the next send sees it, by the same rules as the whole list (what the public
    app reads per request, by primary keys only)."""
    rows = SubscriberList((listed,) if listed is not None else (), ())
    key = listed.email if listed is not None else signup.email if signup is not None else ""
    state = SignupState(
        (signup,) if signup is not None and signup.status == "active" else (),
        {address_key(key): forgotten} if forgotten and key else {},
    )
    merged = merge_signups(rows, state).subscribers
    return apply_overlay(merged[0], overlay) if merged else None
