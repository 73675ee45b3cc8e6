"""Mutation testing stays configured for the core modules and documented (issue 20).

The mutation run itself is slow and runs outside the test suite (scripts/mutation.py); these checks
keep its configuration, its list of equivalent mutants and its documentation from drifting.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib

from conftest import ROOT

#: The core modules issue 20 names.
CORE = {
    "selection",
    "ledger",
    "send",
    "compose",
    "personalize",
    "tokens",
    "web/public",
    "transports",
    "subscribers",
    "suppressions",
    "schedule",
}


def _script():
    spec = importlib.util.spec_from_file_location("mutation", ROOT / "scripts" / "mutation.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_core_module_is_mutated_and_scored() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    mutated = {p.removeprefix("digest/").removesuffix(".py").removesuffix("/*") for p in config["only_mutate"]}
    assert CORE <= mutated
    assert all((ROOT / p.replace("*", "__init__.py")).exists() for p in config["only_mutate"])
    assert CORE <= set(_script().CORE)


def test_mutant_names_map_to_their_module() -> None:
    module_of = _script().module_of
    assert module_of("digest.selection.x_select__mutmut_3") == "digest.selection"
    assert module_of("digest.web.public.xǁPublicViewsǁunsubscribe__mutmut_12") == "digest.web.public"
    assert module_of("digest.transports.sendgrid.x_classify__mutmut_1") == "digest.transports.sendgrid"


def test_each_equivalent_mutant_says_why_in_one_line() -> None:
    data = tomllib.loads((ROOT / "tests" / "mutation_equivalents.toml").read_text(encoding="utf-8"))
    names = set()
    for entry in data.get("equivalent", []):
        assert set(entry) == {"mutant", "diff", "reason"}, entry
        assert entry["mutant"].startswith("digest.") and entry["mutant"] not in names
        assert entry["diff"].startswith(("+", "-")) and "\n" not in entry["diff"]
        assert 10 <= len(entry["reason"]) <= 200 and "\n" not in entry["reason"], entry["mutant"]
        names.add(entry["mutant"])
    for pattern in data.get("equivalent_pattern", []):
        assert set(pattern) == {"diff", "reason"}, pattern
        re.compile(pattern["diff"])
        assert 10 <= len(pattern["reason"]) <= 200 and "\n" not in pattern["reason"]


def test_the_run_and_its_score_are_documented() -> None:
    page = (ROOT / "docs" / "mutation.md").read_text(encoding="utf-8")
    assert "scripts/mutation.py" in page and "| module |" in page
    assert "docs/mutation.md" in (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert "mutation.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "\nmutation:\n" in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_a_full_run_leaves_out_equivalents_listed_by_name_while_their_diff_matches() -> None:
    """Each equivalent mutant would run every test that reaches it (minutes) for a verdict already
    written down; once the code under it changes (its diff no longer matches) it is tested again."""
    script = _script()
    known, _ = script.equivalents()
    listed = next(name for name in known if name.startswith("digest.tokens."))
    found = {listed: None, "digest.tokens.x_other__mutmut_1": 1, "digest.selection.x_select__mutmut_1": None}

    def show(diff_line: str):
        return lambda mutant: f"--- digest/tokens.py\n+++ digest/tokens.py\n{diff_line}\n"

    assert script.to_run(["tokens"], found, show(known[listed]["diff"])) == (["digest.tokens.x_other__mutmut_1"], 1)
    # the code changed under the entry: the mutant is tested like any other
    assert script.to_run(["tokens"], found, show("+    something else")) == (
        sorted([listed, "digest.tokens.x_other__mutmut_1"]),
        0,
    )
    assert script.to_run(["selection", "tokens"], found, show(known[listed]["diff"]))[0] == [
        "digest.selection.x_select__mutmut_1",
        "digest.tokens.x_other__mutmut_1",
    ]
