"""The RPC's messages over a Unix stream socket: the local transport of our own runtime.

A replica on the frontend's host (the local backend's) connects to the frontend's Unix socket
instead of its ZeroMQ port: a round trip between two processes on one core then costs about
14 µs instead of about 105 µs, because no ZeroMQ I/O thread hands each message on (see
docs/performance.md, *The latency floor*). The frames are exactly those of
:mod:`clipper_core.rpc.protocol` as the container's DEALER sees them; the frontend gives each
connection its own routing identity. Containers (Docker, Kubernetes, the original's images)
keep speaking ZeroMQ over TCP.

On the wire a message is ``u32 length`` and then, for each frame, ``u32 length, bytes``
(little-endian; the first length counts everything after it). Addresses are a path, or
``@name`` for Linux's abstract namespace (no file to clean up; the replica secret still
guards registration, as on the TCP port).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

_U32 = struct.Struct("<I")
#: Largest message accepted from a peer; a longer one means a broken peer (the connection is
#: closed).
MAX_MESSAGE_BYTES = 1 << 30


class StreamError(ValueError):
    """A peer sent something that is not a framed message."""


def encode(frames: Sequence[bytes]) -> bytes:
    """One framed message."""
    parts = [b""]
    total = 0
    for frame in frames:
        parts.append(_U32.pack(len(frame)))
        parts.append(frame)
        total += 4 + len(frame)
    parts[0] = _U32.pack(total)
    return b"".join(parts)


class Decoder:
    """Splits a byte stream into messages, whatever the chunks it arrives in."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[bytes]]:
        """The messages completed by ``data``, each a list of frames."""
        buffer = self._buffer
        buffer += data
        messages = []
        start, end = 0, len(buffer)
        with memoryview(buffer) as view:
            while end - start >= 4:
                (length,) = _U32.unpack_from(view, start)
                if length > MAX_MESSAGE_BYTES:
                    msg = (f"a message of {length} bytes (at most {MAX_MESSAGE_BYTES} are "
                           "accepted)")
                    raise StreamError(msg)
                if end - start - 4 < length:
                    break
                messages.append(_frames(view, start + 4, start + 4 + length))
                start += 4 + length
        if start:
            del buffer[:start]
        return messages


def _frames(view: memoryview, offset: int, end: int) -> list[bytes]:
    frames = []
    while offset < end:
        if end - offset < 4:
            raise StreamError("a frame length cut short")
        (size,) = _U32.unpack_from(view, offset)
        offset += 4
        if size > end - offset:
            raise StreamError(f"a frame of {size} bytes in a message with {end - offset} left")
        frames.append(bytes(view[offset:offset + size]))
        offset += size
    return frames


def socket_address(address: str) -> str | bytes:
    """What ``socket.bind``/``connect`` take for ``address`` (``@name``: abstract)."""
    return b"\0" + address[1:].encode() if address.startswith("@") else address


def unix_socket() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
