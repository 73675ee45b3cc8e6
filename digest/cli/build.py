"""`digest build`, `digest check`, `digest preview`: one run at one moment, written, checked or shown."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from digest.cli.base import Context, at_option, echo_problems, main, pass_ctx, web_extra


@main.command("build")
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
def build_command(
    obj: Context,
    at: str | None,
    subscribers: tuple[str, ...],
    out: Path | None,
    edition_id: str | None,
    cadence: str | None,
) -> None:
    """Write each subscriber's digest as an .eml file, exactly as it would be sent."""
    from digest.pipeline import build, open_run
    from digest.schedule import parse_at

    config = obj.config()
    run = open_run(config, parse_at(at, config.tz), edition_id, cadence=cadence)
    out_dir = out or config.output.path
    report = build(run, out_dir, subscribers)
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


@main.command("check")
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
def check_command(obj: Context, at: str | None, strict: bool, details: bool) -> None:
    """List every problem in config, content, subscribers and templates."""
    from digest.check import check, source_summary
    from digest.pipeline import open_run
    from digest.schedule import parse_at

    config = obj.config()
    run = open_run(config, parse_at(at, config.tz), persist_links=False)
    problems = check(run)
    echo_problems(problems)
    if details or obj.verbose:
        for line in source_summary(run):
            click.echo(line)
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    click.echo(f"{errors} error(s), {warnings} warning(s)")
    if errors or (strict and warnings):
        sys.exit(1)


@main.command("preview")
@at_option
@click.option("--edition", "edition_id", metavar="ID", help="Edition id (default: the ISO week of --at).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address (others expose data).")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--no-open", is_flag=True, help="Do not open a browser.")
@click.option("--get", "get_path", metavar="PATH", help="Print one page (e.g. /); exit 1 unless HTTP 200.")
@pass_ctx
def preview_command(
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
