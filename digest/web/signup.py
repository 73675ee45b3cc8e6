"""The signup pages of `digest serve` ([signup] enabled):

  GET  /subscribe                  the form: address, name, topics, the consent line
  POST /subscribe                  a submission (the page's, or an embedded `digest form` snippet's)
  GET  /api/subscribe              what a site's own form needs (topics, consent text, a stamp)
  POST /api/subscribe              a JSON submission; CORS for site_url's origin only
  GET  /subscribe/confirm?token=C  a page with one button (a GET never confirms)
  POST /subscribe/confirm?token=C  confirm, once; then the welcome email
  GET  /subscribe/cancel?token=X   a page with one button
  POST /subscribe/cancel?token=X   withdraw the request (RFC 8058 one-click from the confirmation
                                   email's List-Unsubscribe; after confirming, it unsubscribes)

No enumeration: a valid submission is answered with the same status and the same bytes whatever
the address is (new, pending, subscribed, unsubscribed, bounced, rate-limited), and in the same
time: the request path only checks what the form says (syntax, consent, honeypot, fill time,
CAPTCHA) and hands the rest to one background worker; every lookup, write and email that depends
on the address happens there (digest.signup.flow).

Abuse: a honeypot field (filled: answered as a success, nothing done), a signed fill-time stamp
(missing or too fresh: the form is shown again), a per-client limit on submissions, the
per-address limit on confirmation emails (in the flow, kept in the state), an optional CAPTCHA.
The same guards as the rest of the app apply (hosts, headers, body size).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from digest.cadences import Cadences, offered
from digest.signup.flow import SignupFlow
from digest.signup.form import (
    CAPTCHA_FIELDS,
    CAPTCHA_ORIGINS,
    CAPTCHA_SCRIPT,
    CAPTCHA_WIDGET_CLASS,
    HONEYPOT,
    STAMP_MAX_AGE,
    TopicIndex,
    consent_text,
    signup_url,
    verify_captcha,
)
from digest.signup.store import SignupRequest
from digest.signup.worker import SignupWorker
from digest.text import one_line, without_lone_surrogates
from digest.tokens import make_stamp, read_stamp, read_token
from digest.web.guards import (
    SECURITY_HEADERS,
    BodyTooLarge,
    RateLimiter,
    client_key,
    json_depth,
    read_body,
    retry_after,
)
from digest.web.settings import PAGES

log = logging.getLogger("digest.signup")

MAX_BODY = 16 * 1024
MAX_TERMS = 100
#: What every accepted submission is told, word for word (see "No enumeration" above).
ACCEPTED_TITLE = "Check your inbox"
ACCEPTED_MESSAGE = (
    "If this address can receive {newsletter}, a confirmation email is on its way. Open the link in it "
    "to start your subscription: nothing else is sent until you do. Already subscribed? Then nothing "
    "changes; your topics can be changed from the link at the bottom of any digest."
)
AGAIN_NOTICE = "One more step: check your details and press Subscribe."
_CAPTCHA_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; script-src {origins}; frame-src {origins}; connect-src {origins}"
)


# ---------------------------------------------------------------- a submission


@dataclass(frozen=True)
class Submission:
    """What a form or a JSON body said, as text (nothing trusted yet)."""

    email: str = ""
    name: str = ""
    tags: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    consent: bool = False
    honeypot: str = ""
    started: str = ""
    captcha: str = ""
    consent_text: str = ""  #: JSON only: the consent line the site showed
    cadence: str = ""

    def values(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "name": self.name,
            "tags": self.tags,
            "categories": self.categories,
            "consent": self.consent,
            "cadence": self.cadence,
        }


@dataclass
class Checked:
    """What the request path made of a submission."""

    kind: str  #: "ok", "trap" (the honeypot), "again" (no or too fresh a stamp), "invalid"
    errors: dict[str, str] = field(default_factory=dict)
    request: SignupRequest | None = None


def _strings(value: Any, limit: int = MAX_TERMS) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(str(v)[:200] for v in items[:limit] if isinstance(v, str))


def submission_from_form(body: bytes, captcha_field: str) -> Submission:
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=4 * MAX_TERMS)
    except (UnicodeDecodeError, ValueError):
        fields = {}

    def one(name: str) -> str:
        return fields.get(name, [""])[-1][:2000]

    return Submission(
        email=one("email"),
        name=one("name"),
        tags=_strings(fields.get("tag", [])),
        categories=_strings(fields.get("category", [])),
        consent=one("consent") in ("yes", "on", "true", "1"),
        honeypot=one(HONEYPOT),
        started=one("started"),
        captcha=one(captcha_field) if captcha_field else "",
        cadence=one("frequency"),
    )


def submission_from_json(data: dict[str, Any], captcha_field: str) -> Submission:
    def text(name: str) -> str:
        value = data.get(name, "")
        return value[:2000] if isinstance(value, str) else ""

    return Submission(
        email=text("email"),
        name=text("name"),
        tags=_strings(data.get("tags", [])),
        categories=_strings(data.get("categories", [])),
        consent=data.get("consent") is True,
        honeypot=text(HONEYPOT),
        started=text("started"),
        captcha=text("captcha") or (text(captcha_field) if captcha_field else ""),
        consent_text=text("consent_text")[:1000],
        cadence=text("cadence"),
    )


def normalise_address(address: str, *, check_mx: bool) -> tuple[str, str]:
    """(the address as kept, '') or ('', why it cannot be used), by email-validator: syntax, and
    the domain's mail servers when `check_mx`. Only ASCII-mailable addresses are accepted (the
    subscriber list's own rule, digest.subscribers.is_valid_email)."""
    from email_validator import EmailNotValidError, validate_email

    from digest.subscribers import is_valid_email

    address = address.strip()
    if not address:
        return "", "Enter your email address."
    try:
        valid = validate_email(address, check_deliverability=check_mx, allow_smtputf8=False, timeout=5)
    except EmailNotValidError as exc:
        return "", f"This email address cannot be used: {exc}"
    email = valid.ascii_email or valid.normalized
    if not is_valid_email(email):
        return "", "This email address cannot be used."
    return email, ""


