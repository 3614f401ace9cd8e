"""``selfadapt review RUN_DIR``: the review page on ``http://127.0.0.1:PORT/``.

The standard library's ``ThreadingHTTPServer`` serves it: one local user, a handful of small
JSON requests per second and PNG thumbnails need no framework, and nothing has to be installed.
It binds 127.0.0.1 only and answers a fixed set of routes; every other path (``..`` included) is
404, and nothing is ever read from a path taken from the URL:

==========================  =======================================================
``/``                       the page (``page/``: ``index.html``, ``review.css``, the scripts)
``/api/meta``               classes, filter choices, counts, the saved place
``/api/items?...``          a page of suspects (filters, ``offset``/``limit`` or ``around``)
``POST /api/decision``      ``{index, decision, label, version}`` -> ``review.csv``
``POST /api/state``         ``{cursor, filters}`` -> ``review-state.json``
``/thumb/<index>.png``      a thumbnail made from the run's decoded data
``/image/<index>``          the original image file (``imagefolder:`` and ``csv:`` data)
``/run/<name>``             the run's own files listed in :data:`RUN_FILES`
==========================  =======================================================

Requests whose ``Host`` is not this address (DNS rebinding) and posts from another origin or not
JSON (cross-site forms) are refused with 403.

>>> server = ReviewServer(ReviewApp(load_run("runs/digits")), port=0)  # doctest: +SKIP
>>> server.url  # doctest: +SKIP
'http://127.0.0.1:40123/'
"""
from __future__ import annotations

import json
import mimetypes
import re
import sys
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from selfadapt.apps.command import Command
from selfadapt.apps.review.app import ReviewApp, load_run, page_file
from selfadapt.apps.review.static_page import write_static_page
from selfadapt.apps.review.store import Conflict
from selfadapt.errors import SelfAdaptError

HOST = "127.0.0.1"
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
              "/review.css": ("review.css", "text/css; charset=utf-8"),
              "/review.js": ("review.js", "text/javascript; charset=utf-8"),
              "/static-backend.js": ("static-backend.js", "text/javascript; charset=utf-8")}
RUN_FILES = ("review.csv", "label_issues.csv", "label_scores.csv", "summary.json", "config.json", "label_issues.png")
_NUMBERED = re.compile(r"^/(thumb|image)/(\d{1,12})(\.png)?$")
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                     "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}


