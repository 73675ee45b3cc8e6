#!/usr/bin/env python3
"""Mutation testing of the core modules with mutmut, and the score per module.

    .venv/bin/pip install -e '.[test,mutation]'
    .venv/bin/python scripts/mutation.py                      # every core module (hours on 2 cores)
    .venv/bin/python scripts/mutation.py selection tokens     # some modules
    .venv/bin/python scripts/mutation.py --report             # the score of what was run, no run

mutmut (configured in pyproject.toml, [tool.mutmut]) copies the sources and tests into mutants/,
changes one thing at a time (a `<` into `<=`, a constant, a string, a dropped argument ...) and runs
the tests that reach the changed function; a mutant is killed when a test fails. Results are kept in
mutants/ between runs: a rerun tests only what changed.

The score of a module is killed / (mutants - equivalent). Equivalent mutants change nothing a user
could observe; each is listed in tests/mutation_equivalents.toml with its diff line and a one-line
reason (an entry whose diff no longer matches is reported as stale). Timeouts count as killed (a
test noticed: it never finished). Surviving mutants are printed with their diffs. Not part of the
normal test run: it is slow. Figures are recorded in docs/mutation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.toml"
#: The core modules of issue 20, as mutmut names them (dotted, under digest.).
CORE = {
    "selection": "digest.selection",
    "tokens": "digest.tokens",
    "schedule": "digest.schedule",
    "web/public": "digest.web.public",
    "text": "digest.text",
    "layout": "digest.layout",
    "personalize": "digest.personalize",
    "compose": "digest.compose",
    "ledger": "digest.ledger",
    "send": "digest.send",
    "transports": "digest.transports",
    "subscribers": "digest.subscribers",
    "suppressions": "digest.suppressions",
}
#: -9 (SIGKILL; mutmut calls it "segfault"): a runaway test stopped by mutmut's hard CPU limit or
#: out of memory, such as the endless loop of digest.personalize.x__attribute_at__mutmut_20.
KILLED = {
    1: "killed",
    3: "killed",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    -9: "timeout",
}
STATUS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 37: "type check", None: "not checked"}


def module_of(mutant: str) -> str:
    """`digest.web.public.xǁPublicViewsǁunsubscribe__mutmut_3` -> `digest.web.public`."""
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def results() -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for meta in (ROOT / "mutants").rglob("*.py.meta"):
        found.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    return found


def status(code: int | None) -> str:
    return KILLED.get(code, STATUS.get(code, "suspicious")) if code is not None else "not checked"


def diff_of(mutant: str) -> str:
    out = subprocess.run(
        [str(Path(sys.executable).with_name("mutmut")), "show", mutant],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return "\n".join(
        line for line in out.splitlines() if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
    )


def equivalents() -> tuple[dict[str, dict[str, str]], list[dict[str, str]]]:
    """Equivalent mutants by name, and classes of them by a pattern of their added line."""
    if not EQUIVALENTS.exists():
        return {}, []
    data = tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8"))
    return {e["mutant"]: e for e in data.get("equivalent", [])}, data.get("equivalent_pattern", [])


def is_equivalent(diff: str, entry: dict[str, str] | None, patterns: list[dict[str, str]]) -> bool:
    if entry is not None:
        return entry["diff"] in diff.splitlines()
    added = [line for line in diff.splitlines() if line.startswith("+")]
    return bool(added) and any(all(re.search(p["diff"], line) for line in added) for p in patterns)


def recheck(modules: list[str]) -> list[str]:
    """Forget the verdicts that were not kills (so an interrupted recheck leaves them "not checked")
    and return those mutants' names: the next run tests exactly them again, after new tests.

    A survivor listed as equivalent by name keeps its verdict: no test can kill it, and a survivor
    runs every test that reaches it (minutes each). Its entry is still checked at every report, and
    mutmut itself tests a mutant again when its code changes."""
    prefixes = tuple(CORE[m] for m in modules)
    known, _ = equivalents()
    again: list[str] = []
    for meta in (ROOT / "mutants").rglob("*.py.meta"):
        data = json.loads(meta.read_text(encoding="utf-8"))
        codes = data["exit_code_by_key"]
        for mutant, code in codes.items():
            if status(code) == "survived" and mutant in known:
                continue
            if module_of(mutant).startswith(prefixes) and status(code) not in ("killed", "timeout"):
                codes[mutant] = None
                again.append(mutant)
        meta.write_text(json.dumps(data), encoding="utf-8")
    return sorted(again)


def to_run(modules: list[str], found: dict[str, int | None], show: Callable[[str], str]) -> tuple[list[str], int]:
    """The mutants of `modules` a full run tests, and how many it leaves out: those listed as
    equivalent by name whose diff still matches (`show` gives a mutant's diff).

    An equivalent mutant is one no test can kill, so testing it runs every test that reaches it,
    minutes each, to learn what is already written down. An entry whose diff no longer matches
    (the code changed) is tested like any other mutant, and reported stale if it survives."""
    prefixes = tuple(CORE[m] for m in modules)
    known, _ = equivalents()
    names, skipped = [], 0
    for mutant in sorted(found):
        if not module_of(mutant).startswith(prefixes):
            continue
        entry = known.get(mutant)
        if entry is not None and is_equivalent(show(mutant), entry, []):
            skipped += 1
            continue
        names.append(mutant)
    return names, skipped


def prepare(max_children: int) -> bool:
    """Make the mutants and map tests to functions (a full test run, kept between runs), running
    no mutant: mutmut does both at the start of any run, and one naming no mutant stops right
    after them with an assertion that nothing matched."""
    print("making mutants and mapping tests to functions (mutmut runs the suite once) ...", flush=True)
    command = [str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", str(max_children)]
    done = subprocess.run(
        [*command, "digest.no_such_module.*"],
        cwd=ROOT,
        env={**os.environ, "CI": ""},
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode == 0 or "but nothing matches" not in done.stdout + done.stderr:
        print(done.stdout + done.stderr, file=sys.stderr)
        print("mutmut could not make the mutants (see above)", file=sys.stderr)
        return False
    return True


def run(names: list[str], max_children: int) -> int:
    """mutmut tests every mutant matching a name or pattern given, whatever its earlier verdict."""
    command = [str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", str(max_children), *names]
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env={**os.environ, "CI": ""}, check=False).returncode


def report(modules: list[str]) -> int:
    found = results()
    known, patterns = equivalents()
    rows = []
    stale = []
    survivors: list[tuple[str, str]] = []
    for name in modules:
        prefix = CORE[name]
        mine = {k: v for k, v in found.items() if module_of(k) == prefix or module_of(k).startswith(prefix + ".")}
        counts = Counter(status(v) for v in mine.values())
        if not mine or counts["not checked"] == len(mine):
            rows.append(f"| {name} | not measured | | | | |")
            continue
        equivalent = 0
        for mutant, code in sorted(mine.items()):
            if status(code) == "not checked" and mutant in known:
                # a full run leaves out the equivalents listed by name (see to_run): still one,
                # if its diff matches; otherwise it is simply not checked yet
                if is_equivalent(diff_of(mutant), known[mutant], []):
                    equivalent += 1
                    counts["not checked"] -= 1
                continue
            if status(code) not in ("killed", "timeout", "not checked"):
                diff = diff_of(mutant)
                entry = known.get(mutant)
                if is_equivalent(diff, entry, patterns):
                    equivalent += 1
                    continue
                if entry:
                    stale.append(mutant)
                survivors.append((mutant, f"{status(code)}\n{diff}"))
        checked = len(mine) - counts["not checked"]
        killed = counts["killed"] + counts["timeout"]
        score = killed / max(checked - equivalent, 1)
        rows.append(
            f"| {name} | {checked} | {killed} | {equivalent} | {checked - killed - equivalent} | {score:.1%} |"
            + (f" ({counts['not checked']} not checked)" if counts["not checked"] else "")
        )
    print(f"\nMutation score, {date.today().isoformat()} (mutmut, scripts/mutation.py)\n")
    print("| module | mutants | killed | equivalent | surviving | score |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    for mutant, text in survivors:
        print(f"\n## {mutant}: {text}")
    for mutant in stale:
        print(f"\nstale entry in {EQUIVALENTS.name} (the mutant changed): {mutant}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"core modules (default: all): {', '.join(CORE)}")
    parser.add_argument("--report", action="store_true", help="only print the score of what was run")
    parser.add_argument("--recheck", action="store_true", help="test surviving mutants again (after new tests)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    modules = args.modules or list(CORE)
    unknown = [m for m in modules if m not in CORE]
    if unknown:
        parser.error(f"not a core module: {', '.join(unknown)} (one of {', '.join(CORE)})")
    if args.report:  # only the report: a recheck's reset would show its mutants as not checked
        return report(modules)
    # Names, not `digest.<module>.*` patterns: mutmut tests every mutant a pattern matches again,
    # so a recheck names exactly the mutants that were not killed.
    if args.recheck:
        names = recheck(modules)
        print(f"{len(names)} mutants to test again", flush=True)
    else:
        if not prepare(args.max_children):
            return 1
        names, skipped = to_run(modules, results(), diff_of)
        print(f"{len(names)} mutants to test; {skipped} listed as equivalent left out", flush=True)
    if names and run(names, args.max_children) != 0:
        print("mutmut stopped with an error (see above)", file=sys.stderr)
        return 1
    return report(modules)


if __name__ == "__main__":
    sys.exit(main())
