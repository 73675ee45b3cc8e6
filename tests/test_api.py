"""The Python API: `import digest` is the front door, light to import, and docs/api.md's examples run.

This module uses nothing of the package but `import digest`, as a script would.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, copy_sample

import digest

API_PAGE = ROOT / "docs" / "api.md"


def examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", API_PAGE.read_text(encoding="utf-8"), flags=re.M | re.S)


def run_example(code: str, folder: Path) -> str:
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(API_PAGE), "exec"), {"__name__": "__main__"})  # noqa: S102 - our own docs
    finally:
        os.chdir(cwd)
    return out.getvalue()


def test_every_name_in_all_is_there_and_listed_by_dir() -> None:
    for name in digest.__all__:
        assert getattr(digest, name) is not None, name
    assert set(digest.__all__) <= set(dir(digest))
    assert len(digest.__all__) == len(set(digest.__all__))


def test_the_front_door_names_what_the_cli_calls() -> None:
    # the verbs a script needs, and the one exception family
    for name in ("load_config", "open_run", "build", "check_run", "send_digest", "SendOptions", "status"):
        assert callable(getattr(digest, name)), name
    for name in ("sync_suppressions", "send_tests"):
        assert callable(getattr(digest, name)), name
    errors = [getattr(digest, n) for n in digest.__all__ if n.endswith("Error")]
    assert len(errors) == 12
    assert all(issubclass(e, digest.DigestError) for e in errors)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        digest.nothing_here  # noqa: B018


def test_importing_digest_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, digest\n"
        "heavy = ('jinja2', 'mjml', 'premailer', 'sendgrid', 'starlette', 'frontmatter', 'digest.pipeline')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_api_verbs_survive_their_modules_being_imported() -> None:
    # digest.send, digest.check and digest.sync are modules: a function of the same name on the
    # package would be replaced by the module the moment anything imports it
    code = (
        "import importlib, digest\n"
        "for m in ('digest.send', 'digest.check', 'digest.sync', 'digest.pipeline', 'digest.cli'):\n"
        "    importlib.import_module(m)\n"
        "print(digest.send_digest.__module__, digest.check_run.__module__, digest.sync_suppressions.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["digest.send", "digest.check", "digest.sync"]


def test_the_api_page_has_its_two_examples() -> None:
    found = examples()
    assert len(found) == 2
    assert "run.email(selection)" in found[0]
    assert "digest.send_digest(" in found[1]


def test_the_one_subscriber_example_runs_and_builds_that_email(tmp_path: Path) -> None:
    out = run_example(examples()[0], copy_sample(tmp_path).parent)
    lines = out.splitlines()
    assert any(re.fullmatch(r"\d+ articles, \d+ bytes of HTML", line) for line in lines), out
    assert "ada@example.com.eml" in lines
    assert (tmp_path / "outbox" / "preview" / "ada@example.com.eml").is_file()
    assert lines[-1] == "0 errors"


def test_the_send_example_sends_each_subscriber_once(tmp_path: Path) -> None:
    out = run_example(examples()[1], copy_sample(tmp_path).parent)
    planned = int(re.search(r"would send (\d+) email", out)[1])  # type: ignore[index]
    accepted = int(re.search(r": (\d+) accepted, \d+ skipped", out)[1])  # type: ignore[index]
    assert planned == accepted > 0
    assert "sent again: 0 accepted" in out
    assert f"{{'accepted': {accepted}}}" in out
    assert "error: no-such-file.toml: config file not found" in out
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == accepted


def test_send_options_from_config_takes_the_configs_defaults_and_the_flags_given(tmp_path: Path) -> None:
    # digest send and the scheduler both build their options here: the config's sending and
    # sendgrid defaults, then each flag that was given (None: not given)
    path = copy_sample(tmp_path)
    with path.open("a", encoding="utf-8") as f:
        f.write(
            '\n[sending]\non_ambiguous = "resend"\nconcurrency = 7\n'
            "\n[sendgrid]\nscheduled_mode = true\nsend_at_delay_minutes = 20\n"
        )
    config = digest.load_config(path)
    options = digest.SendOptions.from_config(config)
    assert (options.on_ambiguous, options.concurrency, options.scheduled, options.send_at_delay) == (
        "resend",
        7,
        True,
        1200,
    )
    assert options.dry_run is False and options.workers == 1 and options.only == ()
    flags = digest.SendOptions.from_config(config, on_ambiguous=None, scheduled=False, dry_run=True, workers=3)
    assert (flags.on_ambiguous, flags.scheduled, flags.dry_run, flags.workers) == ("resend", False, True, 3)
    assert flags.concurrency == 7 and flags.send_at_delay == 1200
