"""The preview's live state: one cached `Run`, rebuilt when its inputs change on disk.

Every page reads the same `Snapshot` until a file changes; the watcher then rebuilds it and bumps a
version that open pages poll over Server-Sent Events. A failed build is cached as an error too, so
a broken template shows on every page (HTTP 500) until the next edit, and the server keeps running.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import watchfiles

from digest.cadences import Cadences
from digest.config import Config
from digest.errors import DigestError
from digest.models import Email, Problem, Selection
from digest.pipeline import Run
from digest.schedule import Slot
from digest.timings import gc_paused

log = logging.getLogger("digest.web")

#: How often a watched file whose folder does not exist yet is looked at (see `Watcher._poll`).
POLL_SECONDS = 0.5


@dataclass
class Snapshot:
    """One successful build: the run, `digest check`'s problems and every subscriber's selection."""

    run: Run
    problems: tuple[Problem, ...]
    selections: dict[str, Selection]  #: by subscriber id, in list order
    token: str  #: the version this was built at; a page holding another token is stale
    cadences: Cadences | None = None  #: the config's cadences; None without a schedule
    #: Each cadence's next slot at or after the preview's moment: the edition its readers get next.
    next_editions: dict[str, Slot] = field(default_factory=dict)
    _emails: dict[str, Email] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def email(self, selection: Selection) -> Email:
        """The subscriber's email from the run's composer (the one `build` and `send` use)."""
        key = selection.subscriber.id
        with self._lock:
            cached = self._emails.get(key)
        if cached is None:
            cached = self.run.email(selection)
            with self._lock:
                self._emails[key] = cached
        return cached

    @cached_property
    def article_counts(self) -> Counter[str]:
        """How many subscribers get each article this edition."""
        counts: Counter[str] = Counter()
        for selection in self.selections.values():
            if selection.gets_email:
                counts.update(a.id for a in selection.articles)
        return counts

    @cached_property
    def getting(self) -> int:
        """How many subscribers get a digest this edition."""
        return sum(1 for s in self.selections.values() if s.gets_email)

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each subscriber's place in the list (for the previous/next links)."""
        return {sid: i for i, sid in enumerate(self.selections)}

    @cached_property
    def search_index(self) -> list[tuple[str, Selection]]:
        """(what the search box matches, the selection) per subscriber, in list order. Made once
        per build: a search of 100,000 subscribers is then a scan of prepared strings."""
        cadences = self.cadences
        out = []
        for selection in self.selections.values():
            s = selection.subscriber
            prefs = ", ".join(s.tags + s.categories)
            cadence = cadences.cadence_of(s) if cadences is not None else ""
            # lower(), as the page's own filter (JavaScript's toLowerCase) does
            text = " ".join([s.email, s.name, s.status, prefs, cadence, selection.skipped or ""]).lower()
            out.append((text, selection))
        return out

    @cached_property
    def cadence_counts(self) -> dict[str, int]:
        """Active subscribers per cadence (with a schedule); once per build."""
        if self.cadences is None:
            return {}
        return self.cadences.counts(s.subscriber for s in self.selections.values())


@dataclass(frozen=True)
class BuildFailure:
    """Why the edition could not be built; shown instead of every page until the next change."""

    error: Exception
    token: str

    @property
    def message(self) -> str:
        if isinstance(self.error, DigestError):
            return str(self.error)
        return f"internal error: {type(self.error).__name__}: {self.error}"


class PreviewError(DigestError):
    """Raised by `PreviewState.snapshot` when the current inputs do not build."""

    def __init__(self, failure: BuildFailure):
        super().__init__(failure.message)
        self.failure = failure


@dataclass(frozen=True)
class WatchTargets:
    """What to watch: folders recursively, and single files (through their folder, see `Watcher`)."""

    folders: tuple[Path, ...]
    files: tuple[Path, ...]


