"""Running `digest` the way a hostile input meets it: in its own process, with a memory cap."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import digest

#: The `digest` package under test: the child process imports the same one as this process.
_PACKAGE_ROOT = str(Path(digest.__file__).resolve().parent.parent)

#: Far above what a run of the sample needs (it peaks near 50 MB resident), far below what a blow-up reaches.
MEMORY_CAP_MB = 768
#: Generous: a healthy run takes about a second; only a hang comes near it.
TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def _cap_memory() -> None:
    limit = MEMORY_CAP_MB << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_digest(config: Path, *args: str, env: dict[str, str] | None = None, readonly_as_user: bool = False) -> Result:
    """`python -m digest --config CONFIG ARGS...` in a subprocess capped at MEMORY_CAP_MB.

    `readonly_as_user`: run so that file permissions bind even when the tests run as root (inside
    a user namespace, where root is just the files' owner without CAP_DAC_OVERRIDE).
    """
    command = [sys.executable, "-m", "digest", "--config", str(config), *args]
    if readonly_as_user and os.geteuid() == 0:
        command = [_unshare(), "--user", *command]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        preexec_fn=_cap_memory,
        env={
            # A mutation run's stats phase (scripts/mutation.py) counts calls in its own process;
            # a child told to count would look for mutmut's config in the child's folder and stop.
            **{k: v for k, v in os.environ.items() if (k, v) != ("MUTANT_UNDER_TEST", "stats")},
            "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")])),
            **(env or {}),
        },
        cwd=config.parent,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def _unshare() -> str:
    import pytest

    path = shutil.which("unshare")
    if path is None or subprocess.run([path, "--user", "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root without user namespaces: file permissions cannot bind")
    return path
