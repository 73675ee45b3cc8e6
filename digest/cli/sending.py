"""`digest send`, `digest status`, `digest sync`, `digest test-send`: sending an edition and what the ledger says."""

from __future__ import annotations

import sys
from typing import Any

import click

from digest.cli.base import Context, at_option, cadence_option, main, pass_ctx
from digest.cli.schedule import echo_unserved
from digest.errors import DigestError


def _echo_send_report(report: Any) -> None:
    from collections import Counter

    what = "dry run: " if report.dry_run else ""
    click.echo(f"{what}edition {report.edition.id} via {report.transport}")
    if report.dry_run:
        click.echo(
            f"would send {report.recipients} email(s): {report.contents} distinct content(s), {report.requests} request(s)"
        )
        if report.first:
            click.echo("first recipients: " + ", ".join(report.first))
    else:
        click.echo(f"accepted: {len(report.accepted)} in {report.requests} request(s)")
    click.echo(f"skipped: {len(report.skipped)}")
    for reason, count in Counter(why for _, why in report.skipped).most_common():
        click.echo(f"  {count} x {reason}")
    for label, rows in (("failed", report.failed), ("ambiguous", report.ambiguous)):
        if rows or not report.dry_run:
            click.echo(f"{label}: {len(rows)}")
        for address, why in rows[:20]:
            click.echo(f"  {address}: {why}")
        if len(rows) > 20:
            click.echo(f"  ... and {len(rows) - 20} more")
    if report.ambiguous:
        click.echo("ambiguous: they may have received it; rerun with --on-ambiguous=resend to send again anyway")
    for note in report.notes:
        click.echo(f"note: {note}")


class _SendProgress:
    """A progress bar on a terminal, plain log lines otherwise."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.logged = 0
        self.bar: Any = None

    def start(self, total: int) -> None:
        self.finish()  # a scheduled run sends one edition per cadence: one bar each
        self.total, self.done, self.logged, self.bar = total, 0, 0, None
        if sys.stderr.isatty():
            self.bar = click.progressbar(length=total, label="sending", file=sys.stderr)
            self.bar.__enter__()

    def __call__(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.done >= self.total or self.done - self.logged >= max(1, self.total // 10):
            # a log line per tenth: a 100,000-subscriber send is thousands of requests
            self.logged = self.done
            click.echo(f"sent {self.done}/{self.total}", err=True)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@main.command("send")
@at_option
@click.option("--edition", "edition_id", metavar="ID", help="Edition id (default: the ISO week of --at).")
@click.option("--dry-run", is_flag=True, help="Count recipients, contents and requests; send nothing, write nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Send to at most N subscribers in this run.")
@click.option("--subscriber", "subscribers", multiple=True, metavar="EMAIL", help="Only this subscriber (repeatable).")
@click.option("--segment", metavar="NAME", help="Only the members of this segment (see `digest segments`).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (required without a terminal).")
@click.option(
    "--on-ambiguous",
    type=click.Choice(["skip", "resend"]),
    help="Subscribers whose earlier request may have left: skip them (default) or send again.",
)
@click.option(
    "--scheduled-mode/--no-scheduled-mode",
    "scheduled",
    default=None,
    help="SendGrid: batch_id + send_at ahead, so lost answers are cancelled and re-issued.",
)
@click.option("--sandbox", is_flag=True, help="SendGrid sandbox mode: validated, never delivered, nothing recorded.")
@click.option("--transport", type=click.Choice(["outbox", "sendgrid", "smtp"]), help="Override sending.transport.")
@click.option(
    "--scheduled",
    "on_schedule",
    is_flag=True,
    help="Send the edition of the most recent [schedule] slot (--at: as of then), if within the grace period.",
)
@click.option("--force", is_flag=True, help="With --scheduled: send even when the slot is past the grace period.")
@click.option(
    "--i-know-state-is-new",
    "fresh_state",
    is_flag=True,
    help="Send although the ledger or the subscriber state is missing, empty or replaced (a deliberate fresh start).",
)
@cadence_option
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Senders forked after planning, sharing the edition through the ledger's queue (POSIX).",
)
@click.option("--timings", is_flag=True, help="Print where the time went (load, plan, compose, ledger, send).")
@pass_ctx
def send_command(
    obj: Context,
    at: str | None,
    edition_id: str | None,
    dry_run: bool,
    limit: int | None,
    subscribers: tuple[str, ...],
    segment: str | None,
    yes: bool,
    on_ambiguous: str | None,
    scheduled: bool | None,
    sandbox: bool,
    transport: str | None,
    on_schedule: bool,
    force: bool,
    fresh_state: bool,
    cadence: str | None,
    workers: int,
    timings: bool,
) -> None:
    """Send each eligible subscriber this edition's digest, exactly once."""
    from digest.errors import UsageError
    from digest.schedule import parse_at
    from digest.send import SendOptions, send

    config = obj.config()
    if sandbox and (transport or config.sending.transport) != "sendgrid":
        # only SendGrid has a sandbox: on the outbox or SMTP a "sandbox" run would really send
        raise UsageError("--sandbox is SendGrid's sandbox mode: use it with the sendgrid transport")
    if not (yes or dry_run or sandbox) and not sys.stdin.isatty():
        raise UsageError("refusing to send without confirmation: no terminal to ask on; pass --yes")
    options = SendOptions.from_config(
        config,
        only=subscribers,
        segment=segment or "",
        limit=limit,
        dry_run=dry_run,
        on_ambiguous=on_ambiguous or None,
        scheduled=scheduled,
        fresh_state=fresh_state,
        workers=workers,
    )
    progress = _SendProgress()

    def confirm(planned: Any) -> bool:
        if not (yes or sandbox):
            _echo_send_report(planned)
            if not click.confirm(f"send {planned.recipients} email(s) via {planned.transport} now?"):
                return False
        progress.start(planned.recipients)
        return True

    if force and not on_schedule:
        raise UsageError("--force only applies with --scheduled")
    if on_schedule:
        if edition_id or sandbox:
            raise UsageError("--scheduled names the edition from the slot: no --edition or --sandbox with it")
        _send_scheduled(
            config,
            at,
            options,
            cadence,
            force=force,
            transport=transport,
            confirm=confirm,
            progress=progress,
            timings=timings,
        )
        return
    from digest.cadences import cadence_for_send

    try:
        report = send(
            config,
            parse_at(at, config.tz),
            options,
            edition_id=edition_id,
            transport_name=transport,
            sandbox=sandbox,
            confirm=confirm,
            progress=progress,
            cadence=cadence_for_send(config, cadence),
        )
    finally:
        progress.finish()
    _echo_send_report(report)
    if timings:
        click.echo(report.timings)
    if report.exit_code:
        sys.exit(report.exit_code)