class PreviewState:
    """Loads config, content, subscribers and templates for one moment, and keeps the result."""

    def __init__(self, config_path: Path, at: str | None = None, edition_id: str | None = None):
        self.config_path = Path(config_path).resolve()
        self.at = at
        self.edition_id = edition_id
        # A fresh id per server: a page left open across a restart sees a new token and reloads.
        self._boot = secrets.token_hex(4)
        self._version = 0
        self._cached: Snapshot | BuildFailure | None = None
        self._lock = threading.RLock()
        self._rebuilt = threading.Condition(self._lock)

    @property
    def token(self) -> str:
        return f"{self._boot}.{self._version}"

    def snapshot(self) -> Snapshot:
        """The current build; raises `PreviewError` when it failed."""
        with self._lock:
            if self._cached is None:
                self._cached = self._build()
            cached = self._cached
        if isinstance(cached, BuildFailure):
            raise PreviewError(cached)
        return cached

    def changed(self, what: str = "") -> None:
        """Inputs changed: rebuild now, so the reload that open pages get finds a warm cache."""
        with self._lock:
            self._version += 1
            self._cached = None
            self._cached = self._build()
            self._rebuilt.notify_all()
        if isinstance(self._cached, BuildFailure):
            log.warning("rebuilt after %s: %s", what or "a change", self._cached.message)
        else:
            log.info("rebuilt after %s", what or "a change")

    def wait_rebuilt(self, since: str, timeout: float) -> bool:
        """Block until a rebuild after version `since` has finished; False if none within `timeout`."""
        with self._rebuilt:
            return self._rebuilt.wait_for(lambda: self.token != since, timeout)

    def _build(self) -> Snapshot | BuildFailure:
        from digest.check import check
        from digest.config import load_config
        from digest.pipeline import open_run
        from digest.schedule import parse_at

        token = self.token
        try:
            config = load_config(self.config_path)
            run = open_run(config, parse_at(self.at, config.tz), self.edition_id, persist_links=False)
            # Compile the edition now: a template error must fail the whole preview (HTTP 500 with
            # its file and line), not hide as one line in check's list.
            run.prepared  # noqa: B018 - a cached_property; evaluated for its error
            with gc_paused():
                selections = {s.subscriber.id: s for s in run.selections()}
            problems = tuple(check(run, selections.values()))
        except Exception as exc:  # noqa: BLE001 - a bug in a template or our code must not stop the server
            if not isinstance(exc, DigestError):
                log.exception("preview build failed")
            return BuildFailure(exc, token)
        return Snapshot(run, problems, selections, token, *_next_editions(config, run.at))

    def watch_targets(self) -> WatchTargets:
        """The config file, and from the config: content, templates, subscribers, segments and the
        subscriber state (unsubscribes, paused, topics chosen on the preferences page).

        Of the state only the database file itself is watched: SQLite in WAL mode writes into
        `-wal` and copies into the main file when the writer closes, whereas every read (our own
        builds included) creates and deletes `-wal` and `-shm`, which would rebuild forever.
        """
        from digest.config import load_config
        from digest.store import locate
        from digest.suppressions import STATE_NAME

        files = [self.config_path]
        folders: list[Path] = []
        try:
            config = load_config(self.config_path)
        except DigestError:
            config = None  # only the config file itself matters until it loads again
        if config is not None:
            folders += [config.content.path, config.templates.path]
            files += [config.subscribers.path, config.subscribers.segments]
            if not locate(config).url:  # PostgreSQL has no file to watch: the preview shows it as of its last build
                files.append(config.state.path / STATE_NAME)
        return WatchTargets(tuple(folders), tuple(files))


def _next_editions(config: Config, at: datetime) -> tuple[Cadences | None, dict[str, Slot]]:
    cadences = Cadences.of(config)
    if cadences is None:
        return None, {}
    # at or after: a preview at a slot's very moment shows that slot's edition as the next one
    return cadences, {t.cadence: t.next_slots(at - timedelta(microseconds=1))[0] for t in cadences.tables}


