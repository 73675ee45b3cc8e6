"""The PostgreSQL engine's plumbing: connections, the shared pool, transactions, schema versions.

psycopg 3 (the `postgresql` extra). Connections run in autocommit and every write is one explicit
transaction (`transaction`), so no session ever sits "idle in transaction" holding back vacuum.
The password comes from the environment (`DIGEST_DATABASE_URL`, `PGPASSWORD`) or `~/.pgpass`,
never from the config file, and no message ever shows it (`masked`).

`digest serve` and the link minting of a run share one small pool per database and process; a
send run's ledger holds a connection of its own (its run lock is a session-level advisory lock on
it, see pg_ledger.py).
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from digest.db import now_stamp
from digest.errors import ExtraMissingError, LedgerError
from digest.store.schema import MIGRATIONS_TABLE, WHAT, Migration, StoreName, check_version, latest, steps

T = TypeVar("T")

#: Any two-int advisory lock key space of ours starts with this (ASCII "dgst").
LOCK_SPACE = 0x64677374
_MIGRATE_LOCK = 1


def psycopg_module() -> Any:
    try:
        import psycopg
    except ModuleNotFoundError:
        raise ExtraMissingError(
            "the state is in PostgreSQL but psycopg is not installed: pip install 'newsletter-digest[postgresql]'"
        ) from None
    return psycopg


def masked(url: str) -> str:
    """The URL as messages show it: user, host, port and database, never a password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as its scheme only
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def connect(url: str, error: type[LedgerError] = LedgerError, what: str = "the state database") -> Any:
    """A new autocommit connection; any failure is one line naming the (masked) URL."""
    psycopg = psycopg_module()
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=int(os.environ.get("DIGEST_DATABASE_CONNECT_TIMEOUT", "10")),
            application_name="newsletter-digest",
            # a sender on a machine that vanished: its session (and run lock) ends within ~2 min
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=6,
        )
    except psycopg.Error as exc:
        raise error(f"{masked(url)}: cannot connect to {what}: {one_line(exc)}") from None


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ---------------------------------------------------------------- the shared pool

_pools: dict[str, Any] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()


def pool(url: str, error: type[LedgerError] = LedgerError) -> Any:
    """The process's pool for this database (made on first use, schema checked once)."""
    global _pools_pid
    with _pools_lock:
        if _pools_pid != os.getpid():  # a forked child: the parent's pools are not ours to use or close
            _pools.clear()
            _pools_pid = os.getpid()
        found = _pools.get(url)
        if found is not None:
            return found
        psycopg_module()
        from psycopg_pool import ConnectionPool

        size = int(os.environ.get("DIGEST_DATABASE_POOL_SIZE", "8"))
        made = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, size),
            kwargs={"autocommit": True, "application_name": "newsletter-digest"},
            timeout=30,
            open=False,
            name="digest",
        )
        try:
            made.open(wait=True, timeout=int(os.environ.get("DIGEST_DATABASE_CONNECT_TIMEOUT", "10")))
        except Exception as exc:  # noqa: BLE001 - PoolTimeout hides the cause; say what failed
            made.close()
            raise error(f"{masked(url)}: cannot connect to the state database: {one_line(exc)}") from None
        with made.connection() as conn:
            for store in ("ledger", "state"):
                check_version(masked(url), store, versions(conn).get(store, 0))
        _pools[url] = made
        return made


def close_pools() -> None:
    """Close this process's pools (before a fork, and at exit)."""
    with _pools_lock:
        if _pools_pid == os.getpid():
            for made in _pools.values():
                made.close()
        _pools.clear()


# ---------------------------------------------------------------- transactions and versions


class Retry(LedgerError):
    """A transaction PostgreSQL rolled back to break a deadlock (or a serialization conflict):
    running it again is safe, and `retrying` does."""


@contextmanager
def transaction(conn: Any, url: str, error: type[LedgerError], what: str) -> Iterator[None]:
    """One transaction; a database error becomes `error`, one line naming the database."""
    psycopg = psycopg_module()
    try:
        with conn.transaction():
            yield
    except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
        raise Retry(f"{masked(url)}: cannot write {what}: {one_line(exc)}") from None
    except psycopg.Error as exc:
        raise error(f"{masked(url)}: cannot write {what}: {one_line(exc)}") from None


def retrying(method: Callable[..., T]) -> Callable[..., T]:
    """Run a method whose transactions may be chosen as a deadlock's victim again, a few times:
    two senders locking overlapping rows in different orders (a queue write against a claim)
    is rare and harmless, but PostgreSQL breaks it by failing one of them."""

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> T:
        for attempt in range(6):
            try:
                return method(*args, **kwargs)
            except Retry:
                if attempt == 5:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    return run


def versions(conn: Any) -> dict[str, int]:
    """store -> schema version in this database ({} before `digest state migrate`)."""
    (exists,) = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists:
        return {}
    rows = conn.execute("SELECT store, MAX(version) FROM schema_migrations GROUP BY store").fetchall()
    return {store: int(v) for store, v in rows}


def check(conn: Any, url: str, store: StoreName) -> None:
    check_version(masked(url), store, versions(conn).get(store, 0))


def migrate(url: str) -> tuple[dict[str, int], list[Migration]]:
    """`digest state migrate`: (versions before, steps applied), each step in its own transaction,
    under an advisory lock so two migrating processes never interleave."""
    conn = connect(url)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, _MIGRATE_LOCK))
            before = versions(conn)
        applied: list[Migration] = []
        for store in ("ledger", "state"):
            for step in steps(store):
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, _MIGRATE_LOCK))
                    if step.version <= versions(conn).get(store, 0):
                        continue
                    conn.execute(MIGRATIONS_TABLE)
                    conn.execute(step.text("postgresql"))
                    conn.execute(
                        "INSERT INTO schema_migrations (store, version, name, applied_at) VALUES (%s, %s, %s, %s)",
                        (store, step.version, step.name, now_stamp("seconds")),
                    )
                applied.append(step)
        return before, applied
    except LedgerError:
        raise
    except psycopg_module().Error as exc:
        raise LedgerError(f"{masked(url)}: cannot migrate the state database: {one_line(exc)}") from None
    finally:
        conn.close()


def describe_versions(url: str) -> dict[str, tuple[int, int]]:
    """store -> (found, latest), for `digest state info`."""
    conn = connect(url)
    try:
        found = versions(conn)
    finally:
        conn.close()
    return {store: (found.get(store, 0), latest(store)) for store in WHAT}
