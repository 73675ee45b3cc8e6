"""The subscriber state laid over the list (digest/suppressions.py): what each subscriber is for a
run once their opt-outs, pauses, topics and cadence are applied.

The state store's own tests check that what the web app and the webhook write is read back; these
check what a run makes of it, on the real records (no store needed: the overlay is a snapshot).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.models import Subscriber
from digest.subscribers import SubscriberList
from digest.suppressions import EMPTY, OptOut, Overlay, Preference, apply_overlay, effective_subscribers, terms

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ADA = "ada@example.com"


def optouts(*reasons: str, email: str = ADA) -> dict[str, tuple[OptOut, ...]]:
    return {email.casefold(): tuple(OptOut(email.casefold(), email, r, "webhook", "", AT) for r in reasons)}


def preference(
    tags: tuple[str, ...] | None = None, categories: tuple[str, ...] | None = None, *, paused: bool = False
) -> dict[str, Preference]:
    return {ADA: Preference(ADA, ADA, tags, categories, paused, "preferences page", AT)}


def ada(**fields: object) -> Subscriber:
    return Subscriber(email=ADA, tags=("ai",), categories=("News",), **fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- opt-outs


@pytest.mark.parametrize("status", ["active", "paused", "pending"])
def test_an_opt_out_wins_over_what_the_list_says(status: str) -> None:
    # a list re-exported from elsewhere that still says "active" must not undo an unsubscribe
    assert apply_overlay(ada(status=status), Overlay(optouts("unsubscribed"), {})).status == "unsubscribed"


@pytest.mark.parametrize("status", ["complained", "bounced", "cleaned"])
def test_a_list_status_worse_than_the_opt_out_is_kept(status: str) -> None:
    assert apply_overlay(ada(status=status), Overlay(optouts("unsubscribed"), {})).status == status


@pytest.mark.parametrize(
    ("reasons", "shown"),
    [
        (("unsubscribed",), "unsubscribed"),
        (("group_unsubscribed",), "unsubscribed"),
        (("group_unsubscribed", "unsubscribed"), "unsubscribed"),
        (("unsubscribed", "bounced"), "bounced"),
        (("bounced", "complained"), "complained"),
        (("unsubscribed", "invalid"), "cleaned"),
        (("group_unsubscribed", "suppressed"), "cleaned"),
        (("suppressed", "bounced"), "bounced"),
    ],
)
def test_several_reasons_show_the_most_serious(reasons: tuple[str, ...], shown: str) -> None:
    assert apply_overlay(ada(), Overlay(optouts(*reasons), {})).status == shown


def test_an_opt_out_of_someone_else_changes_nobody_here() -> None:
    overlay = Overlay(optouts("bounced", email="bob@example.com"), {})
    assert apply_overlay(ada(), overlay) == ada()


# ---------------------------------------------------------------- preferences and cadence


def test_topics_chosen_on_the_preferences_page_replace_the_lists() -> None:
    chosen = apply_overlay(ada(), Overlay({}, preference(("Robots",), ())))
    assert (chosen.tags, chosen.categories, chosen.status) == (("Robots",), (), "active")
    assert chosen.tag_keys == frozenset({"robots"})  # what selection matches on follows the choice


def test_a_pause_alone_keeps_the_lists_topics() -> None:
    paused = apply_overlay(ada(), Overlay({}, preference(paused=True)))
    assert (paused.tags, paused.categories, paused.status) == (("ai",), ("News",), "paused")


def test_a_pause_never_turns_someone_who_left_back_into_a_reader() -> None:
    for status in ("unsubscribed", "bounced", "pending"):
        assert apply_overlay(ada(status=status), Overlay({}, preference(paused=True))).status == status


def test_a_cadence_chosen_on_the_preferences_page_replaces_the_lists() -> None:
    overlay = Overlay({}, {}, {ADA: "monthly"})
    assert apply_overlay(ada(frequency="weekly"), overlay).frequency == "monthly"
    assert apply_overlay(ada(), overlay).frequency == "monthly"


def test_no_cadence_chosen_keeps_the_lists() -> None:
    assert apply_overlay(ada(frequency="daily"), Overlay({}, preference(("x",), ()))).frequency == "daily"


def test_pause_topics_cadence_and_opt_out_apply_together() -> None:
    overlay = Overlay(optouts("unsubscribed"), preference(("Robots",), ("Lab",), paused=True), {ADA: "daily"})
    both = apply_overlay(ada(), overlay)
    assert (both.tags, both.categories, both.frequency, both.status) == (("Robots",), ("Lab",), "daily", "unsubscribed")


# ---------------------------------------------------------------- the whole list


def listed(*subscribers: Subscriber) -> SubscriberList:
    return SubscriberList(subscribers, ())


@pytest.mark.parametrize(
    "overlay",
    [
        Overlay(optouts("unsubscribed"), {}),
        Overlay({}, preference(paused=True)),
        Overlay({}, {}, {ADA: "monthly"}),
    ],
    ids=["opt-outs-only", "preferences-only", "cadences-only"],
)
def test_any_kind_of_state_alone_is_laid_over_the_list(overlay: Overlay) -> None:
    bob = Subscriber(email="bob@example.com")
    merged = effective_subscribers(listed(ada(), bob), overlay)
    assert merged.subscribers == (apply_overlay(ada(), overlay), bob)
    assert merged.subscribers[0] != ada()


def test_an_empty_state_leaves_the_list_as_it_is() -> None:
    subscribers = listed(ada(status="pending"), Subscriber(email="bob@example.com", status="paused"))
    assert effective_subscribers(subscribers, EMPTY) == subscribers


def test_stored_topics_read_back_as_given_and_none_as_the_lists() -> None:
    assert terms('["AI", "Robots"]') == ("AI", "Robots")
    assert terms("[]") == ()  # chose no topic at all: not the same as never choosing
    assert terms(None) is None
