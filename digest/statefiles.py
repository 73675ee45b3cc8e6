"""The state folder's two databases as one record: the send ledger and the subscriber state.

A missing consent record must never read as "nobody opted out", and a missing ledger never as
"nobody was sent anything". So the two files know each other, through a `pairing` table in each:

    role        "ledger" / "subscriber state": a file copied over the other is recognised
    pair_id     random, written in both when they are first paired (by the first send)
    seq, mark   the last send that sealed them: a counter and a random value, the same in both
    pending     (state only) "seq:mark" while a seal is between its two writes
    optouts_seen (ledger) / deliveries_seen (state): what the other held at the last seal

Every real send first verifies the pair, then seals it with a new (seq, mark), before anything is
read or sent. A file that is missing, empty (0 bytes), replaced (no pairing, another pair_id) or
older (a mark from an earlier send) than the other remembers stops the send with one line naming
the file and the way back: `digest state restore BACKUP`, or `--i-know-state-is-new` for a
deliberate fresh start. A crash between a seal's writes leaves `pending` equal to the ledger's new
mark, which verifies; the seal runs under a lock file, so two sends never interleave their writes.

The very first send (neither file, or only a state that `digest serve` or `digest sync` created)
has nothing to compare and pairs them. Files from before pairing existed are paired as found.

`backup` copies both files with SQLite's online backup API into one folder with a manifest;
`restore` checks that folder and copies it back the same way, keeping the opt-outs and link ids
recorded after the backup (see docs/operations.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from digest.db import explain, now_stamp, read_pairing
from digest.errors import DigestError, SendError
from digest.ledger import LEDGER_NAME
from digest.store.sqlite_ledger import SqliteLedger
from digest.store.sqlite_state import SqliteSubscriberState as SubscriberState
from digest.suppressions import STATE_NAME

try:  # POSIX; elsewhere sends are not serialised against each other while sealing
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "pairing.lock"
MANIFEST_NAME = "backup.json"
BACKUP_FORMAT = "newsletter-digest state backup"
BACKUP_VERSION = 1
FRESH_FLAG = "--i-know-state-is-new"
RESTORE = "`digest state restore BACKUP`"
LEDGER_ROLE = "ledger"
STATE_ROLE = "subscriber state"


class StateFilesError(SendError):
    """The ledger and the subscriber state are missing, empty, replaced, mismatched or unwritable."""


@dataclass(frozen=True)
class Side:
    """One of the two files as found."""

    path: Path
    what: str  #: "the send ledger" / "the subscriber state"
    role: str
    exists: bool
    size: int
    pairing: Mapping[str, str]
    rows: int  #: deliveries (ledger) or addresses with an opt-out (state)

    @property
    def paired(self) -> bool:
        return bool(self.pairing.get("pair_id"))

    @property
    def seq(self) -> int:
        return _int(self.pairing.get("seq"))

    @property
    def mark(self) -> str:
        return f"{self.seq}:{self.pairing.get('mark', '')}"


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _uri(path: Path, mode: str) -> str:
    return f"{path.resolve().as_uri()}?mode={mode}"


def _read_side(path: Path, what: str, role: str, count_sql: str) -> Side:
    if not path.exists():
        return Side(path, what, role, False, 0, {}, 0)
    size = path.stat().st_size
    if size == 0:
        return Side(path, what, role, True, 0, {}, 0)
    try:
        db = sqlite3.connect(_uri(path, "ro"), uri=True)
        try:
            pairing = read_pairing(db)
            try:
                rows = int(db.execute(count_sql).fetchone()[0])
            except sqlite3.OperationalError:
                rows = 0  # no such table yet
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        if "readonly" in str(exc) or "unable to open" in str(exc):
            # SQLite writes next to a WAL database (its -shm file) even to read it
            raise StateFilesError(f"{path}: cannot read {what}: {explain(exc)}") from None
        raise StateFilesError(
            f"{path}: cannot read {what}: {explain(exc)}; if it is damaged, restore it with {RESTORE}"
        ) from None
    return Side(path, what, role, True, size, pairing, rows)


def read_sides(state_dir: Path) -> tuple[Side, Side]:
    """(ledger, state) as they are, reading nothing but the files (nothing is created)."""
    ledger = _read_side(state_dir / LEDGER_NAME, "the send ledger", LEDGER_ROLE, "SELECT COUNT(*) FROM deliveries")
    state = _read_side(
        state_dir / STATE_NAME, "the subscriber state", STATE_ROLE, "SELECT COUNT(DISTINCT subscriber) FROM optouts"
    )
    return ledger, state


# ---------------------------------------------------------------- verifying


def verify(state_dir: Path) -> tuple[Side, Side]:
    """Raise StateFilesError (one line: the file, what is wrong, the way back) unless the ledger
    and the subscriber state belong together; returns them as found."""
    ledger, state = read_sides(state_dir)
    for side in (ledger, state):
        if side.exists and side.size == 0:
            raise StateFilesError(
                f"{side.path}: {side.what} is empty (0 bytes){_seen(side, ledger, state)}: {_risk(side)}"
            )
        found = side.pairing.get("role")
        if found and found != side.role:
            raise StateFilesError(
                f"{side.path}: holds a {found}, not {side.what} (the files were swapped or copied over each other): "
                f"restore both with {RESTORE}"
            )
    if not ledger.paired and not state.paired:
        return ledger, state  # the first send, or files from before pairing: nothing to compare
    if ledger.paired and not state.paired:
        raise StateFilesError(_lost(state, ledger))
    if state.paired and not ledger.paired:
        raise StateFilesError(_lost(ledger, state))
    if ledger.pairing["pair_id"] != state.pairing["pair_id"]:
        raise StateFilesError(
            f"{state.path} and {ledger.path} do not belong together (one was replaced by a copy from another "
            f"newsletter or another history): restore both from one backup with {RESTORE}, or pass {FRESH_FLAG} "
            "to pair them as they are"
        )
    if ledger.mark == state.mark or ledger.mark == state.pairing.get("pending"):
        return ledger, state
    older, newer = (state, ledger) if state.seq < ledger.seq else (ledger, state)
    how = "older than" if older.seq < newer.seq else "not the copy"
    raise StateFilesError(
        f"{older.path}: {older.what} is {how} {newer.what} remembers (it is from send #{older.seq}, {newer.what} "
        f"from send #{newer.seq}: restored from an old copy?): {_risk(older)}"
    )


def _lost(lost: Side, other: Side) -> str:
    if not lost.exists:
        state_of = f"{lost.what} is missing{_seen(lost, *_order(lost, other))}"
    else:
        state_of = (
            f"{lost.what} is not the one {other.what} was last used with (replaced, or recreated after it was "
            f"deleted{_seen(lost, *_order(lost, other), now=True)})"
        )
    return f"{lost.path}: {state_of}: {_risk(lost)}"


def _order(a: Side, b: Side) -> tuple[Side, Side]:
    return (a, b) if a.role == LEDGER_ROLE else (b, a)


def _seen(side: Side, ledger: Side, state: Side, *, now: bool = False) -> str:
    """What the other file last saw in `side`: how much a send would forget."""
    if side.role == STATE_ROLE and "optouts_seen" in ledger.pairing:
        held = f"; it holds {side.rows}" if now else ""
        return f"; the ledger last saw {ledger.pairing['optouts_seen']} opt-out(s) in it{held}"
    if side.role == LEDGER_ROLE and "deliveries_seen" in state.pairing:
        held = f"; it holds {side.rows}" if now else ""
        return f"; the subscriber state last saw {state.pairing['deliveries_seen']} delivery row(s) in it{held}"
    return ""


def _risk(side: Side) -> str:
    if side.role == STATE_ROLE:
        risk = "a send now would mail people who unsubscribed"
        fresh = f"pass {FRESH_FLAG} if there really are no opt-outs to keep"
    else:
        risk = "a send now would mail people again what they already got"
        fresh = f"pass {FRESH_FLAG} to start a new ledger"
    return f"{risk}; restore it with {RESTORE}, or {fresh}"


# ---------------------------------------------------------------- sealing


@contextmanager
def pairing_lock(state_dir: Path) -> Iterator[None]:
    """Held while a send verifies and seals, and while a backup or restore runs."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise StateFilesError(f"{path}: cannot create the lock file: {explain(exc)}") from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def seal(state_dir: Path, *, fresh: bool = False) -> None:
    """Write a new (seq, mark) into both files (creating a missing one): the state first, marked
    pending, then the ledger, then the state's final rows. `fresh` starts a new pair."""
    with SqliteLedger(state_dir / LEDGER_NAME) as ledger, SubscriberState(state_dir / STATE_NAME) as state:
        theirs, ours = ledger.pairing(), state.pairing()
        pair_id = (not fresh and (theirs.get("pair_id") or ours.get("pair_id"))) or uuid.uuid4().hex
        seq = max(_int(theirs.get("seq")), _int(ours.get("seq"))) + 1
        mark = secrets.token_hex(8)
        now = now_stamp("seconds")
        optouts, deliveries = state.count_optouts(), ledger.count()
        state.set_pairing({"role": STATE_ROLE, "pair_id": pair_id, "pending": f"{seq}:{mark}"})
        ledger.set_pairing(
            {
                "role": LEDGER_ROLE,
                "pair_id": pair_id,
                "seq": seq,
                "mark": mark,
                "optouts_seen": optouts,
                "sealed_at": now,
            }
        )
        state.set_pairing({"seq": seq, "mark": mark, "pending": None, "deliveries_seen": deliveries, "sealed_at": now})


