"""`digest schedule`, `digest scheduler`: the slots, and the loop that sends them."""

from __future__ import annotations

from typing import Any

import click

from digest.cli.base import Context, at_option, main, pass_ctx


@main.command("schedule")
@at_option
@click.option("--count", "-n", default=5, show_default=True, type=click.IntRange(1, 100), help="How many slots.")
@pass_ctx
def schedule_command(obj: Context, at: str | None, count: int) -> None:
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
    echo_unserved(info.unserved, cadences.default)


def echo_unserved(unserved: Any, default: str) -> None:
    for chosen, n in sorted(unserved.items()):
        click.echo(f"note: {n} subscriber(s) chose {chosen}, which has no slot: they get the {default} edition")


@main.command("scheduler")
@pass_ctx
def scheduler_command(obj: Context) -> None:
    """Run in the foreground, sending each slot's edition as `send --scheduled --yes` would."""
    from digest.scheduler import Scheduler, stop_on_signals

    loop = Scheduler(obj.config(), log=lambda line: click.echo(line))
    stop_on_signals(loop)
    loop.run()
