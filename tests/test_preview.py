"""Every preview page through Starlette's TestClient, on a temp copy of the sample newsletter."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_support import running_server
from click.testing import CliRunner
from conftest import SAMPLE_AT
from starlette.applications import Starlette
from starlette.testclient import TestClient

from digest.cli import main
from digest.config import load_config
from digest.message import to_bytes
from digest.pipeline import build, open_run
from digest.store import open_state
from digest.suppressions import STATE_NAME
from digest.web.live import PreviewState, Watcher
from digest.web.preview import create_app, get_page

AT = "2026-11-30T00:00"
CHLOE = "chloe.dubois@example.net"
ROBOTS = "content/2026/11/robot-dogs-learn-stairs.md"
ROBOTS_TITLE = "Robot dogs finally learn to take the stairs"


def make_client(config: Path, *, watch: bool = False) -> tuple[PreviewState, TestClient]:
    state = PreviewState(config, AT)
    return state, TestClient(create_app(state, watch=watch), base_url="http://127.0.0.1")


@pytest.fixture
def client(sample: Path) -> TestClient:
    return make_client(sample)[1]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def without_boundaries(message: bytes) -> bytes:
    """The stdlib picks a random MIME boundary per message; everything else must match byte for byte."""
    return re.sub(rb"={15}\d+==", b"BOUNDARY", message)


def watching(app: Starlette) -> None:
    """Wait until the app's file watcher sees every edit from now on (its readiness event, not a sleep)."""
    assert app.state.watcher.ready.wait(timeout=120), "the file watcher never started watching"


def rebuilt_since(state: PreviewState, before: str) -> bool:
    """Whether the watcher rebuilt after `before`: waits for the rebuild itself, however long it takes
    (the timeout only keeps a broken watcher from hanging the suite; it measures nothing)."""
    return state.wait_rebuilt(before, timeout=120)


# --- pages ----------------------------------------------------------------------------------------


def test_index_shows_edition_pool_subscribers_and_problems(client):
    r = client.get("/")
    assert r.status_code == 200
    page = r.text
    assert "The Weekly Circuit" in page
    assert "2026-W49" in page and "30 November 2026" in page
    assert "Mon 23 Nov 2026 00:00" in page  # the window's start
    assert ROBOTS_TITLE in page
    assert "7</b><span>of 10 subscribers get a digest" in page
    # each subscriber links to their page with their preferences; those without say why
    assert f'href="/subscribers/{CHLOE}"' in page
    assert '<span class="tag">robotics</span>' in page
    assert "no matching articles in the window" in page and "status is unsubscribed" in page
    assert 'id="filter"' in page  # the search box
    assert "check clean" in page  # the sample has no problems


def test_index_counts_subscribers_per_article(client, sample):
    run = open_run(load_config(sample), SAMPLE_AT)
    getting = [s for s in run.selections() if s.gets_email]
    expected = sum(1 for s in getting if "2026/11/robot-dogs-learn-stairs" in s.content_key)
    page = client.get("/").text
    row = page.split(ROBOTS_TITLE, 1)[1].split("</tr>", 1)[0]
    assert f'<td class="num">{expected}</td>' in row and expected > 0


def test_index_escapes_untrusted_article_titles(sample):
    edit(sample.parent / ROBOTS, f"title: {ROBOTS_TITLE}", 'title: "<script>alert(1)</script> & <b>bold</b>"')
    _, c = make_client(sample)
    page = c.get("/").text
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page


def test_index_lists_content_problems_with_file_and_line(sample):
    bad = sample.parent / "content" / "2026" / "11" / "broken-front-matter.md"
    bad.write_text("---\ntitle: [unclosed\ndate: 2026-11-25\n---\nBody\n", encoding="utf-8")
    _, c = make_client(sample)
    r = c.get("/")
    assert r.status_code == 200  # a bad article is skipped, as build and send skip it
    assert "broken-front-matter.md" in r.text and 'class="pill error"' in r.text


def test_subscriber_page_shows_headers_choices_size_and_frame(client, sample):
    r = client.get(f"/subscribers/{CHLOE}")
    assert r.status_code == 200
    page = r.text
    run = open_run(load_config(sample), SAMPLE_AT)
    selection = run.select(run.subscribers_for([CHLOE])[0])
    mail = run.email(selection)
    assert "The Weekly Circuit &lt;weekly@circuit.example.com&gt;" in page
    assert "Chloé Dubois &lt;chloe.dubois@example.net&gt;" in page
    assert f"<b>{mail.subject}</b>" in page.replace("&#39;", "'")
    assert "Preheader" in page and 'id="preheader"' in page
    for choice in selection.choices:
        assert choice.reason in page
    assert f"{mail.html_bytes / 1000:.1f} KB" in page and "102 KB clip" in page
    iframe = re.search(r"<iframe[^>]*>", page, re.S)
    assert iframe and f'src="/subscribers/{CHLOE}/email.html"' in iframe.group(0)
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in iframe.group(0)
    assert "allow-scripts" not in page
    assert 'data-width="375"' in page and 'data-width="700"' in page and 'id="dark"' in page
    assert f'href="/subscribers/{CHLOE}/digest.eml"' in page


