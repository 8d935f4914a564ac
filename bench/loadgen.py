"""An open-loop HTTP load generator (Debian has no ``wrk2``).

Requests are sent on a fixed schedule, ``t_i = t0 + i / rate``, whatever the server does. Each
request's latency is counted from its *scheduled* send time, not from the moment it was actually
written, so a server that stalls is charged for every request that piled up behind the stall (no
coordinated omission). A request whose scheduled time comes while every connection is busy waits
in a client-side backlog; that wait counts as latency too.

The loop is a single thread on ``select.epoll`` with non-blocking sockets. It sleeps while the
next send is more than 2 ms away and spins (``poll(0)``) closer to it, because the kernel's
timeouts have millisecond granularity: run it on a core of its own (``taskset``). How late the
generator itself was is reported (``send_lag_p99_ms``: scheduled to written, for requests that
found a free connection) so a run can show that it measured the server and not the generator.

Run as ``python -m bench.loadgen --port P --path /app/predict --rate R --duration S
--body-file F``; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import errno
import json
import select
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np

from clipper_core.exceptions import ValidationError

#: A response carrying the default output; the frontend and nginx both write compact JSON.
DEFAULT_MARKER = b'"default":true'


def schedule(rate: float, duration: float, start: float = 0.0) -> list[float]:
    """Send times of a constant-rate open-loop run: ``rate`` per second for ``duration`` s."""
    if rate <= 0 or duration <= 0:
        raise ValidationError(f"rate and duration must be positive, got rate={rate} duration={duration}")
    interval = 1.0 / rate
    return [start + i * interval for i in range(int(rate * duration))]


def body_maker(template: str, distinct: bool, base: int = 0) -> Callable[[int], bytes]:
    """Request bodies: ``template`` with ``{n}`` replaced by ``base + i`` (distinct) or ``base``.

    Distinct bodies defeat the prediction cache; a fixed body makes every query after the first
    a cache hit.
    """
    if "{n}" not in template:
        raise ValidationError(f"body template must contain '{{n}}', got {template!r}")
    head, tail = (part.encode() for part in template.split("{n}", 1))
    if distinct:
        return lambda i: b"%s%d%s" % (head, base + i, tail)
    fixed = b"%s%d%s" % (head, base, tail)
    return lambda i: fixed


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    """One keep-alive ``POST`` with a JSON body."""
    return (b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), port, len(body), body))


class ResponseParser:
    """Splits a byte stream of HTTP/1.1 responses (``Content-Length`` or chunked framing) into
    responses.

    :meth:`feed` returns ``(status, is_default)`` for each response completed by the new data.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bool]]:
        buf = self._buf + data if self._buf else data
        done: list[tuple[int, bool]] = []
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = buf[:head_end].lower()
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                end = head_end + 4 + int(head[at + 17:line_end if line_end >= 0 else len(head)])
                if len(buf) < end:
                    break
                body = buf[head_end + 4:end]
            elif b"\r\ntransfer-encoding: chunked" in head:
                framed = _chunked_body(buf, head_end + 4)
                if framed is None:
                    break
                body, end = framed
            else:
                raise ValidationError("response with neither Content-Length nor chunked "
                                      f"Transfer-Encoding: {head[:200]!r}")
            done.append((int(buf[9:12]), DEFAULT_MARKER in body))
            buf = buf[end:]
        self._buf = buf
        return done


