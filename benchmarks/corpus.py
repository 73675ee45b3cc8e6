"""Generate a real site's shape for benchmarks: years of messy posts and a large Zipf-shaped list.

    python benchmarks/corpus.py OUT_DIR [--posts 12763] [--subscribers 100000] [--bad 25]

The shape measured on a real blog (see docs/performance.md):

* posts spread evenly over three years before --at (12,763 by default, ~82 a week), in two
  front-matter styles: an importer's (quoted `'YYYY-MM-DD'` dates, scraped excerpts that start with
  the page's menu, covers on a remote image host, a `source` link, HTML bodies) and a static-site
  generator's (ISO datetimes, `description`, markdown bodies, half without a cover);
* ~30 tags drawn Zipf-like, each spelled several ways (`AI`, `Ai`, `ai`); about 1 % of posts are
  imported twice (same title and date, counted once);
* subscribers following 0 to 6 tags drawn Zipf-like (and spelled any way), which gives about 4,500
  distinct preference sets per 100,000, about 2,500 distinct digests and about 5 % with no
  matching article in a week; about 5 % are unsubscribed in the list.

`--bad` broken files (bad YAML, no title, no date) are added so that a run must name each.
Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

#: (canonical spelling, other spellings seen in the wild)
TAGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AI", ("Ai", "ai")),
    ("Tools", ("tools",)),
    ("Work", ("work",)),
    ("ChatGPT", ("Chatgpt", "chatgpt")),
    ("OpenAI", ("Openai", "openai")),
    ("Security", ("security",)),
    ("Python", ("python",)),
    ("Climate", ("climate",)),
    ("Startups", ("startups", "StartUps")),
    ("Hardware", ("hardware",)),
    ("Policy", ("policy",)),
    ("Robotics", ("robotics",)),
    ("Space", ("space",)),
    ("Energy", ("energy",)),
    ("Health", ("health",)),
    ("Finance", ("finance",)),
    ("Science", ("science",)),
    ("Cloud", ("cloud",)),
    ("Privacy", ("privacy",)),
    ("Mobile", ("mobile",)),
    ("Data", ("data",)),
    ("Gaming", ("gaming",)),
    ("Education", ("education",)),
    ("Open Source", ("open source", "Open source")),
    ("Design", ("design",)),
    ("Crypto", ("crypto",)),
    ("Cars", ("cars", "EVs")),
    ("Biotech", ("biotech",)),
    ("Music", ("music",)),
    ("Film", ("film",)),
)
#: The last tags are niche: a post about them appears about once a month.
NICHE = 8
#: Posts' tags: Zipf-like, niche topics rarely written about.
_POST_WEIGHTS = [(0.02 if i >= len(TAGS) - NICHE else 1) / (i + 1) ** 1.1 for i in range(len(TAGS))]
_POST_TAG_COUNTS = (2, 3, 3, 4, 4, 5, 6)
#: Subscribers' tags: Zipf-like over all topics.
_READER_WEIGHTS = [1 / (i + 1) ** 1.15 for i in range(len(TAGS))]
#: How many tags a subscriber follows: 0 (everything) to 6.
_READER_TAG_COUNTS = (0, 1, 2, 3, 4, 5, 6)
_READER_TAG_COUNT_WEIGHTS = (5, 50, 28, 10, 4, 2, 1)
#: Readers who follow one niche topic only (most weeks, nothing for them).
_NICHE_READERS = 0.03

WORDS = (
    "the of model data energy city open market space robot policy chip climate code study team "
    "launch report users price deal court rule safety network battery startup privacy cloud app"
).split()
MENU = "Skip to content Home News Reviews Deals Newsletters Sign in Subscribe Menu"
AUTHORS = ("AIVibe", "Dana Wu", "Sam Ortiz", "Priya Nair", "Editorial Team", "Tomás Lind")


def _tag(rng: random.Random, weights: list[float]) -> tuple[str, str]:
    """(canonical, as spelled this time)"""
    canonical, variants = rng.choices(TAGS, weights)[0]
    return canonical, rng.choice((canonical, *variants))


def _post_tags(rng: random.Random) -> list[str]:
    picked: dict[str, str] = {}
    for _ in range(rng.choice(_POST_TAG_COUNTS)):
        canonical, spelled = _tag(rng, _POST_WEIGHTS)
        picked.setdefault(canonical, spelled)
    return list(picked.values())


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _importer_post(i: int, title: str, when: datetime, tags: list[str], rng: random.Random) -> str:
    excerpt = f"{MENU} {_words(rng, 40)}" if rng.random() < 0.3 else _words(rng, 45)
    lines = [
        f"title: {title}",
        f"date: '{when:%Y-%m-%d}'",
        "excerpt: >-",
        f"  {excerpt[:250]}...",
    ]
    if rng.random() < 0.85:
        lines += [
            "coverImage: >-",
            f"  https://images.unsplash.com/photo-{1500000000000 + i}-{rng.getrandbits(40):010x}"
            "?w=400&h=200&fit=crop&auto=format",
        ]
    lines += [f"author: {rng.choice(AUTHORS)}", "tags:", *(f"  - {t}" for t in tags)]
    lines += [f"category: {rng.choice(('Finance', 'Technology', 'Science', 'Business'))}"]
    lines += [f"source: >-\n  https://news.example.net/{when:%Y/%m}/story-{i}.html?src=rss"]
    paragraphs = "\n".join(f"<p>{_words(rng, 80)} <a href='https://x.example/{i}'>link</a>.</p>" for _ in range(6))
    return "---\n" + "\n".join(lines) + "\n---\n" + paragraphs + "\n"


def _ssg_post(i: int, title: str, when: datetime, tags: list[str], rng: random.Random) -> str:
    lines = [
        f'title: "{title}"',
        f"date: {when:%Y-%m-%dT%H:%M:%S}Z",
        f"tags: [{', '.join(tags)}]",
        f"description: {_words(rng, 25)}",
    ]
    if rng.random() < 0.5:
        lines.append(f"image: https://cdn.example.org/covers/{i}.jpg")
    body = "\n\n".join(_words(rng, 90) for _ in range(5))
    return "---\n" + "\n".join(lines) + "\n---\n## " + _words(rng, 4) + "\n\n" + body + "\n"


BAD = (
    "---\ntitle: 'unclosed\ndate: 2026-01-01\n---\nbody\n",
    "---\ndate: 2026-01-01\n---\nno title\n",
    "---\ntitle: No date at all\n---\nbody\n",
)


def generate_content(out: Path, posts: int, at: datetime, *, bad: int = 0, years: int = 3, seed: int = 7) -> None:
    rng = random.Random(seed)
    content = out / "content"
    span = years * 365 * 24 * 60
    previous: tuple[Path, str] | None = None
    for i in range(posts):
        if previous is not None and rng.random() < 0.01:
            # the same story imported twice: same title and date, another file name
            folder, text = previous
            (folder / f"imported-again-{i}.md").write_text(text, encoding="utf-8")
            continue
        # evenly spread (a real blog's steady output), jittered within the slot
        minutes = int(span * (i + rng.random()) / posts)
        when = at - timedelta(minutes=minutes)
        tags = _post_tags(rng)
        title = _words(rng, rng.randint(5, 9)).capitalize()
        importer = i % 3 != 0
        text = (_importer_post if importer else _ssg_post)(i, title, when, tags, rng)
        folder = content / f"{when:%Y}" / f"{when:%m}"
        folder.mkdir(parents=True, exist_ok=True)
        slug = f"{when:%Y-%m-%d}-{'-'.join(title.lower().split()[:5])}-{i}"
        (folder / f"{slug}.md").write_text(text, encoding="utf-8")
        previous = (folder, text)
    for j in range(bad):
        (content / f"broken-{j}.md").write_text(BAD[j % len(BAD)], encoding="utf-8")


def generate_subscribers(out: Path, subscribers: int, *, seed: int = 11) -> None:
    rng = random.Random(seed)
    (out / "subscribers").mkdir(parents=True, exist_ok=True)
    with (out / "subscribers" / "subscribers.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "name", "tags", "status"])
        for k in range(subscribers):
            picked: dict[str, str] = {}
            if rng.random() < _NICHE_READERS:
                canonical, variants = rng.choice(TAGS[-NICHE:])
                picked[canonical] = rng.choice((canonical, *variants))
            for _ in range(0 if picked else rng.choices(_READER_TAG_COUNTS, _READER_TAG_COUNT_WEIGHTS)[0]):
                canonical, spelled = _tag(rng, _READER_WEIGHTS)
                picked.setdefault(canonical, spelled)
            status = "unsubscribed" if rng.random() < 0.05 else "active"
            w.writerow([f"reader{k}@example.com", f"Reader {k}", "; ".join(picked.values()), status])


def generate_shape(
    out: Path, posts: int, subscribers: int, *, at: datetime, bad: int = 0, years: int = 3, seed: int = 7
) -> None:
    """The real shape: content and list (what benchmarks/fanout.py sends)."""
    generate_content(out, posts, at, bad=bad, years=years, seed=seed)
    generate_subscribers(out, subscribers, seed=seed + 4)


# ------------------------------------------------------------------ the simple shape
# What benchmarks/postgres.py, public_app.py and subscribers_table.py generate (their figures were
# measured with it): a year of posts in four front-matter dialects, 30 topics, everyone active.

SIMPLE_TAGS = [f"topic{i}" for i in range(30)]
SIMPLE_WORDS = "the of model data energy city open market space robot policy chip climate code study team".split()


def zipf_tag(rng: random.Random) -> str:
    # Zipf-like: a few topics are very popular, most are niche
    weights = [1 / (i + 1) for i in range(len(SIMPLE_TAGS))]
    return rng.choices(SIMPLE_TAGS, weights)[0]


def article_text(i: int, when: datetime, rng: random.Random) -> str:
    title = " ".join(rng.choice(SIMPLE_WORDS) for _ in range(6)).capitalize() + f" #{i}"
    tags = sorted({zipf_tag(rng) for _ in range(rng.randint(1, 4))})
    dialect = i % 4
    if dialect == 0:
        head = f"title: '{title}'\ndate: '{when:%Y-%m-%d}'\ntags:\n" + "".join(f"  - {t}\n" for t in tags)
        head += f"excerpt: >-\n  {' '.join(rng.choice(SIMPLE_WORDS) for _ in range(30))}...\ncoverImage: https://img.example.com/{i}.jpg\n"
    elif dialect == 1:
        head = f'title: "{title}"\npubDate: {when:%Y-%m-%dT%H:%M:%S.000Z}\ntags: "{", ".join(tags)}"\nheroImage: /img/{i}.png\n'
    elif dialect == 2:
        head = f"title: {title}\npublishDate: {when:%B %d, %Y}\ncategories: [{tags[0]}]\ntags: [{', '.join(tags)}]\n"
    else:
        head = (
            f"title: {title}\ndate: {when:%Y-%m-%d %H:%M:%S} +0000\ntags: {tags[0]}\ndescription: {title} in brief.\n"
        )
    body = "\n\n".join(" ".join(rng.choice(SIMPLE_WORDS) for _ in range(60)) for _ in range(rng.randint(3, 12)))
    return f"---\n{head}author: Writer {i % 50}\n---\n{body}\n"


def generate(out: Path, articles: int, subscribers: int, bad: int, at: datetime, seed: int = 7) -> None:
    rng = random.Random(seed)
    content = out / "content"
    for i in range(articles):
        when = at - timedelta(minutes=rng.randint(0, 365 * 24 * 60))
        path = content / f"{when:%Y}" / f"{when:%m}" / f"post-{i}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(article_text(i, when, rng), encoding="utf-8")
    for j in range(bad):
        (content / f"broken-{j}.md").write_text(BAD[j % len(BAD)], encoding="utf-8")
    (out / "subscribers").mkdir(parents=True, exist_ok=True)
    with (out / "subscribers" / "subscribers.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "name", "tags", "categories", "status"])
        for k in range(subscribers):
            prefs = sorted({zipf_tag(rng) for _ in range(rng.randint(0, 3))})
            w.writerow([f"reader{k}@example.com", f"Reader {k}", ";".join(prefs), "", "active"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--posts", type=int, default=12763)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--bad", type=int, default=25)
    parser.add_argument("--at", default="2026-11-30T00:00:00+00:00")
    args = parser.parse_args()
    generate_shape(args.out, args.posts, args.subscribers, at=datetime.fromisoformat(args.at), bad=args.bad)


if __name__ == "__main__":
    main()
