"""First-party click links (`[tracking] clicks`): article links through `digest serve`'s /r/.

A tracked link is `<base>/r/<link token>?u=<reader token>`:

- the link token (tokens.make_link_token) names the edition and the article, signed: the same for
  every reader, so it is compiled once per edition with the article's block;
- the reader token is the subscriber's opaque id signed for the "click" purpose (never the
  address, and good for nothing but counting a click). It is a per-recipient field
  (`recipient.click_token`), filled in like the unsubscribe link, so the fast path stays exact.

`digest serve` redirects only to the URL recorded for that article in that edition (events.py):
a forged or altered token, or an article the edition did not carry, is a 404, never a redirect to
wherever the link says.
"""

from __future__ import annotations

from functools import cached_property
from urllib.parse import urljoin

from digest.config import Config
from digest.personalize import RecipientView
from digest.tokens import make_link_token, secret_from_env


def click_base(config: Config) -> str:
    """`/r/` next to the unsubscribe endpoint (the host `digest serve` answers on)."""
    return urljoin(config.sending.unsubscribe_url, "r/")


class ClickLinks:
    """Makes tracked article links for one config; the secret is read once, when first needed."""

    def __init__(self, config: Config):
        self.config = config

    @property
    def enabled(self) -> bool:
        return self.config.tracking.clicks and bool(self.config.sending.unsubscribe_url)

    @cached_property
    def _secret(self) -> bytes:
        return secret_from_env(self.config.sending.secret_env)

    def link(self, edition: str, article: str, url: str, recipient: RecipientView | None) -> str:
        """The article's link as an email carries it: `url` itself, or (tracking clicks, with a
        recipient to fill in) through /r/ with the reader's token as a per-recipient field."""
        if recipient is None or not self.enabled:
            return url
        token = make_link_token(edition, article, self._secret)
        return f"{click_base(self.config)}{token}?u={recipient.click_token}"
