"""CI cannot pass with a skipped test (issue 20).

Each way a test can skip is run in a small pytest session of its own, with this suite's hooks
(tests/ci_support.py, imported by conftest.py as here): locally it skips, with CI=true the session
fails and says why. Deselecting with `-m "not slow"` is not a skip and passes in CI. And `.ci/run`
sets CI=true itself, so a runner that forgets it cannot turn failures back into skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ci_support import quick_start_commands
from conftest import ROOT

TESTS = Path(__file__).resolve().parent

CONFTEST = """
import pytest
from ci_support import (
    pytest_collectreport, pytest_make_collect_report, pytest_runtest_logreport,
    pytest_runtest_makereport, pytest_sessionfinish, pytest_terminal_summary, skip_or_fail,
)

@pytest.fixture(scope="session")
def server():
    skip_or_fail("the server binaries are not installed")
"""

SKIPS = {
    "a skip in the test": "def test_x():\n    pytest.skip('no tool')\n",
    "a skipif marker": "@pytest.mark.skipif(True, reason='no tool')\ndef test_x():\n    pass\n",
    "a skip marker": "@pytest.mark.skip(reason='later')\ndef test_x():\n    pass\n",
    "importorskip in the test": "def test_x():\n    pytest.importorskip('no_such_module_xyz')\n",
    "importorskip at module level": "pytest.importorskip('no_such_module_xyz')\ndef test_x():\n    pass\n",
    "a module-level skip": "pytest.skip('not here', allow_module_level=True)\ndef test_x():\n    pass\n",
    "a fixture that skips (as pg_server does)": "def test_x(server):\n    pass\n",
    "skip_or_fail in the test": "def test_x():\n    from ci_support import skip_or_fail\n    skip_or_fail('no tool')\n",
}


def session(tmp_path: Path, body: str, *args: str, ci: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (tmp_path / "test_runs.py").write_text("def test_runs():\n    pass\n", encoding="utf-8")
    (tmp_path / "test_it.py").write_text("import pytest\n\n" + body, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    env["PYTHONPATH"] = str(TESTS)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rA", *args, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # each case starts two pytest sessions
@pytest.mark.parametrize("kind", SKIPS)
def test_every_kind_of_skip_skips_locally_and_fails_in_ci(tmp_path: Path, kind: str) -> None:
    local = session(tmp_path, SKIPS[kind], ci=False)
    assert local.returncode == 0, local.stdout
    assert "skipped" in local.stdout.splitlines()[-1]
    ci = session(tmp_path, SKIPS[kind], ci=True)
    assert ci.returncode != 0, ci.stdout
    last = ci.stdout.splitlines()[-1]
    assert "skipped" not in last and ("failed" in last or "error" in last), last
    assert "CI" in ci.stdout and ("must run" in ci.stdout or "every test must run" in ci.stdout)


@pytest.mark.slow
def test_deselecting_slow_tests_is_not_a_skip(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: a slow test\n", encoding="utf-8")
    body = "@pytest.mark.slow\ndef test_slow():\n    pass\n"
    result = session(tmp_path, body, "-m", "not slow", ci=True)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 deselected" in result.stdout.splitlines()[-1]


@pytest.mark.slow
def test_an_expected_failure_is_reported_as_such_not_as_a_skip(tmp_path: Path) -> None:
    body = "@pytest.mark.xfail(reason='known bug', strict=True)\ndef test_bug():\n    assert False\n"
    result = session(tmp_path, body, ci=True)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 xfailed" in result.stdout.splitlines()[-1]


@pytest.mark.slow
def test_a_skip_that_reaches_the_session_unconverted_still_fails_it(tmp_path: Path) -> None:
    """The backstop: a report that arrives skipped (as from a pytest-xdist worker) fails the session."""
    body = (
        "def test_x(request):\n"
        "    from _pytest.reports import TestReport\n"
        "    report = TestReport('w::t', ('w', 0, 't'), {}, 'skipped', ('w', 0, 'Skipped: on a worker'), 'call')\n"
        "    request.config.hook.pytest_runtest_logreport(report=report)\n"
    )
    result = session(tmp_path, body, ci=True)
    assert result.returncode == 1, result.stdout
    assert "1 test(s) skipped, which CI does not allow: w::t" in result.stdout


def test_ci_run_sets_ci_itself_before_readmes_test_command() -> None:
    _, tests = quick_start_commands(ROOT / "README.md")
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in lines and "export CI=true" in lines
    assert lines.index("export CI=true") < lines.index(tests)
