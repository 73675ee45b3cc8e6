"""`digest check`: every problem in config, content, subscribers and templates, without sending."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from digest.config import Config
from digest.errors import DigestError
from digest.models import Problem, Selection, Subscriber
from digest.pipeline import Run
from digest.theme import theme_problems

#: Transports that mail real inboxes in bulk (the outbox only writes files).
BULK_TRANSPORTS = frozenset({"sendgrid", "smtp"})


def one_click_problem(config: Config, transport: str | None = None) -> str | None:
    """Why this config must not send bulk mail through `transport`, or None.

    Gmail and Yahoo reject or spam-folder bulk mail without RFC 8058 one-click unsubscribe, which
    needs an HTTPS endpoint (`digest serve` behind TLS); the mailto fallback is not enough there.
    """
    transport = transport or config.sending.transport
    if transport in BULK_TRANSPORTS and not config.sending.unsubscribe_url:
        return (
            f"sending.transport is {transport} but sending.unsubscribe_url is empty: Gmail and Yahoo reject or "
            "spam-folder bulk mail without one-click unsubscribe; run `digest serve` behind HTTPS and set "
            "unsubscribe_url to its /unsubscribe (see docs/sending.md)"
        )
    return None


def check(run: Run, selections: Iterable[Selection] | None = None) -> list[Problem]:
    """Every problem; `selections`: the run's, when the caller made them already (the preview)."""
    config = run.config
    source = str(config.source or "config")
    problems: list[Problem] = list(run.problems)
    if not config.newsletter.postal_address.strip():
        problems.append(
            Problem(
                source, "newsletter.postal_address is empty (CAN-SPAM wants one in every footer)", severity="warning"
            )
        )
    one_click = one_click_problem(config)
    if one_click:
        problems.append(Problem(source, one_click))
    if config.sending.unsubscribe_url or config.sending.preferences_url:
        # the URLs are https (the config refuses others); the signing secret must be there too
        try:
            run.unsubscribe_url(Subscriber(email="check@example.com"))
        except DigestError as exc:
            problems.append(Problem(source, str(exc)))
    problems.extend(theme_problems(config))
    problems.extend(check_state_files(config))
    problems.extend(check_templates(run))
    problems.extend(check_segments(run))
    problems.extend(check_cadences(run))
    if not any(p.severity == "error" and p.source.startswith(str(config.templates.path)) for p in problems):
        problems.extend(check_fast_path(run, selections))
    return problems


def check_state_files(config: Config) -> list[Problem]:
    """The ledger and the subscriber state, verified as the next send will (nothing is written)."""
    from digest.statefiles import StateFilesError, verify
    from digest.store import locate

    if locate(config).url:
        return []  # one PostgreSQL database holds both: they cannot be lost or replaced apart
    try:
        verify(config.state.path)
    except StateFilesError as exc:
        return [Problem(str(config.state.path), str(exc))]
    return []


def check_cadences(run: Run) -> list[Problem]:
    """Subscribers whose chosen cadence has no slot: they get the default edition, which is
    worth knowing (a warning), never a reason to leave them out."""
    from digest.cadences import Cadences

    cadences = Cadences.of(run.config)
    if cadences is None:
        return []
    where = str(run.config.subscribers.path)
    return [
        Problem(
            where,
            f"{n} subscriber(s) chose {chosen}, which [schedule] has no slot for: they get the "
            f"{cadences.default} edition (add schedule.{chosen} to send theirs)",
            severity="warning",
        )
        for chosen, n in sorted(cadences.unserved(run.subscribers.subscribers).items())
    ]


def check_fast_path(run: Run, selections: Iterable[Selection] | None = None) -> list[Problem]:
    """Templates (the main one and each segment's) whose digests cannot all be assembled from
    compiled-once pieces, and why. They are still exact, but compiled whole once per distinct
    digest: a 100,000-subscriber send takes minutes instead of seconds.

    The edition's real selections decide which head variants are needed; each is assembled once
    and compared with a whole compile, as a send does on first use."""
    where = str(run.config.templates.path)
    try:
        return [
            Problem(where, f"{FAST_PATH_OFF}: {reason}", severity="warning")
            for variant, chosen in _by_variant(run, run.selections() if selections is None else selections)
            for reason in variant.prepared.check(chosen)
        ]
    except DigestError:
        return []  # a template or segments error: check_templates and check_segments report it