def test_subscriber_page_warnings(sample):
    text = sample.read_text(encoding="utf-8")
    text = re.sub(r'postal_address = ".*"', 'postal_address = ""', text)
    sample.write_text(text + "\n[templates]\nmax_subject_chars = 10\n", encoding="utf-8")
    partial = sample.parent / "templates" / "partials" / "article.mjml.j2"
    edit(partial, 'alt=""', "")
    _, c = make_client(sample)
    page = c.get(f"/subscribers/{CHLOE}").text
    warnings = page.split('id="warnings"', 1)[1].split("</section>", 1)[0]
    assert "An image has no alt text: https://images.example.com/robotics/robot-dog-stairs.jpg" in warnings
    assert "over templates.max_subject_chars = 10" in warnings
    assert "No postal address" in warnings
    assert "“Seed rounds shrink, but AI startups still raise fast” has no cover image" in warnings


def test_decorative_covers_are_fine_but_a_link_named_by_nothing_is_not(sample):
    """The shipped covers have alt="" (the title is the link) and a link hidden from screen readers."""
    _, c = make_client(sample)
    page = c.get(f"/subscribers/{CHLOE}").text
    assert "alt text" not in page.split('id="warnings"', 1)[1].split("</section>", 1)[0]
    edit(sample.parent / "templates" / "partials" / "article.mjml.j2", ' aria-hidden="true" tabindex="-1"', "")
    _, c = make_client(sample)
    warnings = c.get(f"/subscribers/{CHLOE}").text.split('id="warnings"', 1)[1].split("</section>", 1)[0]
    assert (
        "A link shows only an image with empty alt text, so it has no name: "
        "https://images.example.com/robotics/robot-dog-stairs.jpg"
    ) in warnings


