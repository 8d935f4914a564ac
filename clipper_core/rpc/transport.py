"""Sending RPC messages on a ZeroMQ socket, for the frontend's router and the replica alike.

pyzmq's ``Socket.send_multipart`` checks every frame in Python and combines enum flags per
frame; for the RPC's small frames that costs about ten times the sends themselves (measured
in ``bench``'s latency floor). :func:`send_frames` makes one C-level send per frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import zmq
from zmq.backend import Socket as _BackendSocket

_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)
_LAST = int(zmq.NOBLOCK)
_send = _BackendSocket.send


def send_frames(sock: zmq.Socket, frames: Sequence[bytes]) -> None:
    """Send ``frames`` as one message without blocking (``zmq.Again`` if it cannot be queued:
    ZeroMQ queues a message's frames atomically, so then nothing was sent)."""
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        _send(sock, frame, _MORE if i < last else _LAST)
