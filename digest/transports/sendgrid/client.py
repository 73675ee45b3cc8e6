"""The one place digest makes a SendGrid client: the API key from the environment, and the
official client with keep-alive connections (pool.py) and a timeout (the library's default is to
wait forever). The transport and `digest sync` both get theirs here; `SendGridAPIClient` is
exported for the annotations of code outside this package, which imports no SendGrid library."""

from __future__ import annotations

import os

from sendgrid import SendGridAPIClient

from digest.config import Config
from digest.errors import SendError
from digest.transports.sendgrid.pool import ConnectionPool, pooled

__all__ = ["SendGridAPIClient", "api_key", "make_client"]


def api_key(config: Config, *, required: bool = True, what: str = "") -> str:
    """The API key from the environment variable the config names; never from the file."""
    key = os.environ.get(config.sendgrid.api_key_env, "").strip()
    if not key and required:
        raise SendError(
            f"{what}the SendGrid API key is not set: put it in the {config.sendgrid.api_key_env} environment variable"
        )
    return key


def make_client(key: str, *, host: str, timeout: float, keep: int = 8) -> tuple[SendGridAPIClient, ConnectionPool]:
    """The official client for `host`, and the pool of its keep-alive connections (at most `keep`
    idle; close it when done)."""
    client = SendGridAPIClient(key, host=host)
    return client, pooled(client, timeout=timeout, pool=ConnectionPool(keep=keep))
