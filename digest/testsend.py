"""`digest test-send`: a segment's digest, exactly as one of its members gets it, sent only to testers.

"Exactly": the member is selected by the same run (the ledger's history included, read-only) and
composed by the same composer with their segment overrides and personal fields; the only changes
are the subject prefix, a banner naming the segment and the member, and the member's unsubscribe
and preferences links (in the body and the List-Unsubscribe headers): a tester clicking them must
not unsubscribe the member, so they point at a harmless placeholder and List-Unsubscribe is left out.

Safety: recipients are built only from the test addresses, the ledger is opened read-only (SQLite
refuses any write) or not at all, and test emails are filed under their own edition id
(`<edition>.test.<segment>`), so nothing a later real send reads is touched.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from digest import personalize
from digest.compose import Content, list_headers
from digest.config import Config
from digest.errors import DigestError, LedgerError, SubscriberError
from digest.ledger import LEDGER_NAME
from digest.models import Edition, Email, Selection, Subscriber
from digest.pipeline import Run
from digest.segments import Segment
from digest.selection import NO_HISTORY, History
from digest.store import ledger_exists, open_ledger
from digest.subscribers import is_valid_email
from digest.text import one_line
from digest.transports import Batch, Recipient, Transport

BANNER_START = "<!--digest:test-banner-->"
BANNER_END = "<!--/digest:test-banner-->"
TEXT_BANNER_END = "-" * 40  #: the line that ends the text part's banner
#: Where the member's unsubscribe and preferences links point in a test email.
DISABLED_LINK_FRAGMENT = "#test-send-links-disabled"

_BODY_OPEN = re.compile(r"<body\b[^>]*>\s*")
_HIDDEN_PREHEADER = re.compile(r"<div style=\"display:none;[^\"]*\">.*?</div>\s*", re.S)


class TestSendError(DigestError):
    """A test send cannot go on (no member gets a digest, --as names a non-member ...)."""

    __test__ = False  # not a pytest class


class NoTestRecipientsError(TestSendError):
    """Neither the segment's `test_recipients` nor --to names anyone to send the test to."""


@dataclass(frozen=True)
class PlannedTest:
    """One segment's test email: rendered for `member`, going to `recipients` only."""

    segment: Segment
    member: Subscriber
    selection: Selection  #: the member's own selection
    content: Content  #: the member's content with the prefix and the banner
    values: Mapping[str, str]  #: the member's fields, links disabled
    headers: Mapping[str, str]
    recipients: tuple[str, ...]
    edition_id: str  #: what transports file it under: never the real edition's id

    def recipient(self, address: str) -> Recipient:
        tester = Subscriber(email=address)
        return Recipient(replace(self.selection, subscriber=tester), self.values, self.headers)


@dataclass(frozen=True)
class SentTest:
    segment: str
    member: str
    subject: str
    articles: int
    accepted: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SendTestReport:
    edition: Edition
    transport: str
    sent: tuple[SentTest, ...]
    skipped: tuple[tuple[str, str], ...] = ()  #: (segment, why), --all-segments only

    @property
    def exit_code(self) -> int:
        return 1 if any(t.failed for t in self.sent) else 0


# ---------------------------------------------------------------- the ledger, read-only


def read_history(run: Run) -> tuple[Run, Mapping[str, History]]:
    """What a real send of the run's edition would know (`Run.with_history`), read from the ledger
    opened read-only: the engine refuses any write. No ledger yet: no history (and none made)."""
    config = run.config
    if not ledger_exists(config):
        return run.with_history(None)
    with open_ledger(config, "read") as ledger:
        try:
            return run.with_history(ledger)
        except sqlite3.Error as exc:
            raise LedgerError(f"{config.state.path / LEDGER_NAME}: cannot read the send ledger: {exc}") from None


# ---------------------------------------------------------------- planning


def plan_test(
    run: Run,
    segment_name: str,
    histories: Mapping[str, History],
    *,
    to: tuple[str, ...] = (),
    as_member: str | None = None,
) -> PlannedTest:
    """The test email of one segment (raises when it cannot be made; see the errors)."""
    segment = run.segments.get(segment_name)
    recipients = to or segment.test_recipients
    if not recipients:
        raise NoTestRecipientsError(
            f"segment {segment.name!r} has no test_recipients in {run.segments.path} and no --to was given"
        )
    for address in recipients:
        if not is_valid_email(address):
            raise TestSendError(f"invalid test recipient {address!r}")
    members = run.segments.members(segment.name, run.subscribers.subscribers)
    selection = _member_selection(run, segment, members, histories, as_member)
    member = selection.subscriber
    base = run.content_for(selection)
    prefix = one_line(run.config.sending.test_subject_prefix)
    content = replace(
        base,
        subject=f"{prefix} {base.subject}" if prefix else base.subject,
        html=insert_banner(base.html, banner_html(segment, member)),
        text=banner_text(segment, member) + base.text,
    )
    values = dict(run.values(member))
    disabled = run.config.newsletter.site_url.rstrip("/") + "/" + DISABLED_LINK_FRAGMENT
    values.update(unsubscribe_url=disabled, preferences_url=disabled)
    headers = {
        "List-Id": list_headers(run.config, values)["List-Id"],
        "X-Digest-Test": f"segment={segment.name}; member={member.email}",
    }
    return PlannedTest(
        segment=segment,
        member=member,
        selection=selection,
        content=content,
        values=values,
        headers=headers,
        recipients=tuple(dict.fromkeys(recipients)),
        edition_id=f"{run.edition.id}.test.{segment.name}",
    )


