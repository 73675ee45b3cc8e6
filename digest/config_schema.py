"""The config schema: one frozen dataclass per section, a `doc` on every option.

One TOML file (`digest.toml` by default). Each section is a frozen dataclass whose fields carry a
`doc` and the rules a value must meet (`opt`); docs/configuration.md is generated from them
(scripts/configref.py). Nothing here reads a file or validates: that is config.py, which also
re-exports every name here, so `from digest.config import Config` is the way in. This module sits
below everything (schedule.py and cadences.py use `Config` and config.py validates with them).
Secrets are never read from the file: only the *names* of environment variables live here.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_CONFIG_NAME = "digest.toml"


def opt(
    default: Any,
    doc: str,
    *,
    kind: str = "line",
    bounds: tuple[float, float] | None = None,
    choices: tuple[str, ...] = (),
    required: bool = False,
    max_len: int | None = None,
    max_items: int = 1000,
) -> Any:
    """A config field with a default, a one-line description and the rules a value must meet.

    `kind` (strings, and the items of a list of strings): see `_KINDS`; `bounds`: the inclusive
    range of a number; `choices`: the only values allowed; `required`: not empty. Every value a file
    gives is checked against these at load (`check_rules`), so a bad one is one line naming its key
    instead of a crash (or a header injection) later.
    """
    meta = {
        "doc": doc,
        "kind": kind,
        "bounds": bounds,
        "choices": choices,
        "required": required,
        "max_len": max_len,
        "max_items": max_items,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class NewsletterConfig:
    name: str = opt("My Newsletter", "Shown in the header, the From name default and subjects.", max_len=200)
    from_email: str = opt(
        "newsletter@example.com", "Sender address (your domain must have SPF/DKIM/DMARC).", kind="email", required=True
    )
    from_name: str = opt("", "Display name of the sender; defaults to `name`.", max_len=200)
    reply_to: str = opt("", "Reply-To address; empty for none.", kind="email")
    site_url: str = opt(
        "https://example.com",
        "Base URL: relative links and cover images resolve against it.",
        kind="url",
        required=True,
    )
    postal_address: str = opt("", "Physical postal address for the footer (CAN-SPAM wants one).", kind="text")
    timezone: str = opt("UTC", "IANA zone for naive dates, editions and display, e.g. Europe/London.", required=True)
    default_name: str = opt("there", "Used in the greeting when a subscriber has no name.", max_len=100)
    logo_url: str = opt(
        "", "Absolute https URL of a masthead logo (about 600x120); empty for a text masthead.", kind="url"
    )
    logo_alt: str = opt("", "Alt text of the logo; defaults to `name`.", max_len=300)
    intro: str = opt("", "Optional paragraph under the header of every digest (plain text).", kind="text")
    language: str = opt(
        "en",
        "Language of the emails (the HTML `lang`, for screen readers), a tag like en or fr-CA.",
        required=True,
        max_len=35,
    )
    logo_dark_url: str = opt(
        "", "Optional https URL of a logo for dark backgrounds, shown instead of logo_url in dark mode.", kind="url"
    )


@dataclass(frozen=True)
class ContentConfig:
    path: Path = opt(
        Path("content"),
        "Folder of articles (.md, .markdown, .mdx, .html), searched recursively; may be absent when `feeds` are set.",
        kind="path",
    )
    feeds: list[str] = opt(
        [],
        "RSS, Atom or JSON Feed URLs whose entries are articles too, beside the folder or instead of it.",
        max_items=200,  # http(s) only: see _validate
    )
    feed_timeout: float = opt(
        20.0, "Seconds one feed may take in all before its last good copy is used.", bounds=(0, 600)
    )
    feed_max_mb: int = opt(
        10, "Largest feed read, in MB after decompression; a bigger one counts as failed.", bounds=(1, 1000)
    )
    feed_refresh_minutes: int = opt(
        10,
        "A feed fetched less than this many minutes ago is not asked again (the preview rebuilds on every save).",
        bounds=(0, 7 * 24 * 60),
    )
    article_url: str = opt(
        "",
        "Link pattern, e.g. https://example.com/posts/{slug}; fields {slug} {year} {month} {day} {path}. "
        "Empty: the article's own `url`/`source`/`link`, else site_url + /{slug}.",
        kind="pattern",
    )
    excerpt_chars: int = opt(280, "Longest excerpt shown, cut at a word boundary.", bounds=(0, 5000))
    term_separator: str = opt(
        "comma",
        'How `tags` or `categories` written as one string are split: "comma" (`a, b`) or "space" '
        "(at spaces and commas: Jekyll's `categories: jekyll update` is two categories; `digest init` sets it "
        "for Jekyll sites). "
        "Lists are read as they are.",
        choices=("comma", "space"),
    )


@dataclass(frozen=True)
class SubscribersConfig:
    path: Path = opt(Path("subscribers/subscribers.csv"), "CSV or JSON subscriber list.", kind="path")
    source: str = opt(
        "file",
        '"file": the list is `path`. "database": the subscribers table of the state (filled by '
        "`digest subscribers import FILE`), read with a server-side cursor.",
        choices=("file", "database"),
    )
    segments: Path = opt(
        Path("subscribers/segments.toml"),
        "Segments file: named rules over subscriber fields, per-segment overrides and test recipients; "
        "no file, no segments.",
        kind="path",
    )


@dataclass(frozen=True)
class SelectionConfig:
    window_days: int = opt(7, "How far back articles are considered.", bounds=(1, 3660))
    max_articles: int = opt(10, "Most articles in one digest.", bounds=(1, 200))
    min_articles: int = opt(1, "Fewer than this: no email for that subscriber this time.", bounds=(0, 200))
    exclude_tags: list[str] = opt([], "Articles with any of these tags are never sent.", max_len=200)
    catch_up_days: int = opt(
        28,
        "After a missed edition the window reaches back to the subscriber's last delivery, but no further than this.",
        bounds=(0, 3660),
    )
    rank: str = opt(
        "match",
        '"match": articles ranked by how many of the subscriber\'s topics they match. "engagement": each stated '
        "topic also weighs by what the subscriber clicked in the last `engagement_editions` editions (never "
        "outside their stated topics unless they stated none).",
        choices=("match", "engagement"),
    )
    engagement_editions: int = opt(8, 'rank = "engagement": how many past editions of clicks count.', bounds=(1, 52))
    engagement_decay: float = opt(
        0.7,
        'rank = "engagement": a click one edition older counts this much of a newer one (more than 0, at most 1).',
        bounds=(0.01, 1.0),
    )


@dataclass(frozen=True)
class TemplatesConfig:
    path: Path = opt(
        Path("templates"),
        "Your own templates: each file here replaces the packaged theme's file of the same name "
        "(digest.mjml.j2, partials/article.mjml.j2, digest.txt.j2, subject.j2, preheader.j2); "
        "no folder: the packaged theme alone.",
        kind="path",
    )
    max_html_kb: int = opt(100, "HTML size limit in KB (Gmail clips at about 102 KB).", bounds=(1, 10_000))
    max_subject_chars: int = opt(78, "Subjects longer than this get a warning.", bounds=(10, 998))
    group_by: str = opt(
        "",
        'Empty: one numbered list. "tag": stories grouped under the subscriber\'s matched tags (or categories); '
        "subscribers without preferences, or whose stories all share one topic, get the plain list.",
        max_len=20,
    )
    contents_min_articles: int = opt(
        5, "A digest with at least this many stories opens with a short contents list; 0: never.", bounds=(0, 200)
    )


@dataclass(frozen=True)
class TrackingConfig:
    utm: bool = opt(True, "Add utm_* parameters to article links.")
    utm_source: str = opt("newsletter", "utm_source value.", max_len=200)
    utm_medium: str = opt("email", "utm_medium value.", max_len=200)
    utm_campaign: str = opt("{edition}", "utm_campaign value; {edition} becomes the edition id.", max_len=200)
    clicks: bool = opt(
        False,
        "First-party click tracking (meant for SMTP and the outbox): article links go through `digest serve`'s "
        "/r/ next to unsubscribe_url, which records the click and redirects to the article. Off: links go "
        "straight to the article.",
    )


@dataclass(frozen=True)
class StateConfig:
    path: Path = opt(
        Path("state"), "Folder for the send ledger, the subscriber state and caches; keep it private.", kind="path"
    )
    url: str = opt(
        "",
        "PostgreSQL instead of the SQLite files, e.g. postgresql://digest@db.example.com/newsletter (no password "
        "here: PGPASSWORD or ~/.pgpass); the environment variable DIGEST_DATABASE_URL, if set, wins. "
        "See docs/postgresql.md.",
    )


@dataclass(frozen=True)
class OutputConfig:
    path: Path = opt(Path("outbox"), "Where `digest build` (and the outbox transport) write .eml files.", kind="path")


@dataclass(frozen=True)
class SendingConfig:
    transport: str = opt("outbox", "outbox, sendgrid or smtp.", choices=("outbox", "sendgrid", "smtp"))
    unsubscribe_url: str = opt(
        "",
        "One-click unsubscribe endpoint, e.g. https://news.example.com/unsubscribe; a signed token is appended. "
        "Required by the sendgrid and smtp transports.",
        kind="https",
    )
    unsubscribe_mailto: str = opt("", "Optional mailto address added to List-Unsubscribe.", kind="email")
    preferences_url: str = opt(
        "",
        "Preferences page served by `digest serve`; a signed token is appended. Empty: `preferences` next to "
        "unsubscribe_url (https://news.example.com/unsubscribe -> https://news.example.com/preferences).",
        kind="https",
    )
    secret_env: str = opt(
        "DIGEST_SECRET", "Environment variable holding the token-signing secret.", kind="env", required=True
    )
    previous_secrets_env: str = opt(
        "DIGEST_SECRET_PREVIOUS",
        "Environment variable holding earlier signing secrets (whitespace-separated) that `digest serve` "
        "still accepts after a rotation; links are always signed with the current one.",
        kind="env",
    )
    list_id: str = opt(
        "", "List-Id header value, e.g. weekly.example.com; empty: derived from from_email.", kind="list_id"
    )
    on_ambiguous: str = opt(
        "skip",
        "skip or resend: what `digest send` does with a subscriber whose earlier request may have left "
        "(answer lost, crash); --on-ambiguous overrides it.",
        choices=("skip", "resend"),
    )
    concurrency: int = opt(
        4, "Requests in flight at once (SendGrid and outbox; SMTP sends one at a time).", bounds=(1, 64)
    )
    test_subject_prefix: str = opt("[TEST]", "Put before the subject of every `digest test-send` email.", max_len=100)


@dataclass(frozen=True)
class SendGridConfig:
    api_key_env: str = opt("SENDGRID_API_KEY", "Environment variable holding the API key.", kind="env", required=True)
    host: str = opt(
        "https://api.sendgrid.com", "API host (EU: https://api.eu.sendgrid.com).", kind="url", required=True
    )
    timeout: float = opt(30.0, "Seconds before a request times out.", bounds=(0.1, 600))
    categories: list[str] = opt([], "Categories added to every message (at most 10).", max_len=255, max_items=10)
    asm_group_id: int = opt(0, "Unsubscribe group id; 0 for none.", bounds=(0, 2**31 - 1))
    max_retries: int = opt(5, "Retries of one request on 429/5xx/refused connections.", bounds=(0, 20))
    max_wait: float = opt(
        60.0,
        "Longest wait in seconds before one retry (a 429's X-RateLimit-Reset is capped to it).",
        bounds=(0, 3600),
    )
    max_per_request: int = opt(
        1000, "Personalizations per mail/send request (SendGrid allows at most 1000).", bounds=(1, 1000)
    )
    scheduled_mode: bool = opt(
        False,
        "Send each request with a batch_id and a send_at ahead, so a request whose answer was lost can be "
        "cancelled and re-issued: exactly once across crashes, at the cost of a delay.",
    )
    send_at_delay_minutes: int = opt(
        15,
        "Scheduled mode: minutes between the send and send_at (more than 10: cancels close 10 minutes before).",
        bounds=(11, 72 * 60 - 10),  # SendGrid schedules at most 72 hours ahead
    )
    webhook_key_env: str = opt(
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
        "Environment variable holding the Event Webhook's verification key (base64, from SendGrid's settings).",
        kind="env",
        required=True,
    )
    webhook_max_age: int = opt(
        600, "Seconds a signed webhook request stays valid (older ones are refused as replays).", bounds=(1, 86_400)
    )
    open_tracking: bool = opt(
        False,
        "Ask SendGrid to add its open-tracking pixel (sent with every request; off by default: a privacy choice, "
        "and Apple Mail opens every message by itself anyway).",
    )
    click_tracking: bool = opt(
        False,
        "Ask SendGrid to rewrite links through its click tracker (sent with every request; off by default: "
        "readers see and reach the real URL).",
    )


@dataclass(frozen=True)
class SmtpConfig:
    host: str = opt("localhost", "SMTP server.", kind="host", required=True)
    port: int = opt(587, "SMTP port.", bounds=(1, 65535))
    security: str = opt("starttls", "starttls, ssl or none.", choices=("starttls", "ssl", "none"))
    username_env: str = opt(
        "SMTP_USERNAME", "Environment variable holding the user name (empty: no login).", kind="env"
    )
    password_env: str = opt("SMTP_PASSWORD", "Environment variable holding the password.", kind="env")
    ca_file: Path | None = opt(
        None, "PEM file of CAs to trust for a relay with a private certificate; unset: the system's.", kind="path"
    )
    timeout: float = opt(30.0, "Seconds before a connection times out.", bounds=(0.1, 600))


@dataclass(frozen=True)
class ScheduleConfig:
    cron: str = opt(
        "",
        "One slot for everyone (the form before cadences): 5-field cron (minute hour day-of-month month "
        "day-of-week), e.g. `0 9 * * MON`. It is the weekly slot; beside `daily` or `monthly` it is `weekly`'s older name.",
        max_len=200,
    )
    daily: str = opt(
        "",
        "Slot of the daily edition (ids like 2026-11-30) for readers who chose daily, e.g. `0 7 * * *`: one time of day.",
        max_len=200,
    )
    weekly: str = opt(
        "", "Slot of the weekly edition (ids like 2026-W49), e.g. `0 9 * * MON`: one weekday at one time.", max_len=200
    )
    monthly: str = opt(
        "",
        "Slot of the monthly edition (ids like 2026-11), e.g. `0 9 1 * *`: one day of the month at one time.",
        max_len=200,
    )
    default: str = opt(
        "",
        "Edition of subscribers who chose no cadence, or one without a slot: daily, weekly or monthly. "
        "Empty: weekly, or the only cadence with a slot.",
        max_len=20,
    )
    timezone: str = opt("", "IANA zone the cron runs in; empty: newsletter.timezone.")
    grace_hours: float = opt(
        24.0,
        "`send --scheduled` still sends a slot's edition this many hours late; later it refuses unless --force.",
        bounds=(0, 24 * 366),  # more than 0: see _validate_schedule
    )
    local_time: bool = opt(
        False,
        "SendGrid only: each subscriber gets the edition at the slot's wall-clock time in their own `timezone` "
        "(send_at); those whose local time already passed get it at once.",
    )


@dataclass(frozen=True)
class ServeConfig:
    trusted_hosts: list[str] = opt(
        [],
        "Host names `digest serve` answers to (others get 400); `*.example.com` allowed. Empty: the hosts of "
        "unsubscribe_url and preferences_url, plus 127.0.0.1 and localhost.",
        max_len=253,
        max_items=100,
    )
    rate_limit: int = opt(
        60,
        "POSTs (unsubscribe, preferences) one client address may make per minute, per server process; 0: no limit.",
        bounds=(0, 1_000_000),
    )
    rate_burst: int = opt(
        20,
        "Requests (POSTs, webhook requests) one client address may make at once before the per-minute limits pace them.",
        bounds=(0, 100_000),
    )
    webhook_rate_limit: int = opt(
        1200,
        "Webhook requests one client address may make per minute, per server process; 0: no limit.",
        bounds=(0, 1_000_000),
    )
    webhook_max_bytes: int = opt(
        8 * 1024 * 1024,
        "Largest webhook body accepted (413 beyond it, checked while it arrives).",
        bounds=(1024, 64 * 1024 * 1024),
    )
    legacy_token_days: int = opt(
        90,
        "Days that links carrying the address (made before opaque ids) keep working, counted from the first "
        "link made with an opaque id; 0: refuse them now.",
        bounds=(0, 3660),
    )


@dataclass(frozen=True)
class SignupConfig:
    enabled: bool = opt(
        False,
        "Serve the signup form (GET/POST /subscribe), its JSON API (/api/subscribe) and confirmation links "
        "on `digest serve`: double opt-in, see the signup page of the docs.",
    )
    url: str = opt(
        "",
        "Public URL of the signup page, e.g. https://news.example.com/subscribe; empty: `subscribe` next to "
        "unsubscribe_url. Confirmation links and `digest form` point here.",
        kind="https",
    )
    consent_text: str = opt(
        "I want to receive {newsletter} by email. I can unsubscribe at any time with the link in every email.",
        "The consent line shown beside the form's checkbox and kept with each consent record; {newsletter} "
        "becomes the newsletter's name.",
        kind="text",
        max_len=1000,
    )
    confirm_hours: int = opt(48, "Hours a confirmation link works (it works once).", bounds=(1, 24 * 30))
    pending_days: int = opt(
        7,
        "Days an unconfirmed signup (and its consent record) is kept before it is purged; pending "
        "signups never receive digests.",
        bounds=(1, 365),
    )
    min_fill_seconds: float = opt(
        3.0,
        "A form submitted sooner than this after the page was served is shown again instead (bots fill "
        "forms at once); 0: no check.",
        bounds=(0, 600),
    )
    per_ip_per_hour: int = opt(
        10, "Signups one client address may submit per hour, per server process; 0: no limit.", bounds=(0, 100_000)
    )
    per_address_per_day: int = opt(
        3,
        "Most confirmation emails one address receives in 24 hours, whoever asks for them (nobody can "
        "flood an inbox through the form).",
        bounds=(1, 100),
    )
    check_mx: bool = opt(
        False, "Also check that the address's domain accepts mail (a DNS lookup per signup); off: syntax only."
    )
    keep_ip_days: int = opt(
        0,
        "Days the signup's client address is kept in its consent record, then erased; 0: never recorded.",
        bounds=(0, 3660),
    )
    topics: int = opt(
        30,
        "Most topics the form offers: the tags and categories the content uses most, as the articles spell "
        "them; 0: no topic picker.",
        bounds=(0, 500),
    )
    welcome_articles: int = opt(
        3, "Top articles of the last edition shown in the welcome email; 0: none.", bounds=(0, 20)
    )
    confirm_subject: str = opt(
        "Confirm your subscription to {newsletter}", "Subject of the confirmation email.", max_len=200
    )
    welcome_subject: str = opt("Welcome to {newsletter}", "Subject of the welcome email.", max_len=200)
    captcha: str = opt(
        "",
        'A CAPTCHA on the form: "turnstile" (Cloudflare) or "hcaptcha"; empty: none (the honeypot, the '
        "fill time and the rate limits still apply).",
        choices=("", "turnstile", "hcaptcha"),
    )
    captcha_site_key: str = opt("", "The CAPTCHA's public site key (shown in the page).", max_len=200)
    captcha_secret_env: str = opt(
        "DIGEST_CAPTCHA_SECRET", "Environment variable holding the CAPTCHA's secret key.", kind="env"
    )
    captcha_verify_url: str = opt(
        "",
        "The CAPTCHA provider's verification endpoint; empty: the provider's own (siteverify).",
        kind="url",
    )


@dataclass(frozen=True)
class ArchiveConfig:
    base_url: str = opt(
        "",
        "Where `digest archive` output is published, e.g. https://news.example.com/archive/; each email then "
        'carries a "View in browser" link to its edition\'s page. Empty: no link.',
        kind="url",
    )
    path: Path = opt(Path("site"), "Folder `digest archive` writes when no --out is given.", kind="path")
    editions: int = opt(0, "Most editions in the archive and its feed, newest first; 0: all.", bounds=(0, 100_000))


SECTIONS: dict[str, type] = {
    "newsletter": NewsletterConfig,
    "content": ContentConfig,
    "subscribers": SubscribersConfig,
    "selection": SelectionConfig,
    "templates": TemplatesConfig,
    "tracking": TrackingConfig,
    "state": StateConfig,
    "output": OutputConfig,
    "sending": SendingConfig,
    "sendgrid": SendGridConfig,
    "smtp": SmtpConfig,
    "schedule": ScheduleConfig,
    "serve": ServeConfig,
    "signup": SignupConfig,
    "archive": ArchiveConfig,
}


@dataclass(frozen=True)
class Config:
    """The whole validated configuration, loaded once and passed explicitly."""

    newsletter: NewsletterConfig = field(default_factory=NewsletterConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    subscribers: SubscribersConfig = field(default_factory=SubscribersConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    templates: TemplatesConfig = field(default_factory=TemplatesConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    state: StateConfig = field(default_factory=StateConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    sending: SendingConfig = field(default_factory=SendingConfig)
    sendgrid: SendGridConfig = field(default_factory=SendGridConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    signup: SignupConfig = field(default_factory=SignupConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    source: Path | None = None  #: the file it came from

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.newsletter.timezone)

    @property
    def from_name(self) -> str:
        return self.newsletter.from_name or self.newsletter.name


def describe_schema() -> list[tuple[str, str, Any, str]]:
    """(section, key, default, doc) for every option: the README reference and a test use it."""
    rows = []
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            default = f.default if f.default_factory is MISSING else f.default_factory()
            rows.append((name, f.name, default, f.metadata.get("doc", "")))
    return rows
