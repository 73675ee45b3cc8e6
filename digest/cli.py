"""The `digest` command: thin Click wrappers that parse flags, call one library function, print.

Every `DigestError` becomes one line on stderr and exit code 1 (2 for usage); a traceback only
with --verbose.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from digest.errors import DigestError, ExtraMissingError


@dataclass
class Context:
    config_path: Path | None
    verbose: bool

    def config(self) -> Any:
        from digest.config import load_config

        return load_config(self.config_path)


class DigestGroup(click.Group):
    """Turns our exceptions into one clean line at the edge."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            if ctx.params.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the edge: a bug still gets one line
            if ctx.params.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: internal error: {type(exc).__name__}: {exc} (run with --verbose for details)", err=True)
            sys.exit(1)


pass_ctx = click.make_pass_decorator(Context)

#: The `web` extra: a cron-only install (`pip install newsletter-digest`) has none of these.
WEB_PACKAGES = frozenset({"starlette", "uvicorn", "watchfiles", "email_validator"})


@contextmanager
def web_extra(command: str) -> Iterator[None]:
    """Imports for `digest preview`/`serve`; without the web stack, one line saying how to add it."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in WEB_PACKAGES:
            raise
        raise ExtraMissingError(
            f"digest {command} needs the web extra ({exc.name} is not installed): pip install 'newsletter-digest[web]'"
        ) from None


at_option = click.option(
    "--at", "at", metavar="ISO-DATETIME", help="Act as of this moment (naive times are in the newsletter's zone)."
)
cadence_option = click.option(
    "--cadence",
    type=click.Choice(["daily", "weekly", "monthly"]),
    help="That cadence's edition, to the subscribers who get it (see [schedule]); needed when there are several.",
)


@click.group(cls=DigestGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default ./digest.toml).",
)
@click.option("--verbose", "-v", is_flag=True, help="Show the traceback behind an error.")
@click.version_option(package_name="newsletter-digest")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbose: bool) -> None:
    """Turn a blog's content folder into a personal weekly digest for each subscriber."""
    ctx.obj = Context(config_path, verbose)


def echo_problems(problems: Any, *, limit: int | None = None) -> None:
    for i, problem in enumerate(problems):
        if limit is not None and i >= limit:
            click.echo(f"... and {len(problems) - limit} more", err=True)
            break
        click.echo(str(problem), err=True)


@main.command()
@at_option
@click.option("--subscriber", "subscribers", multiple=True, metavar="EMAIL", help="Only this subscriber (repeatable).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Folder for the .eml files.")
@click.option("--edition", "edition_id", metavar="ID", help="Edition id (default: the ISO week of --at).")
@click.option(
    "--cadence",
    type=click.Choice(["daily", "weekly", "monthly"]),
    help="Only that cadence's subscribers, with its edition id (default: everyone).",
)
@pass_ctx
def build(
    obj: Context,
    at: str | None,
    subscribers: tuple[str, ...],
    out: Path | None,
    edition_id: str | None,
    cadence: str | None,
) -> None:
    """Write each subscriber's digest as an .eml file, exactly as it would be sent."""
    from digest.pipeline import build as build_digests
    from digest.pipeline import open_run
    from digest.schedule import parse_at

    config = obj.config()
    run = open_run(config, parse_at(at, config.tz), edition_id, cadence=cadence)
    out_dir = out or config.output.path
    report = build_digests(run, out_dir, subscribers)
    echo_problems(report.problems)
    for address, size in report.oversized:
        click.echo(
            f"warning: {address}: HTML is {size / 1000:.1f} KB, over {config.templates.max_html_kb} KB "
            "(Gmail clips at about 102 KB)",
            err=True,
        )
    start = run.window_start.astimezone(config.tz)
    click.echo(
        f"edition {run.edition.id}: articles from {start:%Y-%m-%d %H:%M} to {run.at.astimezone(config.tz):%Y-%m-%d %H:%M %Z}"
    )
    click.echo(f"built {len(report.written)} digest(s) into {out_dir}")
    if report.no_email:
        click.echo(f"no email for {len(report.no_email)} subscriber(s):")
        for sel in report.no_email:
            click.echo(f"  {sel.subscriber.email}: {sel.skipped}")
    bad_articles = sum(1 for p in run.content.problems if p.severity == "error")
    bad_rows = sum(1 for p in run.subscribers.problems if p.severity == "error")
    click.echo(f"bad article files: {bad_articles}; invalid subscriber rows: {bad_rows}")


