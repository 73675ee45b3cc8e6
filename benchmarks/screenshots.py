"""Screenshots of one subscriber's digest in light and dark mode, as Chromium renders the real email.

    .venv/bin/python benchmarks/screenshots.py                # the sample digest -> docs/images/
    .venv/bin/python benchmarks/screenshots.py --config my/digest.toml --at 2026-12-07T09:00 \\
        --subscriber reader@example.com --out /tmp/shots --width 375

Renders the email exactly as `digest build` would (same pipeline, same composer), opens it in
Debian's Chromium through Playwright (`/usr/bin/chromium`, never a downloaded browser) with
`color_scheme` light and then dark (what `prefers-color-scheme` reads, as Apple Mail does), and
writes `digest-light.png` and `digest-dark.png`, cut at --height pixels.

Nothing is fetched from the network. The sample's image URLs are not real, so images are answered
locally with stand-ins: a logo drawn from the newsletter's name (dark ink for `logo_url`, light ink
for `logo_dark_url`) and a plain gradient for each cover. Prints the files it wrote.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from digest.config import Config, load_config  # noqa: E402
from digest.content import load_articles  # noqa: E402
from digest.pipeline import open_run  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def logo_svg(name: str, ink: str) -> bytes:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="600" height="120" viewBox="0 0 600 120">'
        f'<text x="0" y="84" font-family="Helvetica, Arial, sans-serif" font-size="64" font-weight="700" '
        f'fill="{ink}">{escape(name)}</text></svg>'
    ).encode()


def cover_svg(url: str) -> bytes:
    hue = int(hashlib.sha256(url.encode()).hexdigest()[:4], 16) % 360
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="600">'
        '<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">'
        f'<stop offset="0" stop-color="hsl({hue},55%,62%)"/><stop offset="1" stop-color="hsl({(hue + 40) % 360},60%,38%)"/>'
        '</linearGradient></defs><rect width="1200" height="600" fill="url(#g)"/></svg>'
    ).encode()


def answer_locally(config: Config) -> Any:
    n = config.newsletter

    def handler(route: Any) -> None:
        url = route.request.url
        if route.request.resource_type != "image":
            route.abort()
        elif n.logo_dark_url and url == n.logo_dark_url:
            route.fulfill(content_type="image/svg+xml", body=logo_svg(n.name, "#f2f3f5"))
        elif n.logo_url and url == n.logo_url:
            route.fulfill(content_type="image/svg+xml", body=logo_svg(n.name, "#111111"))
        else:
            route.fulfill(content_type="image/svg+xml", body=cover_svg(url))

    return handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "digest.toml"))
    parser.add_argument("--at", default="2026-11-30T00:00", help="the edition's moment (the sample's week)")
    parser.add_argument("--subscriber", default="ada@example.com", help="whose digest (the sample's: 10 stories)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--width", type=int, default=600)
    parser.add_argument("--height", type=int, default=1200, help="cut the shot at this many pixels")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    at = datetime.fromisoformat(args.at)
    at = at if at.tzinfo else at.replace(tzinfo=config.tz)
    # no cache_dir: a screenshot writes nothing into the newsletter's state folder
    run = open_run(config, at, content=load_articles(config))
    (subscriber,) = run.subscribers_for([args.subscriber])
    selection = run.select(subscriber)
    if not selection.gets_email:
        print(f"{args.subscriber} gets no digest at {at}: {selection.skipped}", file=sys.stderr)
        return 1
    html = run.email(selection).html

    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": args.width, "height": args.height}, color_scheme=scheme, device_scale_factor=1
            )
            page = context.new_page()
            page.route("**/*", answer_locally(config))
            page.set_content(html, wait_until="load")
            page.wait_for_function("[...document.images].every(i => i.complete)")
            path = out / f"digest-{scheme}.png"
            page.screenshot(path=str(path))
            print(f"wrote {path} ({path.stat().st_size // 1000} KB, {args.width}x{args.height}, {scheme})")
            context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
