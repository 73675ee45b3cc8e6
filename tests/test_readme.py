"""README's two commands are the ones CI and users run."""

from __future__ import annotations

import re

from conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", quick)


def test_ci_runs_exactly_readmes_test_command():
    main_job, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()
    assert "pytest" in tests and "pip install" in tests and "'.[test]'" in tests
    assert main_job.startswith("python3 -m venv .venv && .venv/bin/pip install")
