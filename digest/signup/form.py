"""What a signup form is made of: the topics it offers, the consent line, the fill-time stamp, the
optional CAPTCHA check, and the plain HTML snippet `digest form` prints for a blog's own pages.

Topics are the tags and categories the content actually uses, spelled as the articles spell them
(content.canonical_spellings), the most used first up to `signup.topics`: a visitor picks from
what the newsletter sends, and a posted topic outside that set is dropped, never stored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import urljoin

from digest.config import Config
from digest.models import Article

log = logging.getLogger("digest.signup")

#: A stamp older than this is stale: the page was left open too long (or the stamp was kept).
STAMP_MAX_AGE = 24 * 3600
#: The honeypot: a field people never see (hidden off-screen, out of the tab order); bots fill it.
HONEYPOT = "website"
CAPTCHA_FIELDS = {"turnstile": "cf-turnstile-response", "hcaptcha": "h-captcha-response"}
CAPTCHA_VERIFY = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
}
CAPTCHA_SCRIPT = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/api.js",
    "hcaptcha": "https://js.hcaptcha.com/1/api.js",
}
CAPTCHA_WIDGET_CLASS = {"turnstile": "cf-turnstile", "hcaptcha": "h-captcha"}
#: Origins a page with the CAPTCHA must let load scripts and frames (its Content-Security-Policy).
CAPTCHA_ORIGINS = {
    "turnstile": "https://challenges.cloudflare.com",
    "hcaptcha": "https://hcaptcha.com https://*.hcaptcha.com",
}


@dataclass(frozen=True)
class Topics:
    """The topic picker: canonical spellings, each kind in alphabetical order."""

    tags: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def pick(self, tags: Iterable[str], categories: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The offered topics among those posted, in the offered spelling; anything else dropped."""
        return _pick(self.tags, tags), _pick(self.categories, categories)

    def to_json(self) -> dict[str, list[str]]:
        return {"tags": list(self.tags), "categories": list(self.categories)}


def _pick(offered: Sequence[str], posted: Iterable[str]) -> tuple[str, ...]:
    wanted = {str(p).strip().casefold() for p in posted}
    return tuple(t for t in offered if t.casefold() in wanted)


def topics_of(articles: Sequence[Article], limit: int, exclude_tags: Sequence[str] = ()) -> Topics:
    """The `limit` most used tags and categories (by articles carrying them), never an excluded tag."""
    if limit <= 0:
        return Topics()
    excluded = {t.casefold() for t in exclude_tags}
    counts: Counter[tuple[str, str]] = Counter()
    for article in articles:
        if excluded & article.tag_keys:
            continue  # never sent, so never offered
        counts.update(("tag", t) for t in article.tags if t.casefold() not in excluded)
        counts.update(("category", c) for c in article.categories)
    # most used first; ties by name, so the offer does not change from run to run
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][1].casefold(), kv[0][0]))[:limit]
    tags = sorted((t for (kind, t), _ in top if kind == "tag"), key=str.casefold)
    categories = sorted((c for (kind, c), _ in top if kind == "category"), key=str.casefold)
    return Topics(tuple(tags), tuple(categories))


def content_topics(config: Config, articles: Sequence[Article]) -> Topics:
    """The topics a config's form offers from these articles."""
    return topics_of(articles, config.signup.topics, config.selection.exclude_tags)


def signup_url(config: Config) -> str:
    """`signup.url`, else `subscribe` next to the unsubscribe endpoint."""
    s = config.signup
    if s.url:
        return s.url
    return urljoin(config.sending.unsubscribe_url, "subscribe") if config.sending.unsubscribe_url else ""


def consent_text(config: Config) -> str:
    return config.signup.consent_text.replace("{newsletter}", config.newsletter.name)


class TopicIndex:
    """The form's topics, from the content (read through the content cache, never writing it),
    read again at most every `refresh` seconds."""

    def __init__(self, config: Config, *, refresh: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._refresh = refresh
        self._clock = clock
        self._topics: Topics | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self) -> Topics:
        if self._topics is not None and self._clock() - self._at < self._refresh:
            return self._topics
        with self._lock:
            if self._topics is None or self._clock() - self._at >= self._refresh:
                self._topics = self._load()
                self._at = self._clock()
        return self._topics

    def _load(self) -> Topics:
        from digest.content import load_articles

        c = self.config
        if not c.signup.topics:
            return Topics()
        return content_topics(c, load_articles(c, cache_dir=c.state.path / "cache", save=False).articles)


