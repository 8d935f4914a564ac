"""Sending and receiving RPC messages on a ZeroMQ socket, for the frontend's router and the
replica alike.

pyzmq's ``Socket.send_multipart`` checks every frame in Python and combines enum flags per
frame; for the RPC's small frames that costs about ten times the sends themselves (measured
in ``bench``'s latency floor). :func:`send_frames` makes one C-level send per frame. Likewise
``getsockopt(EVENTS)`` wraps its answer in an enum flag, and ``recv_multipart(NOBLOCK)`` on an
empty socket raises (an exception per wake-up): :func:`recv_frames` asks the C-level socket
directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import zmq
from zmq.backend import Socket as _BackendSocket

_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)
_LAST = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_RCVMORE = int(zmq.RCVMORE)
_send = _BackendSocket.send
_recv = _BackendSocket.recv
_get = _BackendSocket.get


def send_frames(sock: zmq.Socket, frames: Sequence[bytes]) -> None:
    """Send ``frames`` as one message without blocking (``zmq.Again`` if it cannot be queued:
    ZeroMQ queues a message's frames atomically, so then nothing was sent)."""
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        _send(sock, frame, _MORE if i < last else _LAST)


def has_input(sock: zmq.Socket) -> bool:
    """Whether a message waits on ``sock``."""
    return bool(_get(sock, _EVENTS) & _POLLIN)


def recv_frames(sock: zmq.Socket) -> list[bytes] | None:
    """The frames of the next message, or None if none waits."""
    if not _get(sock, _EVENTS) & _POLLIN:
        return None
    frames = [_recv(sock, _LAST)]
    while _get(sock, _RCVMORE):
        frames.append(_recv(sock, _LAST))
    return frames
