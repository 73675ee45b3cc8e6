"""No silent skips in CI: under CI=true every skip is a failure that says what was missing.

Locally a test whose tool is missing (Chromium, PostgreSQL's binaries, ruff, mypy, ...) skips with
the reason; in CI that would hide a whole class of tests behind a green run, so there it fails.
Two layers:

- `skip_or_fail(reason)`: what a test or fixture calls when something it needs is missing;
- the hooks below (imported by conftest.py): any skip that still happens in CI, from a marker, a
  fixture, `importorskip` in a test or at module level, or a plugin, is turned into a failure, and
  the session fails if a skip got through anyway (a backstop, e.g. for reports that arrive from
  pytest-xdist workers). Deselection (`-m "not slow"`) is not a skip and stays allowed; so does an
  expected failure (xfail), which is reported as such.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NoReturn

import pytest


def in_ci() -> bool:
    """CI runs set CI=true (`.ci/run` sets it itself)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where every test must run."""
    if in_ci():
        pytest.fail(f"must run in CI (CI=true), but cannot: {reason}", pytrace=False)
    pytest.skip(reason)


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_skip(report: Any) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _reason(report)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), where every test must run: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if in_ci():
        _fail_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    report = yield
    if in_ci():
        _fail_skip(report)  # a module-level importorskip or skip(allow_module_level=True)
    return report


_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_ci() and _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if in_ci() and _SKIPPED:
        terminalreporter.write_line(
            f"CI=true: {len(_SKIPPED)} test(s) skipped, which CI does not allow: {', '.join(_SKIPPED[:10])}",
            red=True,
        )


def quick_start_commands(page: Path) -> list[str]:
    """The shell commands under a page's "## Quick start" heading (README.md and the docs' getting
    started page show the same two; CI runs the second)."""
    text = page.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", quick)
