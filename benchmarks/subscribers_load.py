"""Reading a real-sized subscriber list: 300,000 rows as CSV, as the seed site's JSON, and as a
Mailchimp export imported into an empty list.

    .venv/bin/python benchmarks/subscribers_load.py [--rows 300000] [--keep DIR]

Each measurement runs in a fresh Python process (so peak memory is that step's alone) and prints
its wall time, rows per second and peak RSS, next to the RSS of a process that only imported the
modules. Figures are printed, never asserted: no test depends on timing.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAGS = "ai robotics climate space python rust security health startups hardware science energy".split()
CATEGORIES = ["General AI", "Productivity", "Technology", "Finance", "Science", "Climate", "Security"]
ZONES = ["Europe/London", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Africa/Lagos", ""]


def generate(folder: Path, rows: int, seed: int = 19) -> dict[str, Path]:
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    paths = {"csv": folder / "subscribers.csv", "json": folder / "seed_shape.json", "mailchimp": folder / "mc.csv"}
    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            [
                "email",
                "name",
                "tags",
                "categories",
                "status",
                "isActive",
                "id",
                "subscribed_at",
                "frequency",
                "timezone",
                "company",
            ]
        )
        for i in range(rows):
            w.writerow(
                [
                    f"reader{i}@example.com",
                    f"Reader {i}",
                    ";".join(rng.sample(TAGS, rng.randint(0, 3))),
                    "",
                    "unsubscribed" if i % 37 == 0 else "active",
                    "false" if i % 53 == 0 else "true",
                    f"id{i:x}",
                    (start + timedelta(seconds=i * 97)).isoformat(),
                    rng.choice(("daily", "weekly", "monthly", "")),
                    rng.choice(ZONES),
                    rng.choice(("", "Acme Ltd", '=HYPERLINK("x")', "Globex")),
                ]
            )
    with paths["json"].open("w", encoding="utf-8") as f:
        items = (
            {
                "id": f"mb{i:x}",
                "email": f"reader{i}@example.com",
                "subscribedAt": (start + timedelta(seconds=i * 97)).isoformat(timespec="milliseconds"),
                "isActive": i % 18 != 0,
                "preferences": {"frequency": rng.choice(("daily", "weekly")), "categories": rng.sample(CATEGORIES, 2)},
            }
            for i in range(rows)
        )
        f.write("[\n")
        for n, item in enumerate(items):
            f.write(("" if n == 0 else ",\n") + json.dumps(item, indent=2))
        f.write("\n]\n")
    with paths["mailchimp"].open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            "Email Address,First Name,Last Name,Company,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,"
            "LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS".split(",")
        )
        for i in range(rows):
            t = (start + timedelta(seconds=i * 97)).strftime("%Y-%m-%d %H:%M:%S")
            tags = ",".join(f'"{t}"' for t in rng.sample(TAGS, rng.randint(0, 2)))
            w.writerow(
                [
                    f"reader{i}@example.com",
                    "Reader",
                    str(i),
                    "",
                    "3",
                    t,
                    "",
                    t,
                    "",
                    "",
                    "",
                    "",
                    "",
                    rng.choice(ZONES),
                    "",
                    "",
                    t,
                    str(i),
                    f"e{i:x}",
                    "",
                    tags,
                ]
            )
    return paths


STEPS = {
    "baseline": "import digest.subscribers, digest.imports",
    "csv": "from digest.subscribers import load_subscribers; r = load_subscribers(P); n = len(r.subscribers)",
    "json": "from digest.subscribers import load_subscribers; r = load_subscribers(P); n = len(r.subscribers)",
    "export": (
        "import io; from digest.subscribers import load_subscribers, write_list; r = load_subscribers(P);"
        " t0 = time.perf_counter(); write_list(r.subscribers, io.StringIO()); n = len(r.subscribers)"
    ),
    "mailchimp": (
        "from digest.imports import CsvListStore, import_subscribers; from digest.suppressions import EMPTY;"
        " rep = import_subscribers('mailchimp', [P], CsvListStore(P.parent / 'imported.csv'), EMPTY); n = rep.count('added')"
    ),
}


def measure(step: str, path: Path | None) -> tuple[float, int, int]:
    code = (
        f"import resource, sys, time\nfrom pathlib import Path\nP = Path({str(path)!r})\n"
        if path
        else "import resource, sys, time\n"
    )
    code += f"t0 = time.perf_counter()\nn = 0\n{STEPS[step]}\n"
    code += "print(time.perf_counter() - t0, n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    seconds, n, rss_kb = out.split()
    return float(seconds), int(n), int(rss_kb) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths = generate(folder, args.rows)
        sizes = {k: p.stat().st_size / 1e6 for k, p in paths.items()}
        _, _, base = measure("baseline", None)
        print(f"{args.rows:,} rows; a process that only imports the modules peaks at {base} MB")
        print(f"{'step':<34} {'file':>8} {'time':>8} {'rows/s':>10} {'peak RSS':>9} {'per row':>8}")
        for step, label, file in (
            ("csv", "load CSV (our format, flags)", "csv"),
            ("json", "load JSON (seed site shape)", "json"),
            ("export", "write the list back (export)", "csv"),
            ("mailchimp", "import a Mailchimp export", "mailchimp"),
        ):
            seconds, n, rss = measure(step, paths[file])
            per_row = (rss - base) * 1024 * 1024 / max(n, 1)
            print(
                f"{label:<34} {sizes[file]:>6.1f}MB {seconds:>7.2f}s {n / seconds:>10,.0f} {rss:>7} MB {per_row:>6.0f} B"
            )


if __name__ == "__main__":
    main()