class ReviewServer(ThreadingHTTPServer):
    """An HTTP server for one :class:`ReviewApp` on 127.0.0.1 (``port=0``: a free port)."""

    daemon_threads = True

    def __init__(self, app: ReviewApp, port: int = 0):
        try:
            super().__init__((HOST, port), ReviewHandler)
        except OSError as e:
            raise SelfAdaptError(f"cannot listen on {HOST}:{port} ({e.strerror}); pick another --port, or leave it "
                                 "out for a free one") from None
        self.app = app
        self.port = self.server_address[1]
        self.allowed_hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread (tests, notebooks); ``shutdown()`` stops it."""
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread


class ReviewHandler(BaseHTTPRequestHandler):
    """Fixed routes only (module docstring); JSON errors; keep-alive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stall per reply
    server: ReviewServer

    def log_message(self, format, *args):  # quiet: one line per thumbnail would drown the URL
        pass

    def do_GET(self):
        path, query = self._route()
        if path is None:
            return
        app = self.server.app
        try:
            if path in PAGE_FILES:
                name, kind = PAGE_FILES[path]
                return self._send(200, page_file(name), kind, cache="no-cache")
            if path == "/api/meta":
                return self._json(200, app.meta())
            if path == "/api/items":
                return self._json(200, app.items(query))
            if path.startswith("/run/") and path[5:] in RUN_FILES and (app.run.path / path[5:]).is_file():
                kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
                return self._send(200, (app.run.path / path[5:]).read_bytes(), kind, cache="no-store")
            numbered = _NUMBERED.match(path)
            if numbered:
                return self._numbered(numbered.group(1), int(numbered.group(2)), numbered.group(3))
        except SelfAdaptError as e:
            return self._json(400, {"error": str(e)})
        self._not_found()

    def do_POST(self):
        path, _ = self._route()
        if path is None:
            return
        raw = self._body()
        if raw is None:
            return self._json(413, {"error": "a decision is a small JSON object"})
        if path not in ("/api/decision", "/api/state"):
            return self._not_found()
        origin = self.headers.get("Origin")
        if not self.headers.get("Content-Type", "").startswith("application/json") or (
                origin is not None and origin.removeprefix("http://") not in self.server.allowed_hosts):
            return self._json(403, {"error": "decisions are posted as JSON by the page itself"})
        try:
            body = json.loads(raw or b"null")
            if path == "/api/state":
                self.server.app.save_state(body)
                return self._json(200, {"ok": True})
            return self._json(200, self.server.app.decide(body))
        except Conflict as e:
            return self._json(409, {"error": str(e), "current": e.current, "counts": self.server.app.counts()})
        except (SelfAdaptError, ValueError) as e:
            return self._json(400, {"error": str(e)})

    def _route(self) -> tuple[str | None, dict]:
        """The request's path and query, or ``(None, {})`` after refusing it."""
        if self.headers.get("Host") not in self.server.allowed_hosts:
            self._json(403, {"error": "this server answers only to its own address"})
            return None, {}
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if "\\" in path or "\0" in path or ".." in path.split("/"):
            self._not_found()
            return None, {}
        return path, dict(parse_qsl(parts.query))

    def _body(self) -> bytes | None:
        """The posted body (read whole, so the connection stays usable); ``None`` when too large."""
        text = self.headers.get("Content-Length") or "0"
        if not text.isdigit() or int(text) > 1 << 16:
            self.close_connection = True
            return None
        return self.rfile.read(int(text))

    def _numbered(self, kind: str, key: int, suffix: str | None):
        app = self.server.app
        row = app.row_of.get(key)
        if row is None:
            return self._not_found()
        if kind == "thumb" and suffix and app.thumbnails is not None:
            return self._send(200, app.thumbnails.png(row), "image/png", cache="private, max-age=3600")
        original = app.run.image_path(row) if kind == "image" and not suffix else None
        if original is None or not original.is_file():
            return self._not_found()
        kind_of = mimetypes.guess_type(original.name)[0] or "application/octet-stream"
        return self._send(200, original.read_bytes(), kind_of, cache="private, max-age=3600")

    def _not_found(self):
        self._json(404, {"error": "not found"})

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", cache="no-store")

    def _send(self, status: int, body: bytes, kind: str, *, cache: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def add_arguments(parser) -> None:
    """The flags of ``selfadapt review``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run of find-label-issues or train (with targets.npy)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    parser.add_argument("--static", metavar="OUT.html", default=None,
                        help="write one self-contained HTML file (thumbnails embedded) instead of serving; its "
                             "decisions download as review.csv")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="with --static: only the N most suspicious samples (default: every suspect)")


def run(args) -> int:
    """``selfadapt review``: serve the page until Ctrl-C, or write the static page."""
    if not 0 <= args.port <= 65535:
        raise SelfAdaptError(f"--port must lie in 0..65535, got {args.port}")
    if args.limit is not None and (args.limit < 1 or args.static is None):
        raise SelfAdaptError("--limit N (N >= 1) goes with --static")
    review = load_run(args.run_dir)
    if args.static is not None:
        size, count = write_static_page(ReviewApp(review), args.static, limit=args.limit)
        print(f"{count} of {len(review.suspects)} suspects -> {args.static} ({size / 1e6:.1f} MB); open it in any "
              "browser, its 'download review.csv' button saves the decisions")
        return 0
    server = ReviewServer(ReviewApp(review), args.port)
    print(f"reviewing {len(review.suspects)} suspected label errors of {args.run_dir} at {server.url}  (Ctrl-C stops; "
          f"decisions -> {review.path / 'review.csv'})", flush=True)
    if not args.no_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped; every decision is saved", file=sys.stderr)
    finally:
        server.server_close()
    return 0


DESCRIPTION = ("Serve a page on 127.0.0.1 that shows the suspected label errors of a find-label-issues or train run, "
               "most suspicious first, to accept, keep, relabel or skip with one key each; every decision is saved "
               "at once to RUN_DIR/review.csv. --static writes the page as one self-contained HTML file instead.")
COMMANDS = [Command("review", "review suspected label errors in a browser (127.0.0.1)", add_arguments, run,
                    DESCRIPTION)]
