"""Helpers for the cadence tests: the sample newsletter with the seed site's subscriber file (its
exact JSON shape) as its list, a schedule with a slot per cadence, and articles for every category
the seed's readers follow, dated relative to a simulated clock."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from conftest import DATA
from send_support import copy_sample

SEED = DATA / "subscribers" / "seed_site_200_readers.json"
#: One slot per cadence, in London: 07:00 every day, 09:00 on Mondays, 09:00 on the 1st.
CADENCES = '[schedule]\ndaily = "0 7 * * *"\nweekly = "0 9 * * MON"\nmonthly = "0 9 1 * *"\n'


def seed_items() -> list[dict[str, Any]]:
    return json.loads(SEED.read_text(encoding="utf-8"))


def seed_categories() -> list[str]:
    return sorted({c for item in seed_items() for c in item["preferences"]["categories"]})


def seed_newsletter(
    dest: Path, extra_toml: str = CADENCES, items: list[dict[str, Any]] | None = None, *, max_articles: int = 10
) -> Path:
    """The sample newsletter reading `items` (default: the seed file as it is) in the seed site's
    JSON shape, with no articles of its own; returns its digest.toml."""
    config = copy_sample(dest, extra_toml)
    shutil.rmtree(dest / "content")
    (dest / "content").mkdir()
    list_path = dest / "subscribers" / "seed.json"
    list_path.write_text(json.dumps(items if items is not None else seed_items(), indent=2), encoding="utf-8")
    text = config.read_text(encoding="utf-8").replace('"subscribers/subscribers.csv"', '"subscribers/seed.json"')
    text = text.replace("max_articles = 10\n", f"max_articles = {max_articles}\n")
    config.write_text(text, encoding="utf-8")
    return config


def write_news(config: Path, published: datetime, categories: list[str] | None = None) -> list[str]:
    """One article per category (default: every category a seed reader follows) dated `published`;
    returns their ids."""
    folder = config.parent / "content" / "news"
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for category in categories if categories is not None else seed_categories():
        slug = f"{published:%Y%m%d-%H%M}-{category.lower().replace(' ', '-')}"
        text = (
            f"---\ntitle: {category} news of {published:%d %B %Y %H:%M}\n"
            f"date: '{published.isoformat()}'\ncategory: {category}\n---\n"
            f"What happened in {category} on {published:%A}.\n"
        )
        (folder / f"{slug}.md").write_text(text, encoding="utf-8")
        ids.append(f"news/{slug}")
    return ids


def by_cadence(items: list[dict[str, Any]], *, active: bool = True) -> dict[str, set[str]]:
    """Addresses per chosen frequency (None: none chosen) among the active (or inactive) items."""
    out: dict[str, set[str]] = {}
    for item in items:
        if item["isActive"] is active:
            out.setdefault(item["preferences"].get("frequency"), set()).add(item["email"])
    return out


def deliveries(messages: list[Any]) -> Counter[tuple[str, str]]:
    """(edition, address) -> how many messages the capture server accepted for it."""
    return Counter((m.custom_args["edition"], m.to_email) for m in messages)
