"""The `digest` command: thin Click wrappers that parse flags, call one library function, print.

Every `DigestError` becomes one line on stderr and exit code 1 (2 for usage); a traceback only
with --verbose.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from digest.errors import DigestError


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

at_option = click.option(
    "--at", "at", metavar="ISO-DATETIME", help="Act as of this moment (naive times are in the newsletter's zone)."
)


@click.group(cls=DigestGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default ./digest.toml).",
)
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug details.")
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
@pass_ctx
def build(obj: Context, at: str | None, subscribers: tuple[str, ...], out: Path | None, edition_id: str | None) -> None:
    """Write each subscriber's digest as an .eml file, exactly as it would be sent."""
    from digest.pipeline import build as build_digests
    from digest.pipeline import open_run
    from digest.schedule import parse_at

    config = obj.config()
    run = open_run(config, parse_at(at, config.tz), edition_id)
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
@pass_ctx
def check(obj: Context, at: str | None, strict: bool) -> None:
    """List every problem in config, content, subscribers and templates."""
    from digest.check import check as run_check
    from digest.pipeline import open_run
    from digest.schedule import parse_at

    config = obj.config()
    problems = run_check(open_run(config, parse_at(at, config.tz)))
    echo_problems(problems)
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
