"""The documentation: the MkDocs site builds with --strict, every relative link in README and the
docs resolves, the navigation lists every page, the configuration reference is the one generated
from the schema, and the architecture page names every module."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from conftest import ROOT, require

DOCS = ROOT / "docs"
#: Pages read on GitHub as well as (through snippets) on the site.
ROOT_PAGES = ("README.md", "CONTRIBUTING.md", "CHANGELOG.md")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.I)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.M)


def pages() -> list[Path]:
    return [ROOT / name for name in ROOT_PAGES] + sorted(DOCS.rglob("*.md"))


def without_code_blocks(text: str) -> str:
    return re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)


def prose(text: str) -> str:
    """The text without code blocks and inline code, where link syntax is only an example."""
    return re.sub(r"`[^`\n]*`", "", without_code_blocks(text))


def expanded(page: Path, root: Path) -> str:
    """A page with its `--8<--` snippets (paths from the repository root) included, as MkDocs renders it."""
    text = page.read_text(encoding="utf-8")
    return SNIPPET.sub(lambda m: (root / m.group(1)).read_text(encoding="utf-8"), text)


def slug(heading: str) -> str:
    """Python-Markdown's toc slug of a heading, after its inline markup is dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path, root: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", without_code_blocks(expanded(page, root)), re.M):
        name, n = slug(heading), 0
        while (name if n == 0 else f"{name}_{n}") in found:  # toc numbers repeated headings
            n += 1
        found.add(name if n == 0 else f"{name}_{n}")
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    text = prose(page.read_text(encoding="utf-8"))
    for target in LINK.findall(text) + HTML_LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}: ({target})"
        if not resolved.exists():
            problems.append(f"{where}: {path} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved, root):
            problems.append(f"{where}: no heading with the anchor #{anchor} in {resolved.relative_to(root)}")
    return problems


def test_every_relative_link_resolves():
    problems = [problem for page in pages() for problem in broken_links(page)]
    assert not problems, "\n".join(problems)


def test_the_link_check_catches_a_broken_link_and_a_broken_anchor(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Real `section`\n", encoding="utf-8")
    page.write_text(
        '[a](other.md#real-section) [b](missing.md) [c](other.md#nope) `[d](x.md)` <img src="gone.png" alt="">\n'
    )
    problems = "\n".join(broken_links(page, tmp_path))
    assert "missing.md does not exist" in problems and "#nope" in problems and "gone.png" in problems
    assert "real-section" not in problems and "x.md" not in problems


def nav_pages(nav: list) -> list[str]:
    found = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        found += nav_pages(value) if isinstance(value, list) else [value]
    return found


def test_the_navigation_lists_every_page_once():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["theme"]["name"] == "material"
    listed = nav_pages(config["nav"])
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk
    for page in ("previewing.md", "deployment.md", "architecture.md", "configuration.md"):
        assert page in listed


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    """The site as CI builds it: any warning (a broken link or anchor, a page outside the nav) fails."""
    require("mkdocs", "pip install -e '.[docs]'")
    require("material", "pip install -e '.[docs]'")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # mkdocs-material's banner about its future, not ours
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "md-header" in (site / "index.html").read_text(encoding="utf-8")  # the material theme
    for page in ("getting-started", "previewing", "deployment", "architecture", "configuration"):
        assert (site / page / "index.html").exists(), page
    # the root files are included, not copied: the site shows them as they are
    assert "Unreleased" in (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "make test-quick" in (site / "contributing" / "index.html").read_text(encoding="utf-8")


def configref() -> ModuleType:
    spec = importlib.util.spec_from_file_location("configref", ROOT / "scripts" / "configref.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_is_generated_from_the_schema():
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert configref().updated(page) == page, (
        "docs/configuration.md differs from the config schema: run `python scripts/configref.py` and commit it"
    )


def test_the_generator_writes_every_option_from_the_schema_not_from_the_page():
    from digest.config import SECTIONS

    ref = configref()
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    stale = page.replace("| `excerpt_chars` | integer | `280` |", "| `excerpt_chars` | integer | `999` |")
    assert stale != page and ref.updated(stale) == page
    hand_written = page.split(ref.BEGIN)[0]
    assert ref.updated(hand_written + ref.BEGIN + "\n" + ref.END + "\n") == page
    generated = ref.render()
    for section in SECTIONS:
        assert f"\n## [{section}]\n" in generated


def test_the_generator_check_mode_says_which_command_regenerates(tmp_path, capsys, monkeypatch):
    ref = configref()
    page = tmp_path / "configuration.md"
    page.write_text(f"# Configuration\n\n{ref.BEGIN}\n{ref.END}\n", encoding="utf-8")
    monkeypatch.setattr(ref, "PAGE", page)
    monkeypatch.setattr(ref, "ROOT", tmp_path)
    assert ref.main(["--check"]) == 1
    assert "run `python scripts/configref.py`" in capsys.readouterr().err
    assert ref.main([]) == 0 and ref.main(["--check"]) == 0
    assert "## [newsletter]" in page.read_text(encoding="utf-8")


def test_the_architecture_page_names_every_module():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    missing = [
        rel
        for p in sorted((ROOT / "digest").rglob("*.py"))
        if p.name != "__init__.py" and f"`{(rel := p.relative_to(ROOT / 'digest').as_posix())}`" not in text
    ]
    assert not missing, f"docs/architecture.md's module map lacks {missing}"
