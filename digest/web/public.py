"""`digest serve`: the public app subscribers and SendGrid talk to. It exposes only:

  GET  /unsubscribe?token=T        a page with one confirm button (a GET never unsubscribes)
  POST /unsubscribe?token=T        RFC 8058 one-click (and the page's button): no login, no confirmation
  GET  /preferences?token=P        the subscriber's topics, cadence and status
  POST /preferences?token=P        save topics (and the cadence, among those [schedule] has slots
                                   for), pause, resume or unsubscribe
  POST /webhooks/sendgrid          SendGrid's Event Webhook, ECDSA-verified: opt-outs, and delivery
                                   and engagement events kept per edition (events.py)
  GET  /r/<link token>?u=<reader>  a first-party click ([tracking] clicks): counted, then redirected
                                   to the article's URL as recorded for that edition, nowhere else
  /subscribe, /api/subscribe, /subscribe/confirm, /subscribe/cancel
                                   signups with double opt-in ([signup] enabled; see web/signup.py)

Security model: the signed token *is* the capability. It names one subscriber (by an opaque id,
never the address) and one purpose (an unsubscribe token cannot open the preferences page), so
forms need no session or CSRF cookie: a forged or tampered token is refused before anything is
read or written, and a valid one can only ever act on its own subscriber. Nothing here shows
another subscriber, the list, or a preview. Every response carries no-store and no-referrer,
since the URL holds the token; the app answers only its own Host names and never redirects (a
redirect built from the Host header would carry the token elsewhere), but for /r/, whose target is
never read from the request: only the URL recorded for a signed (edition, article) pair. guards.py holds the checks
that run before any view: headers, hosts, rate limits, body size and nesting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from digest.audience import read_overlay
from digest.cadences import Cadences, offered
from digest.config import Config
from digest.links import preferences_base
from digest.signup.form import consent_text
from digest.store import open_events, open_state
from digest.subscribers import split_terms
from digest.tokens import read_token
from digest.transports.sendgrid.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    event_batch,
    kept_events,
    load_webhook_key,
    verify_signature,
)
from digest.web.guards import (
    SECURITY_HEADERS,
    BodyTooLarge,
    RateLimiter,
    SecurityHeaders,
    client_key,
    json_depth,
    read_body,
    retry_after,
    trusted_hosts,
)
from digest.web.lookup import LinkResolver, current_subscriber, subscriber_index
from digest.web.redirect import ClickRedirect
from digest.web.settings import PAGES, PublicSettings
from digest.web.signup import SignupViews, signup_hosts

log = logging.getLogger("digest.public")

#: Forms are a few fields; a webhook body's limit is `serve.webhook_max_bytes`.
MAX_FORM_BYTES = 16 * 1024
#: A SendGrid batch is an array of flat objects (a category list at most): depth 3. Far deeper
#: is hostile, and Python's JSON parser recurses per level.
MAX_WEBHOOK_DEPTH = 32
MAX_TERMS = 50


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(PAGES.get_template(name).render(**context), status_code=status, headers=SECURITY_HEADERS)


async def _body(request: Request, limit: int) -> bytes:
    try:
        return await read_body(request, limit)
    except BodyTooLarge:
        raise HTTPException(413, "Request too large.") from None


def _form(body: bytes) -> dict[str, str]:
    # Parsed here rather than with Starlette's form parser: no python-multipart dependency, and a
    # one-click POST may carry any content type (RFC 8058 allows multipart too; the token is the proof).
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


class PublicViews:
    def __init__(self, settings: PublicSettings):
        self.settings = settings
        self.config = settings.config
        serve = self.config.serve
        self.index = subscriber_index(self.config)
        self.resolver = LinkResolver(self.config, serve.legacy_token_days, settings.now)
        self.form_limit = RateLimiter(serve.rate_limit, serve.rate_burst, clock=settings.monotonic)
        #: The cadences a subscriber may choose: those with a slot; none with a single `cron`.
        self.cadences = Cadences.of(self.config)
        self.webhook_limit = RateLimiter(serve.webhook_rate_limit, serve.rate_burst, clock=settings.monotonic)
        self.clicks = ClickRedirect(settings, self.resolver)

    @property
    def newsletter(self) -> str:
        return self.config.newsletter.name

    async def subscriber_id(self, request: Request, purpose: str) -> str:
        """The subscriber the query's token was signed for; 400/403 before anything else happens."""
        token = request.query_params.get("token", "")
        if not token:
            raise HTTPException(400, "This link is incomplete: it carries no token. Use the link from your email.")
        claim = read_token(token, self.settings.secrets, purpose)
        if claim is None:
            raise HTTPException(403, "This link is not valid. Use the link from your most recent email.")
        subscriber, why = await run_in_threadpool(self.resolver.resolve, claim)
        if subscriber is None and why == "expired":
            raise HTTPException(403, "This link has expired. Use the link from your most recent email.")
        if subscriber is None:
            raise HTTPException(403, "This link is not valid. Use the link from your most recent email.")
        return subscriber

    def limit_form(self, request: Request) -> None:
        wait = self.form_limit.take(client_key(request))
        if wait:
            log.warning("rate limit: refused a POST to %s", request.url.path)
            raise HTTPException(
                429,
                "Too many requests from your address. Please try again shortly.",
                {"Retry-After": retry_after(wait)},
            )

    # ---- unsubscribe

    async def unsubscribe_page(self, request: Request) -> Response:
        subscriber = await self.subscriber_id(request, "unsubscribe")
        token = request.query_params["token"]
        return _page("public_unsubscribe.html", newsletter=self.newsletter, email=subscriber, action=f"?token={token}")

    async def unsubscribe(self, request: Request) -> Response:
        self.limit_form(request)
        subscriber = await self.subscriber_id(request, "unsubscribe")
        form = _form(await _body(request, MAX_FORM_BYTES))
        source = "unsubscribe page" if form.get("via") == "page" else "one-click"
        config = self.config

        def record() -> None:
            with open_state(config) as state:
                state.opt_out(subscriber, "unsubscribed", source)

        await run_in_threadpool(record)
        log.info("unsubscribe recorded (%s)", source)
        return _page(
            "public_message.html",
            newsletter=self.newsletter,
            title="You are unsubscribed",
            message=f"{subscriber} will get no more digests from {self.newsletter}.",
        )

    # ---- preferences

    def _current(self, subscriber_id: str) -> Any:
        return current_subscriber(self.index, self.config, subscriber_id)

    async def preferences_page(self, request: Request, saved: str = "") -> Response:
        subscriber_id = await self.subscriber_id(request, "preferences")
        current = await run_in_threadpool(self._current, subscriber_id)
        if current is None:
            raise HTTPException(404, "This address is not on the list any more.")
        cadences = self.cadences
        return _page(
            "public_preferences.html",
            newsletter=self.newsletter,
            email=current.email,
            cadence=cadences.cadence_of(current) if cadences else "",
            cadences=self.cadence_choices(),
            subscriber_status=current.status,
            paused=current.status == "paused",
            opted_out=current.status not in ("active", "paused"),
            # their own unsubscribe can be undone here; a bounce or complaint cannot
            can_return=current.status in ("unsubscribed", "pending"),
            consent_text=consent_text(self.config),
            tags="; ".join(current.tags),
            categories="; ".join(current.categories),
            contact=self.config.newsletter.reply_to or self.config.newsletter.from_email,
            action=f"?token={request.query_params['token']}",
            saved=saved,
        )

    def cadence_choices(self) -> list[dict[str, str]]:
        """The cadences offered on the page: one per slot, when there is more than one to pick."""
        return offered(self.cadences)

    async def preferences(self, request: Request) -> Response:
        self.limit_form(request)
        subscriber_id = await self.subscriber_id(request, "preferences")
        form = _form(await _body(request, MAX_FORM_BYTES))
        action = form.get("action", "save")
        if action not in ("save", "pause", "resume", "unsubscribe", "resubscribe"):
            raise HTTPException(400, "Unknown action.")
        frequency = form.get("frequency") if action == "save" else None
        if frequency is not None and frequency not in {c["name"] for c in self.cadence_choices()}:
            raise HTTPException(400, "Unknown cadence.")  # only those [schedule] has a slot for
        current = await run_in_threadpool(self._current, subscriber_id)
        if current is None:
            raise HTTPException(404, "This address is not on the list any more.")
        if action == "resubscribe":
            return await self._resubscribe(request, current)
        tags = _terms(form.get("tags", ""))
        categories = _terms(form.get("categories", ""))
        config = self.config
        # Recorded only when it changes what they get: a Save of topics must not pin the default
        # cadence on someone whose own choice has no slot yet.
        switch = frequency if frequency and self.cadences and frequency != self.cadences.cadence_of(current) else None

        def record() -> None:
            with open_state(config) as state:
                if action == "save":
                    state.set_topics(current.email, tags=tags, categories=categories, source="preferences page")
                    if switch:
                        state.set_frequency(current.email, switch, source="preferences page")
                elif action in ("pause", "resume"):
                    state.set_paused(current.email, action == "pause", source="preferences page")
                else:
                    state.opt_out(current.email, "unsubscribed", "preferences page")

        await run_in_threadpool(record)
        log.info("preferences: %s recorded", action)
        done = {
            "save": f"Your topics are saved; digests now come {switch}." if switch else "Your topics are saved.",
            "pause": "Digests are paused until you resume them.",
            "resume": "Digests are on again.",
            "unsubscribe": "You are unsubscribed.",
        }[action]
        return await self.preferences_page(request, saved=done)

    async def _resubscribe(self, request: Request, current: Any) -> Response:
        from datetime import UTC, datetime

        from digest.signup.flow import resubscribe

        at = datetime.fromtimestamp(self.settings.now(), UTC)
        listed = await run_in_threadpool(self.index.get, current.id)
        if not await run_in_threadpool(resubscribe, self.config, current, listed, at):
            raise HTTPException(403, "This address cannot be subscribed again from here.")
        log.info("preferences: resubscribe recorded")
        return await self.preferences_page(request, saved="Welcome back: digests are on again.")

    # ---- SendGrid Event Webhook

    async def sendgrid_webhook(self, request: Request) -> Response:
        key = self.settings.webhook_key
        if key is None:
            # Never accept unsigned events: anyone could unsubscribe or "bounce" any address.
            return JSONResponse({"error": "webhook verification key not configured"}, status_code=503)
        wait = self.webhook_limit.take(client_key(request))
        if wait:  # before the body is read or a signature checked: a flood costs next to nothing
            log.warning("rate limit: refused a webhook request")
            return JSONResponse(
                {"error": "too many requests"}, status_code=429, headers={"Retry-After": retry_after(wait)}
            )
        limit = self.config.serve.webhook_max_bytes
        try:
            body = await read_body(request, limit)
        except BodyTooLarge as exc:
            log.warning("webhook: refused a body over %d bytes", limit)
            return JSONResponse({"error": str(exc)}, status_code=413)
        signature = request.headers.get(SIGNATURE_HEADER, "")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        if not signature or not timestamp or not verify_signature(key, body, signature, timestamp):
            log.warning("webhook: refused a request with a missing or bad signature")
            return JSONResponse({"error": "bad signature"}, status_code=401)
        # Checked after the signature (so the timestamp is SendGrid's own): a captured request
        # replayed later is refused; within the window, de-duplication makes repeats harmless.
        try:
            age = abs(self.settings.now() - int(timestamp))
        except ValueError:
            age = float("inf")
        if age > self.config.sendgrid.webhook_max_age:
            log.warning(
                "webhook: refused a stale request (timestamp outside %ss)", self.config.sendgrid.webhook_max_age
            )
            return JSONResponse({"error": "stale timestamp"}, status_code=401)
        # Depth before parsing: the parser recurses once per level (RecursionError, a 500).
        if json_depth(body) > MAX_WEBHOOK_DEPTH:
            log.warning("webhook: refused a body nested deeper than %d", MAX_WEBHOOK_DEPTH)
            return JSONResponse({"error": f"JSON nested deeper than {MAX_WEBHOOK_DEPTH} levels"}, status_code=400)
        try:
            events = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            # ValueError also covers an integer past Python's 4300-digit conversion limit
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(events, list):
            return JSONResponse({"error": "expected a JSON array of events"}, status_code=400)
        batch = event_batch(events, self.config.sendgrid.asm_group_id)
        kept = kept_events(events)
        config = self.config

        def record() -> tuple[int, int]:
            # Two stores, each de-duplicating by event id on its own: a crash between them is
            # mended by SendGrid's retry, which repeats the batch.
            with open_state(config) as state:
                applied = state.apply_events(batch)
            with open_events(config) as store:
                return applied, store.record(kept)

        applied, stored = await run_in_threadpool(record)
        log.info("webhook: %d event(s), %d new, %d kept for reports", len(batch), applied, stored)
        return JSONResponse({"received": len(batch), "new": applied})


