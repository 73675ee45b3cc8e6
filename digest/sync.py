"""`digest sync`: SendGrid's suppression lists into the subscriber state.

Every list is read in full (paginated; transports/sendgrid/suppressions.py) before anything is
written, and each is then mirrored as a whole: an address SendGrid removed from its bounce list
can be sent to again, while what subscribers told `digest serve` stays. `digest send` runs this
first on the sendgrid transport, and a failed sync stops the send: sending to someone SendGrid
knows has left is worse than sending late.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from digest.config import Config
from digest.store import open_state
from digest.transports.sendgrid.client import api_key, make_client
from digest.transports.sendgrid.suppressions import read_suppressions

if TYPE_CHECKING:
    from digest.transports.sendgrid.client import SendGridAPIClient


@dataclass(frozen=True)
class SyncReport:
    counts: Mapping[str, int]  #: list name -> addresses on it now

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def sync(config: Config, *, client: SendGridAPIClient | None = None) -> SyncReport:
    """Pull every suppression list, then mirror them into the state in one transaction."""
    pool = None
    if client is None:
        sg = config.sendgrid
        client, pool = make_client(api_key(config, what="sync: "), host=sg.host, timeout=sg.timeout)
    try:
        lists = read_suppressions(client, config.sendgrid.asm_group_id)
    finally:
        if pool is not None:
            pool.close()
    with open_state(config) as state:
        state.replace_synced(lists)
    return SyncReport({name: len(entries) for name, entries in lists.items()})


def sync_before_send(
    config: Config, transport_name: str | None, *, dry_run: bool, sandbox: bool = False
) -> SyncReport | None:
    """The sync `digest send` runs first: on the sendgrid transport with a key, except in a dry run
    or a sandbox send (both record nothing, the state included, and deliver nothing)."""
    if (
        (transport_name or config.sending.transport) != "sendgrid"
        or dry_run
        or sandbox
        or not api_key(config, required=False)
    ):
        return None
    return sync(config)
