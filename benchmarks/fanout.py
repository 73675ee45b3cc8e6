"""Fan-out benchmark: the fast path against the naive per-subscriber path, in one run.

    .venv/bin/python benchmarks/fanout.py --subscribers 100000 --articles 2000 [--naive-sample 300]

Generates a content folder and M subscribers with Zipf-distributed preferences over 30 tags
(benchmarks/corpus.py), starts a local SendGrid-compatible HTTP server in its own process, then:

* fast:  `digest send --yes --transport sendgrid` as a subprocess (the real CLI, real ledger, real
         `sendgrid` client): articles compiled once, one request per distinct content (<= 1000
         personalizations), per-recipient fields as substitutions;
* naive: the same subscribers one by one (a sample of them, the full list would take an hour):
         select, render+compile+inline the whole email (Composer.compose_direct), one request each.

Prints subscribers per second and peak memory (max RSS of each subprocess) for both, and their
ratio. Figures are printed, never asserted: no test depends on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AT = "2026-11-30T00:00:00+00:00"
KEY = "SG.benchmark-key"


# ------------------------------------------------------------------ the local SendGrid stand-in


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client that reuses connections can
    stats: dict[str, int] = {"requests": 0, "personalizations": 0, "bytes": 0}
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            return self._answer(401, b'{"errors":[{"message":"bad key"}]}')
        body = json.loads(raw)
        latency = float(os.environ.get("BENCH_LATENCY", "0"))  # benchmarks/postgres.py --latency
        if latency:
            time.sleep(latency)
        personalizations = body.get("personalizations", [])
        types = [c["type"] for c in body.get("content", [])]
        if not 1 <= len(personalizations) <= 1000 or types[:1] != ["text/plain"]:
            return self._answer(400, b'{"errors":[{"message":"invalid"}]}')
        with self.lock:
            self.stats["requests"] += 1
            self.stats["personalizations"] += len(personalizations)
            self.stats["bytes"] += length
        self._answer(202, b"", {"X-Message-Id": secrets.token_hex(8)})

    def do_GET(self) -> None:
        if self.path.startswith("/stats"):
            return self._answer(200, json.dumps(self.stats).encode())
        # suppression lists (digest send syncs them first): nobody is suppressed here
        self._answer(200, b"[]")

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(port_file: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


# ------------------------------------------------------------------ the naive path


def naive(config_path: Path, limit: int) -> None:
    """One subscriber at a time, everything from scratch, one request each."""
    sys.path.insert(0, str(ROOT))
    from sendgrid import SendGridAPIClient

    from digest.config import load_config
    from digest.pipeline import open_run
    from digest.schedule import parse_at

    config = load_config(config_path)
    run = open_run(config, parse_at(AT, config.tz))
    client = SendGridAPIClient(KEY, host=config.sendgrid.host)
    client.client.timeout = 30
    sent = 0
    # Timed from here: loading the list is not the naive path's cost, sending one by one is.
    # (The fast path's figure includes its loading: the comparison leans against it.)
    started = time.perf_counter()
    for subscriber in run.subscribers.subscribers[:limit]:
        selection = run.select(subscriber)
        if not selection.gets_email:
            continue
        email = run.composer.compose_direct(selection, run.edition, run.values(subscriber))
        body = {
            "personalizations": [{"to": [{"email": subscriber.email}], "headers": dict(email.headers)}],
            "from": {"email": config.newsletter.from_email},
            "subject": email.subject,
            "content": [{"type": "text/plain", "value": email.text}, {"type": "text/html", "value": email.html}],
        }
        client.client.mail.send.post(request_body=body)
        sent += 1
    elapsed = time.perf_counter() - started
    print(json.dumps({"sent": sent, "seconds": elapsed}))


# ------------------------------------------------------------------ the driver


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB, stdout of a subprocess."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_chunks = []
    assert proc.stdout is not None
    for line in proc.stdout:
        out_chunks.append(line)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    out = "".join(out_chunks)
    if proc.returncode not in (0,):
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}")
    return wall, usage.ru_maxrss // 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--naive-sample", type=int, default=300, help="subscribers sent by the naive path")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--naive", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.naive:
        return naive(args.naive, args.limit)

    sys.path.insert(0, str(HERE))
    from corpus import generate  # type: ignore[import-not-found]

    work = args.keep or Path(tempfile.mkdtemp(prefix="digest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    generate(work, args.articles, args.subscribers, bad=0, at=__import__("datetime").datetime.fromisoformat(AT))
    print(f"generated {args.articles} articles, {args.subscribers} subscribers in {time.perf_counter() - t0:.1f} s")

    port_file = work / "port"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        host = f"http://127.0.0.1:{port_file.read_text()}"
        (work / "digest.toml").write_text(
            "[newsletter]\nname = 'Bench'\nlogo_url = 'https://img.example.com/logo.png'\n"
            f"[templates]\npath = '{ROOT / 'templates'}'\n"
            f"[sending]\ntransport = 'sendgrid'\n[sendgrid]\nhost = '{host}'\n"
        )
        env = {**os.environ, "SENDGRID_API_KEY": KEY}
        cfg = str(work / "digest.toml")

        fast_wall, fast_rss, fast_out = timed(
            [sys.executable, "-m", "digest", "--config", cfg, "send", "--yes", "--at", AT], env
        )
        accepted = int(
            next(line for line in fast_out.splitlines() if "accepted:" in line).split("accepted:")[1].split()[0]
        )
        stats = json.loads(__import__("urllib.request").request.urlopen(host + "/stats").read())

        naive_wall, naive_rss, naive_out = timed(
            [sys.executable, __file__, "--naive", cfg, "--limit", str(args.naive_sample)], env
        )
        measured = json.loads(naive_out.strip().splitlines()[-1])
        naive_sent, naive_loop = measured["sent"], measured["seconds"]
    finally:
        server.terminate()
        server.wait()

    fast_rate = accepted / fast_wall
    naive_rate = naive_sent / naive_loop
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(
        f"fast : {accepted} subscribers sent in {fast_wall:.1f} s = {fast_rate:,.0f}/s, "
        f"{stats['requests']} requests ({stats['personalizations']} personalizations, "
        f"{stats['bytes'] / 1e6:.0f} MB), peak memory {fast_rss} MB"
    )
    print(
        f"naive: {naive_sent} subscribers sent one by one in {naive_loop:.1f} s = {naive_rate:,.1f}/s "
        f"(process {naive_wall:.1f} s with loading), peak memory {naive_rss} MB"
    )
    print(f"ratio: fast path is {fast_rate / naive_rate:,.0f}x the naive path's throughput")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