# ---------------------------------------------------------------- CAPTCHA


def verify_captcha(config: Config, secret: str, response: str, remote_ip: str, *, timeout: float = 10.0) -> bool:
    """Ask the provider whether the widget's response is good (the siteverify protocol Turnstile,
    hCaptcha and reCAPTCHA share). Any failure to get a clear yes is a no."""
    provider = config.signup.captcha
    url = config.signup.captcha_verify_url or CAPTCHA_VERIFY[provider]
    if not response or len(response) > 4096:
        return False
    data = urllib.parse.urlencode({"secret": secret, "response": response, "remoteip": remote_ip}).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - a configured https URL
            verdict = json.loads(answer.read(65536))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("signup: the CAPTCHA check could not be made: %s", type(exc).__name__)
        return False
    return isinstance(verdict, dict) and verdict.get("success") is True


# ---------------------------------------------------------------- digest form


def snippet(
    config: Config, topics: Topics, action: str, cadences: Sequence[dict[str, str]] = (), default: str = ""
) -> str:
    """A plain HTML form for the blog's own pages: no script, no styles beyond hiding the honeypot.

    It posts to the signup page, which answers as its own form does. It carries no fill-time
    stamp (it is static): with `signup.min_fill_seconds` on, its visitors are shown the signup
    page once more to press Subscribe there."""
    e = escape
    lines = [
        f"<!-- {e(config.newsletter.name)}: signup form (newsletter-digest). Paste it into a page of your site;",
        f"     it posts to {e(action)}, which sends a confirmation email first (double opt-in). -->",
        f'<form class="digest-signup" method="post" action="{e(action)}" accept-charset="utf-8">',
        '  <p><label for="digest-email">Email address</label><br>',
        '  <input type="email" id="digest-email" name="email" required autocomplete="email" maxlength="254"></p>',
        '  <p><label for="digest-name">Name (optional)</label><br>',
        '  <input type="text" id="digest-name" name="name" autocomplete="name" maxlength="200"></p>',
    ]
    for legend, name, terms in (("Tags", "tag", topics.tags), ("Categories", "category", topics.categories)):
        if not terms:
            continue
        lines.append(f"  <fieldset><legend>{legend} you want (none ticked: every topic)</legend>")
        for n, term in enumerate(terms):
            lines.append(
                f'    <label><input type="checkbox" name="{name}" value="{e(term)}" id="digest-{name}-{n}"> '
                f"{e(term)}</label><br>"
            )
        lines.append("  </fieldset>")
    if cadences:
        lines.append("  <fieldset><legend>How often</legend>")
        for c in cadences:
            checked = " checked" if c["name"] == default else ""
            lines.append(
                f'    <label><input type="radio" name="frequency" value="{e(c["name"])}"{checked}> '
                f"{e(c['label'])} ({e(c['when'])})</label><br>"
            )
        lines.append("  </fieldset>")
    lines += [
        # off-screen rather than display:none, which some bots recognise
        '  <div style="position:absolute;left:-10000px;top:auto;width:1px;height:1px;overflow:hidden" aria-hidden="true">',
        f'    <label for="digest-{HONEYPOT}">Leave this empty</label>',
        f'    <input type="text" id="digest-{HONEYPOT}" name="{HONEYPOT}" tabindex="-1" autocomplete="off">',
        "  </div>",
        '  <p><input type="checkbox" id="digest-consent" name="consent" value="yes" required>',
        f'  <label for="digest-consent">{e(consent_text(config))}</label></p>',
        '  <p><button type="submit">Subscribe</button></p>',
        "</form>",
    ]
    return "\n".join(lines) + "\n"


def form_snippet(config: Config) -> str:
    """`digest form`: the snippet for this config, its topics read from the content."""
    from digest.content import load_articles
    from digest.errors import ConfigError

    if not config.signup.enabled:
        raise ConfigError("signup.enabled is false: `digest serve` has no /subscribe page for the form to post to")
    topics = content_topics(config, load_articles(config, cache_dir=config.state.path / "cache", save=False).articles)
    from digest.cadences import Cadences, offered

    cadences = Cadences.of(config)
    choices = offered(cadences)
    return snippet(config, topics, signup_url(config), choices, cadences.default if cadences and choices else "")
