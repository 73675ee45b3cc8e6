"""The codebase's own habits, checked with every test run: ruff (lint and format), mypy, and the
`slow` marker that keeps `pytest -m "not slow"` a quick loop."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from conftest import ROOT, require

LINT = "pip install -e '.[dev]'"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint_and_format():
    require("ruff", LINT)
    lint = run("ruff", "check", "digest", "tests", "benchmarks", "scripts")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run("ruff", "format", "--check", "digest", "tests", "benchmarks", "scripts")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict():
    # strict, with the few per-module exceptions pyproject.toml lists and explains
    require("mypy", LINT)
    result = run("mypy", "--strict", "digest")
    assert result.returncode == 0, result.stdout + result.stderr


#: One of each kind the quick loop leaves out, and a quick test from the same file that it keeps.
SLOW_AND_QUICK = {
    "tests/test_send_crash.py": ("test_kill_9_at_random_points_then_rerun_delivers_nobody_twice", None),
    "tests/test_preview_browser.py": (
        "test_the_open_page_follows_an_edit",  # marked through its `browser` fixture (conftest.py)
        "test_missing_chromium_skips_locally_and_fails_in_ci",
    ),
    "tests/test_scheduled_send.py": (
        "test_two_processes_at_once_send_each_subscriber_once",
        "test_a_run_where_everything_fails_says_so_and_exits_1",
    ),
    "tests/test_packaging.py": (
        "test_a_fresh_cron_only_install_sends_and_points_preview_at_the_extra",
        "test_every_directly_imported_package_is_declared_where_it_is_used",
    ),
    "tests/test_docs.py": ("test_mkdocs_build_strict", "test_every_relative_link_resolves"),
    "tests/test_wheel.py": ("test_the_installed_wheel_starts_a_newsletter_for_a_blog", None),
    "tests/test_email_browser.py": ("test_axe_finds_nothing_serious", None),
}


def test_the_quick_loop_leaves_out_exactly_the_slow_tests():
    def collected(marker: str) -> set[str]:
        result = run("pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker, *SLOW_AND_QUICK)
        assert result.returncode in (0, 5), result.stdout + result.stderr
        return {line.split("[")[0] for line in result.stdout.splitlines() if "::" in line}

    slow, quick = collected("slow"), collected("not slow")
    for path, (slow_test, quick_test) in SLOW_AND_QUICK.items():
        assert f"{path}::{slow_test}" in slow and f"{path}::{slow_test}" not in quick
        if quick_test:
            assert f"{path}::{quick_test}" in quick and f"{path}::{quick_test}" not in slow


def test_the_makefile_has_the_dev_loop_that_contributing_describes():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for target in ("lint", "type", "test", "test-quick", "docs", "bench"):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"Makefile has no `{target}` target"
        assert f"`make {target}`" in contributing, f"CONTRIBUTING.md does not describe `make {target}`"
        if shutil.which("make"):
            dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert dry.returncode == 0, dry.stderr
    assert '-m "not slow"' in makefile.split("test-quick:", 1)[1].split("\n\n", 1)[0]
