"""Editions and moments: which edition a moment belongs to, and parsing `--at`."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from digest.errors import DigestError
from digest.models import Edition


class UsageError(DigestError):
    exit_code = 2


def parse_at(text: str | None, tz: ZoneInfo, *, now: datetime | None = None) -> datetime:
    """`--at` as an aware datetime; a naive value is in the newsletter's zone; None means now."""
    if not text:
        return now or datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--at {text!r} is not an ISO date or date-time (e.g. 2026-11-30T09:00)") from None
    return value if value.tzinfo else value.replace(tzinfo=tz)


def edition_for(at: datetime, tz: ZoneInfo, edition_id: str | None = None) -> Edition:
    """By default the ISO week of `at` in the newsletter's zone, e.g. 2026-W48."""
    local = at.astimezone(tz)
    year, week, _ = local.isocalendar()
    return Edition(
        id=edition_id or f"{year}-W{week:02d}",
        label=f"{local.day} {local:%B %Y}",
        at=at,
    )