@main.command()
@at_option
@click.option("--strict", is_flag=True, help="Warnings fail too.")
@click.option(
    "--verbose",
    "-v",
    "details",
    is_flag=True,
    help="Also say where articles and templates come from and what was skipped.",
)
@pass_ctx
def check(obj: Context, at: str | None, strict: bool, details: bool) -> None:
    """List every problem in config, content, subscribers and templates."""
    from digest.check import check as run_check
    from digest.check import source_summary
    from digest.pipeline import open_run
    from digest.schedule import parse_at

    config = obj.config()
    run = open_run(config, parse_at(at, config.tz), persist_links=False)
    problems = run_check(run)
    echo_problems(problems)
    if details or obj.verbose:
        for line in source_summary(run):
            click.echo(line)
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    click.echo(f"{errors} error(s), {warnings} warning(s)")
    if errors or (strict and warnings):
        sys.exit(1)


@main.command()
@at_option
@click.option("--edition", "edition_id", metavar="ID", help="Edition id (default: the ISO week of --at).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address (others expose data).")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--no-open", is_flag=True, help="Do not open a browser.")
@click.option("--get", "get_path", metavar="PATH", help="Print one page (e.g. /); exit 1 unless HTTP 200.")
@pass_ctx
def preview(
    obj: Context, at: str | None, edition_id: str | None, host: str, port: int, no_open: bool, get_path: str | None
) -> None:
    """Every subscriber's digest in the browser, updated live as you edit."""
    with web_extra("preview"):
        from digest.web.live import PreviewState
        from digest.web.preview import get_page, serve

    config = obj.config()  # a missing or invalid config stops here; later errors show in the page
    state = PreviewState(config.source, at, edition_id)
    if get_path is not None:
        status, body = get_page(state, get_path)
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        if status != 200:
            click.echo(f"error: GET {get_path} answered HTTP {status}", err=True)
            sys.exit(1)
        return
    serve(state, host=host, port=port, open_browser=not no_open)


@main.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False), default=".")
@click.option("--templates", is_flag=True, help="Also copy the packaged theme into _newsletter/templates to edit.")
@click.option("--content", type=click.Path(path_type=Path, file_okay=False), help="The folder of posts, if not found.")
@click.option(
    "--feed", "feeds", multiple=True, metavar="URL", help="Read this feed too (repeatable); alone for a hosted blog."
)
@pass_ctx
def init(obj: Context, folder: Path, templates: bool, content: Path | None, feeds: tuple[str, ...]) -> None:
    """Start a newsletter for the blog in FOLDER (default: here): digest.toml and an example list."""
    from digest.init import init as start

    if obj.config_path is not None:
        from digest.errors import UsageError

        raise UsageError("digest init writes FOLDER/digest.toml; --config does not apply to it")
    report = start(folder, templates=templates, content=content, feeds=feeds)
    _echo_init_report(report)


def _echo_init_report(report: Any) -> None:
    blog, found = report.blog, report.survey
    where = f" ({blog.site_url})" if blog.site_url else ""
    if blog.generator == "feed":
        click.echo(f"Found no blog folder; reading the feed of {blog.name!r}{where}")
    else:
        article = "an" if blog.generator[:1] in "AEIOU" else "a"
        kind = "a folder of posts" if blog.generator == "plain folder" else f"{article} {blog.generator} site"
        click.echo(
            f"Found {kind}: {blog.name!r}{where}" + (f", from {', '.join(blog.found_in)}" if blog.found_in else "")
        )
    for probe in report.feeds:
        state = f"{probe.entries} entries" + (f" ({probe.problem})" if probe.problem else "")
        click.echo(f"Feed {probe.url}: {state}")
    if found is not None:
        click.echo(f"Content: {blog.content} ({found.total} article file(s))")
        click.echo(f"Front matter of {found.sampled} sampled file(s):")
        for name, spellings in found.keys.items():
            shown = ", ".join(f"{key} ({n})" for key, n in spellings.most_common()) or "none"
            click.echo(f"  {name:11} {shown}")
        if found.unread:
            click.echo("  not read:   " + ", ".join(f"{k} ({n})" for k, n in found.unread.most_common(8)))
        skipped = ", ".join(f"{n} {reason}(s)" for reason, n in found.skipped.most_common()) or "none"
        click.echo(
            f"Read as the digest will: {found.articles} article(s); skipped on purpose: {skipped}; "
            f"problems: {len(found.problems)}"
        )
        for line in found.problems[:5]:
            click.echo(f"  {line}")
    click.echo("Wrote:")
    for path in report.written:
        click.echo(f"  {path}")
    for note in report.notes:
        click.echo(f"Note: {note}")
    if report.newest is not None:
        click.echo(f"Your newest post is from {report.newest:%Y-%m-%d}: --at shows the digest of that week.")
    click.echo("Next:")
    for command in report.next_commands:
        click.echo(f"  {command}")


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


