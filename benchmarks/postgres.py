"""The PostgreSQL engine against SQLite, and several senders on one database. Prints, asserts nothing.

    .venv/bin/python benchmarks/postgres.py [--subscribers 100000] [--many 300000] [--latency 0]

Generates a content folder and Zipf-distributed subscribers (benchmarks/corpus.py), starts the local
SendGrid-compatible server of benchmarks/fanout.py and a throwaway PostgreSQL server from Debian's
binaries (tests/pg_support.py) with production durability (fsync and synchronous commits on, as
SQLite's FULL sync), then times the real `digest send --yes` (real ledger, real `sendgrid` client):

Each state (the SQLite folder, each fresh database) is first *established* as a weekly run finds
it: every subscriber's opaque link id minted, as the first send ever leaves them (fanout.py does
the same); only the edition's ledger rows are new.

1. `--subscribers` readers with the state in SQLite, then in PostgreSQL (a fresh database each);
2. `--many` readers on PostgreSQL: one sender; then three `digest send` processes started together
   on a fresh database (wall time until the last ends); then one `digest send --workers 3`.

`--latency S` makes the SendGrid stand-in answer each request after S seconds (SendGrid itself
takes 0.1-0.3 s per request): with 0 the machine's cores are the limit, with a real latency the
network is. The load average of the machine is printed before and after: on a shared machine the
figures are only as good as the load they were measured under.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AT = "2026-11-30T00:00:00+00:00"
KEY = "SG.benchmark-key"
SECRET = "benchmark-signing-secret-0123456789"


def digest(cfg: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(cfg), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_all(procs: list[subprocess.Popen[str]]) -> list[str]:
    outs = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"digest exited {proc.returncode}:\n{out[-3000:]}")
        outs.append(out)
    return outs


def accepted(outs: list[str]) -> int:
    return sum(int(o.split("accepted:")[1].split()[0]) for o in outs if "accepted:" in o)


#: `--timings`: print each sender's stages (load, plan, compose, ledger, send) after its run
SHOW_TIMINGS = False


def timed_send(cfg: Path, env: dict[str, str], senders: int = 1, *extra: str) -> tuple[float, int]:
    start = time.perf_counter()
    flags = ("--timings",) if SHOW_TIMINGS and "--dry-run" not in extra else ()
    procs = [digest(cfg, env, "send", "--yes", "--at", AT, *flags, *extra) for _ in range(senders)]
    outs = wait_all(procs)
    wall = time.perf_counter() - start
    for out in outs if flags else ():
        print(f"    {' '.join(extra) or 'sender'}: {out.strip().splitlines()[-1]}")
    return wall, accepted(outs)


#: A list that has been sent to before, as on a weekly run: every subscriber's opaque link id is
#: minted (the first send ever mints them, once; see benchmarks/fanout.py `established`).
ESTABLISH = """
import os
import sys
from digest.config import load_config
from digest.store import open_state
from digest.subscribers import load_subscribers
cfg = load_config(sys.argv[1])
with open_state(cfg) as state:
    state.token_ids([s.id for s in load_subscribers(cfg.subscribers.path).subscribers if s.active])
if not os.environ.get("DIGEST_DATABASE_URL"):  # SQLite: the ledger and the state as a pair, as a send leaves them
    from digest.statefiles import guard_send
    from digest.store import open_ledger

    open_ledger(cfg).close()
    guard_send(cfg.state.path, fresh=True)
"""


def established(cfg: Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-c", ESTABLISH, str(cfg)], env=env, check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--many", type=int, default=300_000, help="0: only the engine comparison")
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the stand-in takes per request")
    parser.add_argument("--skip-compare", action="store_true", help="only the several-senders part")
    parser.add_argument("--timings", action="store_true", help="print each sender's stage breakdown")
    args = parser.parse_args()
    global SHOW_TIMINGS
    SHOW_TIMINGS = args.timings

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import generate  # type: ignore[import-not-found]
    from pg_support import PgServer  # type: ignore[import-not-found]

    from digest.store import pg

    print(f"machine: {os.cpu_count()} cores, load average before: {os.getloadavg()}")
    work = Path(tempfile.mkdtemp(prefix="digest-pg-bench-"))
    port_file = work / "port"
    server_env = {**os.environ, "BENCH_LATENCY": str(args.latency)}
    server = subprocess.Popen([sys.executable, str(HERE / "fanout.py"), "--serve", str(port_file)], env=server_env)
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        host = f"http://127.0.0.1:{port_file.read_text()}"
        with PgServer(durable=True) as pg_server:

            def newsletter(name: str, subscribers: int) -> Path:
                folder = work / name
                folder.mkdir()
                generate(
                    folder, args.articles, subscribers, bad=0, at=__import__("datetime").datetime.fromisoformat(AT)
                )
                (folder / "digest.toml").write_text(
                    "[newsletter]\nname = 'Bench'\nlogo_url = 'https://img.example.com/logo.png'\n"
                    f"[templates]\npath = '{ROOT / 'templates'}'\n"
                    "[sending]\ntransport = 'sendgrid'\nunsubscribe_url = 'https://news.example.com/unsubscribe'\n"
                    f"[sendgrid]\nhost = '{host}'\n"
                )
                return folder / "digest.toml"

            def database(name: str, cfg: Path) -> dict[str, str]:
                url = pg_server.create_database(name)
                pg.migrate(url)
                env = {**os.environ, "SENDGRID_API_KEY": KEY, "DIGEST_SECRET": SECRET, "DIGEST_DATABASE_URL": url}
                established(cfg, env)
                return env

            sqlite_env = {k: v for k, v in os.environ.items() if k != "DIGEST_DATABASE_URL"}
            sqlite_env["SENDGRID_API_KEY"] = KEY
            sqlite_env["DIGEST_SECRET"] = SECRET
            if not args.skip_compare:
                cfg = newsletter("compare", args.subscribers)
                timed_send(cfg, sqlite_env, 1, "--dry-run")  # warm the content cache for both
                established(cfg, sqlite_env)
                sqlite_s, sent = timed_send(cfg, sqlite_env)
                pg_s, pg_sent = timed_send(cfg, database("compare", cfg))
                print(f"{args.subscribers:,} subscribers, SQLite ledger:     {sqlite_s:6.1f} s ({sent:,} accepted)")
                print(f"{args.subscribers:,} subscribers, PostgreSQL ledger: {pg_s:6.1f} s ({pg_sent:,} accepted)")
                print(f"  PostgreSQL / SQLite: {pg_s / sqlite_s:.2f}x")

            if not args.many:
                return
            cfg = newsletter("many", args.many)
            timed_send(cfg, sqlite_env, 1, "--dry-run")  # warm the content cache
            one_s, one = timed_send(cfg, database("one", cfg))
            three_s, three = timed_send(cfg, database("three", cfg), 3)
            workers_s, workers = timed_send(cfg, database("workers", cfg), 1, "--workers", "3")
            print(f"{args.many:,} subscribers on PostgreSQL, latency {args.latency} s/request:")
            print(f"  one sender:                     {one_s:6.1f} s ({one:,} accepted)")
            print(
                f"  three `digest send` at once:    {three_s:6.1f} s ({three:,} accepted) {one_s / three_s:.2f}x faster"
            )
            print(
                f"  one `digest send --workers 3`:  {workers_s:6.1f} s ({workers:,} accepted) {one_s / workers_s:.2f}x faster"
            )
            stats = json.loads(urllib.request.urlopen(host + "/stats").read())
            print(f"stand-in totals: {stats['requests']:,} requests, {stats['personalizations']:,} personalizations")
    finally:
        server.terminate()
        server.wait()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
