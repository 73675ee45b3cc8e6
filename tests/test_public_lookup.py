"""The public app finds one subscriber per request without reading the whole list: the list is
read once, and again only when its file changes; the state is read for that subscriber only.

Counted, not timed: a Python audit hook sees every `open()` of the list file (the benchmark,
benchmarks/public_app.py, prints the latencies)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from public_support import SECRET, client_for, public_config, token

from digest.config import Config

_watched: list[str] = []
_opened: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _watched and isinstance(args[0], str | Path) and str(args[0]) in _watched:
        _opened.append(str(args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed: this one does nothing unless a test watches


@contextmanager
def counting_opens(path: Path) -> Iterator[list[str]]:
    _opened.clear()
    _watched.append(str(path))
    try:
        yield _opened
    finally:
        _watched.clear()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    return public_config(tmp_path)


def test_the_list_is_read_once_for_many_requests(config: Config) -> None:
    client = client_for(config)
    pages = [token(config, e, "preferences") for e in ("ada@example.com", "grace@example.org", "li.lei@example.com")]
    with counting_opens(config.subscribers.path) as opened:
        for _ in range(10):
            for t in pages:
                assert client.get(f"/preferences?token={t}").status_code == 200
        assert client.post(f"/preferences?token={pages[0]}", data={"action": "pause"}).status_code == 200
        assert (
            client.post(f"/preferences?token={pages[1]}", data={"action": "save", "tags": "space"}).status_code == 200
        )
    assert len(opened) == 1  # 32 requests, one read of the list


def test_an_edited_or_replaced_list_is_seen_at_the_next_request(config: Config) -> None:
    client = client_for(config)
    t = token(config, "ada@example.com", "preferences")
    assert 'value=""' in client.get(f"/preferences?token={t}").text.split('name="tags"')[1][:40]
    path = config.subscribers.path
    text = path.read_text(encoding="utf-8")
    ada_row = next(line for line in text.splitlines() if line.startswith("ada@example.com"))
    edited = ada_row.replace("ada@example.com,Ada Lovelace,", "ada@example.com,Ada Lovelace,quantum;", 1)
    assert edited != ada_row
    path.write_text(text.replace(ada_row, edited), encoding="utf-8")
    _touch_later(path)
    assert 'value="quantum' in client.get(f"/preferences?token={t}").text
    # replaced by a new file without ada (a rename over the old one, as editors and exports do)
    new = path.with_name("new.csv")
    new.write_text("\n".join(line for line in text.splitlines() if not line.startswith("ada@")) + "\n", "utf-8")
    os.replace(new, path)
    assert client.get(f"/preferences?token={t}").status_code == 404
    with counting_opens(path) as opened:
        for _ in range(5):
            client.get(f"/preferences?token={t}")
    assert opened == []  # unchanged since: not read again


def test_the_state_is_read_for_the_one_subscriber(config: Config) -> None:
    """A pause recorded by another process (a second server, a CLI) shows at once."""
    from digest.store import open_state

    client = client_for(config)
    t = token(config, "grace@example.org", "preferences")
    assert "Resume digests" not in client.get(f"/preferences?token={t}").text
    with open_state(config) as state:
        state.set_paused("grace@example.org", True, source="another process")
        state.opt_out("ada@example.com", "bounced", "webhook")  # someone else's row: not grace's concern
    page = client.get(f"/preferences?token={t}").text
    assert "Resume digests" in page and "ada@example.com" not in page


def _touch_later(path: Path) -> None:
    """Make sure the edit shows in the file's mtime even on a coarse clock (same size is possible)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, max(st.st_mtime_ns, time.time_ns()) + 1_000_000_000))


#: Every test here runs on both engines (SQLite files, then PostgreSQL): see the `engine` fixture.
pytestmark = pytest.mark.usefixtures("engine")