@main.command()
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
@pass_ctx
def send(
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
) -> None:
    """Send each eligible subscriber this edition's digest, exactly once."""
    from digest.errors import UsageError
    from digest.schedule import parse_at
    from digest.send import SendOptions
    from digest.send import send as send_edition

    config = obj.config()
    if sandbox and (transport or config.sending.transport) != "sendgrid":
        # only SendGrid has a sandbox: on the outbox or SMTP a "sandbox" run would really send
        raise UsageError("--sandbox is SendGrid's sandbox mode: use it with the sendgrid transport")
    if not (yes or dry_run or sandbox) and not sys.stdin.isatty():
        raise UsageError("refusing to send without confirmation: no terminal to ask on; pass --yes")
    options = SendOptions(
        only=subscribers,
        segment=segment or "",
        limit=limit,
        dry_run=dry_run,
        on_ambiguous=on_ambiguous or config.sending.on_ambiguous,
        scheduled=config.sendgrid.scheduled_mode if scheduled is None else scheduled,
        send_at_delay=config.sendgrid.send_at_delay_minutes * 60,
        concurrency=config.sending.concurrency,
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
            config, at, options, cadence, force=force, transport=transport, confirm=confirm, progress=progress
        )
        return
    from digest.cadences import cadence_for_send

    try:
        report = send_edition(
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
        click.echo(result.message)
        if result.report is not None:
            codes.append(result.report.exit_code)
    # 1 (failed or late) before 2 (usage) before 3 (only ambiguous rows left)
    code = min((c for c in codes if c), default=0)
    if code:
        sys.exit(code)


@main.command()
@click.option("--edition", "edition_id", metavar="ID", help="Edition id (default: the latest in the ledger).")
@at_option
@pass_ctx
def status(obj: Context, edition_id: str | None, at: str | None) -> None:
    """Show the send ledger (an edition's counts, the last editions) and each cadence's slot."""
    from digest.schedule import describe, hours, parse_at
    from digest.scheduler import cadence_status
    from digest.send import status as ledger_status

    config = obj.config()
    _echo_ledger_status(config, ledger_status(config, edition_id))
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
    _echo_unserved(cadences.unserved, schedule.default)


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


@main.command()
@click.option("--edition", "edition_id", metavar="ID", help="Only this edition (default: the last ten sent).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option(
    "--per-subscriber", is_flag=True, help="Also list what each subscriber did (personal data: aggregate otherwise)."
)
@pass_ctx
def report(obj: Context, edition_id: str | None, as_json: bool, per_subscriber: bool) -> None:
    """What happened after the send: delivered, bounces, opens, clicks, unsubscribes, top articles."""
    import json

    from digest.report import describe, reports

    found = reports(obj.config(), edition_id, per_subscriber=per_subscriber)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("nothing sent yet: no edition to report on")
        return
    for i, one in enumerate(found):
        if i:
            click.echo("")
        for line in describe(one):
            click.echo(line)


@main.command()
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), help="Folder to write (default [archive] path)."
)
@pass_ctx
def archive(obj: Context, out: Path | None) -> None:
    """Write the web archive: a page per edition sent (nobody's copy), an index and an Atom feed."""
    from digest.archive import write_archive

    written = write_archive(obj.config(), out)
    for edition, why in written.skipped:
        click.echo(f"{edition}: no page: {why}", err=True)
    click.echo(f"archived {len(written.editions)} edition(s) into {written.out} (index.html, feed.xml)")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address (a TLS proxy goes in front).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@pass_ctx
def serve(obj: Context, host: str, port: int) -> None:
    """The public app: one-click unsubscribe, the preferences page and SendGrid's Event Webhook."""
    with web_extra("serve"):
        from digest.web.public import serve as serve_public

    serve_public(obj.config(), host=host, port=port)


@main.command("form")
@pass_ctx
def form(obj: Context) -> None:
    """Print a plain HTML signup form (no script) to paste into the blog's own pages."""
    from digest.signup.form import form_snippet

    click.echo(form_snippet(obj.config()), nl=False)


