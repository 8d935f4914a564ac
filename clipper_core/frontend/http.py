"""A small HTTP/1.1 server on asyncio + httptools, used by the query and management frontends.

No web framework: a connection is an :class:`asyncio.Protocol` that parses requests with
httptools and hands each complete one to a handler together with a :class:`Responder`. The
handler may answer at once or later (after a prediction arrives); responses of pipelined
requests are written in request order.

Built-in protections (each bounded, none can block the event loop): a body size limit (413),
URL and header size limits (414, 431), a timeout for clients that take too long to send a
request (408), an idle keep-alive timeout, a connection cap (503), backpressure on clients
that pipeline requests without reading the responses (reading stops while the socket's write
buffer is full), ``Expect: 100-continue``, optional TLS, and a graceful stop that answers the
requests in flight before closing.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

import httptools
import orjson

if TYPE_CHECKING:
    from clipper_core.config import ClusterConfig

_STATUS_LINES = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}
_JSON = b"application/json"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Requests whose handler has been called but whose response is not written yet, per
#: connection; further pipelined requests wait (parsed) and reading stops.
_MAX_IN_FLIGHT = 256
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
#: Seconds a stopping server keeps reading idle keep-alive connections, to answer a request
#: already on its way rather than drop it with the connection.
IDLE_GRACE_S = 0.1


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
        conn = self._conn
        if conn.closing and conn._pending and conn._pending[-1] is self:
            self._keep_alive = False  # the last answer before the connection closes
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

    __slots__ = ("_body", "_body_bytes", "_continue_owed", "_dispatching", "_failed",
                 "_head_bytes", "_header_bytes", "_headers", "_idle_since", "_in_flight",
                 "_messages", "_parser", "_pending", "_reading_paused", "_started_at", "_url",
                 "_waiting", "_writing_paused", "closing", "server", "transport")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        #: Responders in request order, answered or not; written from the front.
        self._pending: deque[Responder] = deque()
        #: Parsed requests whose handler is not called yet (backpressure).
        self._waiting: deque[tuple[Request, Responder]] = deque()
        self._in_flight = 0
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_bytes = 0
        #: Bytes of the current request's head (request line and headers) received in chunks
        #: that held nothing else; -1 once the head is complete.
        self._head_bytes = -1
        self._header_bytes = 0
        self._messages = 0
        #: When the current request's first byte arrived; 0 between requests.
        self._started_at = 0.0
        #: Set once an error was answered: the rest of the stream is ignored.
        self._failed = False
        self._idle_since = time.monotonic()
        self._writing_paused = False
        self._reading_paused = False
        self._dispatching = False
        self._continue_owed = False
        #: Set by a graceful stop: answer what was received, then close.
        self.closing = False

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if len(server.connections) >= server.max_connections:
            transport.write(render_response(  # type: ignore[attr-defined]
                503, error_body(HTTPStatus.SERVICE_UNAVAILABLE.phrase,
                                f"The server already has {len(server.connections)} open "
                                "connections, its limit; retry later or reuse a connection"),
                extra_headers=((b"Retry-After", b"1"),), close=True))
            transport.close()
            self.transport = None
            return
        server.connections.add(self)
        if server.stopping:
            # Accepted in the loop iteration that began the stop: its request is likely on
            # its way already; answer it like an idle connection's, then close.
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self._waiting.clear()

    def eof_received(self) -> bool:
        """The client has sent everything (a half-close): answer what it sent, then close."""
        self.closing = True
        return bool(self._pending) and not self._failed

    def pause_writing(self) -> None:
        """The socket's write buffer is full: stop reading and calling handlers until drained."""
        self._writing_paused = True
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._dispatch_waiting()

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return
        messages = self._messages
        in_head = self._head_bytes >= 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Upgrade is not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"Malformed HTTP request: {exc}")
        # httptools buffers a header until it is complete: bound what it may hold.
        if in_head and self._head_bytes >= 0 and messages == self._messages:
            self._head_bytes += len(data)
            if self._head_bytes > self.server.max_header_bytes + self.server.max_url_bytes:
                self._fail(431, "Request head larger than the limit of "
                                f"{self.server.max_header_bytes} bytes of headers")

    # -- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._failed:
            return
        self._messages += 1
        self._header_bytes = 0
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_bytes = 0
        self._head_bytes = 0
        self._started_at = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.server.max_url_bytes and not self._failed:
            self._fail(414, f"URL longer than the limit of {self.server.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self._headers[name] = value
        self._header_bytes += len(name) + len(value)
        if self._failed:
            return
        if len(self._headers) > MAX_HEADERS:
            self._fail(431, f"More than {MAX_HEADERS} request headers")
        elif self._header_bytes > self.server.max_header_bytes:
            self._fail(431, "Request headers larger than the limit of "
                            f"{self.server.max_header_bytes} bytes")
        elif name == b"content-length" and value.isdigit() \
                and int(value) > self.server.max_body_bytes:
            self._too_large()

    def on_headers_complete(self) -> None:
        self._head_bytes = -1
        expect = self._headers.get(b"expect")
        if expect is None or self._failed:
            return
        if expect.lower() != b"100-continue":
            self._fail(417, f"Unsupported Expect header {expect.decode('latin-1')!r}; only "
                            "'100-continue' is understood")
        elif self._pending:
            self._continue_owed = True
        elif self.transport is not None:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._failed:
            return
        self._body.append(body)
        self._body_bytes += len(body)
        if self._body_bytes > self.server.max_body_bytes:
            self._too_large()

    def on_message_complete(self) -> None:
        if self.transport is None or self._failed:
            return
        self._started_at = 0.0
        url = self._url
        path, _, query = url.partition(b"?")
        keep_alive = self._parser.should_keep_alive() and not self.closing
        request = Request(self._parser.get_method(), path, query or None, self._headers,
                          b"".join(self._body), keep_alive)
        self._body = []
        responder = Responder(self, keep_alive)
        self._pending.append(responder)
        self._waiting.append((request, responder))
        self._dispatch_waiting()
        if self._waiting and self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _dispatch_waiting(self) -> None:
        """Call the handlers of waiting requests while the client keeps reading its answers."""
        if self._dispatching:
            return
        self._dispatching = True
        try:
            waiting = self._waiting
            while waiting and not self._writing_paused and self._in_flight < _MAX_IN_FLIGHT \
                    and self.transport is not None:
                request, responder = waiting.popleft()
                self._in_flight += 1
                try:
                    self.server.handler(request, responder)
                except Exception:
                    self.server.handler_failed(request, responder)
        finally:
            self._dispatching = False
        if not self._waiting and not self._writing_paused and not self.closing:
            self._resume_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- writing --------------------------------------------------------------------------
    def _flush(self) -> None:
        pending = self._pending
        transport = self.transport
        while pending and pending[0]._data is not None:
            responder = pending.popleft()
            self._in_flight = max(self._in_flight - 1, 0)
            if transport is None:
                continue
            transport.write(responder._data)  # type: ignore[arg-type]
            if not responder._keep_alive:
                if self._failed and transport.can_write_eof():
                    # Half-close and discard what the client still sends (until it closes or
                    # the request timeout), so that it reads the error instead of a reset.
                    transport.write_eof()
                    self._pending.clear()
                    self._resume_reading()
                    return
                transport.close()
                self.transport = transport = None
        if transport is None:
            return
        if not pending:
            self._idle_since = time.monotonic()
            if self._continue_owed:
                self._continue_owed = False
                transport.write(_CONTINUE)
            if self.closing and self._started_at == 0:
                transport.close()
                self.transport = None
                return
        self._dispatch_waiting()

    def _too_large(self) -> None:
        limit = self.server.max_body_bytes
        self._fail(413, f"Request body larger than the limit of {limit} bytes; "
                        "send smaller batches or raise max_body_bytes")

    def _fail(self, status: int, cause: str) -> None:
        """Answer after the pending responses, then close (the stream cannot be trusted)."""
        if self._failed:
            return
        self._failed = True
        self._started_at = time.monotonic()
        if self.transport is None:
            return
        responder = Responder(self, keep_alive=False)
        self._pending.append(responder)
        self._in_flight += 1
        responder.send(status, error_body(HTTPStatus(status).phrase, cause))

    def check_timeout(self, now: float) -> None:
        """Answer 408 to a request that takes too long to arrive; close an idle connection."""
        server = self.server
        if self._failed:
            if now - self._started_at > server.request_timeout_s and self.transport is not None:
                self.transport.close()
                self.transport = None
            return
        if self._started_at > 0 and now - self._started_at > server.request_timeout_s:
            self._fail(408, f"The request was not received completely within "
                            f"{server.request_timeout_s:g} s")
        elif self._started_at == 0 and not self._pending and self.transport is not None \
                and now - self._idle_since > server.keepalive_timeout_s:
            self.transport.close()
            self.transport = None

    def answer_unanswered(self, status: int, cause: str) -> None:
        """Answer every request received and not answered yet (a stop's drain has run out)."""
        body = error_body(HTTPStatus(status).phrase, cause)
        self._waiting.clear()
        for responder in list(self._pending):
            responder.send(status, body, extra_headers=((b"Retry-After", b"1"),))

    def shutdown(self) -> None:
        """Stop taking requests; close once the received ones are answered.

        An idle connection keeps reading for a moment (see :meth:`close_if_idle`): a request
        the client sent just before the stop is answered (with ``Connection: close``) instead
        of being dropped with the connection."""
        self.closing = True
        if self._failed and self.transport is not None and not self._pending:
            self.transport.close()
            self.transport = None
        if self.transport is None or self._started_at > 0 or not self._pending:
            return  # a request being received is read to its end and answered
        self._reading_paused = True
        self.transport.pause_reading()

    def close_if_idle(self) -> None:
        """Close a connection that has no request in progress or unanswered."""
        if self.transport is not None and not self._pending and self._started_at == 0:
            self.transport.close()
            self.transport = None


def tls_context(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """The server-side TLS context of a certificate and key (PEM files), or None for plain HTTP."""
    if not cert_file and not key_file:
        return None
    if not cert_file or not key_file:
        from clipper_core.exceptions import ValidationError

        msg = ("TLS needs both tls_cert_file and tls_key_file; only "
               f"{'tls_cert_file' if cert_file else 'tls_key_file'} is set")
        raise ValidationError(msg)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class HttpServer:
    """Serves one handler on one port."""

    def __init__(self, handler: Handler, *, max_body_bytes: int = 16 * 1024 * 1024,
                 request_timeout_s: float = 5.0, keepalive_timeout_s: float = 75.0,
                 max_connections: int = 4096, max_url_bytes: int = MAX_URL_BYTES,
                 max_header_bytes: int = MAX_HEADER_BYTES, drain_timeout_s: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None,
                 log_exception: Callable[..., None] | None = None) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.request_timeout_s = request_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self.max_connections = max_connections
        self.max_url_bytes = max_url_bytes
        self.max_header_bytes = max_header_bytes
        self.drain_timeout_s = drain_timeout_s
        self.ssl_context = ssl_context
        self.connections: set[HttpConnection] = set()
        self.stopping = False
        self.log_exception = log_exception or (lambda *a: None)
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def call(self, handler: Handler, request: Request, responder: Responder) -> None:
        """Call ``handler``, one a request was deferred to, as the server calls its own."""
        try:
            handler(request, responder)
        except Exception:
            self.handler_failed(request, responder)

    def handler_failed(self, request: Request, responder: Responder) -> None:
        """Log the exception a handler raised and answer 500: a handler bug must not lose
        the request (call it in the ``except`` clause)."""
        self.log_exception("unhandled error while handling %r", request.path)
        responder.send(500, error_body("Internal error", "An unexpected error occurred!"))

    @classmethod
    def for_config(cls, config: ClusterConfig, handler: Handler,
                   log_exception: Callable[..., None] | None = None) -> HttpServer:
        """A server with the limits, timeouts and TLS settings of a cluster's configuration."""
        return cls(handler, max_body_bytes=config.max_body_bytes,
                   request_timeout_s=config.request_timeout_s,
                   keepalive_timeout_s=config.keepalive_timeout_s,
                   max_connections=config.max_connections,
                   drain_timeout_s=config.drain_timeout_s,
                   ssl_context=tls_context(config.tls_cert_file, config.tls_key_file),
                   log_exception=log_exception)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self), host, port, reuse_address=True, backlog=4096,
            ssl=self.ssl_context)
        self._sweeper = loop.create_task(self._sweep())

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.keepalive_timeout_s / 2))
            now = time.monotonic()
            for conn in list(self.connections):
                conn.check_timeout(now)

    async def stop(self) -> None:
        """Stop listening, answer the requests received (up to ``drain_timeout_s``; those still
        unanswered then get 503 with ``Retry-After``), close. Idle connections are closed
        after :data:`IDLE_GRACE_S`; a request arriving on one before that is answered."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        # A connection accepted with the stop's wake-up joins in its connection_made (shut
        # down there) before the drain below looks at what is open.
        await asyncio.sleep(0)
        now = time.monotonic()
        deadline, idle_until = now + self.drain_timeout_s, now + min(IDLE_GRACE_S,
                                                                     self.drain_timeout_s)
        while any(c.transport is not None for c in self.connections) \
                and time.monotonic() < deadline:
            if time.monotonic() >= idle_until:
                for conn in list(self.connections):
                    conn.close_if_idle()
            await asyncio.sleep(0.02)
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.answer_unanswered(503, "The server is shutting down and could not answer "
                                            f"within {self.drain_timeout_s:g} s; retry")
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
