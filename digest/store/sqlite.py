"""The SQLite engine's plumbing: opening a store's file at the right schema version, migrating it.

Each store is one file in the state folder. A new (or empty) file is created at the current
version: the zero-setup default needs no `digest state migrate` before its first send. A file
from an older version is refused until `digest state migrate` has run (see schema.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from digest.db import connect, explain, now_stamp
from digest.errors import LedgerError
from digest.store.schema import BASELINE_TABLE, MIGRATIONS_TABLE, WHAT, Migration, StoreName, check_version, steps


def statements(script: str) -> list[str]:
    """A script cut into whole statements (executescript would COMMIT the caller's transaction)."""
    out: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                out.append(pending.strip())
            pending = ""
    return out


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def version(db: sqlite3.Connection, store: StoreName) -> int:
    """The store's schema version in this file: 0 for an empty file, 1 for one from before versioning."""
    if _has_table(db, "schema_migrations"):
        (found,) = db.execute("SELECT MAX(version) FROM schema_migrations WHERE store = ?", (store,)).fetchone()
        return int(found or 0)
    return 1 if _has_table(db, BASELINE_TABLE[store]) else 0


def _apply(db: sqlite3.Connection, step: Migration) -> None:
    for statement in statements(step.text("sqlite")):
        db.execute(statement)
    db.execute(
        "INSERT INTO schema_migrations (store, version, name, applied_at) VALUES (?, ?, ?, ?)",
        (step.store, step.version, step.name, now_stamp("seconds")),
    )


def migrate_db(db: sqlite3.Connection, store: StoreName, *, only_new: bool = False) -> list[Migration]:
    """Apply the missing steps, each in its own transaction; returns them. `only_new`: only when
    the file holds nothing yet (creation, all steps in one transaction), else leave it as it is."""
    if only_new:
        return _create(db, store)
    applied: list[Migration] = []
    for step in steps(store):
        db.execute("BEGIN IMMEDIATE")
        try:
            found = version(db, store)
            if step.version <= found:
                db.execute("ROLLBACK")
                continue
            for statement in statements(MIGRATIONS_TABLE):
                db.execute(statement)
            if (
                found == 1
                and step.version == 2
                and not db.execute(
                    "SELECT 1 FROM schema_migrations WHERE store = ? AND version = 1", (store,)
                ).fetchone()
            ):
                # a file from before versioning: its tables are version 1's; say so once
                first = steps(store)[0]
                db.execute(
                    "INSERT INTO schema_migrations (store, version, name, applied_at) VALUES (?, 1, ?, ?)",
                    (store, first.name, now_stamp("seconds")),
                )
            _apply(db, step)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        applied.append(step)
    return applied


def _create(db: sqlite3.Connection, store: StoreName) -> list[Migration]:
    """A new file gets every step in ONE transaction: another process opening it at the same
    moment then sees either nothing (and waits for the lock) or the current version, never a
    half-made file that it would refuse as "schema version 1, needs 2"."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if version(db, store) != 0:
            db.execute("ROLLBACK")
            return []
        for statement in statements(MIGRATIONS_TABLE):
            db.execute(statement)
        applied = list(steps(store))
        for step in applied:
            _apply(db, step)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return applied


def open_store(
    path: Path, store: StoreName, *, busy_timeout: float = 30.0, threads: bool = False, error: type[LedgerError]
) -> sqlite3.Connection:
    """A connection to the store's file, created at the current version when new, refused when
    its schema is older or newer than this digest's."""
    try:
        db = connect(path, "", busy_timeout=busy_timeout, threads=threads)
    except (sqlite3.Error, OSError) as exc:
        raise error(f"{path}: cannot open {WHAT[store]}: {explain(exc)}") from None
    try:
        migrate_db(db, store, only_new=True)
        check_version(str(path), store, version(db, store))
    except sqlite3.Error as exc:
        db.close()
        raise error(f"{path}: cannot open {WHAT[store]}: {explain(exc)}") from None
    except BaseException:
        db.close()
        raise
    return db


def migrate_file(path: Path, store: StoreName) -> tuple[int, list[Migration]]:
    """`digest state migrate` for one file: (version before, steps applied)."""
    try:
        db = connect(path, "")
    except (sqlite3.Error, OSError) as exc:
        raise LedgerError(f"{path}: cannot open {WHAT[store]}: {explain(exc)}") from None
    try:
        before = version(db, store)
        return before, migrate_db(db, store)
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: cannot migrate {WHAT[store]}: {explain(exc)}") from None
    finally:
        db.close()


def file_version(path: Path, store: StoreName) -> int | None:
    """The version of an existing file, read-only; None when there is no file."""
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return version(db, store)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: cannot read {WHAT[store]}: {explain(exc)}") from None
