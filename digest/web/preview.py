"""`digest preview`: a local Starlette app showing every subscriber's digest, live as you edit.

Routes:
  /                                  the edition, the article pool, the subscribers, `digest check`
  /subscribers/{email}               one subscriber's digest: headers, warnings, HTML and text parts
  /subscribers/{email}/email.html    the HTML part exactly as sent (shown in a sandboxed iframe)
  /subscribers/{email}/email.txt     the text part
  /subscribers/{email}/digest.eml    the exact message `digest build` writes
  /events                            Server-Sent Events: `reload` when the inputs changed
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import webbrowser
from collections.abc import AsyncIterator, Iterable, MutableMapping
from contextlib import asynccontextmanager
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from digest.errors import DigestError
from digest.message import to_bytes
from digest.models import Subscriber
from digest.web import pages
from digest.web.live import PreviewError, PreviewState, Snapshot, Watcher

log = logging.getLogger("digest.web")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: How often an open /events stream looks at the version; the watcher itself debounces edits.
POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 15.0
#: The email must not run scripts even if a template smuggles one in.
EMAIL_CSP = "default-src 'none'; img-src * data:; style-src 'unsafe-inline' *; font-src * data:; script-src 'none'"

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("digest.web", "templates"),
    autoescape=True,  # article titles, names and excerpts are untrusted
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["kb"] = lambda n: f"{n / 1000:.1f} KB"
# From/To are RFC 2047-encoded for the wire (=?utf-8?b?...?=); editors read the decoded names.
_templates.filters["header"] = lambda value: str(make_header(decode_header(value)))
_WHERE = re.compile(r"^(?P<file>[^\n:]+):(?P<line>\d+):")


def _page(name: str, status: int = 200, /, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(name).render(**context), status_code=status)


def _error_page(failure_message: str, token: str) -> HTMLResponse:
    """The build error with its file and line, and the lines around it when the file is readable."""
    where = _WHERE.match(failure_message)
    excerpt: list[tuple[int, str]] = []
    file = line = None
    if where:
        file, line = where["file"], int(where["line"])
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
            excerpt = [(n, lines[n - 1]) for n in range(max(1, line - 3), min(len(lines), line + 3) + 1)]
        except (OSError, UnicodeDecodeError):
            excerpt = []
    return _page("error.html", 500, message=failure_message, file=file, line=line, excerpt=excerpt, token=token)


def _not_found(message: str, token: str | None = None) -> HTMLResponse:
    return _page("not_found.html", 404, message=message, token=token)


class PreviewApp:
    """The routes, bound to one `PreviewState`."""

    def __init__(self, state: PreviewState):
        self.state = state
        #: Set when the server shuts down: open event streams end instead of holding it up.
        self.closing = threading.Event()

    def _snapshot(self) -> Snapshot:
        return self.state.snapshot()

    def _subscriber(self, snap: Snapshot, request: Request) -> Subscriber:
        address = request.path_params["email"].casefold()
        selection = snap.selections.get(address)
        if selection is None:
            raise HTTPException(
                404, f"No subscriber {request.path_params['email']} in {snap.run.config.subscribers.path.name}."
            )
        return selection.subscriber

    # Sync handlers: Starlette runs them in its thread pool, so a slow rebuild never blocks /events.
    def index(self, request: Request) -> Response:
        snap = self._snapshot()
        query = request.query_params.get("q", "")[:200]
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            page = 1
        return _page("index.html", token=snap.token, **pages.index_context(snap, query, page))

    def subscriber(self, request: Request) -> Response:
        snap = self._snapshot()
        subscriber = self._subscriber(snap, request)
        return _page("subscriber.html", token=snap.token, **pages.subscriber_context(snap, subscriber))

    def _email(self, request: Request) -> tuple[Snapshot, Any]:
        snap = self._snapshot()
        subscriber = self._subscriber(snap, request)
        selection = snap.selections[subscriber.id]
        if not selection.gets_email:
            raise HTTPException(404, f"{subscriber.email} gets no digest this edition: {selection.skipped}.")
        return snap, snap.email(selection)

    def email_html(self, request: Request) -> Response:
        _, email = self._email(request)
        return HTMLResponse(email.html, headers={"Content-Security-Policy": EMAIL_CSP, "Cache-Control": "no-store"})

    def email_text(self, request: Request) -> Response:
        _, email = self._email(request)
        return PlainTextResponse(email.text, headers={"Cache-Control": "no-store"})

    def eml(self, request: Request) -> Response:
        from digest.message import eml_name

        snap, email = self._email(request)
        body = to_bytes(email, date=snap.run.at, edition_id=snap.run.edition.id)
        name = eml_name(email.subscriber)
        return Response(
            body,
            media_type="message/rfc822",
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        )

    async def events(self, request: Request) -> Response:
        """Tells an open page to reload as soon as the version differs from the one it shows."""
        shown = request.query_params.get("since") or self.state.token

        async def stream() -> AsyncIterator[str]:
            yield "retry: 1000\n\n"  # reconnect quickly after a server restart
            idle = 0.0
            while not self.closing.is_set():
                current = self.state.token
                if current != shown:
                    yield f"event: reload\ndata: {current}\n\n"
                    return  # the page reloads and opens a new stream
                if idle >= HEARTBEAT_SECONDS:
                    yield ": keep-alive\n\n"
                    idle = 0.0
                await asyncio.sleep(POLL_SECONDS)
                idle += POLL_SECONDS

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )


def create_app(state: PreviewState, *, watch: bool = True, allowed_hosts: Iterable[str] = LOOPBACK) -> Starlette:
    """The preview app. `watch` starts the file watcher for the app's lifespan."""
    views = PreviewApp(state)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            detail = exc.detail if exc.detail != "Not Found" else f"No page at {request.url.path}."
            return _not_found(detail, state.token)
        return PlainTextResponse(exc.detail, status_code=exc.status_code)

    async def build_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PreviewError)
        return _error_page(exc.failure.message, exc.failure.token)

    async def compose_error(request: Request, exc: Exception) -> Response:
        # One subscriber's email failed (e.g. a template line only their data reaches).
        return _error_page(str(exc), state.token)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = Watcher(state) if watch else None
        app.state.watcher = watcher  # `app.state.watcher.ready`: callers that must not miss an edit wait on it
        if watcher is not None:
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                await asyncio.to_thread(watcher.stop)

    hosts = list(allowed_hosts)
    app = Starlette(
        routes=[
            Route("/", views.index),
            Route("/events", views.events),
            Route("/subscribers/{email}", views.subscriber),
            Route("/subscribers/{email}/email.html", views.email_html),
            Route("/subscribers/{email}/email.txt", views.email_text),
            Route("/subscribers/{email}/digest.eml", views.eml),
        ],
        # A page on another site could otherwise read subscriber data through DNS rebinding.
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)] if "*" not in hosts else [],
        exception_handlers={HTTPException: http_error, PreviewError: build_error, DigestError: compose_error},
        lifespan=lifespan,
    )
    app.state.closing = views.closing
    return app


