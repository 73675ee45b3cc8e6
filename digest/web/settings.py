"""What every part of `digest serve` shares: its settings (the secrets kept out of every page and
log line) and the page templates. public.py builds the app from the views in public.py,
redirect.py and signup.py, which all take these."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import jinja2

from digest.config import Config
from digest.transports.sendgrid.webhook import WebhookKey

PAGES = jinja2.Environment(
    loader=jinja2.PackageLoader("digest.web", "templates"),
    autoescape=True,  # names, topics and addresses are untrusted
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class PublicSettings:
    """What the public app needs; the secrets stay in here and never reach a page or a log line."""

    config: Config
    secret: bytes
    webhook_key: WebhookKey | None
    now: Callable[[], float] = time.time
    #: secrets that still verify after a rotation (links are signed with `secret` only)
    previous_secrets: tuple[bytes, ...] = ()
    #: the rate limiters' clock
    monotonic: Callable[[], float] = time.monotonic

    @property
    def secrets(self) -> tuple[bytes, ...]:
        return (self.secret, *self.previous_secrets)

    def __repr__(self) -> str:
        return "PublicSettings(<secrets hidden>)"
