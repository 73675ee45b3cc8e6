"""The module map holds: no import cycle in digest/, and no module imports one from a layer above it.

The graph is built from the source (ast), every `import` counted wherever it stands: at the top,
inside a function (a lazy import still ties the two modules together) or under TYPE_CHECKING (a
type from a higher layer is a dependency on it too). docs/architecture.md draws the same layers:
a test here checks it has a row for each, tests/test_docs.py that it names every module.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "digest"

#: Bottom to top: a module may import from its own layer and the layers below it, never above.
#: Each module is named once (fnmatch patterns, dotted, without the `digest.` prefix).
LAYERS: dict[str, tuple[str, ...]] = {
    # what every layer uses: the records, the errors, the config and the calendar
    "base": (
        "errors", "models", "text", "flags", "ranking", "db", "fetch", "tokens", "csvfile",
        "config_schema", "config_rules", "config", "schedule", "cadences", "version", "timings",
    ),
    # reading the inputs: articles (files, feeds) and subscriber lists
    "inputs": ("signup", "content", "content_cache", "fields", "feeds", "subscribers", "importers", "signup.store"),
    # choosing each subscriber's articles (pure)
    "selection": ("selection",),
    # beside the pipeline: the ledger, the subscriber state, the events, and their engines
    "state": (
        "ledger", "suppressions", "events", "audience", "signup.merge", "statefiles",
        "store", "store.schema", "store.sqlite", "store.pg", "store.runlock", "store.state_sql", "store.events_sql",
        "store.sqlite_ledger", "store.pg_ledger", "store.sqlite_state", "store.pg_state",
        "store.sqlite_signups", "store.pg_signups",
    ),
    # templates -> one compiled edition -> each recipient's fields filled in
    "compose": ("compose", "assembly", "layout", "theme", "personalize", "links", "clicks"),
    # an Email as a MIME message
    "message": ("message",),
    # how a message leaves: the Transport protocol and its three implementations
    "transports": ("transports", "transports.*"),
    # one run at one moment: load, select, compose (open_run, build), and the segments it applies
    "run": ("pipeline", "segments"),
    # what the commands do: send, preview, serve, the scheduler and the rest
    "apps": (
        "send", "dispatch", "workers", "recovery", "sync", "check", "testsend", "scheduler",
        "report", "archive", "imports", "init", "blogs", "store.moving", "store.importing",
        "signup.flow", "signup.form", "signup.consent", "signup.notices", "signup.worker", "web", "web.*",
    ),
    # the front doors: the command line and the Python API
    "entry": ("", "__main__", "cli", "cli.*"),
}  # fmt: skip

#: Cycles known and owned elsewhere, with the reason; each one must still exist (see the test).
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _relative(module: str) -> str:
    return module.removeprefix("digest").removeprefix(".")


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The digest modules `name` imports (relative names within digest/)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(["digest", *base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from digest.store import pg` imports the module digest.store.pg, not digest.store's names
            targets = [
                f"{module}.{alias.name}" if _relative(f"{module}.{alias.name}") in known else module
                for alias in node.names
            ]
        for target in targets:
            if target != "digest" and not target.startswith("digest."):
                continue
            rel = _relative(target)
            while rel not in known and "." in rel:
                rel = rel.rsplit(".", 1)[0]
            if rel in known and rel != name:
                out.add(rel)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def layer_of(name: str) -> str | None:
    for layer, patterns in LAYERS.items():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return layer
    return None


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name or "__init__" for name in modules() if layer_of(name) is None)
    assert not unplaced, f"place these in LAYERS (tests/test_architecture.py) and docs/architecture.md: {unplaced}"


def test_there_is_no_import_cycle() -> None:
    found = [c for c in cycles(graph()) if c not in KNOWN_CYCLES]
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_the_known_cycles_still_exist() -> None:
    # an entry that no longer matches is stale: delete it, so the list only shrinks
    assert set(KNOWN_CYCLES) <= set(cycles(graph()))


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = []
    for name, targets in graph().items():
        mine = layer_of(name)
        for target in sorted(targets):
            theirs = layer_of(target)
            if mine is not None and theirs is not None and rank[theirs] > rank[mine]:
                upward.append(f"{name or '__init__'} ({mine}) imports {target} ({theirs})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_graph_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    # the checks above are only as good as the graph: an import inside a function or under
    # TYPE_CHECKING is an edge like any other
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from digest.config import Config\n"
        "def f():\n    from digest.store import pg\n    import digest.send\n"
        "from . import models\nfrom digest import text\n",
        encoding="utf-8",
    )
    assert imports_of("mod", source, {"config", "store", "store.pg", "send", "models", "text", "mod"}) == {
        "config",
        "store.pg",
        "send",
        "models",
        "text",
    }


@pytest.mark.parametrize("layer", list(LAYERS))
def test_each_layer_is_drawn_in_the_architecture_page(layer: str) -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert f"| {layer} |" in text, f"docs/architecture.md's module map has no row for the {layer!r} layer"


def test_no_test_module_imports_another() -> None:
    # shared helpers live in the *_support modules, conftest.py and sendgrid_fake/: a test file
    # that imports another runs that file's fixtures and module code as a side effect
    offenders = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[-1].startswith("test_")]
    assert not offenders, offenders


#: The libraries that are SendGrid's own: only digest/transports/sendgrid/ may import them.
SENDGRID_LIBRARIES = frozenset({"sendgrid", "python_http_client"})


def test_only_the_sendgrid_package_imports_sendgrids_libraries() -> None:
    # everything SendGrid-specific lives in one package (issue 14): the rest of digest/ goes
    # through it, so a SendGrid client or helper used anywhere else is knowledge leaking out
    outside = []
    for name, path in sorted(modules().items()):
        if name == "transports.sendgrid" or name.startswith("transports.sendgrid."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            else:
                continue
            outside += [f"{name or '__init__'}: {t}" for t in targets if t.split(".")[0] in SENDGRID_LIBRARIES]
    assert not outside, "SendGrid's libraries imported outside digest/transports/sendgrid/: " + ", ".join(outside)
