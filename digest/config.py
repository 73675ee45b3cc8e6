"""Loading and validating the config file.

The schema (each section's options, their docs and rules) is config_schema.py; every name there is
re-exported here, so `from digest.config import Config, load_config` is the one way in. Relative
paths resolve from the config file's folder, so `digest --config other/digest.toml` works from
anywhere. What one option's rules cannot say (a zone, ranges across keys, the schedule's slots) is
checked here, after the whole file parsed.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.cadences import Cadences
from digest.config_rules import check_rules
from digest.config_schema import (
    DEFAULT_CONFIG_NAME,
    SECTIONS,
    ArchiveConfig,
    Config,
    ContentConfig,
    NewsletterConfig,
    OutputConfig,
    ScheduleConfig,
    SelectionConfig,
    SendGridConfig,
    SendingConfig,
    ServeConfig,
    SignupConfig,
    SmtpConfig,
    StateConfig,
    SubscribersConfig,
    TemplatesConfig,
    TrackingConfig,
    describe_schema,
    opt,
)
from digest.errors import ConfigError
from digest.schedule import validate_schedule

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "SECTIONS",
    "ArchiveConfig",
    "Config",
    "ContentConfig",
    "NewsletterConfig",
    "OutputConfig",
    "ScheduleConfig",
    "SelectionConfig",
    "SendGridConfig",
    "SendingConfig",
    "ServeConfig",
    "SignupConfig",
    "SmtpConfig",
    "StateConfig",
    "SubscribersConfig",
    "TemplatesConfig",
    "TrackingConfig",
    "describe_schema",
    "load_config",
    "opt",
    "parse_config",
    "read_toml",
    "validate_state_url",
]

#: A BCP 47 language tag, loosely: `en`, `fr-CA`, `zh-Hant-TW`. It lands in an HTML attribute.
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path string"}


def _check_value(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{where} must be a list of strings")
        return list(value)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    # bool is an int in Python; a `true` where a number belongs is still a mistake
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is Path:
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ConfigError(f"{where} must be {_TYPE_NAMES.get(hint, hint)}, got {value!r}")
    return value


def parse_config(data: dict[str, Any], *, base: Path, source: str = "config") -> Config:
    """Validate a parsed TOML mapping; relative paths resolve from `base`."""
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{name}] (known: {', '.join(SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        cls = SECTIONS[name]
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, raw in value.items():
            where = f"{source}: {name}.{key}"
            if key not in known:
                raise ConfigError(f"{where} is not a known key (known: {', '.join(sorted(known))})")
            kwargs[key] = _check_value(raw, hints[key], where)
            check_rules(kwargs[key], known[key], where)
        sections[name] = cls(**kwargs)
    config = Config(**sections)
    config = _resolve_paths(config, base)
    _validate(config, source)
    return config


def _resolve_paths(config: Config, base: Path) -> Config:
    updated: dict[str, Any] = {}
    for name in SECTIONS:
        section = getattr(config, name)
        hints = typing.get_type_hints(type(section))
        changes = {
            f.name: (base / Path(getattr(section, f.name))).resolve()
            for f in fields(section)
            if hints[f.name] in (Path, Path | None) and getattr(section, f.name) is not None
        }
        if changes:
            updated[name] = dataclasses.replace(section, **changes)
    return dataclasses.replace(config, **updated)


def _validate(config: Config, source: str) -> None:
    """What one key's rules cannot say (see config_rules.check_rules for those)."""
    try:
        ZoneInfo(config.newsletter.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{source}: newsletter.timezone {config.newsletter.timezone!r} is not an IANA time zone"
        ) from None
    s = config.selection
    if s.min_articles > s.max_articles:
        raise ConfigError(f"{source}: selection needs 0 <= min_articles <= max_articles and max_articles >= 1")
    if not _LANGUAGE.fullmatch(config.newsletter.language):
        raise ConfigError(f"{source}: newsletter.language must be a language tag like en or pt-BR")
    if config.templates.group_by not in ("", "tag"):
        raise ConfigError(f'{source}: templates.group_by must be "" or "tag"')
    c = config.content
    for url in c.feeds:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: content.feeds: {url!r} is not an http(s) URL")
    if c.feed_timeout <= 0:
        raise ConfigError(f"{source}: content needs feed_timeout > 0")
    validate_state_url(config.state.url, f"{source}: state.url")
    _validate_schedule(config, source)
    _validate_serve(config, source)
    _validate_engagement(config, source)
    _validate_signup(config, source)