def _terms(value: str) -> tuple[str, ...]:
    return tuple(t[:100] for t in split_terms(value))[:MAX_TERMS]


def create_public_app(settings: PublicSettings) -> Starlette:
    views = PublicViews(settings)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {
            400: "Incomplete link",
            403: "Invalid link",
            404: "Not found",
            405: "Not allowed",
            410: "Link expired",
            413: "Too large",
            429: "Too many requests",
            503: "Busy",
        }
        page = _page(
            "public_message.html",
            status=exc.status_code,
            newsletter=views.newsletter,
            title=titles.get(exc.status_code, "Error"),
            message=exc.detail if exc.status_code != 404 or exc.detail != "Not Found" else "There is no such page.",
        )
        page.headers.update(exc.headers or {})  # Retry-After on a 429
        return page

    async def server_error(request: Request, exc: Exception) -> Response:
        # One plain line: no traceback, no settings, nothing that could hold a secret.
        log.error("internal error: %s", type(exc).__name__)
        return _page(
            "public_message.html",
            status=500,
            newsletter=views.newsletter,
            title="Something went wrong",
            message="Your request was not recorded. Please try again later.",
        )

    config = settings.config
    signup = SignupViews(settings, views.index.get, views.form_limit) if config.signup.enabled else None
    hosts = trusted_hosts(
        config.serve.trusted_hosts,
        (config.sending.unsubscribe_url, preferences_base(config), *signup_hosts(config)),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if signup is not None:  # the signups still queued are handled before the process ends
            await run_in_threadpool(signup.worker.close)

    app = Starlette(
        routes=[
            Route("/unsubscribe", views.unsubscribe_page, methods=["GET"]),
            Route("/unsubscribe", views.unsubscribe, methods=["POST"]),
            Route("/preferences", views.preferences_page, methods=["GET"]),
            Route("/preferences", views.preferences, methods=["POST"]),
            Route("/webhooks/sendgrid", views.sendgrid_webhook, methods=["POST"]),
            Route("/r/{token}", views.clicks.redirect, methods=["GET"]),
            *(signup.routes() if signup is not None else ()),
        ],
        lifespan=lifespan,
        middleware=[
            Middleware(SecurityHeaders),  # outermost: even the Host check's 400 carries them
            # No www redirect: it would rebuild the URL, token included, on another host.
            Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False),
        ],
        exception_handlers={HTTPException: http_error, 500: server_error},
    )
    # `/preferences/` would be a 307 to `<Host header>/preferences?token=...`: never redirect.
    app.router.redirect_slashes = False
    app.state.views = views  # the serve command warms the subscriber index before listening
    app.state.signup = signup
    return app


