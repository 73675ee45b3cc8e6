"""The one exception family. The CLI turns any `DigestError` into a one-line message."""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1


class ConfigError(DigestError):
    """The config file is missing, unreadable, or has an unknown key or a wrong type."""


class SubscriberError(DigestError):
    """A subscriber list or one of its rows is invalid."""


class TemplateError(DigestError):
    """A template failed to render or compile."""


class SendError(DigestError):
    """A send could not go on (a refused API key, a locked ledger ...)."""


class NotSentError(SendError):
    """Nothing was handed over and retrying cannot help (a refused key, an untrusted certificate):
    the request's rows are failed, not ambiguous, and the run stops at once."""


class AuthError(NotSentError):
    """The provider refused our credentials."""


class FeedError(DigestError):
    """A feed could not be fetched or read. Never stops a run: it becomes a warning."""


class InitError(DigestError):
    """`digest init` cannot start a newsletter here (nothing to read, or a file it would write exists)."""


class LedgerError(DigestError):
    """The send ledger is unusable."""


class ExtraMissingError(DigestError):
    """A command needs an optional extra that is not installed (`pip install 'newsletter-digest[web]'`)."""


class UsageError(DigestError):
    """The command line asks for something that cannot be done (flags that do not go together,
    an `--at` that is no date): exit status 2, as for Click's own usage errors."""

    exit_code = 2