def _chunked_body(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    """The body of a chunked response starting at ``pos`` and where the response ends, or None
    while it is incomplete (trailers are not expected)."""
    parts = []
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(buf[pos:line_end].split(b";", 1)[0], 16)
        if size == 0:
            if len(buf) < line_end + 4:
                return None
            return b"".join(parts), line_end + 4
        if len(buf) < line_end + 2 + size + 2:
            return None
        parts.append(buf[line_end + 2:line_end + 2 + size])
        pos = line_end + 2 + size + 2


@attrs.frozen
class OpenLoopResult:
    """What one open-loop run measured. Latencies in milliseconds from the scheduled time;
    ``qps`` counts predictions (answers other than errors and the default output)."""

    offered_qps: float
    qps: float
    sent: int
    completed: int
    errors: int
    defaults: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    queued: int
    send_lag_p99_ms: float

    def to_dict(self) -> dict[str, float | int]:
        return attrs.asdict(self)


class _Conn:
    __slots__ = ("parser", "sched", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = ResponseParser()
        self.sched = 0.0


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=5.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def _send(sock: socket.socket, data: bytes) -> None:
    sent = sock.send(data)
    if sent < len(data):  # never seen on loopback for requests this small; stay correct anyway
        sock.setblocking(True)
        sock.sendall(data[sent:])
        sock.setblocking(False)


def run_open_loop(host: str, port: int, path: str, rate: float, duration: float,
                  make_body: Callable[[int], bytes], connections: int = 64,
                  grace: float = 3.0) -> OpenLoopResult:
    """Send ``rate`` requests per second for ``duration`` seconds and measure them.

    Requests still unanswered ``grace`` seconds after the last scheduled send count as errors,
    and so do non-200 answers and requests lost with a dropped connection.
    """
    times = schedule(rate, duration)
    total = len(times)
    conns = {}
    ep = select.epoll()
    for _ in range(connections):
        c = _Conn(_connect(host, port))
        conns[c.sock.fileno()] = c
        ep.register(c.sock.fileno(), select.EPOLLIN)
    idle = list(conns.values())
    busy: dict[int, _Conn] = {}
    backlog: deque[float] = deque()
    backlog_index: deque[int] = deque()
    latencies = np.empty(total, dtype=np.float64)
    lags: list[float] = []
    completed = errors = defaults = queued = 0
    last_done = 0.0
    clock = time.perf_counter
    t0 = clock() + 0.05
    times = [t0 + t for t in times]
    deadline = times[-1] + grace
    i = 0

    def issue(c: _Conn, index: int, sched: float) -> None:
        c.sched = sched
        _send(c.sock, request_bytes(host, port, path, make_body(index)))
        busy[c.sock.fileno()] = c

    while True:
        now = clock()
        while i < total and times[i] <= now:
            if idle:
                issue(idle.pop(), i, times[i])
                lags.append(clock() - times[i])
            else:
                backlog.append(times[i])
                backlog_index.append(i)
                queued += 1
            i += 1
        if i >= total and not busy and not backlog:
            break
        if now > deadline:
            errors += len(busy) + len(backlog)
            break
        wait = (times[i] if i < total else deadline) - clock()
        events = ep.poll(wait - 0.0015 if wait > 0.002 else 0)
        for fd, _ in events:
            c = busy.get(fd)
            if c is None:
                continue
            try:
                data = c.sock.recv(262144)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    continue
                data = b""
            if not data:  # the server closed the connection: the in-flight request is lost
                errors += 1
                del busy[fd]
                ep.unregister(fd)
                c.sock.close()
                del conns[fd]
                c = _Conn(_connect(host, port))
                conns[c.sock.fileno()] = c
                ep.register(c.sock.fileno(), select.EPOLLIN)
                idle.append(c)
                continue
            responses = c.parser.feed(data)
            if not responses:
                continue
            now = clock()
            status, is_default = responses[0]
            if status != 200:
                errors += 1
            else:
                latencies[completed] = now - c.sched
                completed += 1
                defaults += is_default
                last_done = now
            del busy[fd]
            if backlog:
                issue(c, backlog_index.popleft(), backlog.popleft())
            else:
                idle.append(c)
    for c in conns.values():
        c.sock.close()
    ep.close()
    done = latencies[:completed] * 1e3
    pct = np.percentile(done, [50, 99]) if completed else [float("nan")] * 2
    span = (last_done - t0) if completed else duration
    return OpenLoopResult(
        offered_qps=total / duration, qps=(completed - defaults) / max(span, duration),
        sent=total,
        completed=completed, errors=errors, defaults=defaults, p50_ms=float(pct[0]),
        p99_ms=float(pct[1]), max_ms=float(done.max()) if completed else float("nan"),
        queued=queued,
        send_lag_p99_ms=float(np.percentile(lags, 99) * 1e3) if lags else 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--body-file", type=Path, required=True,
                        help="file holding the JSON body template with {n}")
    parser.add_argument("--fixed", action="store_true", help="same body for every request")
    parser.add_argument("--base", type=int, default=0, help="first value of {n}")
    args = parser.parse_args(argv)
    result = run_open_loop(args.host, args.port, args.path, args.rate, args.duration,
                           body_maker(args.body_file.read_text(), not args.fixed, args.base),
                           args.connections)
    json.dump(result.to_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
