"""Generate a large, messy content folder (and subscribers) for benchmarks.

    python benchmarks/corpus.py OUT_DIR --articles 12000 --subscribers 1000 [--bad 25]

Articles are spread over the year before --at in several front-matter dialects; `--bad` of them are
broken (bad YAML, no title, no date) so that a run must name each.
"""

from __future__ import annotations

import argparse
import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

TAGS = [f"topic{i}" for i in range(30)]
WORDS = "the of model data energy city open market space robot policy chip climate code study team".split()


def zipf_tag(rng: random.Random) -> str:
    # Zipf-like: a few topics are very popular, most are niche
    weights = [1 / (i + 1) for i in range(len(TAGS))]
    return rng.choices(TAGS, weights)[0]


def article_text(i: int, when: datetime, rng: random.Random) -> str:
    title = " ".join(rng.choice(WORDS) for _ in range(6)).capitalize() + f" #{i}"
    tags = sorted({zipf_tag(rng) for _ in range(rng.randint(1, 4))})
    dialect = i % 4
    if dialect == 0:
        head = f"title: '{title}'\ndate: '{when:%Y-%m-%d}'\ntags:\n" + "".join(f"  - {t}\n" for t in tags)
        head += f"excerpt: >-\n  {' '.join(rng.choice(WORDS) for _ in range(30))}...\ncoverImage: https://img.example.com/{i}.jpg\n"
    elif dialect == 1:
        head = f'title: "{title}"\npubDate: {when:%Y-%m-%dT%H:%M:%S.000Z}\ntags: "{", ".join(tags)}"\nheroImage: /img/{i}.png\n'
    elif dialect == 2:
        head = f"title: {title}\npublishDate: {when:%B %d, %Y}\ncategories: [{tags[0]}]\ntags: [{', '.join(tags)}]\n"
    else:
        head = (
            f"title: {title}\ndate: {when:%Y-%m-%d %H:%M:%S} +0000\ntags: {tags[0]}\ndescription: {title} in brief.\n"
        )
    body = "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(60)) for _ in range(rng.randint(3, 12)))
    return f"---\n{head}author: Writer {i % 50}\n---\n{body}\n"


BAD = [
    "---\ntitle: 'unclosed\ndate: 2026-01-01\n---\nbody\n",
    "---\ndate: 2026-01-01\n---\nno title\n",
    "---\ntitle: No date at all\n---\nbody\n",
]


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
    parser.add_argument("--articles", type=int, default=12000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--bad", type=int, default=25)
    parser.add_argument("--at", default="2026-11-30T00:00:00+00:00")
    args = parser.parse_args()
    generate(args.out, args.articles, args.subscribers, args.bad, datetime.fromisoformat(args.at))


if __name__ == "__main__":
    main()
