"""`digest state migrate | info | copy | backup | restore`, on both engines.

Everything moves through the stores' own interfaces (`export_rows`/`import_rows` for the ledger,
`export_table`/`import_table` for the state), never by copying files or dumping SQL, so a copy goes
from any engine to any other, and a backup is the same thing on both: a folder holding the two
SQLite files (`ledger.sqlite3`, `subscribers.sqlite3`) and a manifest (`backup.json`), readable
with any SQLite tool.

A copy converges: rerun it and the target holds the source again (a ledger row, preference or
subscriber replaces the target's only when it changed later; an opt-out, a webhook event and a
link id are kept from both sides, never lost).
A restore first backs up what it replaces (`<state>/before-restore-<moment>/`), then puts the
backup's rows back, keeping the opt-outs and link ids recorded after the backup was taken.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from digest.errors import LedgerError
from digest.ledger import LEDGER_NAME
from digest.store import Location, locate, open_ledger, open_state
from digest.store.schema import WHAT, latest
from digest.store.state_sql import STATE_TABLES
from digest.suppressions import STATE_NAME

if TYPE_CHECKING:
    from digest.statefiles import BackupReport


class StateCopyError(LedgerError):
    """A copy, backup or restore cannot go on."""


@dataclass(frozen=True)
class MigrateReport:
    where: str
    before: dict[str, int]
    applied: tuple[str, ...]  #: "ledger 2: ..." per step applied


def migrate(where: Location) -> MigrateReport:
    if where.url:
        from digest.store import pg

        found, steps = pg.migrate(where.url)
        return MigrateReport(str(where), found, tuple(f"{s.store} {s.version}: {s.name}" for s in steps))
    from digest.store.sqlite import migrate_file

    applied: list[str] = []
    before: dict[str, int] = {}
    for store, name in (("ledger", LEDGER_NAME), ("state", STATE_NAME)):
        version, done = migrate_file(where.folder / name, store)  # type: ignore[arg-type]
        before[store] = version
        applied += [f"{s.store} {s.version}: {s.name}" for s in done]
    return MigrateReport(str(where), before, tuple(applied))


@dataclass(frozen=True)
class Info:
    where: str
    engine: str
    versions: dict[str, tuple[int | None, int]]  #: store -> (found, this digest's)


def info(where: Location) -> Info:
    if where.url:
        from digest.store import pg

        found = pg.describe_versions(where.url)
        return Info(str(where), "postgresql", {k: (v[0], v[1]) for k, v in found.items()})
    from digest.store.sqlite import file_version

    versions: dict[str, tuple[int | None, int]] = {
        store: (file_version(where.folder / name, store), latest(store))  # type: ignore[arg-type]
        for store, name in (("ledger", LEDGER_NAME), ("state", STATE_NAME))
    }
    return Info(str(where), "sqlite", versions)


# ---------------------------------------------------------------- copy


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    deliveries: int  #: ledger rows read from the source
    written: dict[str, int] = field(default_factory=dict)  #: table -> rows written into the target
    read: dict[str, int] = field(default_factory=dict)  #: table -> rows read from the source


class _Counted:
    def __init__(self, rows: object):
        self.rows = rows
        self.n = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for row in self.rows:  # type: ignore[attr-defined]
            self.n += 1
            yield row


def copy_state(source: Location, target: Location) -> CopyReport:
    """Every row of the source's ledger and state into the target (see the module docstring)."""
    if str(source) == str(target) and source.url == target.url and source.folder == target.folder:
        raise StateCopyError(f"{source}: the source and the target are the same")
    written: dict[str, int] = {}
    read: dict[str, int] = {}
    with open_ledger(source) as src, open_ledger(target) as dst:
        rows = _Counted(src.export_rows())
        written["deliveries"] = dst.import_rows(rows)
        read["deliveries"] = rows.n
    with open_state(source) as src_state, open_state(target) as dst_state:
        for table in STATE_TABLES:
            rows = _Counted(src_state.export_table(table))  # type: ignore[attr-defined]
            written[table] = dst_state.import_table(table, rows)  # type: ignore[attr-defined]
            read[table] = rows.n
    return CopyReport(str(source), str(target), read["deliveries"], written, read)


def _require_source(where: Location) -> None:
    if not where.url and not (where.folder / LEDGER_NAME).is_file() and not (where.folder / STATE_NAME).is_file():
        raise StateCopyError(f"{where}: no state here yet (nothing was ever sent or recorded)")


