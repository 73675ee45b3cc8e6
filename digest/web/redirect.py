"""`GET /r/<link token>?u=<reader token>`: a first-party click ([tracking] clicks, see clicks.py).

Never an open redirect: the target is not in the request. The link token is signed (tokens.py)
and names an (edition, article) pair; the target is the URL recorded for that pair when the
edition was sent (events.py). A token that does not verify, or an article the edition did not
carry, is a 404. The reader's part says whose click it is: a missing, forged or unknown one (a
link from the preview, whose reader tokens name nobody) still redirects, but is not counted. A
client over the rate limit and a HEAD (link scanners prefetch) are redirected uncounted too, so a
flood fills no table.

The answer carries the public app's headers: no-store, and no-referrer, so the article's site
never sees the tokens in the link.
"""

from __future__ import annotations

import logging
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from digest.events import Event
from digest.store import open_existing_events
from digest.tokens import read_link_token, read_token
from digest.web.guards import RateLimiter, client_key
from digest.web.lookup import LinkResolver
from digest.web.settings import PublicSettings

log = logging.getLogger("digest.public")


class ClickRedirect:
    def __init__(self, settings: PublicSettings, resolver: LinkResolver):
        self.settings = settings
        self.state_dir = settings.config  # the state, on whichever engine the config names
        self.resolver = resolver
        serve = settings.config.serve
        self.limit = RateLimiter(serve.rate_limit, serve.rate_burst, clock=settings.monotonic)

    async def redirect(self, request: Request) -> Response:
        found = read_link_token(request.path_params["token"], self.settings.secrets)
        if found is None:
            raise HTTPException(404, "This link is not valid.")
        edition, article = found
        url = await run_in_threadpool(self._target, edition, article)
        if url is None:
            raise HTTPException(404, "This link is not valid.")
        subscriber = ""
        if request.method == "GET" and not self.limit.take(client_key(request)):
            subscriber = await self._reader(request.query_params.get("u", ""))
        if subscriber:
            event = Event(
                event_id=f"digest:{uuid.uuid4().hex}",
                source="redirect",
                kind="click",
                edition=edition,
                subscriber=subscriber,
                at=int(self.settings.now()),
                url=url,
                article=article,
            )
            await run_in_threadpool(self._record, event)
        return RedirectResponse(url, status_code=302)

    def _target(self, edition: str, article: str) -> str | None:
        store = open_existing_events(self.state_dir)
        if store is None:
            return None
        with store:
            url = store.edition_url(edition, article)
        # recorded from the content folder, which only yields http(s) links; checked again anyway
        return url if url is not None and url.startswith(("https://", "http://")) else None

    def _record(self, event: Event) -> None:
        store = open_existing_events(self.state_dir)
        if store is not None:
            with store:
                store.record([event])

    async def _reader(self, token: str) -> str:
        """The subscriber a click token names, or '' (the click is then not counted)."""
        claim = read_token(token, self.settings.secrets, "click") if token else None
        if claim is None or claim.kind != "id":  # no click token ever carried an address
            return ""
        subscriber, _why = await run_in_threadpool(self.resolver.resolve, claim)
        return subscriber or ""