def _by_variant(run: Run, selections: Iterable[Selection]) -> list[tuple[Run, list[Selection]]]:
    """One selection per distinct content, grouped by the (segment-overridden) run composing it."""
    by_variant: dict[int, tuple[Run, list[Selection]]] = {}
    seen: set[tuple[str, ...]] = set()
    for selection in selections:
        if not selection.gets_email:
            continue
        key = run.group_key(selection)
        if key not in seen:
            seen.add(key)
            variant = run.variant(selection.subscriber)
            by_variant.setdefault(id(variant), (variant, []))[1].append(selection)
    return list(by_variant.values())


#: How `digest check` and `send --dry-run` introduce a template that is off the fast path.
FAST_PATH_OFF = "not compiled once per edition (each distinct digest is compiled whole: exact, but slower)"


def check_templates(run: Run) -> list[Problem]:
    """Compile a full-size digest (max_articles of the newest articles) and measure it."""
    config = run.config
    where = str(config.templates.path)
    candidates = [a for a in sorted(run.content.articles, key=lambda a: a.date, reverse=True) if not a.draft]
    articles = tuple(candidates[: config.selection.max_articles])
    if not articles:
        return [Problem(where, "no articles to test the templates with", severity="warning")]
    probe = Subscriber(email="reader.with.a.long.address@example.com", name="Alexandra Montgomery-Smythe")
    from digest.models import Choice

    selection = Selection(probe, tuple(Choice(a, "check") for a in articles), run.at, run.at)
    # A private pool holding exactly these articles: the check must not depend on the date.
    sized = replace(run, pool=articles)
    try:
        email = sized.prepared.email(selection, run.values(probe))
    except DigestError as exc:
        return [Problem(where, str(exc))]
    problems = []
    limit = config.templates.max_html_kb * 1000
    kb = email.html_bytes / 1000
    if email.html_bytes > limit:
        problems.append(
            Problem(
                where,
                f"a {len(articles)}-article digest is {kb:.1f} KB of HTML, over the {config.templates.max_html_kb} KB "
                "limit (Gmail clips at about 102 KB and hides the unsubscribe link)",
            )
        )
    if len(email.subject) > config.templates.max_subject_chars:
        problems.append(
            Problem(
                where,
                f"subject is {len(email.subject)} characters (over {config.templates.max_subject_chars}); "
                "mail apps will cut it",
                severity="warning",
            )
        )
    return problems


def check_segments(run: Run) -> list[Problem]:
    """The segments file: its syntax, rule fields no subscriber has, and every segment's overrides
    compiled and measured like the main templates."""
    from digest.segments import SegmentError, rule_problems

    try:
        segments = run.segments
    except SegmentError as exc:
        return [Problem(str(run.config.subscribers.segments), str(exc))]
    problems = rule_problems(segments, run.subscribers.subscribers)
    for segment in segments:
        if segment.overrides:
            for p in check_templates(run.with_overrides(segment.overrides)):
                problems.append(replace(p, message=f"segment {segment.name!r} overrides: {p.message}"))
    return problems


def source_summary(run: Run) -> list[str]:
    """What `digest check --verbose` adds: where articles and templates come from, and what was
    skipped on purpose (list pages, drafts ...), counted and listed, since none of it is an error."""
    from collections import Counter

    from digest.theme import Theme

    content = run.content
    config = run.config
    from_feeds = sum(1 for a in content.articles if a.id.startswith("feeds/"))
    source = f"{config.content.path}" + (f" and {len(config.content.feeds)} feed(s)" if config.content.feeds else "")
    lines = [f"content: {len(content.articles)} article(s) from {source} ({from_feeds} from feeds)"]
    reasons = Counter(s.reason for s in content.skipped)
    reasons["draft"] += sum(1 for a in content.articles if a.draft)  # complete drafts: read, never sent
    counted = ", ".join(f"{n} {reason}(s)" for reason, n in reasons.most_common() if n)
    lines.append(f"skipped on purpose: {counted or 'nothing'}")
    lines += [f"  {s}" for s in content.skipped]
    lines += [f"  {a.path}: draft (read, never sent)" for a in content.articles if a.draft]
    lines.append(Theme.of(config).describe())
    return lines