@main.command()
@pass_ctx
def sync(obj: Context) -> None:
    """Pull SendGrid's suppressions (unsubscribes, bounces, spam reports, invalid) into the state."""
    from digest.sync import sync as sync_suppressions

    report = sync_suppressions(obj.config())
    for name, count in report.counts.items():
        click.echo(f"{name}: {count}")
    click.echo(f"synced {report.total} suppression(s); the next send skips them")


@main.group()
def subscribers() -> None:
    """The subscriber list as the next send sees it."""


@subscribers.command("export")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write here (default: stdout).")
@pass_ctx
def subscribers_export(obj: Context, out: Path | None) -> None:
    """Write the list merged with signups, opt-outs, pauses and topic changes, with consent records, as CSV."""
    from digest.signup.consent import export_subscribers

    config = obj.config()
    report, text = export_subscribers(config, out)
    if out is None:
        click.echo(text, nl=False)
    summary = f"exported {report.written} subscriber(s), {report.changed} changed by the state"
    if report.signups:
        summary += f", {report.signups} from signups"
    if report.skipped_rows:
        summary += f"; {report.skipped_rows} invalid row(s) of the list left out (see `digest check`)"
    click.echo(summary + (f" into {out}" if out else ""), err=True)


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON (for an access request).")
@pass_ctx
def subscribers_show(obj: Context, email: str, as_json: bool) -> None:
    """Print what is held about EMAIL: status, list row, signup, consent records, opt-outs, deliveries."""
    import json
    from datetime import UTC, datetime

    from digest.signup.consent import describe, show

    record = show(obj.config(), email)
    if as_json:
        click.echo(json.dumps(record.to_json(), indent=2, ensure_ascii=False))
        return
    for line in describe(record, datetime.now(UTC)):
        click.echo(line)


@subscribers.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def subscribers_forget(obj: Context, email: str, yes: bool) -> None:
    """Erase EMAIL everywhere (list, state, events, ledger, .eml files), keeping only a hashed suppression."""
    from digest.signup.consent import forget

    config = obj.config()
    if not yes:
        click.confirm(f"Erase {email} from the list, the state and the ledger? This cannot be undone", abort=True)
    report = forget(config, email)
    state = ", ".join(f"{n} {table}" for table, n in report.state.items() if n) or "nothing"
    click.echo(f"erased {report.email}: state rows: {state}")
    click.echo(
        f"  list records removed: {report.list_rows}; events renamed: {report.events}; "
        f"ledger rows renamed: {report.deliveries}; .eml files deleted: {report.files}"
    )
    click.echo(f"  kept: a hashed suppression ({report.kept_reason}); backups taken before are not changed")
    for note in report.notes:
        click.echo(f"warning: {note}", err=True)


@subscribers.command("purge")
@pass_ctx
def subscribers_purge(obj: Context) -> None:
    """Remove unconfirmed signups past signup.pending_days and client addresses past signup.keep_ip_days."""
    from digest.signup.flow import SignupFlow

    config = obj.config()
    click.echo(SignupFlow(config, b"").purge())


@subscribers.command("import")
@click.option(
    "--from",
    "source",
    type=click.Choice(["mailchimp", "substack", "buttondown", "listmonk", "ghost"]),
    help="The tool the export comes from (default: a list in digest's own CSV/JSON format).",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--into",
    type=click.Path(path_type=Path, dir_okay=False),
    help='The CSV list to merge into (default: subscribers.path, or the subscribers table with source = "database").',
)
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
@pass_ctx
def subscribers_import(
    obj: Context, source: str | None, files: tuple[Path, ...], into: Path | None, dry_run: bool
) -> None:
    """Merge another tool's export into the list, or upsert a list in our own format into the
    subscribers table; opt-outs are kept, never lifted."""
    from datetime import UTC, datetime

    from digest.audience import read_overlay
    from digest.imports import CsvListStore, import_subscribers
    from digest.signup.consent import record_imports
    from digest.signup.merge import read_signup_state

    config = obj.config()
    if source is None:
        from digest.cli_state import import_own_format

        import_own_format(config, files, into=into, dry_run=dry_run)
        return
    if into is None and config.subscribers.source == "database":
        from digest.store.importing import TableListStore

        store: Any = TableListStore(config)
    else:
        store = CsvListStore(into or config.subscribers.path)
    forgotten = read_signup_state(config).forgotten
    report = import_subscribers(source, files, store, read_overlay(config), dry_run=dry_run, forgotten=forgotten)
    record_imports(config, source, files, report.added, datetime.now(UTC))
    for result in report.results:
        click.echo(str(result))
    click.echo(report.summary, err=True)