def copy_to(config_where: Location, url: str) -> CopyReport:
    """`digest state copy --to URL`: the config's state into the database at URL, migrated first."""
    from digest.store import pg

    _require_source(config_where)
    target = Location(config_where.folder, url)
    pg.migrate(url)  # the command's purpose is to set the target up: say so in its help
    return copy_state(config_where, target)


# ---------------------------------------------------------------- backup and restore (PostgreSQL)
#
# On SQLite `digest state backup|restore` is statefiles.py's (SQLite's online backup API, the
# paired files verified). On PostgreSQL the same folder format is made through the interfaces: the
# database's rows copied into the two SQLite files, paired (statefiles.seal), with the same
# manifest, so a backup restores into either engine.


def backup(where: Location, dest: Path) -> BackupReport:
    """The ledger and the state into the new folder `dest`, as statefiles.backup makes them."""
    from digest import statefiles

    if not where.url:
        return statefiles.backup(where.folder, dest)
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise StateCopyError(f"{dest}: already exists; back up into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        copy_state(where, Location(partial))
        statefiles.seal(partial, fresh=True)  # the two files of one backup belong together
        files = {}
        for name in (LEDGER_NAME, STATE_NAME):
            with sqlite3.connect(partial / name, isolation_level=None) as db:
                db.execute("PRAGMA journal_mode = DELETE")  # one self-contained file each
            db.close()
        for name in ("pairing.lock",):
            (partial / name).unlink(missing_ok=True)
        ledger, state = statefiles.read_sides(partial)
        for side in (ledger, state):
            files[side.path.name] = {
                "role": side.role,
                "bytes": side.path.stat().st_size,
                "sha256": statefiles._sha256(side.path),
            }
        created = datetime.now(UTC).isoformat(timespec="seconds")
        manifest = {
            "format": statefiles.BACKUP_FORMAT,
            "version": statefiles.BACKUP_VERSION,
            "created_at": created,
            "source": str(where),
            "pair_id": ledger.pairing.get("pair_id", ""),
            "seq": ledger.seq,
            "deliveries": ledger.rows,
            "optouts": state.rows,
            "files": files,
        }
        (partial / statefiles.MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if dest.exists():
            dest.rmdir()
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return statefiles.BackupReport(dest, created, ledger.rows, state.rows)


def restore(where: Location, source: Path) -> BackupReport:
    """Put a backup made by `digest state backup` (on either engine) back. On PostgreSQL: what it
    replaces is backed up first into `<state>/before-restore-<moment>/`, then the backup's rows
    replace the database's, except that opt-outs and link ids recorded after it are kept."""
    from digest import statefiles

    if not where.url:
        return _erasures_kept(where, statefiles.restore(where.folder, source))
    manifest = statefiles._read_backup(source)
    statefiles.verify(source)  # the backup's two files belong together
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = where.folder / f"before-restore-{stamp}"
    backup(where, aside)
    with open_ledger(where) as live:
        live.clear()
    with open_state(where) as state:
        state.clear_for_restore()  # type: ignore[attr-defined]
        table_rows = state.export_table  # type: ignore[attr-defined]
        before = {t: sum(1 for _ in table_rows(t)) for t in ("optouts", "token_ids")}
    report = copy_state(Location(source), where)
    # rows the live state had that the backup lacks: recorded after it was taken, kept
    kept = {t: max(0, before[t] - (report.read.get(t, 0) - report.written.get(t, 0))) for t in before}
    restored = statefiles.BackupReport(
        source,
        str(manifest.get("created_at", "")),
        int(str(manifest.get("deliveries", 0))),
        int(str(manifest.get("optouts", 0))),
        aside=aside,
        kept_optouts=kept["optouts"],
        kept_link_ids=kept["token_ids"],
    )
    return _erasures_kept(where, restored)


def _erasures_kept(where: Location, report: BackupReport) -> BackupReport:
    """An address erased after the backup was taken is erased again from what it brought back."""
    import dataclasses

    from digest.signup.consent import reapply_erasures

    return dataclasses.replace(report, erased_again=reapply_erasures(where))


__all__ = ["WHAT", "copy_to", "copy_state", "backup", "restore", "migrate", "info", "locate"]
