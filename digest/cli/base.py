"""What every `digest` command shares: the group (`main`) with its --config and --verbose, the
context that loads the config, the options several commands take, and the edge where a
`DigestError` becomes one line on stderr (exit code 1, 2 for usage; a traceback only with
--verbose). The commands themselves are in the sibling modules, one per group of verbs."""

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
