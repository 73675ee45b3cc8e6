"""Factories for the typed records, so tests say only what matters to them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from digest.models import Article, Subscriber

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def article(id: str = "a", *, date: datetime | None = None, tags: tuple[str, ...] = (), **kw) -> Article:
    fields = dict(
        id=id,
        path=Path(f"/content/{id}.md"),
        title=kw.pop("title", f"Title {id}"),
        date=date or AT,
        url=f"https://example.com/{id}",
        summary=kw.pop("excerpt", f"Excerpt of {id}."),
        slug=id,
        tags=tags,
    )
    fields.update(kw)
    return Article(**fields)


def subscriber(email: str = "reader@example.com", **kw) -> Subscriber:
    return Subscriber(email=email, **kw)
