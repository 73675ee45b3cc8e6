"""`digest state migrate|info|copy|backup|restore`: thin wrappers over digest/store/."""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.base import Context, main, pass_ctx


@main.group()
def state() -> None:
    """The state (send ledger, subscriber state, subscribers table): set up, inspect, move, back up."""


@state.command("migrate")
@pass_ctx
def state_migrate(obj: Context) -> None:
    """Bring the state's schema to this version (back it up first); other commands only check it."""
    from digest.store import locate
    from digest.store.moving import migrate

    report = migrate(locate(obj.config()))
    for line in report.applied:
        click.echo(f"applied {line}")
    click.echo(f"{report.where}: schema up to date" + ("" if report.applied else " (nothing to apply)"))


@state.command("info")
@pass_ctx
def state_info(obj: Context) -> None:
    """Where the state is (never showing a password) and its schema versions."""
    from digest.store import locate
    from digest.store.moving import info
    from digest.store.schema import WHAT

    found = info(locate(obj.config()))
    click.echo(f"engine: {found.engine}")
    click.echo(f"state: {found.where}")
    for store, (version, want) in found.versions.items():
        now = "not created yet" if version is None else f"schema version {version}"
        note = "" if version in (None, want) else f" (this digest needs {want}: run `digest state migrate`)"
        click.echo(f"{WHAT[store]}: {now}{note}")  # type: ignore[index]


@state.command("copy")
@click.option("--to", "url", required=True, metavar="URL", help="postgresql://user@host/db (password: PGPASSWORD).")
@pass_ctx
def state_copy(obj: Context, url: str) -> None:
    """Copy the state (ledger, opt-outs, preferences, events, link ids, subscribers table) into the
    PostgreSQL database at URL, setting its schema up first. Safe to rerun: it converges."""
    from digest.config import validate_state_url
    from digest.store import locate
    from digest.store.moving import copy_to

    validate_state_url(url, "--to")
    report = copy_to(locate(obj.config()), url)
    for table, n in report.read.items():
        click.echo(f"{table}: {n} row(s) read, {report.written.get(table, 0)} written")
    click.echo(f"copied {report.source} into {report.target}")
    click.echo("next: set [state] url (no password in it) or DIGEST_DATABASE_URL, then `digest state info`")


@state.command("backup")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@pass_ctx
def state_backup(obj: Context, path: Path) -> None:
    """Copy the ledger and the subscriber state into the new folder PATH (two SQLite files and a
    manifest; SQLite's online backup, or a copy of the PostgreSQL database's rows)."""
    from digest.store import locate
    from digest.store.moving import backup

    report = backup(locate(obj.config()), path)
    click.echo(
        f"backed up the send ledger ({report.deliveries} delivery row(s)) and the subscriber state "
        f"({report.optouts} opted-out address(es)) into {report.path}"
    )


@state.command("restore")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False, exists=True))
@pass_ctx
def state_restore(obj: Context, path: Path) -> None:
    """Put a backup made by `digest state backup` back; what it replaces is kept aside."""
    from digest.store import locate
    from digest.store.moving import restore

    report = restore(locate(obj.config()), path)
    click.echo(
        f"restored the send ledger ({report.deliveries} delivery row(s)) and the subscriber state "
        f"({report.optouts} opted-out address(es)) from {report.path}, taken {report.created_at}"
    )
    if report.kept_optouts or report.kept_link_ids:
        click.echo(
            f"kept {report.kept_optouts} opt-out(s) and {report.kept_link_ids} link id(s) recorded after the "
            "backup was taken"
        )
    if report.erased_again:
        click.echo(f"erased again {report.erased_again} address(es) erased after the backup was taken")
    click.echo(f"the files it replaced are in {report.aside}")
