"""The preview's "Past editions" panel: small charts drawn as inline SVG (no script, no CDN).

Only geometry is computed here, in plain numbers; the template (`_past_editions.html`) draws it with
autoescaping on, so a tag or an edition id can never become markup. Every chart also has a text
equivalent: its `summary` is the SVG's accessible name, and the panel's table holds every number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from digest.report import Trend, percent

WIDTH = 320
HEIGHT = 140
#: Room for the labels under the bars / left of horizontal bars.
_BOTTOM = 22
_TOP = 16
_LEFT = 96


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  #: under (or left of) the bar
    value: str  #: printed at its end
    tone: str = ""  #: a CSS class: "", "up", "down"


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    label: str
    value: str


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    summary: str  #: what the chart shows, in words (its accessible name)
    bars: tuple[Bar, ...] = ()
    dots: tuple[Dot, ...] = ()
    width: int = WIDTH
    height: int = HEIGHT
    baseline: float = HEIGHT - _BOTTOM

    @property
    def line(self) -> str:
        """The polyline through the dots."""
        return " ".join(f"{d.x:.1f},{d.y:.1f}" for d in self.dots)


def _slots(n: int) -> tuple[float, float]:
    """(slot width, left margin) for n columns."""
    slot = (WIDTH - 8) / max(n, 1)
    return slot, 4.0


def columns(
    id: str, title: str, labels: Sequence[str], values: Sequence[float], fmt: Callable[[float], str] = str
) -> Chart:
    """Vertical bars, one per label, scaled to the largest value."""
    top = max(values, default=0) or 1
    slot, left = _slots(len(values))
    span = HEIGHT - _BOTTOM - _TOP
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = span * value / top
        bars.append(Bar(left + i * slot + slot * 0.15, HEIGHT - _BOTTOM - h, slot * 0.7, h, label, fmt(value)))
    summary = f"{title}: " + ", ".join(f"{b.label} {b.value}" for b in bars) if bars else f"{title}: none yet"
    return Chart(id, title, summary, bars=tuple(bars))


def line(id: str, title: str, labels: Sequence[str], values: Sequence[float | None]) -> Chart:
    """A line through the known values (a rate; None where it cannot be computed)."""
    known = [v for v in values if v is not None]
    top = max(known, default=0) or 1
    slot, left = _slots(len(values))
    span = HEIGHT - _BOTTOM - _TOP
    dots = [
        Dot(left + i * slot + slot / 2, HEIGHT - _BOTTOM - span * value / top, label, percent(value))
        for i, (label, value) in enumerate(zip(labels, values, strict=True))
        if value is not None
    ]
    summary = f"{title}: " + ", ".join(f"{d.label} {d.value}" for d in dots) if dots else f"{title}: no data yet"
    return Chart(id, title, summary, dots=tuple(dots))


def rows(id: str, title: str, labels: Sequence[str], values: Sequence[int]) -> Chart:
    """Horizontal bars, largest first (top tags by clicks)."""
    top = max(values, default=0) or 1
    step = min((HEIGHT - 8) / max(len(values), 1), 24.0)  # a few tags still get slim bars
    span = WIDTH - _LEFT - 36
    bars = [
        Bar(_LEFT, 4 + i * step + step * 0.15, span * value / top, step * 0.7, label, str(value))
        for i, (label, value) in enumerate(zip(labels, values, strict=True))
    ]
    summary = f"{title}: " + ", ".join(f"{b.label} {b.value}" for b in bars) if bars else f"{title}: no clicks yet"
    return Chart(id, title, summary, bars=tuple(bars))


def growth(id: str, title: str, labels: Sequence[str], joined: Sequence[int], left: Sequence[int]) -> Chart:
    """New readers above the middle line, readers who left below it, per edition."""
    top = max([*joined, *left], default=0) or 1
    slot, margin = _slots(len(labels))
    middle = _TOP + (HEIGHT - _BOTTOM - _TOP) / 2
    half = (HEIGHT - _BOTTOM - _TOP) / 2
    bars: list[Bar] = []
    for i, (label, up, down) in enumerate(zip(labels, joined, left, strict=True)):
        x = margin + i * slot + slot * 0.2
        h_up, h_down = half * up / top, half * down / top
        bars.append(Bar(x, middle - h_up, slot * 0.6, h_up, label, f"+{up}", "up"))
        bars.append(Bar(x, middle, slot * 0.6, h_down, "", f"-{down}", "down"))
    summary = (
        f"{title}: " + ", ".join(f"{lab} +{u} -{d}" for lab, u, d in zip(labels, joined, left, strict=True))
        if labels
        else f"{title}: none yet"
    )
    return Chart(id, title, summary, bars=tuple(bars), baseline=middle)


def charts(trend: Trend) -> list[Chart]:
    """The panel's four charts, from the last editions (oldest first)."""
    reports = trend.editions
    labels = [short_label(r.edition) for r in reports]
    return [
        columns("chart-recipients", "Recipients", labels, [r.accepted for r in reports]),
        line("chart-click-rate", "Click rate", labels, [r.ctr for r in reports]),
        rows("chart-tags", "Top tags by clicks", [t for t, _ in trend.tags], [n for _, n in trend.tags]),
        growth(
            "chart-growth",
            "List growth" if trend.new_means == "signups" else "List growth (first reached)",
            labels,
            list(trend.new_readers),
            [r.unsubscribes + r.complaints for r in reports],
        ),
    ]


def short_label(edition: str) -> str:
    """What fits under a bar: the part after the year (2026-W48 -> W48, 2026-11 -> 11,
    2026-11-30 -> 11-30); any other id is cut to 8 characters."""
    year, dash, rest = edition.partition("-")
    return rest if year.isdigit() and len(year) == 4 and dash and rest and len(rest) <= 5 else edition[:8]
