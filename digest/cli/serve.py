"""`digest serve` (the public app) and `digest form` (the signup form's snippet)."""

from __future__ import annotations

import click

from digest.cli.base import Context, main, pass_ctx, web_extra


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address (a TLS proxy goes in front).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@pass_ctx
def serve_command(obj: Context, host: str, port: int) -> None:
    """The public app: one-click unsubscribe, the preferences page and SendGrid's Event Webhook."""
    with web_extra("serve"):
        from digest.web.public import serve

    serve(obj.config(), host=host, port=port)


@main.command("form")
@pass_ctx
def form_command(obj: Context) -> None:
    """Print a plain HTML signup form (no script) to paste into the blog's own pages."""
    from digest.signup.form import form_snippet

    click.echo(form_snippet(obj.config()), nl=False)
