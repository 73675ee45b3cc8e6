"""Engagement ranking (`[selection] rank = "engagement"`): stated topics, weighed by clicks. Pure.

Each subscriber's clicks in the last `engagement_editions` editions give each topic (tag or
category, case-folded) a weight: a click in the most recent edition counts 1, one an edition older
`engagement_decay`, then decay², and so on. Then:

- a subscriber with stated topics still gets only articles matching one of them (the filter does
  not change); an article scores 1 + weight for each stated topic it matches, so among matching
  articles the ones on topics they click come first. A clicked topic they did not state (or took
  off their list) adds nothing: clicks never reach outside stated preferences;
- a subscriber with no stated topics can get any article, as before; articles on topics they
  clicked come first, the rest newest first.

Ties keep the pool's order (newest first, then id), and weights are summed in a fixed order, so a
given history always gives the same digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Clicked:
    """One article a subscriber clicked in an earlier edition."""

    age: int  #: editions ago: 0 is the latest edition before this one
    terms: tuple[str, ...]  #: the article's tags and categories as it went out


@dataclass(frozen=True)
class Weight:
    value: float  #: the decayed sum of clicks
    clicks: int  #: how many clicks that is


def topic_weights(clicks: Iterable[Clicked], decay: float, editions: int) -> dict[str, Weight]:
    """Per case-folded topic: the decayed weight of the clicks on articles carrying it.

    Clicks older than `editions` are ignored. Sorted first: the same clicks in any order give the
    same floating-point sums.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for click in sorted(clicks):
        if not 0 <= click.age < editions:
            continue
        for key in sorted({t.casefold() for t in click.terms}):
            sums[key] = sums.get(key, 0.0) + decay**click.age
            counts[key] = counts.get(key, 0) + 1
    return {key: Weight(round(sums[key], 9), counts[key]) for key in sums}


def stated_score(matched: Sequence[str], weights: Mapping[str, Weight]) -> float:
    """An article matching stated topics `matched`: 1 for each, plus its click weight."""
    return round(sum(1 + _weight(weights, term) for term in matched), 9)


def clicked_score(terms: Iterable[str], weights: Mapping[str, Weight]) -> float:
    """An article for a subscriber without stated topics: the weights of its topics they clicked."""
    return round(sum(_weight(weights, key) for key in sorted({t.casefold() for t in terms})), 9)


def _weight(weights: Mapping[str, Weight], term: str) -> float:
    found = weights.get(term.casefold())
    return found.value if found else 0.0


def explain_stated(matched: Sequence[str], weights: Mapping[str, Weight]) -> str:
    """`matched: AI (stated, clicked 3x), Python (stated)`."""
    parts = []
    for term in matched:
        found = weights.get(term.casefold())
        parts.append(f"{term} (stated, clicked {found.clicks}x)" if found else f"{term} (stated)")
    return "matched: " + ", ".join(parts)


def explain_clicked(terms: Sequence[str], weights: Mapping[str, Weight]) -> str:
    """`clicked: AI (3x)` for a subscriber without stated topics; the plain reason when none counts."""
    seen: dict[str, str] = {}
    for term in terms:
        if term.casefold() in weights:
            seen.setdefault(term.casefold(), term)
    if not seen:
        return "newest (no preferences)"
    return "clicked: " + ", ".join(f"{term} ({weights[key].clicks}x)" for key, term in seen.items())
