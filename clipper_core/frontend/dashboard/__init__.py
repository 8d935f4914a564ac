"""The dashboard the management frontend serves on ``GET /dashboard``: plain HTML, JS and CSS.

The page needs no build step: its files ship as package data next to this module and are read
once. It reads the management API (same origin; the token the user enters is sent as
``Authorization: Bearer <token>``) and the query frontend's ``GET /metrics`` (JSON, which the
query frontend allows cross-origin). See ``docs/dashboard.md``.
"""

from __future__ import annotations

import functools
from importlib import resources

#: The page's own path; its files are under ``/dashboard/<file>``.
DASHBOARD_PATH = b"/dashboard"
_CONTENT_TYPES = {".html": b"text/html; charset=utf-8",
                  ".js": b"text/javascript; charset=utf-8",
                  ".css": b"text/css; charset=utf-8"}
_FILES = ("index.html", "dashboard.js", "plot.js", "dashboard.css")


@functools.cache
def _files() -> dict[str, bytes]:
    folder = resources.files(__name__)
    return {name: folder.joinpath(name).read_bytes() for name in _FILES}


def dashboard_file(path: bytes, query_port: int) -> tuple[bytes, bytes] | None:
    """``(body, content type)`` of the dashboard file at ``path``, or None if there is none.

    ``index.html`` carries ``query_port`` (the query frontend's port the page reads metrics
    from unless its URL says ``?query=http://host:port``).
    """
    name = path.removeprefix(DASHBOARD_PATH).strip(b"/").decode("ascii", "replace") or "index.html"
    body = _files().get(name)
    if body is None:
        return None
    if name == "index.html":
        body = body.replace(b"{{QUERY_PORT}}", str(query_port).encode())
    return body, _CONTENT_TYPES[name[name.rindex("."):]]


def is_dashboard_path(path: bytes) -> bool:
    return path == DASHBOARD_PATH or path.startswith(DASHBOARD_PATH + b"/")
