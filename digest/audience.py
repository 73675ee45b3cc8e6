"""The subscribers as a run sees them: the list the config names (its file, or the subscribers
table) plus confirmed signups, less forgotten addresses (signup/merge.py), with the subscriber
state laid over it (suppressions.py: opt-outs, pauses, topic and cadence changes).

suppressions.py holds the state's records and the pure overlay; this module is where they meet the
stores, one layer up.
"""

from __future__ import annotations

from typing import Any

from digest.config import Config
from digest.signup.merge import merge_signups, read_signup_state
from digest.store import load_list, open_existing_state
from digest.subscribers import SubscriberList
from digest.suppressions import EMPTY, Overlay, effective_subscribers


def read_overlay(where: Any) -> Overlay:
    """The state as of now (`where`: a Config or a store Location); empty when there is none yet
    (reading must not create the state folder, or a dry run or a preview would)."""
    state = open_existing_state(where)
    if state is None:
        return EMPTY
    with state:
        return Overlay(state.optouts(), state.preferences(), state.frequencies())


def load_effective(config: Config) -> SubscriberList:
    """The list as the next send sees it: the list the config names (its file, or the subscribers
    table) plus confirmed signups, less forgotten addresses (digest.signup.merge), with the state's
    opt-outs, preferences and cadences laid over."""
    return effective_subscribers(merge_signups(load_list(config), read_signup_state(config)), read_overlay(config))
