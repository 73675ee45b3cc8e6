"""Fan-out benchmark on a real site's shape: the fast path and the naive path, in one run.

    .venv/bin/python benchmarks/fanout.py [--subscribers 100000] [--logo] [--naive-sample 200]

Generates the shape measured on a real blog (benchmarks/corpus.py: 12,763 posts over three years,
~30 tags spelled several ways, subscribers whose Zipf preferences form ~4,500 distinct sets and
~2,500 distinct digests, ~5 % with no matching article, ~5 % unsubscribed; no logo unless
--logo), starts a SendGrid-compatible capture server in its own process, then:

* fast:  `digest send --yes --timings` as a subprocess: the real CLI, the real ledger in a fresh
         state folder, the real `sendgrid` client, one-click unsubscribe links signed per subscriber;
* naive: the first --naive-sample subscribers one by one in another subprocess: select, render,
         compile and inline the whole email (Composer.compose_direct), one request each through a
         fresh `SendGridAPIClient` call, as a send loop without any of the fast path would.

Prints, from this one run: wall time and throughput of both paths and their ratio, the fast path's
per-stage breakdown (as `digest send --timings` reports it), peak memory of the whole `digest`
process tree (sum of proportional set sizes, sampled every 20 ms, and the largest single RSS),
requests, personalizations, distinct contents and duplicates as the capture server saw them, and
the machine's load average before and after. The fast path's time includes loading everything;
the naive figure counts its send loop only, so the ratio leans against the fast path.

Figures are printed, never asserted: no test depends on timing. The machine is shared: read the
load average line before trusting a figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AT = "2026-11-30T00:00:00+00:00"
KEY = "SG.benchmark-key"
SECRET = "benchmark-signing-secret-" + "x" * 16


# ------------------------------------------------------------------ the capture server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client that reuses connections can
    lock = threading.Lock()
    stats: dict[str, int] = {"requests": 0, "personalizations": 0, "bytes": 0, "connections": 0}
    contents: set[bytes] = set()
    addresses: set[str] = set()
    duplicates = 0

    def setup(self) -> None:
        super().setup()
        with self.lock:
            self.stats["connections"] += 1

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            return self._answer(401, b'{"errors":[{"message":"bad key"}]}')
        body = json.loads(raw)
        latency = float(os.environ.get("BENCH_LATENCY", "0"))  # benchmarks/postgres.py --latency
        if latency:
            time.sleep(latency)
        personalizations = body.get("personalizations", [])
        content = body.get("content", [])
        if not 1 <= len(personalizations) <= 1000 or [c.get("type") for c in content] != ["text/plain", "text/html"]:
            return self._answer(400, b'{"errors":[{"message":"invalid"}]}')
        digest = hashlib.sha256("\0".join([body.get("subject", ""), *(c["value"] for c in content)]).encode()).digest()
        with self.lock:
            cls = type(self)
            cls.stats["requests"] += 1
            cls.stats["personalizations"] += len(personalizations)
            cls.stats["bytes"] += length
            cls.contents.add(digest)
            for p in personalizations:
                for to in p["to"]:
                    if to["email"] in cls.addresses:
                        cls.duplicates += 1
                    cls.addresses.add(to["email"])
        self._answer(202, b"", {"X-Message-Id": secrets.token_hex(8)})

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/stats"):
            cls = type(self)
            data = {**cls.stats, "contents": len(cls.contents), "duplicates": cls.duplicates}
            return self._answer(200, json.dumps(data).encode())
        if self.path.startswith("/reset"):
            with self.lock:
                type(self).stats.update(requests=0, personalizations=0, bytes=0, connections=0)
                type(self).contents.clear()
                type(self).addresses.clear()
                type(self).duplicates = 0
            return self._answer(200, b"{}")
        self._answer(200, b"[]")  # suppression lists (send syncs them first): nobody is suppressed

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def serve(port_file: Path) -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


def server_get(host: str, path: str) -> dict[str, int]:
    with urllib.request.urlopen(host + path) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


# ------------------------------------------------------------------ the naive path


def naive(config_path: Path, limit: int) -> None:
    """One subscriber at a time, everything from scratch, one request each."""
    sys.path.insert(0, str(ROOT))
    from sendgrid import SendGridAPIClient

    from digest.compose import list_headers
    from digest.config import load_config
    from digest.pipeline import open_run
    from digest.schedule import parse_at

    config = load_config(config_path)
    run = open_run(config, parse_at(AT, config.tz))
    client = SendGridAPIClient(KEY, host=config.sendgrid.host)
    client.client.timeout = 30
    sent = 0
    # Timed from here: loading the list is not the naive path's cost, sending one by one is.
    started = time.perf_counter()
    for subscriber in run.subscribers.subscribers[:limit]:
        selection = run.select(subscriber)
        if not selection.gets_email:
            continue
        values = run.values(subscriber)
        email = run.composer.compose_direct(selection, run.edition, values)
        body = {
            "personalizations": [
                {
                    "to": [{"email": subscriber.email}],
                    "headers": list_headers(config, values),
                    "custom_args": {"edition": run.edition.id, "subscriber": subscriber.id},
                }
            ],
            "from": {"email": config.newsletter.from_email},
            "subject": email.subject,
            "content": [{"type": "text/plain", "value": email.text}, {"type": "text/html", "value": email.html}],
        }
        client.client.mail.send.post(request_body=body)
        sent += 1
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - started}))


# ------------------------------------------------------------------ measuring a process tree


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def _memory(pid: int) -> tuple[int, int]:
    """(sum of PSS over the tree, largest single RSS), in kB."""
    pss = rss = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                fields = dict(line.split(":", 1) for line in f.read().splitlines()[1:])
        except (OSError, ValueError):
            continue
        pss += int(fields.get("Pss", "0 kB").split()[0])
        rss = max(rss, int(fields.get("Rss", "0 kB").split()[0]))
    return pss, rss


@dataclass
class Measured:
    wall: float  #: seconds
    cpu: float  #: user + system seconds of the process and its children
    pss: int  #: peak MB, sum of proportional set sizes over the process tree
    rss: int  #: peak MB of the largest single process
    out: str


def timed(cmd: list[str], env: dict[str, str]) -> Measured:
    """Run a subprocess, sampling its process tree's memory every 20 ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pss, rss = _memory(proc.pid)
            peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {code}:\n{out[-3000:]}")
    return Measured(wall, usage.ru_utime + usage.ru_stime, peak[0] // 1024, peak[1] // 1024, out)


def cpu_of(pid: int) -> float:
    """User + system seconds a running process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ the driver


def prepare_site(work: Path, subscribers: int, posts: int) -> None:
    """Generate the shape into `work`, or reuse what an earlier run with the same sizes left there."""
    sys.path.insert(0, str(HERE))
    from corpus import generate_content, generate_subscribers  # type: ignore[import-not-found]

    marker = work / "shape.json"
    generator = hashlib.sha256((HERE / "corpus.py").read_bytes()).hexdigest()[:16]
    want = {"posts": posts, "subscribers": subscribers, "generator": generator}
    have = json.loads(marker.read_text()) if marker.exists() else {}
    at = datetime.fromisoformat(AT)
    t0 = time.perf_counter()
    if (have.get("posts"), have.get("generator")) != (posts, generator):
        shutil.rmtree(work / "content", ignore_errors=True)
        generate_content(work, posts, at)
    if have != want:
        generate_subscribers(work, subscribers)
    marker.write_text(json.dumps(want))
    print(f"shape: {posts} posts, {subscribers} subscribers ready in {time.perf_counter() - t0:.1f} s")


def write_config(work: Path, host: str, logo: bool) -> Path:
    lines = [
        "[newsletter]",
        "name = 'Bench Weekly'",
        "from_email = 'weekly@bench.example.com'",
        "site_url = 'https://bench.example.com'",
        "postal_address = '1 Example Street, Exampletown'",
    ]
    if logo:
        lines.append("logo_url = 'https://bench.example.com/logo.png'")
    lines += [
        f"[templates]\npath = '{ROOT / 'templates'}'",
        "[sending]\ntransport = 'sendgrid'\nunsubscribe_url = 'https://bench.example.com/unsubscribe'",
        f"[sendgrid]\nhost = '{host}'",
    ]
    path = work / "digest.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def established(work: Path, config: Path) -> None:
    """The state of a list that has been sent to before: the content cache warm and every
    subscriber's opaque link id minted (the first send ever mints them, once). Only this edition's
    ledger rows are missing, as on a weekly run."""
    shutil.rmtree(work / "state", ignore_errors=True)
    sys.path.insert(0, str(ROOT))
    from digest.config import load_config
    from digest.content import load_articles
    from digest.statefiles import guard_send
    from digest.store import open_ledger, open_state
    from digest.subscribers import load_subscribers

    cfg = load_config(config)
    load_articles(cfg, cache_dir=cfg.state.path / "cache")  # as `digest check` or last week's send left it
    with open_state(cfg) as state:
        state.token_ids([s.id for s in load_subscribers(cfg.subscribers.path).subscribers if s.active])
    open_ledger(cfg).close()
    guard_send(cfg.state.path, fresh=True)  # the ledger and the state as a pair, as a first send leaves them


def parse_fast(out: str) -> tuple[int, str]:
    """(accepted, the timings line) from `digest send --timings` output."""
    accepted = int(next(line for line in out.splitlines() if "accepted:" in line).split("accepted:")[1].split()[0])
    timings = next((line for line in out.splitlines() if line.startswith("time")), "(no timings line)")
    return accepted, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=12763)
    parser.add_argument("--logo", action="store_true", help="give the newsletter a logo (the default has none)")
    parser.add_argument("--naive-sample", type=int, default=200, help="subscribers sent by the naive path")
    parser.add_argument("--work", type=Path, help="generate into (and reuse) this folder; kept afterwards")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--naive", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.naive:
        return naive(args.naive, args.limit)

    work = args.work or Path(tempfile.mkdtemp(prefix="digest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    prepare_site(work, args.subscribers, args.posts)
    port_file = work / "port"
    port_file.unlink(missing_ok=True)
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    load_before = os.getloadavg()
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        host = f"http://127.0.0.1:{port_file.read_text()}"
        config = write_config(work, host, args.logo)
        env = {**os.environ, "SENDGRID_API_KEY": KEY, "DIGEST_SECRET": SECRET}
        established(work, config)
        cmd = [sys.executable, "-m", "digest", "--config", str(config), "send", "--yes", "--timings", "--at", AT]
        server_cpu = cpu_of(server.pid)
        fast = timed(cmd, env)
        server_cpu = cpu_of(server.pid) - server_cpu
        accepted, timings = parse_fast(fast.out)
        stats = server_get(host, "/stats")
        server_get(host, "/reset")
        naive_cmd = [sys.executable, __file__, "--naive", str(config), "--limit", str(args.naive_sample)]
        naive_run = timed(naive_cmd, env)
        measured = json.loads(naive_run.out.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait()
    load_after = os.getloadavg()

    fast_rate = accepted / fast.wall
    naive_rate = measured["sent"] / measured["seconds"]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, logo: {'yes' if args.logo else 'no'}")
    print(f"load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min)")
    print(
        f"fast : {accepted:,} subscribers in {fast.wall:.2f} s = {fast_rate:,.0f}/s; "
        f"{stats['requests']:,} requests on {stats['connections']} connection(s), "
        f"{stats['personalizations']:,} personalizations, {stats['contents']:,} distinct contents, "
        f"{stats['bytes'] / 1e6:,.0f} MB, duplicates {stats['duplicates']}"
    )
    print(f"       {timings}")
    print(f"       cpu {fast.cpu:.2f} s (digest, all its threads and processes); capture server {server_cpu:.2f} s")
    print(f"       peak memory {fast.pss} MB (PSS, whole process tree); largest process {fast.rss} MB RSS")
    print(
        f"naive: {measured['sent']} subscribers one by one in {measured['seconds']:.2f} s = {naive_rate:,.1f}/s "
        f"(process {naive_run.wall:.1f} s with loading), peak memory {naive_run.pss} MB"
    )
    print(f"ratio: the fast path is {fast_rate / naive_rate:,.0f}x the naive path's throughput")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