def _validate_signup(config: Config, source: str) -> None:
    s = config.signup
    if not s.enabled:
        return
    if not (s.url or config.sending.unsubscribe_url):
        raise ConfigError(
            f"{source}: signup.enabled needs signup.url or sending.unsubscribe_url: confirmation links point there"
        )
    if s.captcha and not s.captcha_site_key:
        raise ConfigError(f"{source}: signup.captcha needs signup.captcha_site_key")


def _validate_engagement(config: Config, source: str) -> None:
    # each value's own range is its option's rule; this is the one that spans two sections
    if config.tracking.clicks and not config.sending.unsubscribe_url:
        raise ConfigError(
            f"{source}: tracking.clicks needs sending.unsubscribe_url: clicks go through `digest serve` next to it"
        )


def validate_state_url(url: str, where: str) -> None:
    """A PostgreSQL URL without a password: the config file is no place for one."""
    if not url:
        return
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{where} must be a postgresql:// URL (leave it empty for the SQLite files in state.path)")
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError as exc:
        raise ConfigError(f"{where} is not a valid URL: {exc}") from None
    if password is not None or "password=" in parts.query.lower():
        raise ConfigError(
            f"{where} holds a password: never put it in the config file; use PGPASSWORD, ~/.pgpass or the whole URL "
            "in DIGEST_DATABASE_URL"
        )


def _validate_serve(config: Config, source: str) -> None:
    s = config.serve
    if s.rate_limit and s.rate_burst < 1:
        raise ConfigError(f"{source}: serve.rate_burst must be at least 1 when serve.rate_limit is set")
    for host in s.trusted_hosts:
        # Starlette's TrustedHostMiddleware: a name, or one leading `*.` wildcard; no ports, no schemes
        wildcard = host.startswith("*.")
        name = host[2:] if wildcard else host
        if host != "*" and (not name or "*" in name or "/" in name or ":" in name or name != name.strip()):
            raise ConfigError(
                f"{source}: serve.trusted_hosts entry {host!r} must be a host name like news.example.com "
                "or *.example.com (no scheme, no port)"
            )


def _validate_schedule(config: Config, source: str) -> None:
    s = config.schedule
    if s.grace_hours <= 0:
        raise ConfigError(f"{source}: schedule.grace_hours must be more than 0")
    if s.local_time and config.sending.transport != "sendgrid":
        raise ConfigError(f'{source}: schedule.local_time needs sending.transport = "sendgrid" (it uses send_at)')
    try:
        if s.timezone:
            validate_schedule("@weekly", s.timezone)
        Cadences.of(config)  # every slot parses, fits its cadence and fires; the default has a slot
    except ConfigError as exc:
        raise ConfigError(f"{source}: schedule: {exc}") from None


def load_config(path: Path | str | None = None) -> Config:
    """Load and validate the config file (`./digest.toml` when no path is given)."""
    path = Path(path) if path else Path.cwd() / DEFAULT_CONFIG_NAME
    try:
        data = read_toml(path, ConfigError, " config")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config PATH)") from None
    config = parse_config(data, base=path.resolve().parent, source=str(path))
    return dataclasses.replace(config, source=path.resolve())


def read_toml(path: Path, error: type[Exception], what: str = "") -> dict[str, Any]:
    """A TOML file as a mapping (a UTF-8 BOM allowed); unreadable or invalid becomes `error`
    naming the file. A missing file raises FileNotFoundError: what that means is the caller's."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"{path}: cannot read{what}: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
