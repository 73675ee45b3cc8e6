"""`digest subscribers export|show|forget|purge|import`: the list as the next send sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from digest.cli.base import Context, main, pass_ctx


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


def import_own_format(config: Any, files: tuple[Path, ...], *, into: Path | None, dry_run: bool) -> None:
    """`digest subscribers import FILE...` without --from: lists in digest's own CSV/JSON format,
    upserted into the subscribers table (for `[subscribers] source = "database"`)."""
    from digest.errors import UsageError
    from digest.store.importing import import_file

    if into is not None or dry_run:
        raise UsageError("--into and --dry-run go with --from TOOL; a list in digest's own format goes into the table")
    for file in files:
        if not file.is_file():
            raise UsageError(f"{file}: no such file")
        report = import_file(config, file)
        for problem in report.problems[:20]:
            click.echo(str(problem), err=True)
        if len(report.problems) > 20:
            click.echo(f"... and {len(report.problems) - 20} more", err=True)
        click.echo(
            f"{file}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.invalid} invalid row(s) skipped; the table holds {report.total}"
        )
