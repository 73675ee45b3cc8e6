"""`digest init`, `digest report`, `digest archive`, `digest segments`: starting a newsletter and looking back at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from digest.cli.base import Context, main, pass_ctx


@main.command("init")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False), default=".")
@click.option("--templates", is_flag=True, help="Also copy the packaged theme into _newsletter/templates to edit.")
@click.option("--content", type=click.Path(path_type=Path, file_okay=False), help="The folder of posts, if not found.")
@click.option(
    "--feed", "feeds", multiple=True, metavar="URL", help="Read this feed too (repeatable); alone for a hosted blog."
)
@pass_ctx
def init_command(obj: Context, folder: Path, templates: bool, content: Path | None, feeds: tuple[str, ...]) -> None:
    """Start a newsletter for the blog in FOLDER (default: here): digest.toml and an example list."""
    from digest.init import init

    if obj.config_path is not None:
        from digest.errors import UsageError

        raise UsageError("digest init writes FOLDER/digest.toml; --config does not apply to it")
    report = init(folder, templates=templates, content=content, feeds=feeds)
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


@main.command("report")
@click.option("--edition", "edition_id", metavar="ID", help="Only this edition (default: the last ten sent).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option(
    "--per-subscriber", is_flag=True, help="Also list what each subscriber did (personal data: aggregate otherwise)."
)
@pass_ctx
def report_command(obj: Context, edition_id: str | None, as_json: bool, per_subscriber: bool) -> None:
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


@main.command("archive")
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), help="Folder to write (default [archive] path)."
)
@pass_ctx
def archive_command(obj: Context, out: Path | None) -> None:
    """Write the web archive: a page per edition sent (nobody's copy), an index and an Atom feed."""
    from digest.archive import write_archive

    written = write_archive(obj.config(), out)
    for edition, why in written.skipped:
        click.echo(f"{edition}: no page: {why}", err=True)
    click.echo(f"archived {len(written.editions)} edition(s) into {written.out} (index.html, feed.xml)")


@main.command("segments")
@pass_ctx
def segments_command(obj: Context) -> None:
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
