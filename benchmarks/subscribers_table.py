"""The subscribers table at a million rows: import time, and memory while a send reads it.

    .venv/bin/python benchmarks/subscribers_table.py [--subscribers 1000000]

Generates a CSV list (benchmarks/corpus.py), starts a throwaway PostgreSQL (tests/pg_support.py,
durable), imports the list with `digest subscribers import FILE`, then measures peak RSS of child
processes that:

- stream every row through the server-side cursor, keeping none (`SubscriberTable.stream`);
- fetch every row at once, client-side (what a plain cursor would do), for contrast;
- load the list as a send holds it, from the table (`source = "database"`) and from the CSV file.

Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AT = "2026-11-30T00:00:00+00:00"

CHILD = {
    "stream": "from digest.store import open_subscriber_table\n"
    "with open_subscriber_table(config) as t:\n    n = sum(1 for _ in t.stream())\n",
    "fetchall": "import psycopg, os\n"
    "with psycopg.connect(os.environ['DIGEST_DATABASE_URL']) as c:\n"
    "    n = len(c.execute('SELECT * FROM subscribers ORDER BY position').fetchall())\n",
    "list-table": "from digest.store import load_list\nn = len(load_list(config).subscribers)\n",
    "list-csv": "import dataclasses\nfrom digest.store import load_list\n"
    "c2 = dataclasses.replace(config, subscribers=dataclasses.replace(config.subscribers, source='file'))\n"
    "n = len(load_list(c2).subscribers)\n",
}


def child(kind: str, cfg: Path, env: dict[str, str]) -> tuple[float, int, str]:
    code = f"from digest.config import load_config\nconfig = load_config({str(cfg)!r})\n{CHILD[kind]}print(n)\n"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the maximum of all
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{kind} failed")
    return wall, usage.ru_maxrss // 1024, out.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import generate  # type: ignore[import-not-found]
    from pg_support import PgServer  # type: ignore[import-not-found]

    from digest.store import pg

    print(f"machine: {os.cpu_count()} cores, load average before: {os.getloadavg()}")
    work = Path(tempfile.mkdtemp(prefix="digest-table-bench-"))
    generate(work, 50, args.subscribers, bad=0, at=__import__("datetime").datetime.fromisoformat(AT))
    listed = work / "subscribers.csv"
    if not listed.exists():
        listed = next(work.rglob("*.csv"))
    (work / "digest.toml").write_text(
        f"[subscribers]\npath = '{listed}'\nsource = 'database'\n[templates]\npath = '{ROOT / 'templates'}'\n"
    )
    cfg = work / "digest.toml"
    with PgServer(durable=True) as server:
        url = server.create_database("table_bench")
        pg.migrate(url)
        env = {**os.environ, "DIGEST_DATABASE_URL": url}
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "digest", "--config", str(cfg), "subscribers", "import", str(listed)],
            env=env,
            capture_output=True,
            text=True,
        )
        print(f"import of {args.subscribers:,} rows: {time.perf_counter() - start:.1f} s: {out.stdout.strip()}")
        for kind in ("stream", "fetchall", "list-csv", "list-table"):
            wall, rss, n = child(kind, cfg, env)
            print(f"{kind:11} {int(n):>9,} rows in {wall:5.1f} s, peak RSS {rss:,} MB")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
