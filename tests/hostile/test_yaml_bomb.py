"""YAML alias bombs ("billion laughs") and other front-matter parser traps: the file is one error
line, the rest of the run goes on, and memory stays bounded (checked under a cap, not timed)."""

from __future__ import annotations

from pathlib import Path

from send_support import AT, copy_sample

from .support import run_digest

#: 13 lines; `title: *i` expands to 9**9 strings the moment anything turns it into text.
BOMB = """---
date: 2026-11-25
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
title: *i
---
Body.
"""


def test_an_alias_bomb_is_one_error_line_and_the_run_goes_on(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    bomb = tmp_path / "content" / "2026-11-25-laughs.md"
    bomb.write_text(BOMB, encoding="utf-8")
    checked = run_digest(config, "check", "--at", AT)
    assert checked.error_lines == [
        f"{bomb}:4: error: front matter is not valid YAML: aliases (*a) are not allowed in front matter"
    ]
    assert checked.code == 1 and "1 error(s)" in checked.stdout
    built = run_digest(config, "build", "--at", AT)
    assert built.code == 0, built.stderr
    assert "built 7 digest(s)" in built.stdout and "bad article files: 1;" in built.stdout


def test_merge_keys_need_aliases_too_and_deep_nesting_is_one_error(tmp_path: Path) -> None:
    config = copy_sample(tmp_path)
    merge = tmp_path / "content" / "2026-11-25-merge.md"
    merge.write_text("---\nbase: &base {title: Merged}\n<<: *base\ndate: 2026-11-25\n---\nBody.\n", encoding="utf-8")
    deep = tmp_path / "content" / "2026-11-25-deep.md"
    deep.write_text(
        f"---\ntitle: Deep\ndate: 2026-11-25\nx: {'[' * 50_000}{']' * 50_000}\n---\nBody.\n", encoding="utf-8"
    )
    checked = run_digest(config, "check", "--at", AT)
    deep_line, merge_line = sorted(checked.error_lines)
    assert merge_line == (
        f"{merge}:3: error: front matter is not valid YAML: aliases (*base) are not allowed in front matter"
    )
    # libyaml stops at its depth limit, PyYAML's own parser at Python's recursion limit
    assert deep_line in (
        f"{deep}:4: error: front matter is not valid YAML: exceeded maximum nesting depth",
        f"{deep}: error: front matter is nested too deeply",
    )
    assert checked.code == 1 and "2 error(s)" in checked.stdout
