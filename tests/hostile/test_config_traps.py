"""Config values that used to pass `check` and then crash a build, inject a header or hang a run:
each is now one line at load naming the file and the key."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path

import pytest
from click.testing import CliRunner
from send_support import AT, copy_sample

from digest.cli import main
from digest.config import SECTIONS, Config, describe_schema, load_config
from digest.config_rules import check_rules

TRAPS = [
    # header injection: CR/LF in anything that ends up in a header
    ("newsletter", "from_email", '"news@example.com\\r\\nBcc: victim@example.org"', "must not contain a line break"),
    ("newsletter", "from_name", '"Weekly\\r\\nBcc: victim@example.org"', "must not contain a line break"),
    ("newsletter", "reply_to", '"editors@example.com\\nBcc: victim@example.org"', "must not contain a line break"),
    ("sending", "list_id", '"weekly.example.com\\r\\nX-Evil: 1"', "must not contain a line break"),
    ("newsletter", "name", '"Weekly\\u2028Digest"', "must not contain a line break"),
    ("sending", "test_subject_prefix", '"[TEST]\\u0000"', "must not contain the control character"),
    ("newsletter", "from_email", '"two@example.com, three@example.com"', "must be one email address"),
    ("sending", "unsubscribe_mailto", '"<leave@example.com>"', "must be one email address"),
    ("sending", "list_id", '"<weekly.example.com>"', "must look like weekly.example.com"),
    # format patterns: only the documented fields, whole
    ("content", "article_url", '"https://example.com/{0}"', "may only use the fields {slug} {year}"),
    ("content", "article_url", '"https://example.com/{}"', "may only use the fields"),
    ("content", "article_url", '"https://example.com/{slug.__class__}"', "got {slug.__class__}"),
    ("content", "article_url", '"https://example.com/{slug!r}"', "got {slug!r}"),
    ("content", "article_url", '"https://example.com/{slug:>9999}"', "got {slug:>9999}"),
    ("content", "article_url", '"https://example.com/{slug"', "for a literal brace"),
    ("content", "article_url", '"javascript:alert(1)//{slug}"', "must make an http:// or https:// URL"),
    # numbers that overflow a timedelta, sleep forever or make no sense
    ("selection", "window_days", "100000000", "selection.window_days must be between 1 and 3660, got 100000000"),
    ("selection", "catch_up_days", "-5", "must be between 0 and 3660"),
    ("selection", "max_articles", "1000000", "must be between 1 and 200"),
    ("sendgrid", "webhook_max_age", "-1", "sendgrid.webhook_max_age must be between 1 and 86400, got -1"),
    ("sendgrid", "timeout", "nan", "sendgrid.timeout must be a finite number"),
    ("sendgrid", "max_wait", "inf", "sendgrid.max_wait must be a finite number"),
    ("sendgrid", "max_retries", "1000000", "must be between 0 and 20"),
    ("sendgrid", "asm_group_id", "-1", "must be between 0 and 2147483647"),
    ("schedule", "grace_hours", "1e300", "must be between 0 and 8784"),
    ("smtp", "port", "70000", "smtp.port must be between 1 and 65535"),
    ("smtp", "timeout", "0", "smtp.timeout must be between 0.1 and 600"),
    ("templates", "max_subject_chars", "0", "must be between 10 and 998"),
    ("content", "excerpt_chars", "-1", "must be between 0 and 5000"),
    # names, hosts and URLs
    ("sending", "secret_env", '"MY SECRET"', "must be the name of an environment variable"),
    ("sending", "secret_env", '""', "sending.secret_env must not be empty"),
    ("smtp", "host", '"mail.example.com; rm -rf /"', "must be a host name"),
    ("newsletter", "site_url", '"ftp://example.com"', "must be an http:// or https:// URL"),
    ("newsletter", "logo_url", '"javascript:alert(1)"', "must be an http:// or https:// URL"),
    ("newsletter", "logo_url", '"https://example.com/logo.png\\" onerror=\\"alert(1)"', "must not contain spaces"),
    ("sending", "unsubscribe_url", '"https://news.example.com/ü"', "must be ASCII"),
    ("sending", "transport", '"carrier-pigeon"', "sending.transport must be outbox or sendgrid or smtp"),
    ("sendgrid", "categories", "[" + ", ".join(f'"c{i}"' for i in range(11)) + "]", "holds at most 10 entries"),
    ("selection", "exclude_tags", '["ai\\n"]', "must not contain a line break"),
    ("newsletter", "intro", '"' + "x" * 6000 + '"', "is 6000 characters long; at most 5000"),
    ("content", "path", '"content\\u0000x"', "must not contain the control character"),
]


def _without_section(text: str, section: str) -> str:
    """The sample's digest.toml without [section], so the trap's table is the only one."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = line.strip() == f"[{section}]"
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    TRAPS,
    # ids of plain characters: one cut after a backslash could not be named back (mutmut names tests)
    ids=[f"{t[0]}.{t[1]}=" + re.sub(r"[^\w.@:-]+", "_", t[2][:20]) for t in TRAPS],
)
def test_a_bad_value_is_one_line_naming_the_file_and_the_key(
    tmp_path: Path, section: str, key: str, value: str, message: str
) -> None:
    config = copy_sample(tmp_path)
    text = _without_section(config.read_text(encoding="utf-8"), section)
    config.write_text(text + f"\n[{section}]\n{key} = {value}\n", encoding="utf-8")
    for command in (["check", "--at", AT], ["build", "--at", AT], ["send", "--yes", "--at", AT]):
        result = CliRunner().invoke(main, ["--config", str(config), *command])
        assert result.exit_code == 1, result.output
        (line,) = result.output.splitlines()
        assert line.startswith(f"error: {config}: {section}.{key} ") and message in line, line
    assert not (tmp_path / "outbox").exists() and not (tmp_path / "state").exists()