def _member_selection(
    run: Run,
    segment: Segment,
    members: tuple[Subscriber, ...],
    histories: Mapping[str, History],
    as_member: str | None,
) -> Selection:
    def select(member: Subscriber) -> Selection:
        return run.select(member, histories.get(member.id, NO_HISTORY))

    if as_member:
        wanted = as_member.casefold()
        if not any(s.id == wanted for s in run.subscribers.subscribers):
            raise SubscriberError(f"--as {as_member}: not in {run.config.subscribers.path}")
        member = next((s for s in members if s.id == wanted), None)
        if member is None:
            raise TestSendError(f"--as {as_member}: not a member of segment {segment.name!r}")
        selection = select(member)
        if not selection.gets_email:
            raise TestSendError(f"--as {as_member}: gets no digest in edition {run.edition.id}: {selection.skipped}")
        return selection
    # The representative member: the first in list order who gets a digest this edition.
    first_reason = ""
    for member in members:
        selection = select(member)
        if selection.gets_email:
            return selection
        first_reason = first_reason or f"{member.email}: {selection.skipped}"
    raise TestSendError(
        f"no member of segment {segment.name!r} gets a digest in edition {run.edition.id} (first: {first_reason})"
    )


# ---------------------------------------------------------------- the visible changes


def banner_html(segment: Segment, member: Subscriber) -> str:
    esc = personalize.escape_text
    who = esc(member.email) + (f" ({esc(member.name)})" if member.name else "")
    return (
        f"{BANNER_START}"
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'style="background-color:#fff4c2;border-bottom:2px solid #d9a400;">'
        '<tr><td align="center" style="padding:12px 16px;font-family:Helvetica,Arial,sans-serif;'
        'font-size:14px;line-height:1.4;color:#4d3a00;">'
        f"<strong>Test send</strong> of segment <strong>{esc(segment.name)}</strong>, "
        f"rendered for <strong>{who}</strong>. Unsubscribe and preferences links are disabled in this copy."
        f"</td></tr></table>{BANNER_END}"
    )


def banner_text(segment: Segment, member: Subscriber) -> str:
    who = member.email + (f" ({member.name})" if member.name else "")
    return (
        f"TEST SEND of segment {segment.name}, rendered for {who}.\n"
        "Unsubscribe and preferences links are disabled in this copy.\n"
        f"{TEXT_BANNER_END}\n\n"
    )


def insert_banner(html: str, banner: str) -> str:
    """After <body> and the hidden preheader (so the inbox preview stays the member's)."""
    body = _BODY_OPEN.search(html)
    at = body.end() if body else 0
    hidden = _HIDDEN_PREHEADER.match(html, at)
    if hidden:
        at = hidden.end()
    return html[:at] + banner + html[at:]


# ---------------------------------------------------------------- sending


def dispatch(run: Run, planned: PlannedTest, transport: Transport) -> SentTest:
    """Hand one planned test to the transport, in batches it accepts. Touches no ledger."""
    composer = run.variant(planned.member).composer
    content = planned.content

    def email_for(recipient: Recipient) -> Email:
        email = composer.personalize(content, recipient.subscriber, recipient.values)
        return replace(email, headers=dict(planned.headers))  # never the member's List-Unsubscribe

    accepted: list[str] = []
    failed: list[tuple[str, str]] = []
    recipients = [planned.recipient(a) for a in planned.recipients]
    size = max(1, transport.max_batch)
    for i in range(0, len(recipients), size):
        chunk = tuple(recipients[i : i + size])
        outcome = transport.send(Batch(planned.edition_id, content, chunk, email_for))
        emails = [r.subscriber.email for r in chunk]
        if outcome.kind == "accepted":
            accepted.extend(emails)
        else:
            failed.extend((e, f"{outcome.kind}: {outcome.error}") for e in emails)
    return SentTest(
        segment=planned.segment.name,
        member=planned.member.email,
        subject=personalize.fill(content.subject, planned.values),
        articles=len(planned.selection.choices),
        accepted=tuple(accepted),
        failed=tuple(failed),
    )


def send_tests(
    config: Config,
    at: datetime,
    *,
    segments: tuple[str, ...] = (),
    all_segments: bool = False,
    to: tuple[str, ...] = (),
    as_member: str | None = None,
    edition_id: str | None = None,
    transport_name: str | None = None,
) -> SendTestReport:
    """`digest test-send`: plan every requested segment first, then send; nothing is sent when
    a named segment cannot be tested. With --all-segments, untestable segments are skipped."""
    import dataclasses

    from digest.pipeline import open_run
    from digest.transports import make_transport

    # Article links go straight to the articles: a tester's click must not count as the member's,
    # and it must work before the edition is sent (first-party links resolve only after).
    config = dataclasses.replace(config, tracking=dataclasses.replace(config.tracking, clicks=False))
    run = open_run(config, at, edition_id, persist_links=False)
    run, histories = read_history(run)
    if all_segments:
        names = run.segments.names
        if not names:
            raise TestSendError(f"no segments are defined ({run.segments.path})")
    elif segments:
        names = segments
    else:
        raise TestSendError("name a segment with --segment NAME, or use --all-segments")
    planned: list[PlannedTest] = []
    skipped: list[tuple[str, str]] = []
    for name in dict.fromkeys(names):
        try:
            planned.append(plan_test(run, name, histories, to=to, as_member=as_member))
        except TestSendError as exc:
            if not all_segments or isinstance(exc, NoTestRecipientsError):
                raise
            skipped.append((name, str(exc)))
        except DigestError as exc:  # an empty segment, or --as naming a non-member
            if not all_segments:
                raise
            skipped.append((name, str(exc)))
    transport = make_transport(config, at=at, name=transport_name)
    try:
        sent = tuple(dispatch(run, p, transport) for p in planned)
    finally:
        transport.close()
    return SendTestReport(run.edition, transport.name, sent, tuple(skipped))
