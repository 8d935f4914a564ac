"""A small HTTP/1.1 server on asyncio + httptools, used by the query and management frontends.

No web framework: a connection is an :class:`asyncio.Protocol` that parses requests with
httptools and hands each complete one to a handler together with a :class:`Responder`. The
handler may answer at once or later (after a prediction arrives); responses of pipelined
requests are written in request order. Keep-alive, a body size limit (413) and a timeout for
clients that take too long to send a request are built in.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from http import HTTPStatus

import httptools
import orjson

_STATUS_LINES = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}
_JSON = b"application/json"
#: Pipelined requests accepted before the connection stops reading.
_MAX_PENDING = 1024


def error_body(error: str, cause: str) -> bytes:
    """The JSON error body of both frontends: ``{"error": ..., "cause": ...}``."""
    return orjson.dumps({"error": error, "cause": cause})


class Request:
    """One parsed request. ``headers`` maps lower-case names to values (both bytes)."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query")

    def __init__(self, method: bytes, path: bytes, query: bytes | None, headers: dict[bytes, bytes],
                 body: bytes, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


def render_response(status: int, body: bytes, content_type: bytes = _JSON,
                    extra_headers: Iterable[tuple[bytes, bytes]] = (), close: bool = False) -> bytes:
    head = [_STATUS_LINES[status], b"Content-Type: ", content_type,
            b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n"]
    for name, value in extra_headers:
        head += [name, b": ", value, b"\r\n"]
    if close:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)


class Responder:
    """Answers one request; call :meth:`send` exactly once (later calls are ignored)."""

    __slots__ = ("_conn", "_data", "_keep_alive")

    def __init__(self, conn: HttpConnection, keep_alive: bool) -> None:
        self._conn = conn
        self._keep_alive = keep_alive
        self._data: bytes | None = None

    @property
    def done(self) -> bool:
        return self._data is not None

    def send(self, status: int, body: bytes, content_type: bytes = _JSON,
             extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        if self._data is not None:
            return
        self._data = render_response(status, body, content_type, extra_headers,
                                     close=not self._keep_alive)
        self._conn._flush()

    def send_raw(self, data: bytes) -> None:
        """Send an already rendered response (see :func:`render_response`)."""
        if self._data is None:
            self._data = data
            self._conn._flush()


Handler = Callable[[Request, Responder], None]


class HttpConnection(asyncio.Protocol):
    """One client connection."""

    __slots__ = ("_body", "_headers", "_parser", "_pending", "_started_at", "_url",
                 "server", "transport")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._pending: deque[Responder] = deque()
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._started_at = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Upgrade is not supported")
        except httptools.HttpParserError as exc:
            if self._started_at >= 0:
                self._fail(400, f"Malformed HTTP request: {exc}")

    # -- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._started_at = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value
        if name.lower() == b"content-length" and value.isdigit() \
                and int(value) > self.server.max_body_bytes:
            self._too_large()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        if sum(map(len, self._body)) > self.server.max_body_bytes:
            self._too_large()

    def on_message_complete(self) -> None:
        self._started_at = 0.0
        if self.transport is None:
            return
        url = self._url
        path, _, query = url.partition(b"?")
        keep_alive = self._parser.should_keep_alive()
        request = Request(self._parser.get_method(), path, query or None, self._headers,
                          b"".join(self._body), keep_alive)
        responder = Responder(self, keep_alive)
        self._pending.append(responder)
        if len(self._pending) > _MAX_PENDING:
            self.transport.pause_reading()
        try:
            self.server.handler(request, responder)
        except Exception:  # a handler bug must not kill the connection silently
            self.server.log_exception("unhandled error while handling %r", path)
            responder.send(500, error_body("Internal error", "An unexpected error occurred!"))

    # -- writing --------------------------------------------------------------------------
    def _flush(self) -> None:
        pending = self._pending
        transport = self.transport
        while pending and pending[0]._data is not None:
            responder = pending.popleft()
            if transport is None:
                continue
            transport.write(responder._data)  # type: ignore[arg-type]
            if not responder._keep_alive:
                transport.close()
                self.transport = transport = None
        if transport is not None and len(pending) <= _MAX_PENDING // 2:
            transport.resume_reading()

    def _too_large(self) -> None:
        limit = self.server.max_body_bytes
        self._fail(413, f"Request body larger than the limit of {limit} bytes; "
                        "send smaller batches or raise max_body_bytes")

    def _fail(self, status: int, cause: str) -> None:
        """Answer after the pending responses, then close (the stream cannot be trusted)."""
        self._started_at = -1.0
        if self.transport is None:
            return
        responder = Responder(self, keep_alive=False)
        self._pending.append(responder)
        name = HTTPStatus(status).phrase
        responder.send(status, error_body(name, cause))
        if self.transport is not None:
            self.transport.pause_reading()

    def check_timeout(self, now: float, timeout: float) -> None:
        if self._started_at > 0 and now - self._started_at > timeout:
            self._fail(408, f"The request was not received completely within {timeout:g} s")


class HttpServer:
    """Serves one handler on one port."""

    def __init__(self, handler: Handler, *, max_body_bytes: int = 16 * 1024 * 1024,
                 request_timeout_s: float = 5.0,
                 log_exception: Callable[..., None] | None = None) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.request_timeout_s = request_timeout_s
        self.connections: set[HttpConnection] = set()
        self.log_exception = log_exception or (lambda *a: None)
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self), host, port, reuse_address=True, backlog=4096)
        self._sweeper = loop.create_task(self._sweep())

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.check_timeout(now, self.request_timeout_s)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self._server.wait_closed()
