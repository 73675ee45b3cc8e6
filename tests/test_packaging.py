"""Packaging: the declared dependencies match what digest/ imports, the extras are what the docs
say, a cron-only install (no `web` extra) sends without the web stack, and the license ships."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, copy_sample
from packaging.requirements import Requirement

AT = "2026-11-30T00:00"
WEB = {"starlette", "uvicorn", "watchfiles", "email-validator"}
WEB_HINT = "pip install 'newsletter-digest[web]'"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def declared(requirements: list[str]) -> set[str]:
    """Distribution names, leaving out the project's own extras (`newsletter-digest[web]`)."""
    names = {normalise(Requirement(r).name) for r in requirements}
    return names - {normalise(project()["name"])}


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file, nested (lazy) ones included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "digest"}


@functools.cache
def installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions(import_name: str) -> set[str]:
    found = installed().get(import_name)
    assert found, f"{import_name} is imported by digest/ but no installed distribution provides it"
    return {normalise(d) for d in found}


def test_every_directly_imported_package_is_declared_where_it_is_used():
    """Core modules may import only core dependencies; digest/web/ may also use the `web` extra, and
    the PostgreSQL engine's modules (digest/store/pg*.py) the `postgresql` extra."""
    core = declared(project()["dependencies"])
    web = declared(project()["optional-dependencies"]["web"])
    postgresql = declared(project()["optional-dependencies"]["postgresql"])
    used: set[str] = set()
    problems = []
    for path in sorted((ROOT / "digest").rglob("*.py")):
        in_web = (ROOT / "digest" / "web") in path.parents
        in_pg = path.parent == ROOT / "digest" / "store" and path.name.startswith("pg")
        allowed = core | (web if in_web else set()) | (postgresql if in_pg else set())
        for name in sorted(third_party_imports(path)):
            dists = distributions(name)
            used |= dists
            if not dists & allowed:
                where = (
                    "dependencies or the web extra"
                    if in_web
                    else "dependencies or the postgresql extra"
                    if in_pg
                    else "[project] dependencies"
                )
                problems.append(f"{path.relative_to(ROOT)} imports {name} ({', '.join(sorted(dists))}): not in {where}")
    assert not problems, "\n".join(problems)
    # and nothing is declared that no module imports (a dead dependency costs every install)
    assert core | web | postgresql <= used, f"declared but never imported: {sorted((core | web | postgresql) - used)}"


def test_the_extras_split_web_test_docs_and_dev():
    extras = project()["optional-dependencies"]
    assert declared(extras["web"]) == WEB
    assert WEB.isdisjoint(declared(project()["dependencies"]))  # a cron-only install has no web stack
    assert "newsletter-digest[web,postgresql]" in extras["test"]  # the suite drives the web apps and PostgreSQL
    assert declared(extras["postgresql"]) == {"psycopg", "psycopg-pool"}
    assert declared(extras["postgresql"]).isdisjoint(declared(project()["dependencies"]))  # SQLite needs none
    assert {"mkdocs", "mkdocs-material"} <= declared(extras["docs"])
    assert "newsletter-digest[test,docs]" in extras["dev"] and {"ruff", "mypy"} <= declared(extras["dev"])
    assert not {"ruff", "mypy"} & declared(extras["test"])  # linters are a contributor's tools, not the tests'


def test_the_license_file_is_the_one_pyproject_names():
    assert project()["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n") and 'THE SOFTWARE IS PROVIDED "AS IS"' in text


#: Makes the web stack unimportable, as on a host where only `pip install newsletter-digest` ran.
WITHOUT_WEB = """
import sys

class NoWebStack:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"starlette", "uvicorn", "watchfiles", "email_validator"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoWebStack())
from digest.cli import main
main()
"""


def digest_without_web(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_WEB, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DIGEST_SECRET": "s" * 32},
    )


def test_cron_commands_run_without_the_web_stack(tmp_path):
    config = copy_sample(tmp_path)
    config.write_text(config.read_text(encoding="utf-8") + '\n[schedule]\ncron = "0 9 * * MON"\n', encoding="utf-8")
    for args in (["check"], ["build", "--at", AT], ["send", "--yes", "--at", AT], ["status"], ["schedule"]):
        result = digest_without_web(config, *args)
        assert result.returncode == 0, f"digest {' '.join(args)}: {result.stdout}{result.stderr}"
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 14  # 7 built + 7 "sent" to the outbox
    again = digest_without_web(config, "send", "--yes", "--at", AT)
    assert again.returncode == 0 and "7 x already sent in this edition" in again.stdout


@pytest.mark.parametrize("args", [["preview", "--no-open"], ["preview", "--get", "/"], ["serve"]])
def test_preview_and_serve_without_the_web_extra_say_how_to_add_it(tmp_path, args):
    result = digest_without_web(copy_sample(tmp_path), *args)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: digest {args[0]} needs the web extra (")
    assert line.endswith(WEB_HINT)


def source_copy(dest: Path) -> Path:
    """What an sdist would hold, without the repo's venv, caches and outputs."""
    junk = shutil.ignore_patterns(
        ".git", ".venv", "*.egg-info", "build", "site", "outbox", "state", "__pycache__", ".*_cache", ".hypothesis"
    )
    shutil.copytree(ROOT, dest, ignore=junk)
    shutil.rmtree(dest / "tests")
    return dest


@pytest.mark.slow
def test_a_fresh_cron_only_install_sends_and_points_preview_at_the_extra(tmp_path):
    """`pip install .` into a new venv: no web stack, the sample sends, preview says what to install,
    and after that install the preview renders."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(source_copy(tmp_path / "src"))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    python, digest = str(venv / "bin" / "python"), str(venv / "bin" / "digest")
    for name in sorted(n.replace("-", "_") for n in WEB):  # distribution names -> module names
        assert subprocess.run([python, "-c", f"import {name}"], capture_output=True, timeout=60).returncode != 0, name

    config = copy_sample(tmp_path / "news")
    sent = subprocess.run(
        [digest, "--config", str(config), "send", "--yes", "--at", AT], capture_output=True, text=True, timeout=300
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert len(list((tmp_path / "news" / "outbox").rglob("*.eml"))) == 7
    preview = subprocess.run(
        [digest, "--config", str(config), "preview", "--no-open"], capture_output=True, text=True, timeout=120
    )
    assert preview.returncode == 1 and preview.stderr.strip().endswith(WEB_HINT), preview.stderr

    licenses = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(*m.files('newsletter-digest'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert any(Path(f).name == "LICENSE" for f in licenses.stdout.split()), licenses.stdout

    # the line the preview printed, run as it says: then README's main job works (its page, no browser)
    web = subprocess.run(
        [python, "-m", "pip", "install", "-q", "newsletter-digest[web]"], capture_output=True, text=True, timeout=600
    )
    assert web.returncode == 0, web.stdout + web.stderr
    page = subprocess.run(
        [digest, "--config", str(config), "preview", "--at", AT, "--get", "/"], capture_output=True, timeout=300
    )
    assert page.returncode == 0 and b"The Weekly Circuit" in page.stdout, page.stderr