def allowed_hosts_for(host: str) -> list[str]:
    """Loopback names only, unless the user chose to listen on another address."""
    if host in LOOPBACK:
        return list(LOOPBACK)
    return ["*"]


# --- the CLI's two entry points -----------------------------------------------------------------


def get_page(state: PreviewState, path: str) -> tuple[int, bytes]:
    """Render one page in-process, without a server or a watcher: (status, body)."""
    app = create_app(state, watch=False)
    parts = urlsplit(path if path.startswith("/") else "/" + path)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(parts.path),
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 80),
    }
    status = 500
    body = bytearray()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # A streaming page (/events) ends once it has been asked for: there is no one to stream to.
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    asyncio.run(app(scope, receive, send))
    return status, bytes(body)


def bind(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn: a busy port becomes one clear line, and --port 0 works."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DigestError(f"cannot listen on {host}:{port}: {exc.strerror} (try --port {port + 1})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_for(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


class PreviewServer(uvicorn.Server):
    """uvicorn, ending the app's open event streams first so that Ctrl+C stops it at once."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        if isinstance(app, Starlette) and hasattr(app.state, "closing"):
            app.state.closing.set()
        await super().shutdown(sockets)


def serve(state: PreviewState, *, host: str = "127.0.0.1", port: int = 8025, open_browser: bool = True) -> None:
    """Run the preview server until Ctrl+C."""
    if not logging.getLogger("digest").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger("digest").addHandler(handler)
        logging.getLogger("digest").setLevel(logging.INFO)
    sock = bind(host, port)
    app = create_app(state, watch=True, allowed_hosts=allowed_hosts_for(host))
    # The timeout is a backstop: PreviewServer already ends the event streams on shutdown.
    server = PreviewServer(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    url = url_for(sock)
    log.info("previewing %s at %s (Ctrl+C to stop)", state.config_path.name, url)
    if open_browser:

        def open_when_ready() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=open_when_ready, daemon=True).start()
    server.run(sockets=[sock])
