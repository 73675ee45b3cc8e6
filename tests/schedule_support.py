"""Helpers for the schedule tests: a sample newsletter with a [schedule], articles dated relative to
a simulated clock, and that clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from send_support import copy_sample

WEEKLY = '[schedule]\ncron = "0 9 * * MON"\n'
#: One article per topic the sample's subscribers follow, so each active one gets every edition:
#: ada (no preferences), grace (python), chloe and sam (ai), li (space), conor (category Security),
#: jo (startups). nina (gardening) never does.
_TOPICS = (("ai", ""), ("python", ""), ("space", ""), ("startups", ""), ("", "Security"))


def scheduled_sample(dest: Path, extra_toml: str = WEEKLY) -> Path:
    """The sample newsletter with a schedule; returns its digest.toml."""
    return copy_sample(dest, extra_toml)


def write_week(config: Path, published: datetime) -> list[str]:
    """Articles dated `published` (one per followed topic) into the config's content folder;
    returns their ids."""
    folder = config.parent / "content" / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for tag, category in _TOPICS:
        slug = f"{published:%Y%m%d-%H%M}-{tag or category.lower()}"
        lines = [
            "---",
            f"title: News on {tag or category} for {published:%d %B %Y}",
            f"date: '{published.isoformat()}'",
        ]
        if tag:
            lines.append(f"tags: [{tag}]")
        if category:
            lines.append(f"category: {category}")
        lines += ["---", f"Something happened in {tag or category} on {published:%A}."]
        (folder / f"{slug}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        ids.append(f"generated/{slug}")
    return ids


@dataclass
class FakeClock:
    """A clock the scheduler sleeps on: sleeping advances it, and `hooks` (moment -> extra seconds)
    make it jump, as a suspended or powered-off host does."""

    now: datetime
    slept: list[float] = field(default_factory=list)
    jumps: dict[datetime, float] = field(default_factory=dict)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        before = self.now
        self.now += timedelta(seconds=seconds)
        for at, extra in list(self.jumps.items()):
            if before < at <= self.now:
                del self.jumps[at]
                self.now += timedelta(seconds=extra)

    @property
    def timestamp(self) -> float:
        return self.now.timestamp()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
