"""The preview's "Past editions" panel in Debian's Chromium (Playwright), after two real sends
(outbox), clicks through `digest serve`'s /r/ and an unsubscribe: four inline SVG charts that
render, numbers that match the report, no script and no request to anywhere but the preview."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_support import ARTIFACTS, chromium, running_server
from engagement_support import newsletter, public_client, send_edition
from public_support import SECRET, Signer, token, token_id
from send_support import AT_DT

from digest.config import Config
from digest.tokens import make_link_token, make_token
from digest.web.live import PreviewState
from digest.web.preview import create_app, get_page

AT = "2026-12-07T00:00"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    config = newsletter(tmp_path, monkeypatch, extra="\n[tracking]\nclicks = true\n")
    assert len(send_edition(config).accepted) == 7  # 2026-W49
    client = public_client(config, Signer(), 1_790_000_000)
    for reader, clicked in (
        ("chloe.dubois@example.net", "2026/11/robot-dogs-learn-stairs"),
        ("chloe.dubois@example.net", "ai/small-models-on-phones"),
        ("ada@example.com", "2026/11/robot-dogs-learn-stairs"),
    ):
        u = make_token(token_id(config, reader), SECRET.encode(), "click")
        assert client.get(f"/r/{make_link_token('2026-W49', clicked, SECRET.encode())}?u={u}").status_code == 302
    assert client.post(f"/unsubscribe?token={token(config, 'sam.rivera@example.net')}").status_code == 200
    (config.content.path / "2026" / "12" / "next.md").write_text(
        "---\ntitle: Next week\ndate: 2026-12-03T09:00:00Z\nslug: next\ntags: [AI, python]\n---\nText.\n",
        encoding="utf-8",
    )
    assert send_edition(config, AT_DT + timedelta(days=7)).accepted  # 2026-W50
    return config


def test_the_panel_without_a_browser(history: Config) -> None:
    status, body = get_page(PreviewState(history.source, AT), "/")
    page = body.decode("utf-8")
    assert status == 200 and 'id="past-charts"' in page
    assert "<script src" not in page and "cdn" not in page.lower()
    assert 'aria-label="Recipients: W49 7, W50 ' in page
    assert 'aria-label="Top tags by clicks: Robotics 3, Ai 3' in page
    # the sample list has no subscribed_at: new readers are those an edition reached first
    assert 'aria-label="List growth (first reached): W49 +7 -1, W50 +0 -0"' in page


def test_list_growth_counts_signups_between_editions_when_the_list_dates_them(history: Config) -> None:
    import csv

    path = history.subscribers.path
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # two joined by the first edition (30 November), three in its week, one after the second
    dates = ["2025-01-05", "2026-11-29", "2026-12-01", "2026-12-02T10:00:00Z", "2026-12-06", "2026-12-24"]
    for row, date in zip(rows, dates + [""] * len(rows), strict=False):
        row["subscribed_at"] = date
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0]])
        writer.writeheader()
        writer.writerows(rows)
    status, body = get_page(PreviewState(history.source, AT), "/")
    assert status == 200
    assert 'aria-label="List growth: W49 +2 -1, W50 +3 -0"' in body.decode("utf-8")
    assert '<th class="num">Signed up</th>' in body.decode("utf-8")


def test_nothing_sent_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = newsletter(tmp_path, monkeypatch)
    status, body = get_page(PreviewState(config.source, AT), "/")
    assert status == 200 and b'id="past-empty"' in body and b'id="past-charts"' not in body


def test_the_charts_render_in_chromium(browser: Any, history: Config) -> None:
    with running_server(create_app(PreviewState(history.source, AT), watch=False)) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        elsewhere: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        own = urlsplit(url).netloc

        def watch(route: Any) -> None:
            if urlsplit(route.request.url).netloc != own:
                elsewhere.append(route.request.url)  # article covers on the index are allowed to fail
                route.abort()
            else:
                route.continue_()

        page.route("**/*", watch)
        page.goto(f"{url}/#past-editions")
        panel = page.locator("#past-charts")
        panel.scroll_into_view_if_needed()
        figures = panel.locator("figure.chart")
        assert figures.count() == 4
        for i in range(4):
            svg = figures.nth(i).locator("svg")
            box = svg.bounding_box()
            assert box and box["width"] > 250 and box["height"] > 80, box
            assert svg.get_attribute("role") == "img" and svg.get_attribute("aria-label")
        # bars and the line really drawn: sizes as laid out by the browser, not as written
        heights = page.eval_on_selector_all("#chart-recipients rect.bar", "els => els.map(e => e.getBBox().height)")
        assert len(heights) == 2 and heights[0] > 0 and heights[1] > 0
        assert page.locator("#chart-click-rate polyline.trend").count() == 1
        assert page.locator("#chart-click-rate circle.dot").count() == 2
        tags = page.eval_on_selector_all("#chart-tags rect.bar", "els => els.map(e => e.getBBox().width)")
        assert tags and tags == sorted(tags, reverse=True) and tags[0] > 100
        assert page.locator("#chart-growth rect.bar.up").count() == 2
        assert page.locator("#chart-growth rect.bar.down").count() == 2
        rows = page.locator("#past-table tr.past-edition")
        assert rows.count() == 2 and "2026-W49" in rows.nth(0).inner_text()
        assert "28.6%" in rows.nth(0).inner_text()  # 2 clickers of 7 accepted (no delivery events)
        assert page.locator("script[src]").count() == 0
        assert not [u for u in elsewhere if "images.example.com" not in u and "circuit.example.com" not in u]
        ARTIFACTS.mkdir(exist_ok=True)
        panel.screenshot(path=str(ARTIFACTS / "past-editions.png"))
        context.close()
        assert not errors, errors


def test_tags_and_edition_ids_are_text_in_the_svg_never_markup() -> None:
    from digest.report import EditionReport, Trend
    from digest.web.charts import charts
    from digest.web.preview import _templates

    hostile = '<script>alert(1)</script>"&'
    report = EditionReport(hostile, hostile, None, 3, 3, 0, 0, 3, 0, 0, 0, 1, 0, 1, 2, 0, 0, 1 / 3, "delivered")
    past = Trend((report,), (3,), ((hostile, 2),))
    html = _templates.get_template("_past_editions.html").render(past=past, charts=charts(past), past_error="")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<svg") == 4 and "33.3%" in html