# ---------------------------------------------------------------- the views


class SignupViews:
    def __init__(self, settings: Any, listed: Callable[[str], Any], form_limit: RateLimiter):
        from digest.signup.notices import Notices

        self.settings = settings
        self.config = config = settings.config
        self.flow = SignupFlow(
            config,
            settings.secret,
            clock=lambda: datetime.fromtimestamp(settings.now(), UTC),
            listed=listed,
            notices=Notices(config),
        )
        self.worker = SignupWorker(self.flow)
        self.topics = TopicIndex(config)
        s = config.signup
        # per hour, with an hour's worth at once: the limit reads as "N an hour"
        self.submit_limit = RateLimiter(s.per_ip_per_hour / 60, s.per_ip_per_hour, clock=settings.monotonic)
        self.form_limit = form_limit
        self.captcha_field = CAPTCHA_FIELDS.get(s.captcha, "")
        cadences = Cadences.of(config)
        #: The cadences the form offers (those [schedule] has a slot for; none with a single cron).
        self.cadences = offered(cadences)
        self.default_cadence = cadences.default if cadences is not None and self.cadences else ""
        site = urlsplit(config.newsletter.site_url)
        self.site_origin = f"{site.scheme}://{site.netloc}".lower()

    @property
    def newsletter(self) -> str:
        return str(self.config.newsletter.name)

    def routes(self) -> list[Route]:
        return [
            Route("/subscribe", self.page, methods=["GET"]),
            Route("/subscribe", self.submit, methods=["POST"]),
            Route("/api/subscribe", self.api_info, methods=["GET"]),
            Route("/api/subscribe", self.api_submit, methods=["POST"]),
            Route("/api/subscribe", self.api_preflight, methods=["OPTIONS"]),
            Route("/subscribe/confirm", self.confirm_page, methods=["GET"]),
            Route("/subscribe/confirm", self.confirm, methods=["POST"]),
            Route("/subscribe/cancel", self.cancel_page, methods=["GET"]),
            Route("/subscribe/cancel", self.cancel, methods=["POST"]),
        ]

    # ---- helpers

    def _page(self, name: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Response:
        html = PAGES.get_template(name).render(newsletter=self.newsletter, **context)
        return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})

    def _stamp(self) -> str:
        return make_stamp(int(self.settings.now()), self.settings.secret)

    def _captcha(self) -> dict[str, str] | None:
        s = self.config.signup
        if not s.captcha:
            return None
        return {
            "widget": CAPTCHA_WIDGET_CLASS[s.captcha],
            "site_key": s.captcha_site_key,
            "script": CAPTCHA_SCRIPT[s.captcha],
        }

    def _form_page(
        self,
        status: int = 200,
        *,
        values: dict[str, Any] | None = None,
        errors: dict[str, str] | None = None,
        notice: str = "",
    ) -> Response:
        topics = self.topics.get()
        headers = {}
        if self.config.signup.captcha:
            origins = CAPTCHA_ORIGINS[self.config.signup.captcha]
            headers["Content-Security-Policy"] = _CAPTCHA_CSP.format(origins=origins)
        return self._page(
            "public_subscribe.html",
            status,
            headers,
            intro=self.config.newsletter.intro,
            action="",
            values=values or {"email": "", "name": "", "tags": (), "categories": (), "consent": False, "cadence": ""},
            cadences=self.cadences,
            default_cadence=self.default_cadence,
            errors=errors or {},
            notice=notice,
            topics=topics,
            honeypot=HONEYPOT,
            started=self._stamp(),
            captcha=self._captcha(),
            consent_text=consent_text(self.config),
        )

    def _accepted_message(self) -> str:
        return ACCEPTED_MESSAGE.replace("{newsletter}", self.newsletter)

    def _limit(self, request: Request, limiter: RateLimiter) -> None:
        wait = limiter.take(client_key(request))
        if wait:
            log.warning("rate limit: refused a POST to %s", request.url.path)
            raise HTTPException(
                429, "Too many requests from your address. Please try again later.", {"Retry-After": retry_after(wait)}
            )

    async def _body(self, request: Request) -> bytes:
        try:
            return await read_body(request, MAX_BODY)
        except BodyTooLarge:
            raise HTTPException(413, "Request too large.") from None

    async def _check(self, request: Request, sub: Submission, source: str) -> Checked:
        """Everything the request path may look at: the submission itself, never the state."""
        if sub.honeypot.strip():
            return Checked("trap")
        s = self.config.signup
        errors: dict[str, str] = {}
        email, why = await run_in_threadpool(normalise_address, sub.email, check_mx=s.check_mx)
        if why:
            errors["email"] = why
        if not sub.consent:
            errors["consent"] = "Tick the box to agree to receive the newsletter."
        if s.min_fill_seconds > 0:
            made = read_stamp(sub.started, self.settings.secrets)
            age = self.settings.now() - made if made is not None else None
            if age is None or age > STAMP_MAX_AGE or age < s.min_fill_seconds:
                return Checked("again", errors)
        if s.captcha and not errors:
            secret = os.environ.get(s.captcha_secret_env, "")
            remote = request.client.host if request.client else ""
            ok = await run_in_threadpool(verify_captcha, self.config, secret, sub.captcha, remote)
            if not ok:
                errors["captcha"] = "Please complete the check above the Subscribe button."
        if errors:
            return Checked("invalid", errors)
        topics = self.topics.get()
        tags, categories = topics.pick(sub.tags, sub.categories)
        shown = consent_text(self.config) if source == "form" or not sub.consent_text else one_line(sub.consent_text)
        ip = request.client.host if (request.client and s.keep_ip_days) else ""
        # a cadence the config has no slot for is not an error: the default one applies
        cadence = sub.cadence if sub.cadence in {c["name"] for c in self.cadences} else ""
        return Checked(
            "ok",
            request=SignupRequest(
                email=email,
                name=one_line(sub.name)[:200],
                tags=tags,
                categories=categories,
                source=source,
                consent_text=shown,
                ip=ip,
                cadence=cadence,
            ),
        )

    def _enqueue(self, signup: SignupRequest) -> bool:
        def job() -> None:
            verdict = self.flow.request(signup)
            log.info("signup: request handled (%s)", verdict)

        return self.worker.submit(job)

    # ---- the form

    async def page(self, request: Request) -> Response:
        return await run_in_threadpool(self._form_page)

    async def submit(self, request: Request) -> Response:
        self._limit(request, self.submit_limit)
        sub = submission_from_form(await self._body(request), self.captcha_field)
        checked = await self._check(request, sub, "form")
        if checked.kind in ("again", "invalid"):
            again = checked.kind == "again"
            return await run_in_threadpool(
                lambda: self._form_page(
                    200 if again else 400,
                    values=sub.values(),
                    errors=checked.errors,
                    notice=AGAIN_NOTICE if again else "",
                )
            )
        if checked.request is not None and not self._enqueue(checked.request):
            raise HTTPException(503, "We cannot take signups right now. Please try again in a few minutes.")
        return self._page("public_message.html", title=ACCEPTED_TITLE, message=self._accepted_message())

    # ---- the JSON API

    def _cors(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin", "")
        headers = {"Vary": "Origin"}
        if origin and origin.lower() == self.site_origin:
            headers["Access-Control-Allow-Origin"] = origin
        return headers

    def _json(self, data: dict[str, Any], status: int, request: Request, **extra: str) -> JSONResponse:
        return JSONResponse(data, status_code=status, headers={**self._cors(request), **extra})

    async def api_preflight(self, request: Request) -> Response:
        headers = self._cors(request)
        if "Access-Control-Allow-Origin" in headers:
            headers.update(
                {
                    "Access-Control-Allow-Methods": "GET, POST",
                    "Access-Control-Allow-Headers": "Content-Type",
                    "Access-Control-Max-Age": "600",
                }
            )
        return Response(status_code=204, headers=headers)

    async def api_info(self, request: Request) -> Response:
        topics = await run_in_threadpool(self.topics.get)
        s = self.config.signup
        captcha = self._captcha()
        return self._json(
            {
                "newsletter": self.newsletter,
                "started": self._stamp(),
                "min_fill_seconds": s.min_fill_seconds,
                "consent_text": consent_text(self.config),
                "topics": topics.to_json(),
                "honeypot": HONEYPOT,
                "cadences": [c["name"] for c in self.cadences],
                "default_cadence": self.default_cadence,
                "captcha": None if captcha is None else {"provider": s.captcha, "site_key": s.captcha_site_key},
            },
            200,
            request,
        )

    async def api_submit(self, request: Request) -> Response:
        origin = request.headers.get("origin", "")
        if origin and origin.lower() != self.site_origin:
            return self._json({"error": "this origin may not sign people up"}, 403, request)
        wait = self.submit_limit.take(client_key(request))
        if wait:
            return self._json({"error": "too many requests"}, 429, request, **{"Retry-After": retry_after(wait)})
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return self._json({"error": "send application/json"}, 415, request)
        try:
            body = await read_body(request, MAX_BODY)
        except BodyTooLarge:
            return self._json({"error": "request too large"}, 413, request)
        try:
            data = json.loads(body) if json_depth(body) <= 4 else None
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            return self._json({"error": "expected a JSON object"}, 400, request)
        # "\ud800" is valid JSON but no email can carry it: the confirmation would fail at every try
        data, _ = without_lone_surrogates(data)
        checked = await self._check(request, submission_from_json(data, self.captcha_field), "api")
        if checked.kind == "again":
            return self._json(
                {"error": "missing, stale or too recent form stamp: GET /api/subscribe for one", "field": "started"},
                400,
                request,
            )
        if checked.kind == "invalid":
            name, message = next(iter(checked.errors.items()))
            return self._json({"error": message, "field": name, "errors": checked.errors}, 400, request)
        if checked.request is not None and not self._enqueue(checked.request):
            return self._json({"error": "signups are paused, try again later"}, 503, request)
        return self._json({"status": "accepted", "message": self._accepted_message()}, 202, request)

    # ---- the confirmation link

    def _consent_id(self, request: Request, purpose: str) -> str:
        token = request.query_params.get("token", "")
        if not token:
            raise HTTPException(400, "This link is incomplete: it carries no token. Use the link from your email.")
        claim = read_token(token, self.settings.secrets, purpose)
        if claim is None or claim.kind != "id":
            raise HTTPException(403, "This link is not valid. Use the link from your most recent email.")
        return claim.value

    def _expired(self) -> HTTPException:
        return HTTPException(
            410,
            f"This link has expired or was withdrawn. Sign up again at {signup_url(self.config)}: "
            "the new email brings a fresh link.",
        )

    async def confirm_page(self, request: Request) -> Response:
        consent_id = self._consent_id(request, "confirm")
        state, consent = await run_in_threadpool(self.flow.pending, consent_id)
        if state == "unknown" or consent is None:
            raise HTTPException(403, "This link is not valid. Use the link from your most recent email.")
        if state == "used":
            return self._page(
                "public_message.html",
                title="Already confirmed",
                message=f"This link was used already: {consent.email} is subscribed to {self.newsletter}.",
            )
        if state == "expired":
            raise self._expired()
        return self._page(
            "public_confirm.html",
            title=f"Confirm your subscription to {self.newsletter}",
            message=f"Press the button to start receiving {self.newsletter} at {consent.email}.",
            button="Confirm my subscription",
            action=f"?token={request.query_params['token']}",
        )

    async def confirm(self, request: Request) -> Response:
        self._limit(request, self.form_limit)
        consent_id = self._consent_id(request, "confirm")
        await self._body(request)
        done = await run_in_threadpool(self.flow.confirm, consent_id)
        if done.outcome == "unknown":
            raise HTTPException(403, "This link is not valid. Use the link from your most recent email.")
        if done.outcome == "expired":
            raise self._expired()
        if done.outcome == "suppressed":
            contact = self.config.newsletter.reply_to or self.config.newsletter.from_email
            raise HTTPException(
                403,
                f"This address cannot be subscribed from here: the list holds a delivery problem. Write to {contact}.",
            )
        if done.outcome == "used":
            assert done.consent is not None
            return self._page(
                "public_message.html",
                title="Already confirmed",
                message=f"This link was used already: {done.consent.email} is subscribed to {self.newsletter}.",
            )
        subscriber = done.subscriber
        assert subscriber is not None
        self.worker.submit(lambda: log.info("signup: welcome email %s", self.flow.welcome(subscriber)))
        preferences = await run_in_threadpool(self._preferences_url, subscriber)
        n = self.config.newsletter
        topics = ", ".join((*subscriber.tags, *subscriber.categories)) or "every topic"
        return self._page(
            "public_subscribed.html",
            email=subscriber.email,
            topics=topics,
            preferences_url=preferences,
            site_url=n.site_url,
            site_host=urlsplit(n.site_url).hostname or n.site_url,
        )

    def _preferences_url(self, subscriber: Any) -> str:
        from digest.links import Links

        return Links(self.config, [subscriber], secret=self.settings.secret).preferences_url(subscriber)

    async def cancel_page(self, request: Request) -> Response:
        self._consent_id(request, "cancel")
        return self._page(
            "public_confirm.html",
            title="Cancel this signup?",
            message=f"You will not be subscribed to {self.newsletter}, and the confirmation link stops working.",
            button="Cancel the signup",
            action=f"?token={request.query_params['token']}",
        )

    async def cancel(self, request: Request) -> Response:
        self._limit(request, self.form_limit)
        consent_id = self._consent_id(request, "cancel")
        await self._body(request)
        what = await run_in_threadpool(self.flow.cancel, consent_id)
        message = {
            "cancelled": f"You will not be subscribed to {self.newsletter}.",
            "unsubscribed": f"You are unsubscribed: you will get no more digests from {self.newsletter}.",
            "nothing": "There was nothing left to cancel: the request had expired or was cancelled already.",
        }[what]
        return self._page("public_message.html", title="Done", message=message)


def signup_hosts(config: Any) -> list[str]:
    """The public URL the signup pages are reached at (for the trusted hosts)."""
    url = signup_url(config) if config.signup.enabled else ""
    return [url] if url else []
