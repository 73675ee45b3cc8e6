"""Article files that stopped whole runs or reached too far: dates with no instant in UTC or past
the year 9999, epoch numbers in milliseconds, titles that are not text, UTF-16, files too large to
be articles, and symlinks out of the content folder (one to `/` walked the whole disk). Each is
one line naming the file; every other article still builds."""

from __future__ import annotations

import os
from pathlib import Path

from send_support import AT, copy_sample

from .support import run_digest

NO_UTC = " (no such moment in UTC: before the year 1 or after 9999)"


def test_each_trap_is_one_line_and_the_edition_still_builds(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    content = tmp_path / "content"
    traps = {
        "east-of-year-one.md": "---\ntitle: Early\ndate: 0001-01-01T00:00:00+05:00\n---\n",
        "end-of-time.md": "---\ntitle: Late\ndate: 9999-12-31T23:59:59-23:00\n---\n",
        "too-many-millis.md": "---\ntitle: Far\ndate: 99999999999999999999\n---\n",
        "title-list.md": "---\ntitle: [Robots, rule]\ndate: 2026-11-25\n---\n",
    }
    for name, text in traps.items():
        (content / name).write_text(text, encoding="utf-8")
    (content / "wide.md").write_bytes(b"\xff\xfe" + "---\ntitle: Wide\ndate: 2026-11-25\n---\n".encode("utf-16-le"))
    with (content / "dump.md").open("wb") as f:  # sparse: no disk used
        f.truncate(64 * 1024 * 1024 + 1)
    os.symlink("/", content / "root")
    millis = content / "2026-11-25-millis.md"  # a CMS export's Date.now(): 25 November 2026, 10:00 UTC
    millis.write_text("---\ntitle: Written in milliseconds\ndate: 1795600800000\ntags: [ai]\n---\nBody.\n")

    checked = run_digest(config, "check", "--at", AT)
    assert sorted(checked.error_lines) == sorted(
        [
            f"{content / 'east-of-year-one.md'}: error: date: cannot read '0001-01-01T00:00:00+05:00' as a date{NO_UTC}",
            f"{content / 'end-of-time.md'}: error: date: cannot read '9999-12-31T23:59:59-23:00' as a date{NO_UTC}",
            f"{content / 'too-many-millis.md'}: error: date: cannot read 99999999999999999999 as a date",
            f"{content / 'title-list.md'}: error: title: expected text, not a list",
            f"{content / 'wide.md'}: error: UTF-16, not UTF-8: save it as UTF-8",
            f"{content / 'dump.md'}: error: larger than 64 MB: not read as an article",
            f"{content / 'root'}: warning: symlink to /, outside the content folder: not followed",
        ]
    )
    built = run_digest(config, "build", "--at", AT)
    assert built.code == 0, built.stderr
    assert "bad article files: 6;" in built.stdout
    assert "Written in milliseconds" in "".join(
        p.read_text(errors="replace") for p in (tmp_path / "outbox").rglob("*.eml")
    )