def note_sent(state_dir: Path, ledger: SqliteLedger) -> None:
    """After a send: the ledger's row count, for the message if the ledger is lost later. Only
    informative (the seal already happened), so a failure here never hides the send's own."""
    try:
        with SubscriberState(state_dir / STATE_NAME) as state:
            state.set_pairing({"deliveries_seen": ledger.count()})
    except (DigestError, sqlite3.Error, OSError):
        pass


def require_writable(state_dir: Path) -> None:
    """A clear line when the state folder (or a file in it) cannot be written, before a send
    claims or records anything there."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateFilesError(f"{state_dir}: cannot create the state folder: {explain(exc)}") from None
    names = [LEDGER_NAME, STATE_NAME]
    candidates = [state_dir, state_dir / "runs", *(state_dir / f"{n}{s}" for n in names for s in ("", "-wal", "-shm"))]
    for path in candidates:
        if path.exists() and not os.access(path, os.W_OK):
            raise StateFilesError(
                f"{path}: read-only for this user; `digest send` records every claim and delivery in the state "
                "folder before anything leaves, so it must be writable (nothing was sent)"
            )


def guard_send(state_dir: Path, *, fresh: bool = False, records: bool = True) -> None:
    """What `digest send` does first: verify the pair and (a send that records) seal it.

    `records=False` (a dry run, a sandbox send): verify only, writing nothing."""
    if not records:
        if not fresh:
            verify(state_dir)
        return
    require_writable(state_dir)
    with pairing_lock(state_dir):
        if not fresh:
            verify(state_dir)
        seal(state_dir, fresh=fresh)


# ---------------------------------------------------------------- backup and restore


@dataclass(frozen=True)
class BackupReport:
    path: Path
    created_at: str
    deliveries: int
    optouts: int
    aside: Path | None = None  #: restore: where the replaced files were kept
    kept_optouts: int = 0  #: restore: opt-outs recorded since the backup, kept
    kept_link_ids: int = 0  #: restore: opaque link ids made since the backup, kept
    erased_again: int = 0  #: restore: addresses erased since the backup, erased again from it


def _copy_db(source: Path, target: Path) -> None:
    """SQLite's online backup API: a consistent copy even while another process writes."""
    src = sqlite3.connect(_uri(source, "ro"), uri=True)
    try:
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup(state_dir: Path, dest: Path) -> BackupReport:
    """Both files into the new folder `dest`, with a manifest (backup.json); see docs/operations.md."""
    for path in (state_dir / LEDGER_NAME, state_dir / STATE_NAME):
        if not path.is_file():
            raise StateFilesError(f"{path}: nothing to back up yet (the first `digest send` creates it)")
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise StateFilesError(f"{dest}: already exists; back up into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    with pairing_lock(state_dir):
        ledger, state = verify(state_dir)  # only a pair that belongs together is worth restoring
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        try:
            files = {}
            for side in (ledger, state):
                _copy_db(side.path, partial / side.path.name)
                with sqlite3.connect(partial / side.path.name) as db:
                    db.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                files[side.path.name] = {
                    "role": side.role,
                    "bytes": (partial / side.path.name).stat().st_size,
                    "sha256": _sha256(partial / side.path.name),
                }
            created = datetime.now(UTC).isoformat(timespec="seconds")
            manifest = {
                "format": BACKUP_FORMAT,
                "version": BACKUP_VERSION,
                "created_at": created,
                "source": str(state_dir),
                "pair_id": ledger.pairing.get("pair_id", ""),
                "seq": ledger.seq,
                "deliveries": ledger.rows,
                "optouts": state.rows,
                "files": files,
            }
            (partial / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            if dest.exists():
                dest.rmdir()  # the empty folder it may have been given
            partial.rename(dest)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return BackupReport(dest, created, ledger.rows, state.rows)


def _read_backup(source: Path) -> dict[str, object]:
    manifest_path = source / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateFilesError(
            f"{source}: not a state backup (no {MANIFEST_NAME}; make one with `digest state backup`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise StateFilesError(f"{manifest_path}: cannot read the backup's manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise StateFilesError(f"{manifest_path}: not a newsletter-digest state backup")
    if manifest.get("version") != BACKUP_VERSION:
        raise StateFilesError(
            f"{manifest_path}: backup format version {manifest.get('version')!r} is not one this version reads"
        )
    files = manifest.get("files")
    for name in (LEDGER_NAME, STATE_NAME):
        entry = files.get(name) if isinstance(files, dict) else None
        path = source / name
        if not isinstance(entry, dict) or not path.is_file():
            raise StateFilesError(f"{path}: missing from the backup")
        if _sha256(path) != entry.get("sha256"):
            raise StateFilesError(f"{path}: damaged (its SHA-256 is not the one the manifest recorded)")
        try:
            with sqlite3.connect(_uri(path, "ro"), uri=True) as db:
                check = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StateFilesError(f"{path}: not a readable SQLite database: {exc}") from None
        if check != "ok":
            raise StateFilesError(f"{path}: damaged ({check})")
    return manifest


def _live_runs(state_dir: Path) -> list[str]:
    from digest.store.runlock import run_alive

    runs = state_dir / "runs"
    names = [p.stem for p in runs.glob("*.lock")] if runs.is_dir() else []
    return [name for name in names if run_alive(state_dir, name)]


def restore(state_dir: Path, source: Path) -> BackupReport:
    """Put a backup made by `backup` back into the state folder.

    The files it replaces are copied into `state/before-restore-<moment>/` first, and opt-outs
    recorded there since the backup are kept: a restore never forgets an opt-out.
    """
    manifest = _read_backup(source)
    verify(source)  # the backup's two files belong together
    require_writable(state_dir)
    with pairing_lock(state_dir):
        running = _live_runs(state_dir)
        if running:
            raise StateFilesError(f"{state_dir}: a send is running (run {running[0]}): restore when it has finished")
        aside = _aside_folder(state_dir)
        for name in (LEDGER_NAME, STATE_NAME):
            live = state_dir / name
            _set_aside(live, aside / name)
            _put_back(source / name, live)
        kept = _keep_rows(state_dir / STATE_NAME, aside / STATE_NAME)
    return BackupReport(
        source,
        str(manifest.get("created_at", "")),
        _int(str(manifest.get("deliveries", 0))),
        _int(str(manifest.get("optouts", 0))),
        aside=aside,
        kept_optouts=kept.get("optouts", 0),
        kept_link_ids=kept.get("token_ids", 0),
    )


def _aside_folder(state_dir: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(100):
        folder = state_dir / f"before-restore-{stamp}{f'-{n}' if n else ''}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise StateFilesError(f"{state_dir}: too many before-restore folders for one second")


def _set_aside(live: Path, kept: Path) -> None:
    """A copy of the live file next to the restore; one SQLite cannot read is moved there whole."""
    if not live.exists():
        return
    try:
        if live.stat().st_size:
            _copy_db(live, kept)
            return
    except sqlite3.DatabaseError:
        pass
    for suffix in ("", "-wal", "-shm"):
        part = live.with_name(live.name + suffix)
        if part.exists():
            part.rename(kept.with_name(kept.name + suffix))


def _put_back(backup_file: Path, live: Path) -> None:
    """The backup copied into the live file through SQLite (a process holding it open, such as
    `digest serve`, sees the restored content), then back in WAL mode."""
    _copy_db(backup_file, live)
    with sqlite3.connect(live, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode = WAL")
    db.close()


def _keep_rows(live: Path, replaced: Path) -> dict[str, int]:
    """Opt-outs and link ids in the replaced state that the restored one lacks (recorded after
    the backup): a restore never forgets an opt-out, nor breaks a link already sent."""
    if not replaced.is_file() or not replaced.stat().st_size:
        return {}
    with SubscriberState(live) as state:
        kept: dict[str, int] = state.merge_kept_rows_from(replaced)
        return kept
