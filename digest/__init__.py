"""newsletter-digest: a personal weekly email digest for each subscriber, sent exactly once.

The Python API, the library the `digest` command is thin over (docs/api.md):

    import digest

    config = digest.load_config("digest.toml")
    run = digest.open_run(config, at)                    # one edition at one moment
    report = digest.build(run, out_dir)                  # each subscriber's .eml, as it would be sent
    problems = digest.check_run(run)                     # what `digest check` lists
    report = digest.send_digest(config, at, digest.SendOptions())   # `digest send`, exactly once

Importing `digest` is light: the errors and the version only. Every other name is imported on
first use (PEP 562), so `import digest` (and `digest --help`) does not load Jinja2, the MJML
compiler or the SendGrid client.

Three verbs carry a noun (`check_run`, `send_digest`, `sync_suppressions`) because `digest.check`,
`digest.send` and `digest.sync` are modules: importing one rebinds the package attribute of that
name to the module, so a function of the same name would silently stop being there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from digest.errors import (
    AuthError,
    ConfigError,
    DigestError,
    ExtraMissingError,
    FeedError,
    InitError,
    LedgerError,
    NotSentError,
    SendError,
    SubscriberError,
    TemplateError,
    UsageError,
)
from digest.version import __version__

if TYPE_CHECKING:
    from digest.check import check as check_run
    from digest.config import Config, load_config
    from digest.models import Article, Edition, Email, Problem, Selection, Subscriber
    from digest.pipeline import BuildReport, Run, build, open_run
    from digest.send import SendOptions, SendReport, StatusReport, status
    from digest.send import send as send_digest
    from digest.sync import SyncReport
    from digest.sync import sync as sync_suppressions
    from digest.testsend import SendTestReport, send_tests

#: name -> (module, attribute): what `__getattr__` imports on first use
_LAZY: dict[str, tuple[str, str]] = {
    "load_config": ("digest.config", "load_config"),
    "Config": ("digest.config", "Config"),
    "open_run": ("digest.pipeline", "open_run"),
    "Run": ("digest.pipeline", "Run"),
    "build": ("digest.pipeline", "build"),
    "BuildReport": ("digest.pipeline", "BuildReport"),
    "check_run": ("digest.check", "check"),
    "send_digest": ("digest.send", "send"),
    "SendOptions": ("digest.send", "SendOptions"),
    "SendReport": ("digest.send", "SendReport"),
    "status": ("digest.send", "status"),
    "StatusReport": ("digest.send", "StatusReport"),
    "sync_suppressions": ("digest.sync", "sync"),
    "SyncReport": ("digest.sync", "SyncReport"),
    "send_tests": ("digest.testsend", "send_tests"),
    "SendTestReport": ("digest.testsend", "SendTestReport"),
    "Article": ("digest.models", "Article"),
    "Edition": ("digest.models", "Edition"),
    "Email": ("digest.models", "Email"),
    "Problem": ("digest.models", "Problem"),
    "Selection": ("digest.models", "Selection"),
    "Subscriber": ("digest.models", "Subscriber"),
}

__all__ = [
    "__version__",
    # config and one run
    "load_config",
    "Config",
    "open_run",
    "Run",
    "build",
    "BuildReport",
    "check_run",
    # sending
    "send_digest",
    "SendOptions",
    "SendReport",
    "status",
    "StatusReport",
    "sync_suppressions",
    "SyncReport",
    "send_tests",
    "SendTestReport",
    # the records that flow through a run
    "Article",
    "Edition",
    "Email",
    "Problem",
    "Selection",
    "Subscriber",
    # the exception family
    "DigestError",
    "ConfigError",
    "SubscriberError",
    "TemplateError",
    "SendError",
    "NotSentError",
    "AuthError",
    "FeedError",
    "InitError",
    "LedgerError",
    "ExtraMissingError",
    "UsageError",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'digest' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
