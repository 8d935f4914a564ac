"""The replica's connection to the query frontend: a ZeroMQ DEALER over TCP (spec §4), or,
for a replica on the frontend's host, a Unix stream socket (:mod:`clipper_core.rpc.stream`).

Both carry the same messages and offer the same calls to the runtime's loop, which polls
:attr:`pollable` (with ``zmq.Poller``, or ``select.poll`` for the Unix socket) and reads while
:meth:`has_message` says a whole message waits.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any

import zmq

from clipper_core.rpc import stream
from clipper_core.rpc.transport import has_input, send_frames

log = logging.getLogger("clipper_core.runtime")

#: Bytes read from a Unix socket at once.
_READ_SIZE = 256 * 1024


class ZmqChannel:
    """A DEALER connected to ``address`` (``tcp://ip:port``); it reconnects by itself."""

    #: A DEALER never sees its peer close.
    closed = False

    def __init__(self, context: zmq.Context[Any], address: str) -> None:
        self._sock = context.socket(zmq.DEALER)
        self._sock.connect(address)
        self.pollable: object = self._sock

    def send(self, frames: Sequence[bytes]) -> None:
        """Send without blocking: with the frontend unreachable and the queue full, drop it."""
        try:
            send_frames(self._sock, frames)
        except zmq.Again:
            log.warning("Dropped a message: the query frontend is not reading (queue full)")

    def has_message(self) -> bool:
        return has_input(self._sock)

    def recv(self) -> list[memoryview]:
        return [f.buffer for f in self._sock.recv_multipart(copy=False)]

    def close(self, linger_ms: int = 0) -> None:
        self._sock.close(linger=linger_ms)


class StreamChannel:
    """A connected Unix stream socket; :attr:`closed` once the frontend closed it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._decoder = stream.Decoder()
        self._messages: deque[list[bytes]] = deque()
        self.closed = False
        self.pollable: object = sock.fileno()

    @classmethod
    def connect(cls, address: str) -> StreamChannel:
        """Connect to the frontend's socket (``OSError`` if it does not listen)."""
        sock = stream.unix_socket()
        try:
            sock.connect(stream.socket_address(address))
        except OSError:
            sock.close()
            raise
        return cls(sock)

    def send(self, frames: Sequence[bytes]) -> None:
        if self.closed:
            return
        try:
            self._sock.sendall(stream.encode(frames))
        except OSError as exc:
            log.warning("The connection to the query frontend failed: %s", exc)
            self.closed = True

    def has_message(self) -> bool:
        """Whether a whole message waits (reading what the socket holds, without blocking)."""
        while not self._messages and not self.closed:
            try:
                data = self._sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            except OSError as exc:
                log.warning("The connection to the query frontend failed: %s", exc)
                data = b""
            if not data:
                self.closed = True
                break
            try:
                self._messages.extend(self._decoder.feed(data))
            except stream.StreamError as exc:
                log.error("The query frontend sent %s; reconnecting", exc)
                self.closed = True
        return bool(self._messages)

    def recv(self) -> list[bytes]:
        return self._messages.popleft()

    def close(self, linger_ms: int = 0) -> None:
        self._sock.close()
