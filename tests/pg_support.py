"""A throwaway PostgreSQL server for tests: Debian's binaries, a temp folder, loopback only.

`PgServer` runs `initdb` and `postgres` from the installed PostgreSQL (Debian keeps them in
/usr/lib/postgresql/<version>/bin, off PATH) in a fresh folder, listening on 127.0.0.1 with a free
port and trust authentication, and removes everything on exit. PostgreSQL refuses to run as root,
and CI runs as root: then the server runs as the `postgres` system user (Debian's package creates
it) or `nobody`, in a folder under /tmp that this user owns (pytest's own tmp folders are private
to root).

Durability settings are off (fsync, synchronous_commit): a test server loses nothing a test needs
and starts and commits much faster.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (tests skip locally, fail under CI)."""


def find_bindir() -> Path:
    explicit = os.environ.get("DIGEST_PG_BINDIR")
    candidates = [explicit] if explicit else []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout
            candidates.append(out.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    # Newest version first: /usr/lib/postgresql/15/bin before 13.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    raise PgUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")


def _version_key(path: str) -> tuple[int, ...]:
    part = Path(path).parent.name
    return tuple(int(p) for p in part.split(".") if p.isdigit())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[Callable[[], None] | None, int, int]:
    """(preexec_fn, uid, gid) for running the server: ourselves, or an unprivileged user when root."""
    if os.geteuid() != 0:
        return None, os.getuid(), os.getgid()
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        uid, gid = user.pw_uid, user.pw_gid

        def drop(uid: int = uid, gid: int = gid) -> None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

        return drop, uid, gid
    raise PgUnavailable("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


class PgServer:
    """`with PgServer() as pg: pg.url` -> a superuser URL on a fresh cluster."""

    def __init__(self, *, durable: bool = False) -> None:
        #: durable: fsync and synchronous commits on, as a production server (benchmarks); tests
        #: run without them
        self.durable = durable
        self.bindir = find_bindir()
        self.port = 0
        self.folder: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> PgServer:
        preexec, uid, gid = _run_as()
        self.folder = Path(tempfile.mkdtemp(prefix="digest-pg-"))
        os.chown(self.folder, uid, gid)
        data, sockets, log = self.folder / "data", self.folder / "sock", self.folder / "server.log"
        sockets.mkdir()
        os.chown(sockets, uid, gid)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            preexec_fn=preexec,
            env=env,
            timeout=120,
        )
        self.port = _free_port()
        with open(log, "wb") as out:
            os.chown(log, uid, gid)
            self.process = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D", str(data),
                    "-p", str(self.port),
                    "-k", str(sockets),
                    "-c", "listen_addresses=127.0.0.1",
                    *(() if self.durable else ("-c", "fsync=off", "-c", "synchronous_commit=off")),
                    *(() if self.durable else ("-c", "full_page_writes=off")),
                    "-c", "max_connections=200",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec,
                env=env,
            )  # fmt: skip
        self._wait_ready(log)
        return self

    def _wait_ready(self, log: Path) -> None:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start: {log.read_text(errors='replace')[-2000:]}")
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown: it ends open sessions. SIGTERM ("smart")
            # would wait for every client, and a test that failed mid-way may leave one open.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