class Watcher:
    """Watches the inputs in background threads and calls `state.changed` on every edit.

    Folders are watched recursively. Single files are watched through their parent folder, not
    recursively: editors save by replacing the file, which ends a watch on the file itself, and a
    recursive watch of the config's folder would cover .venv and the outbox.
    """

    def __init__(self, state: PreviewState, *, on_change: Callable[[str], None] | None = None):
        self.state = state
        self.on_change = on_change or state.changed
        self._stop = threading.Event()
        self._generation = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set once every input of the current watch is being watched: an edit made after it is
        #: seen (watchfiles has no readiness signal of its own; see `_loop`). Cleared while a
        #: config edit that moved a folder restarts the watch.
        self.ready = threading.Event()
        self._pending = 0  #: watch threads of this generation not yet watching
        self._pending_lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="digest-preview-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._generation.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _supervise(self) -> None:
        # Each generation watches one set of targets; a config edit that moves a folder ends it.
        while not self._stop.is_set():
            self._generation = generation = threading.Event()
            if self._stop.is_set():
                break
            targets = self.state.watch_targets()
            threads = [
                threading.Thread(target=self._loop, args=(paths, recursive, keep, targets, generation), daemon=True)
                for paths, recursive, keep in _groups(targets)
            ]
            orphans = _orphans(targets)
            if orphans:
                threads.append(threading.Thread(target=self._poll, args=(orphans, generation), daemon=True))
            with self._pending_lock:
                self._pending = len(threads)
                self.ready.clear()
            for thread in threads:
                thread.start()
            if not threads:
                self.ready.set()  # nothing exists to watch yet, so nothing can be missed
                generation.wait(1.0)  # look again shortly
            for thread in threads:
                thread.join()

    def _watching(self) -> None:
        """One watch thread of this generation is live; the last one makes the watcher ready."""
        with self._pending_lock:
            self._pending -= 1
            if self._pending == 0:
                self.ready.set()

    def _poll(self, files: list[Path], generation: threading.Event) -> None:
        """Files in a folder that did not exist when the generation began are polled, not watched.

        A watch on the nearest existing folder would have to restart once the folder appears, and a
        restart misses any edit made meanwhile; the preview's own first build creates the state
        folder (the content cache lives there), so that would happen on nearly every start.
        """
        seen = {f: _signature(f) for f in files}
        self._watching()
        while not generation.wait(POLL_SECONDS):
            for f in files:
                now = _signature(f)
                if now != seen[f]:
                    seen[f] = now
                    self.on_change(f.name)

    def _loop(
        self,
        paths: list[Path],
        recursive: bool,
        keep: Callable[[object, str], bool] | None,
        targets: WatchTargets,
        generation: threading.Event,
    ) -> None:
        kwargs: dict[str, Any] = {"watch_filter": keep} if keep is not None else {}
        watching = False
        try:
            for changes in watchfiles.watch(
                *paths,
                recursive=recursive,
                stop_event=generation,
                debounce=400,
                step=50,
                rust_timeout=500,
                yield_on_timeout=True,
                ignore_permission_denied=True,
                raise_interrupt=False,
                **kwargs,
            ):
                # The first yield (changes, or an empty set after rust_timeout) comes from inside the
                # watch: the OS watch exists, and it queues every change from then on.
                if not watching:
                    watching = True
                    self._watching()
                if not changes:
                    continue
                names = sorted({Path(p).name for _, p in changes})
                self.on_change(", ".join(names[:3]) + (" ..." if len(names) > 3 else ""))
                if self.state.watch_targets() != targets:
                    generation.set()
        except Exception:  # noqa: BLE001 - a watch failure must not take the preview down
            log.exception("file watching failed; restarting it")
            self._stop.wait(1.0)
            generation.set()


Group = tuple[list[Path], bool, Callable[[object, str], bool] | None]


def _groups(targets: WatchTargets) -> list[Group]:
    """(paths, recursive, filter) for each watch thread; folders that do not exist are left out."""
    groups: list[Group] = []
    folders = [p for p in dict.fromkeys(targets.folders) if p.is_dir()]
    if folders:
        groups.append((folders, True, None))  # watchfiles' default filter skips swap files and .git
    wanted = {str(f) for f in targets.files}
    parents = [p for p in dict.fromkeys(f.parent for f in targets.files) if p.is_dir()]
    if parents:
        groups.append((parents, False, lambda _change, path: path in wanted))
    return groups


def _orphans(targets: WatchTargets) -> list[Path]:
    """Files whose folder does not exist (yet): the state folder before the first unsubscribe."""
    return [f for f in dict.fromkeys(targets.files) if not f.parent.is_dir()]


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