def test_email_html_is_the_composers_html(client, sample):
    r = client.get(f"/subscribers/{CHLOE}/email.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'none'" in r.headers["content-security-policy"]
    run = open_run(load_config(sample), SAMPLE_AT)
    assert r.text == run.email(run.select(run.subscribers_for([CHLOE])[0])).html


def test_eml_download_is_byte_identical_to_build(client, sample, tmp_path):
    r = client.get(f"/subscribers/{CHLOE}/digest.eml")
    assert r.status_code == 200
    assert r.headers["content-type"] == "message/rfc822"
    assert f'filename="{CHLOE}.eml"' in r.headers["content-disposition"]
    build(open_run(load_config(sample), SAMPLE_AT), tmp_path / "out", [CHLOE])
    built = (tmp_path / "out" / f"{CHLOE}.eml").read_bytes()
    assert without_boundaries(r.content) == without_boundaries(built)
    msg = email.message_from_bytes(r.content, policy=email.policy.default)
    assert msg["To"] == "Chloé Dubois <chloe.dubois@example.net>"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert ROBOTS_TITLE in msg.get_body(("plain",)).get_content()


def test_text_part_route_and_tab(client, sample):
    run = open_run(load_config(sample), SAMPLE_AT)
    text = run.email(run.select(run.subscribers_for([CHLOE])[0])).text
    r = client.get(f"/subscribers/{CHLOE}/email.txt")
    assert r.status_code == 200 and r.text == text
    page = client.get(f"/subscribers/{CHLOE}").text
    assert 'id="text-part"' in page and "Hi Chloé," in page and 'data-tab="text"' in page


def test_subscriber_without_a_digest_says_why(client):
    r = client.get("/subscribers/nina@example.net")
    assert r.status_code == 200 and "no matching articles in the window" in r.text
    assert "<iframe" not in r.text
    assert client.get("/subscribers/nina@example.net/email.html").status_code == 404
    assert client.get("/subscribers/Pat.Former@example.com").status_code == 200  # addresses are case-insensitive


def test_unknown_subscriber_and_page_are_404(client):
    r = client.get("/subscribers/nobody@example.com")
    assert r.status_code == 404 and "No subscriber nobody@example.com in subscribers.csv" in r.text
    assert client.get("/subscribers/nobody@example.com/digest.eml").status_code == 404
    assert client.get("/nope").status_code == 404


def test_other_host_names_are_refused(sample):
    state = PreviewState(sample, AT)
    # DNS rebinding: a page on evil.example must not read subscriber data from the local server
    r = TestClient(create_app(state, watch=False), base_url="http://evil.example").get("/")
    assert r.status_code == 400


# --- errors and live reload -------------------------------------------------------------------------


def test_template_error_shows_file_and_line_and_the_server_recovers(sample):
    template = sample.parent / "templates" / "partials" / "article.mjml.j2"
    good = template.read_text(encoding="utf-8")
    template.write_text(good.replace("{{ item.title }}", "{{ item.title }"), encoding="utf-8")
    state, c = make_client(sample)
    for path in ("/", f"/subscribers/{CHLOE}", f"/subscribers/{CHLOE}/email.html"):
        r = c.get(path)
        assert r.status_code == 500, path
        assert f"{template}:" in r.text and 'class="hit"' in r.text
        assert "The server keeps running" in r.text
    template.write_text(good, encoding="utf-8")
    state.changed("fixed")
    assert c.get("/").status_code == 200


def test_an_error_only_one_subscriber_reaches_is_a_500_on_their_page(sample):
    template = sample.parent / "templates" / "subject.j2"
    template.write_text("{{ recipient.nickname }}", encoding="utf-8")
    _, c = make_client(sample)
    r = c.get(f"/subscribers/{CHLOE}")
    assert r.status_code == 500 and "subject.j2" in r.text and "nickname" in r.text


def test_edits_appear_on_the_next_request(sample):
    state, c = make_client(sample, watch=True)
    with c:  # the lifespan starts the file watcher
        assert ROBOTS_TITLE in c.get("/").text
        before = state.token
        watching(c.app)
        edit(sample.parent / ROBOTS, ROBOTS_TITLE, "Robot dogs now run up escalators")
        assert rebuilt_since(state, before)
        page = c.get(f"/subscribers/{CHLOE}").text
        assert "Robot dogs now run up escalators" in page and ROBOTS_TITLE not in page


@pytest.mark.parametrize(
    "target",
    [
        "digest.toml",
        "subscribers/subscribers.csv",
        "subscribers/segments.toml",
        "templates/subject.j2",
        "content/ai/new.md",
    ],
)
def test_every_input_is_watched(sample, target):
    state = PreviewState(sample, AT)
    app = create_app(state, watch=True)
    with TestClient(app, base_url="http://127.0.0.1"):
        before = state.token
        watching(app)
        path = sample.parent / target
        path.write_text(path.read_text(encoding="utf-8") + "\n" if path.exists() else "x", encoding="utf-8")
        assert rebuilt_since(state, before)


def test_an_unsubscribe_shows_live(sample):
    """The subscriber state is an input too: an unsubscribe through `digest serve` shows at once."""
    state_dir = sample.parent / "state"
    with open_state(state_dir) as db:
        db.opt_out("ada@example.com", "unsubscribed", "test")
    state, c = make_client(sample, watch=True)
    with c:
        assert "status is unsubscribed" not in c.get(f"/subscribers/{CHLOE}").text
        before = state.token
        watching(c.app)
        with open_state(state_dir) as db:
            db.opt_out(CHLOE, "unsubscribed", "unsubscribe page")
        assert rebuilt_since(state, before)
        assert "status is unsubscribed" in c.get(f"/subscribers/{CHLOE}").text


def test_the_watcher_is_ready_once_every_input_is_watched(sample):
    """`ready` replaces a sleep: it is set when each watch thread (folders, single files, and the
    polled state file whose folder does not exist yet) is live, so an edit made at once is seen."""
    changed: list[str] = []
    seen = threading.Event()
    watcher = Watcher(PreviewState(sample, AT), on_change=lambda what: (changed.append(what), seen.set()))
    assert not watcher.ready.is_set()
    watcher.start()
    try:
        assert watcher.ready.wait(timeout=120)
        (sample.parent / "subscribers" / "segments.toml").write_text("# edited\n", encoding="utf-8")
        assert seen.wait(timeout=120)  # generous: only a missing event fails, never a slow one
        assert changed == ["segments.toml"]
    finally:
        watcher.stop()


def test_the_state_is_watched_before_its_folder_exists(sample):
    """Before the first unsubscribe there is no state folder; its database appearing is a change."""
    state_dir = sample.parent / "state"
    assert not state_dir.exists()
    changed = threading.Event()
    names: list[str] = []
    watcher = Watcher(PreviewState(sample, AT), on_change=lambda what: (names.append(what), changed.set()))
    watcher.start()
    try:
        assert watcher.ready.wait(timeout=120)
        with open_state(state_dir) as db:
            db.opt_out(CHLOE, "unsubscribed", "unsubscribe page")
        assert changed.wait(timeout=120)  # generous: only a missing event fails, never a slow one
        assert any(STATE_NAME in n for n in names)
    finally:
        watcher.stop()


def sse_events(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("event: "):
            yield line.removeprefix("event: ")


def test_event_stream_sends_reload_after_an_edit(sample):
    state = PreviewState(sample, AT)
    app = create_app(state, watch=True)
    with running_server(app) as url:
        token = state.snapshot().token
        with httpx.stream("GET", f"{url}/events", params={"since": token}, timeout=10) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            watching(app)
            edit(sample.parent / ROBOTS, ROBOTS_TITLE, "Robot dogs take the lift")
            assert next(sse_events(response)) == "reload"
        assert "Robot dogs take the lift" in httpx.get(f"{url}/").text


def test_a_page_older_than_the_build_reloads_at_once(sample):
    state = PreviewState(sample, AT)
    with running_server(create_app(state, watch=False)) as url:
        with httpx.stream("GET", f"{url}/events", params={"since": "stale"}, timeout=10) as response:
            assert next(sse_events(response)) == "reload"


# --- the CLI ---------------------------------------------------------------------------------------


def test_get_prints_one_page(sample):
    result = CliRunner().invoke(main, ["--config", str(sample), "preview", "--at", AT, "--get", "/"])
    assert result.exit_code == 0, result.output
    assert "<!doctype html>" in result.stdout and ROBOTS_TITLE in result.stdout
    eml = CliRunner().invoke(
        main, ["--config", str(sample), "preview", "--at", AT, "--get", f"/subscribers/{CHLOE}/digest.eml"]
    )
    assert eml.exit_code == 0
    run = open_run(load_config(sample), SAMPLE_AT)
    mail = run.email(run.select(run.subscribers_for([CHLOE])[0]))
    expected = to_bytes(mail, date=run.at, edition_id=run.edition.id)
    assert without_boundaries(eml.stdout_bytes) == without_boundaries(expected)


def test_get_exits_1_on_a_non_200_status(sample):
    result = CliRunner().invoke(main, ["--config", str(sample), "preview", "--at", AT, "--get", "/subscribers/x@y.org"])
    assert result.exit_code == 1
    assert "answered HTTP 404" in result.stderr


def test_get_page_ends_an_event_stream(sample):
    status, body = get_page(PreviewState(sample, AT), "/events")
    assert status == 200 and body.startswith(b"retry:")


def test_preview_help_lists_its_flags():
    result = CliRunner().invoke(main, ["preview", "--help"])
    for flag in ("--at", "--port", "--host", "--no-open", "--get"):
        assert flag in result.output
    assert "8025" in result.output and "127.0.0.1" in result.output


# ---------------------------------------------------------------- a large list: paged and searched


def test_a_large_list_is_paged_and_searched_on_the_server_and_every_subscriber_is_reachable(sample: Path) -> None:
    from send_support import many_subscribers

    from digest.web.pages import PAGE_SIZE

    emails = many_subscribers(sample, 1050)
    _, c = make_client(sample)
    first = c.get("/").text
    assert first.count('class="subscriber"') == PAGE_SIZE
    assert "1–100 of 1,050 · 1,050 subscribers in all" in first and re.search(r"of 11\s*</form>", first)
    # following "next" from page 1 visits every subscriber exactly once
    seen: list[str] = []
    path: str | None = "/"
    while path is not None:
        page = c.get(path).text
        seen += re.findall(r'<tr class="subscriber"[^>]*>\s*<td><a href="/subscribers/([^"]+)"', page)
        found = re.search(r'<a href="([^"]+)" rel="next">', page)
        path = found.group(1).replace("&amp;", "&") if found else None
    assert seen == emails
    # any page by number, out-of-range numbers clamp
    assert "1,001–1,050 of 1,050" in c.get("/?page=11").text
    assert "1,001–1,050 of 1,050" in c.get("/?page=999").text and "1–100 of" in c.get("/?page=x").text
    # the search covers the whole list, not only the page shown
    hit = c.get("/", params={"q": "READER1049@example"}).text
    assert hit.count('class="subscriber"') == 1 and 'href="/subscribers/reader1049@example.com"' in hit
    assert "1–1 of 1 matching" in hit
    expected = [e for e in emails if "reader10" in e]  # reader1000 ... reader1049
    many = c.get("/", params={"q": "reader10", "page": "2"}).text  # one page of them: page 2 is page 1
    assert f"1–{len(expected)} of {len(expected)} matching" in many and 'rel="prev"' not in many
    assert "No subscriber matches" in c.get("/", params={"q": "nobody-at-all"}).text
    # every subscriber's own page, with previous/next through the whole list
    last = c.get(f"/subscribers/{emails[-1]}")
    assert last.status_code == 200 and emails[-2] in last.text