def public_settings(config: Config) -> PublicSettings:
    """Settings from the config and the environment; a missing token secret stops here."""
    from digest.tokens import previous_secrets_from_env, secret_from_env

    return PublicSettings(
        config=config,
        secret=secret_from_env(config.sending.secret_env),
        webhook_key=load_webhook_key(config.sendgrid.webhook_key_env),
        previous_secrets=previous_secrets_from_env(config.sending.previous_secrets_env),
    )


def serve(config: Config, *, host: str, port: int) -> None:
    """Run the public app until Ctrl+C (behind a reverse proxy that terminates TLS)."""
    log_to_terminal()
    server, sock = public_server(config, host=host, port=port)
    server.run(sockets=[sock])


def log_to_terminal() -> None:
    """digest's log lines on stderr, one message a line (what an operator or journald reads), from
    INFO up; unless the embedding program set up digest's logging itself."""
    logger = logging.getLogger("digest")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def public_server(config: Config, *, host: str, port: int) -> tuple[Any, socket.socket]:
    """The uvicorn server of `digest serve` and its bound socket, ready to `run(sockets=[sock])`.

    Whatever can be wrong is found here, before the first subscriber's click: a missing secret, an
    unreadable or unmigrated state, a list that does not read; the signup worker is started."""
    import uvicorn

    from digest.web.preview import bind, url_for

    settings = public_settings(config)
    read_overlay(config)  # an unreadable (or unmigrated) state fails now, not on the first unsubscribe
    app = create_public_app(settings)
    app.state.views.index.refresh()  # read the list now, not on the first subscriber's click
    if app.state.signup is not None:
        app.state.signup.topics.get()  # the form's topics now, not on the first visitor's
    sock = bind(host, port)  # a busy port stops us before the signup worker starts
    if app.state.signup is not None:
        app.state.signup.worker.start()
    if settings.webhook_key is None:
        log.warning(
            "webhook disabled: set %s to SendGrid's verification key to accept events", config.sendgrid.webhook_key_env
        )
    what = "signups, unsubscribe, preferences" if config.signup.enabled else "unsubscribe, preferences"
    log.info("serving %s and webhooks at %s (Ctrl+C to stop)", what, url_for(sock))
    return uvicorn.Server(uvicorn_config(app)), sock


def uvicorn_config(app: Starlette) -> Any:
    """How `digest serve` runs the app (tests run it the same way).

    No access log: request lines carry tokens in their query strings. proxy_headers: behind the
    reverse proxy the client address (what rate limits count against) is taken from
    X-Forwarded-For, but only when the connection comes from a trusted proxy: uvicorn's
    FORWARDED_ALLOW_IPS, 127.0.0.1 and ::1 unless set. Anyone else's X-Forwarded-For is ignored.
    """
    import uvicorn

    return uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=True)