def test_every_number_is_bounded_and_every_default_meets_its_own_rules() -> None:
    defaults = Config()
    for name, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            where = f"{name}.{spec.name}"
            if hints[spec.name] in (int, float):
                assert spec.metadata.get("bounds"), f"{where} has no bounds"
            value = getattr(getattr(defaults, name), spec.name)
            if value is not None:
                check_rules(value if not isinstance(value, Path) else str(value), spec, where)
    assert len(describe_schema()) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values())


def _extreme_config(tmp_path: Path, end: int) -> Path:
    """The sample with every number at one end of its bounds (`end` 0: lowest, 1: highest)."""
    config = copy_sample(tmp_path)
    tables: dict[str, list[str]] = {}
    for name, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            bounds = spec.metadata.get("bounds")
            if bounds is None or name == "sending" and spec.name == "concurrency" and end:
                continue
            value = bounds[end]
            if hints[spec.name] is float and value == 0:
                value = 0.01  # some durations must be more than 0 (grace_hours, feed_timeout)
            if hints[spec.name] is int:
                value = int(value)
            tables.setdefault(name, []).append(f"{spec.name} = {value!r}")
    text = config.read_text(encoding="utf-8")
    for name in tables:
        text = _without_section(text, name)
    text += "".join(f"\n[{name}]\n" + "\n".join(lines) + "\n" for name, lines in tables.items())
    config.write_text(text, encoding="utf-8")
    return config


@pytest.mark.parametrize("end", [0, 1], ids=["lowest", "highest"])
def test_every_number_at_either_end_of_its_bounds_still_runs(tmp_path: Path, end: int) -> None:
    """The bounds are safe: a config at their edges loads, checks and builds without a crash."""
    config = _extreme_config(tmp_path, end)
    loaded = load_config(config)
    assert all(math.isfinite(v) for v in (loaded.sendgrid.timeout, loaded.schedule.grace_hours))
    for command in (["check", "--at", AT], ["build", "--at", AT]):
        result = CliRunner().invoke(main, ["--config", str(config), *command])
        assert "internal error" not in result.output and result.exit_code in (0, 1), result.output
    assert "built" in result.output