@main.command()
@at_option
@click.option("--count", "-n", default=5, show_default=True, type=click.IntRange(1, 100), help="How many slots.")
@pass_ctx
def schedule(obj: Context, at: str | None, count: int) -> None:
    """Show the next slots and what the next edition would hold (nothing is sent)."""
    from digest.schedule import describe, hours, parse_at
    from digest.scheduler import upcoming

    config = obj.config()
    info = upcoming(config, parse_at(at, config.tz), count)
    cadences = info.cadences
    legacy = cadences.legacy
    if legacy:
        click.echo(f"schedule: {cadences.describe()} ({cadences.tz.key}), grace {hours(cadences.grace)}")
    else:
        click.echo(
            f"schedule ({cadences.tz.key}), grace {hours(cadences.grace)}; "
            f"subscribers without a cadence of their own get {cadences.default}"
        )
        for outlook in info.outlooks:
            table = outlook.table
            click.echo(f"  {table.cadence:8} {table.cron.expr:16} {outlook.subscribers} subscriber(s)")
    click.echo("next slots:")
    for slot in info.slots:
        name = "" if legacy else f"{slot.cadence:8} "
        click.echo(f"  {name}{slot.edition_id:16} {describe(slot.at)}  = {slot.utc:%Y-%m-%d %H:%M} UTC")
    for outlook in info.outlooks:
        name = "" if legacy else f"{outlook.table.cadence} "
        last = outlook.last
        state = ", ".join(f"{state} {n}" for state, n in sorted(outlook.last_counts.items())) or "nothing sent"
        click.echo(f"{name or ''}last slot: {last.edition_id} {describe(last.at)}: {state}")
        click.echo(
            f"{name}next edition {outlook.next.edition_id} with today's content: {len(outlook.recipients)} "
            f"recipient(s), {len(outlook.articles)} article(s), no email for {outlook.no_email}"
        )
        if outlook.recipients:
            shown = ", ".join(outlook.recipients[:10]) + (" ..." if len(outlook.recipients) > 10 else "")
            click.echo(f"  recipients: {shown}")
        for date, title in outlook.articles[:20]:
            click.echo(f"  {date.astimezone(cadences.tz):%Y-%m-%d}  {title}")
    _echo_unserved(info.unserved, cadences.default)


def _echo_unserved(unserved: Any, default: str) -> None:
    for chosen, n in sorted(unserved.items()):
        click.echo(f"note: {n} subscriber(s) chose {chosen}, which has no slot: they get the {default} edition")


@main.command()
@pass_ctx
def scheduler(obj: Context) -> None:
    """Run in the foreground, sending each slot's edition as `send --scheduled --yes` would."""
    from digest.scheduler import Scheduler, stop_on_signals

    loop = Scheduler(obj.config(), log=lambda line: click.echo(line))
    stop_on_signals(loop)
    loop.run()


@main.command()
@pass_ctx
def segments(obj: Context) -> None:
    """List the segments with their member counts and an example member."""
    from datetime import UTC, datetime

    from digest.pipeline import list_segments

    config = obj.config()
    found, summaries = list_segments(config, datetime.now(UTC))
    if not summaries:
        click.echo(f"no segments: {found.path} defines none")
        return
    for summary in summaries:
        segment = summary.segment
        example = summary.example.email if summary.example else "(empty)"
        click.echo(f"{segment.name}: {summary.members} member(s), e.g. {example}")
        if segment.description:
            click.echo(f"  {segment.description}")
        if segment.overrides:
            click.echo(f"  overrides: {segment.overrides.describe()}")
        click.echo(f"  test recipients: {', '.join(segment.test_recipients) or '(none: use --to)'}")


@main.command("test-send")
@at_option
@click.option("--segment", "segment_names", multiple=True, metavar="NAME", help="The segment to test (repeatable).")
@click.option("--all-segments", is_flag=True, help="One test email per segment.")
@click.option("--to", "to", multiple=True, metavar="ADDR", help="Send here instead of the segment's test_recipients.")
@click.option("--as", "as_member", metavar="EMAIL", help="Render for this member (default: the first who gets one).")
@click.option("--edition", "edition_id", metavar="ID", help="Edition id (default: the ISO week of --at).")
@click.option("--transport", type=click.Choice(["outbox", "sendgrid", "smtp"]), help="Override sending.transport.")
@pass_ctx
def test_send(
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


# `digest state ...` and `digest subscribers import` live in their own module; importing it adds them.
from digest import cli_state  # noqa: E402, F401
