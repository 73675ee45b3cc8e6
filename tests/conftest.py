"""Shared fixtures: a temp copy of the sample newsletter, configs built in code, a fixed clock."""

from __future__ import annotations

import importlib.util
import shutil
import time as _time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from ci_support import (  # noqa: F401 - hooks: under CI=true a skip is a failure
    pytest_collectreport,
    pytest_make_collect_report,
    pytest_runtest_logreport,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
    skip_or_fail,
)

from digest.config import Config, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
LONDON = ZoneInfo("Europe/London")
#: The sample newsletter's articles are dated the week of 2026-11-23.
SAMPLE_AT = datetime(2026, 11, 30, 0, 0, tzinfo=LONDON)


def require(module: str, install: str) -> None:
    """Skip a test whose tool is missing; in CI (CI=true) a missing tool is a failure instead."""
    if importlib.util.find_spec(module) is None:
        skip_or_fail(f"{module} is not installed: {install}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that drives a real browser (any `browser` fixture, wherever it lives) is slow. A test
    about SQLite itself (`sqlite_only`) in a module run on both engines runs on SQLite only."""
    kept, dropped = [], []
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        on_pg = getattr(item, "callspec", None) is not None and item.callspec.params.get("engine") == "postgresql"
        (dropped if on_pg and item.get_closest_marker("sqlite_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def _test_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signing secret of send_support.ONE_CLICK_TOML's endpoint. A variable of its own, so the
    tests about a missing DIGEST_SECRET are not affected."""
    monkeypatch.setenv("DIGEST_TEST_SECRET", "test-secret-for-one-click-links")


def copy_sample(dest: Path) -> Path:
    """A private copy of the sample newsletter (tests must never write into the repo)."""
    for name in ("content", "templates", "subscribers"):
        shutil.copytree(ROOT / name, dest / name)
    shutil.copy(ROOT / "digest.toml", dest / "digest.toml")
    return dest / "digest.toml"


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """Path of digest.toml in a temp copy of the sample newsletter."""
    return copy_sample(tmp_path)


@pytest.fixture
def sample_config(sample: Path) -> Config:
    return load_config(sample)


def make_config(tmp_path: Path, **sections: dict) -> Config:
    """A config rooted at tmp_path; templates default to the repo's own."""
    data = {"newsletter": {"timezone": "Europe/London", "name": "Test Weekly"}, **sections}
    data.setdefault("templates", {"path": str(ROOT / "templates")})
    return parse_config(data, base=tmp_path, source=str(tmp_path / "digest.toml"))


def write_article(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server for the whole run (tests/pg_support.py).

    Skips when the server binaries are missing, except in CI (CI=true), where that is a failure.
    """
    from pg_support import PgServer, PgUnavailable

    try:
        server = PgServer()
    except PgUnavailable as exc:
        skip_or_fail(f"PostgreSQL tests: {exc}")
    with server:
        yield server


@pytest.fixture
def pg_url(pg_server, request) -> str:
    """A fresh empty database on the session's server, named after the test."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    return pg_server.create_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, monkeypatch, tmp_path):
    """Run the test on both engines: the SQLite files (the default), then a fresh PostgreSQL
    database, migrated, selected through DIGEST_DATABASE_URL (child processes inherit it).

    Tests opt in per module: `pytestmark = pytest.mark.usefixtures("engine")`.
    """
    from digest.store import DATABASE_URL_ENV

    if request.param == "sqlite":
        monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
        yield "sqlite"
        return
    from digest.store import pg

    server = request.getfixturevalue("pg_server")
    import re

    name = "e_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:55]
    url = server.create_database(name)
    pg.migrate(url)
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    try:
        yield "postgresql"
    finally:
        pg.close_pools()


@pytest.fixture
def new_ledger(engine, tmp_path):
    """A fresh ledger on the test's engine: `with new_ledger() as ledger`."""
    from digest.store import Location, locate, open_ledger

    def make(folder: Path | None = None):
        import os

        from digest.store import DATABASE_URL_ENV

        return open_ledger(Location(folder or tmp_path / "state", os.environ.get(DATABASE_URL_ENV, "")))

    del locate
    return make


@pytest.fixture
def fresh_database(engine, request, monkeypatch):
    """`fresh_database()`: on PostgreSQL, a new empty migrated database from now on (the state of
    a test's next newsletter must not be the last one's); on SQLite nothing (each newsletter's
    folder is its own state)."""
    made = 0

    def make() -> None:
        nonlocal made
        if engine != "postgresql":
            return
        import re

        from digest.store import DATABASE_URL_ENV, pg

        made += 1
        pg.close_pools()
        name = f"f{made}_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
        url = request.getfixturevalue("pg_server").create_database(name)
        pg.migrate(url)
        monkeypatch.setenv(DATABASE_URL_ENV, url)

    return make


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_engine(request):
    """`engine` for a module-scoped fixture (a story told once per module): each engine in turn,
    selected through DIGEST_DATABASE_URL for the module's tests."""
    from digest.store import DATABASE_URL_ENV

    with pytest.MonkeyPatch.context() as mp:
        if request.param == "sqlite":
            mp.delenv(DATABASE_URL_ENV, raising=False)
            yield "sqlite"
            return
        import re

        from digest.store import pg

        name = "m_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:55]
        url = request.getfixturevalue("pg_server").create_database(name)
        pg.migrate(url)
        mp.setenv(DATABASE_URL_ENV, url)
        try:
            yield "postgresql"
        finally:
            pg.close_pools()


@pytest.fixture
def machine_zone(monkeypatch):
    """Set this process's local time zone (TZ), as a machine elsewhere has it; put back after."""

    def move(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        _time.tzset()

    yield move
    monkeypatch.undo()
    _time.tzset()