def _send_scheduled(
    config: Any,
    at: str | None,
    options: Any,
    cadence: str | None,
    *,
    force: bool,
    transport: str | None,
    confirm: Any,
    progress: _SendProgress,
    timings: bool = False,
) -> None:
    """`send --scheduled`: each cadence's due edition (or the named cadence's). One cadence's
    trouble (late, failed) is one line and sets the exit code; the others still go out."""
    from digest.schedule import parse_at
    from digest.scheduler import send_due

    try:
        results = send_due(
            config,
            parse_at(at, config.tz),
            options,
            cadences=(cadence,) if cadence else (),
            force=force,
            transport_name=transport,
            confirm=confirm,
            progress=progress,
        )
    finally:
        progress.finish()
    if len(results) == 1 and isinstance(results[0], DigestError):
        raise results[0]  # one edition (a single cron, or --cadence): its error is the command's
    codes = []
    for result in results:
        if isinstance(result, DigestError):
            click.echo(f"error: {result}", err=True)
            codes.append(result.exit_code)
            continue
        if result.report is not None and result.outcome != "nothing":
            _echo_send_report(result.report)
        if timings and result.report is not None:
            click.echo(result.report.timings)
        click.echo(result.message)
        if result.report is not None:
            codes.append(result.report.exit_code)
    # 1 (failed or late) before 2 (usage) before 3 (only ambiguous rows left)
    code = min((c for c in codes if c), default=0)
    if code:
        sys.exit(code)


