"""The preview in a real headless Chromium (Debian's), driven by Playwright, against a real server.

Skips when Chromium or Playwright is missing; fails instead when CI=true. Screenshots go to
tests/artifacts/ (gitignored) for a human to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import ARTIFACTS, chromium, running_server

from digest.web.live import PreviewState
from digest.web.preview import create_app

AT = "2026-11-30T00:00"
CHLOE = "chloe.dubois@example.net"
ROBOTS = "content/2026/11/robot-dogs-learn-stairs.md"
ROBOTS_TITLE = "Robot dogs finally learn to take the stairs"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def server(sample: Path) -> Iterator[str]:
    app = create_app(PreviewState(sample, AT), watch=True)
    with running_server(app) as url:
        assert app.state.watcher.ready.wait(timeout=120)  # an edit from now on reaches the open page
        yield url


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_index_click_subscriber_mobile_width_and_text_tab(page, server):
    page.goto(f"{server}/")
    assert "The Weekly Circuit" in page.title()
    page.wait_for_selector("#live.on")  # the live-reload stream is connected
    shot(page, "index")

    page.fill("#filter", "robotics")
    assert page.locator("tr.subscriber:visible").count() == 1
    # the visible row's link (the segments table above lists members too)
    page.locator("tr.subscriber:visible a", has_text=CHLOE).click()
    page.wait_for_url(f"**/subscribers/{CHLOE}")

    frame = page.frame_locator("#email")
    frame.locator("text=Hi Chloé,").wait_for()
    page.click("button[data-width='375']")
    page.wait_for_function("document.getElementById('email').getBoundingClientRect().width === 375")
    sizes = page.evaluate(
        """() => { const d = document.getElementById('email').contentDocument.documentElement;
                   return {scroll: d.scrollWidth, client: d.clientWidth}; }"""
    )
    assert sizes["client"] == 375
    assert sizes["scroll"] <= sizes["client"], f"the email scrolls sideways at 375 px: {sizes}"
    shot(page, "subscriber-mobile")

    page.click("#dark")
    assert page.locator("#panel-html.dark").count() == 1
    page.click("button[data-width='700']")
    shot(page, "subscriber-desktop-dark")

    page.click("button[data-tab='text']")
    text = page.locator("#text-part")
    assert text.is_visible() and not page.locator("#email").is_visible()
    assert "Hi Chloé," in text.inner_text() and ROBOTS_TITLE in text.inner_text()
    shot(page, "subscriber-text")


def test_the_open_page_follows_an_edit(page, server, sample):
    page.goto(f"{server}/subscribers/{CHLOE}")
    page.wait_for_selector("#live.on")
    page.frame_locator("#email").locator("a", has_text=ROBOTS_TITLE).first.wait_for()
    article = sample.parent / ROBOTS
    article.write_text(
        article.read_text(encoding="utf-8").replace(ROBOTS_TITLE, "Robot dogs now climb ladders"), encoding="utf-8"
    )
    # No reload by the test: the page's event stream does it.
    page.frame_locator("#email").locator("a", has_text="Robot dogs now climb ladders").first.wait_for(timeout=5000)
    assert "Robot dogs now climb ladders" in page.locator("#choices").inner_text()


def test_a_broken_template_shows_in_the_open_page_and_recovers(page, server, sample):
    page.goto(f"{server}/")
    page.wait_for_selector("#live.on")
    template = sample.parent / "templates" / "digest.mjml.j2"
    good = template.read_text(encoding="utf-8")
    template.write_text(good.replace("{%- endfor %}", "{%- endfor"), encoding="utf-8")
    page.wait_for_selector("#error", timeout=5000)
    assert "digest.mjml.j2" in page.locator("#error").inner_text()
    shot(page, "template-error")
    page.wait_for_selector("#live.on")
    template.write_text(good, encoding="utf-8")
    page.wait_for_selector("#subscriber-table", timeout=5000)


def test_missing_chromium_skips_locally_and_fails_in_ci(monkeypatch, tmp_path):
    import browser_support

    monkeypatch.setattr(browser_support, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI"):
        browser_support.require_chromium()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="not found"):
        browser_support.require_chromium()


def test_a_large_list_is_paged_and_searched_on_the_server_in_the_browser(page, sample):
    """The index of a long list shows one page of it; Enter in the search box searches the whole
    list on the server, "next" and the page number reach the rest, and a row leads to its page."""
    from send_support import many_subscribers

    from digest.web.pages import PAGE_SIZE

    emails = many_subscribers(sample, 2 * PAGE_SIZE + 17)
    with running_server(create_app(PreviewState(sample, AT), watch=False)) as url:
        page.goto(f"{url}/")
        rows = page.locator("tr.subscriber")
        assert rows.count() == PAGE_SIZE
        assert f"1–{PAGE_SIZE} of {len(emails)}" in page.locator("#counts").inner_text()
        # a subscriber on the last page is not on this one: Enter asks the server
        wanted = emails[-1]
        assert page.locator(f"tr.subscriber a[href='/subscribers/{wanted}']").count() == 0
        page.fill("#filter", wanted.upper())
        page.press("#filter", "Enter")
        page.wait_for_url("**q=*")
        assert rows.count() == 1 and "1–1 of 1 matching" in page.locator("#counts").inner_text()
        shot(page, "index-search")
        # the whole list, page by page: next, then a page typed by number
        page.goto(f"{url}/")
        page.locator("a[rel='next']").first.click()
        page.wait_for_url("**page=2*")
        assert rows.first.locator("a").inner_text() == emails[PAGE_SIZE]
        page.locator(".goto input[name='page']").first.fill("3")
        page.locator(".goto input[name='page']").first.press("Enter")
        page.wait_for_url("**page=3*")
        assert rows.count() == 17 and page.locator("a[rel='next']").count() == 0
        page.locator("tr.subscriber a", has_text=emails[-1]).click()
        page.wait_for_url(f"**/subscribers/{emails[-1]}")
        page.frame_locator("#email").locator("text=Hi Reader").first.wait_for()
