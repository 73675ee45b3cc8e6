"""README is a short front page whose two commands are the ones CI and users run."""

from __future__ import annotations

from ci_support import quick_start_commands
from conftest import ROOT


def test_ci_runs_exactly_readmes_test_command():
    main_job, tests = quick_start_commands(ROOT / "README.md")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()
    # CI installs the dev extra: the docs build, ruff and mypy run as tests there, not only locally
    assert "pytest" in tests and "pip install" in tests and "'.[dev]'" in tests
    # the main job is the preview, which needs the web extra on a fresh machine
    assert main_job.startswith("python3 -m venv .venv && .venv/bin/pip install -q '.[web]' && ")
    assert "digest preview" in main_job


def test_each_command_is_one_line_and_the_docs_show_the_same_two():
    readme = quick_start_commands(ROOT / "README.md")
    assert len(readme) == 2 and all("\n" not in command for command in readme)
    assert quick_start_commands(ROOT / "docs" / "getting-started.md") == readme


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: the guide belongs in docs/"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[0] == "## Quick start (two commands)" and "## Documentation" in headings