@main.command("status")
@click.option("--edition", "edition_id", metavar="ID", help="Edition id (default: the latest in the ledger).")
@at_option
@pass_ctx
def status_command(obj: Context, edition_id: str | None, at: str | None) -> None:
    """Show the send ledger (an edition's counts, the last editions) and each cadence's slot."""
    from digest.schedule import describe, hours, parse_at
    from digest.scheduler import cadence_status
    from digest.send import status

    config = obj.config()
    _echo_ledger_status(config, status(config, edition_id))
    cadences = cadence_status(config, parse_at(at, config.tz))
    if cadences is None:
        return
    schedule = cadences.cadences
    what = "one slot for everyone" if schedule.legacy else f"default {schedule.default}"
    click.echo(f"cadences ({schedule.tz.key}, grace {hours(schedule.grace)}, {what}):")
    for state in cadences.states:
        table = state.table
        last = "nothing sent yet"
        if state.last is not None:
            counts = ", ".join(f"{name} {n}" for name, n in sorted(state.last.counts.items()))
            last = f"{state.last.edition}: {counts}"
        click.echo(
            f"  {table.cadence:8} {table.cron.expr:16} {state.subscribers} subscriber(s); "
            f"next {state.next.edition_id} {describe(state.next.at)}; last {last}"
        )
    echo_unserved(cadences.unserved, schedule.default)


def _echo_ledger_status(config: Any, report: Any) -> None:
    from digest.report import percent, status_reports, summary_line

    if report.edition is None:
        click.echo("the ledger is empty: nothing sent yet")
        return
    counts = ", ".join(f"{state} {n}" for state, n in sorted(report.counts.items())) or "no rows"
    click.echo(f"edition {report.edition}: {counts}")
    for row in report.rows[:50]:
        click.echo(f"  {row.state:9} {row.email}: {row.error or '(in flight)'}")
    after = status_reports(config, [report.edition, *(s.edition for s in report.recent)])
    if report.edition in after:
        click.echo("  " + summary_line(after[report.edition]))
    if report.recent:
        click.echo("last editions:")
        for summary in report.recent:
            parts = ", ".join(f"{state} {n}" for state, n in sorted(summary.counts.items()))
            click.echo(f"  {summary.edition}: {parts} (last change {summary.last_update:%Y-%m-%d %H:%M} UTC)")
            found = after.get(summary.edition)
            if found is not None and found.heard_back:
                click.echo(f"    delivered {found.delivered}, clicks {found.clickers} ({percent(found.ctr)})")


@main.command("sync")
@pass_ctx
def sync_command(obj: Context) -> None:
    """Pull SendGrid's suppressions (unsubscribes, bounces, spam reports, invalid) into the state."""
    from digest.sync import sync

    report = sync(obj.config())
    for name, count in report.counts.items():
        click.echo(f"{name}: {count}")
    click.echo(f"synced {report.total} suppression(s); the next send skips them")


@main.command("test-send")
@at_option
@click.option("--segment", "segment_names", multiple=True, metavar="NAME", help="The segment to test (repeatable).")
@click.option("--all-segments", is_flag=True, help="One test email per segment.")
@click.option("--to", "to", multiple=True, metavar="ADDR", help="Send here instead of the segment's test_recipients.")
@click.option("--as", "as_member", metavar="EMAIL", help="Render for this member (default: the first who gets one).")
@click.option("--edition", "edition_id", metavar="ID", help="Edition id (default: the ISO week of --at).")
@click.option("--transport", type=click.Choice(["outbox", "sendgrid", "smtp"]), help="Override sending.transport.")
@pass_ctx
def test_send_command(
    obj: Context,
    at: str | None,
    segment_names: tuple[str, ...],
    all_segments: bool,
    to: tuple[str, ...],
    as_member: str | None,
    edition_id: str | None,
    transport: str | None,
) -> None:
    """Send a segment's digest, as a member gets it, to test recipients only; the ledger is not touched."""
    from digest.errors import UsageError
    from digest.schedule import parse_at
    from digest.testsend import send_tests

    if all_segments and segment_names:
        raise UsageError("use --segment NAME or --all-segments, not both")
    config = obj.config()
    report = send_tests(
        config,
        parse_at(at, config.tz),
        segments=segment_names,
        all_segments=all_segments,
        to=to,
        as_member=as_member,
        edition_id=edition_id,
        transport_name=transport,
    )
    click.echo(f"test send of edition {report.edition.id} via {report.transport} (the ledger is not touched)")
    for sent in report.sent:
        click.echo(f"{sent.segment}: rendered for {sent.member}, {sent.articles} article(s): {sent.subject}")
        if sent.accepted:
            click.echo(f"  sent to {', '.join(sent.accepted)}")
        for address, why in sent.failed:
            click.echo(f"  failed: {address}: {why}")
    for name, why in report.skipped:
        click.echo(f"{name}: skipped: {why}")
    if report.exit_code:
        sys.exit(report.exit_code)
