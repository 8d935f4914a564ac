"""Clipper's model-container RPC over ZeroMQ, byte for byte as spec §4, plus our extension.

Frames are listed as the container's DEALER sees them; on the frontend's ROUTER every message
is prefixed by the peer's routing identity. Every integer is little-endian.

Container -> frontend (each message starts with an empty frame)::

    heartbeat        ["", u32 2]
    new container    ["", u32 0, name, version, "<input type code>", u32 rpc_version
                      (, replica secret)]   the secret frame is ours, sent only when the
                                            replica has one (CLIPPER_REPLICA_SECRET)
    response (v3)    ["", u32 1, msg_id(4 raw bytes), u64 hdr_len, u64[n, len_0..], out_0, ..]
    response (v4)    same, but all outputs concatenated in ONE frame after the header
    error (v4)       ["", u32 3, msg_id, utf-8 message]          a batch failed
    goodbye (v4)     ["", u32 4]                                 clean shutdown

Frontend -> container::

    heartbeat        ["", u32 ver, u32 2, u32 heartbeat_type]    1 = send your metadata
    goodbye (v4)     ["", u32 4, u32 4]       you are dropped (hung): exit, or reconnect anew
    predict (v3)     ["", u32 ver, u32 1, u32 msg_id, u32 0, u64 hdr_len,
                      u64[input_type, n, size_0..], in_0, .., in_n-1]
    predict (v4)     same, but all inputs concatenated in ONE frame after the header

Version 4 is announced only by our runtime (:mod:`clipper_core.runtime`); the frontend speaks
to each replica in the version it registered with, so containers written for the original
Clipper keep working.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

RPC_VERSION_LEGACY = 3
RPC_VERSION = 4
SUPPORTED_VERSIONS = (RPC_VERSION_LEGACY, RPC_VERSION)

# Message types.
MSG_NEW_CONTAINER = 0
MSG_CONTAINER_CONTENT = 1
MSG_HEARTBEAT = 2
MSG_ERROR = 3  # v4
MSG_GOODBYE = 4  # v4

# Heartbeat types.
HEARTBEAT_KEEPALIVE = 0
HEARTBEAT_REQUEST_METADATA = 1

# Request types.
REQUEST_PREDICT = 0
REQUEST_FEEDBACK = 1

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
EMPTY = b""


def u32(value: int) -> bytes:
    return _U32.pack(value)


def read_u32(frame: bytes) -> int:
    return _U32.unpack_from(frame)[0]


def _u64_array(values: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def _read_u64_array(frame: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(frame) // 8}Q", frame)


class ProtocolError(ValueError):
    """A message that does not follow the RPC format."""


# -------------------------------------------------------------------------------------------
# Container side
# -------------------------------------------------------------------------------------------

HEARTBEAT_MESSAGE = [EMPTY, u32(MSG_HEARTBEAT)]
GOODBYE_MESSAGE = [EMPTY, u32(MSG_GOODBYE)]


def new_container_message(name: str, version: str, input_type: int, rpc_version: int,
                          secret: str | None = None) -> list[bytes]:
    frames = [EMPTY, u32(MSG_NEW_CONTAINER), name.encode(), str(version).encode(),
              str(int(input_type)).encode(), u32(rpc_version)]
    return [*frames, secret.encode()] if secret else frames


def response_message(msg_id: bytes, outputs: Sequence[bytes], rpc_version: int) -> list[bytes]:
    header = _u64_array([len(outputs), *map(len, outputs)])
    head = [EMPTY, u32(MSG_CONTAINER_CONTENT), msg_id, _U64.pack(len(header)), header]
    if rpc_version >= RPC_VERSION:
        return [*head, b"".join(outputs)]
    return [*head, *outputs]


def error_message(msg_id: bytes, message: str) -> list[bytes]:
    return [EMPTY, u32(MSG_ERROR), msg_id, message.encode("utf-8", "replace")]


def parse_frontend_message(frames: Sequence[bytes]) -> tuple[int, int, list[bytes]]:
    """Split a frontend message into ``(rpc_version, message_type, rest)``."""
    if len(frames) < 3:
        raise ProtocolError(f"expected at least 3 frames from the frontend, got {len(frames)}")
    return read_u32(frames[1]), read_u32(frames[2]), list(frames[3:])


def parse_predict_request(rest: Sequence[bytes], rpc_version: int) -> tuple[bytes, int, list[int], bytes | list[bytes]]:
    """Decode the frames after the type of a ContainerContent message.

    Returns ``(msg_id, input_type, sizes, data)`` where ``data`` is the single concatenated
    frame (v4) or the list of input frames (v3).
    """
    msg_id, request_type = rest[0], read_u32(rest[1])
    if request_type != REQUEST_PREDICT:
        raise ProtocolError(f"unsupported request type {request_type}")
    header = _read_u64_array(rest[3])
    input_type, n, sizes = header[0], header[1], list(header[2:])
    if len(sizes) != n:
        raise ProtocolError(f"header announces {n} inputs but lists {len(sizes)} sizes")
    data: bytes | list[bytes] = rest[4] if rpc_version >= RPC_VERSION else list(rest[4:4 + n])
    return msg_id, input_type, sizes, data


# -------------------------------------------------------------------------------------------
# Frontend side (frames without the routing identity)
# -------------------------------------------------------------------------------------------


def heartbeat_reply(rpc_version: int, heartbeat_type: int) -> list[bytes]:
    return [EMPTY, u32(rpc_version), u32(MSG_HEARTBEAT), u32(heartbeat_type)]


def goodbye_request(rpc_version: int) -> list[bytes]:
    return [EMPTY, u32(rpc_version), u32(MSG_GOODBYE)]


def predict_request(rpc_version: int, msg_id: int, input_type: int, inputs: Sequence[bytes]) -> list[bytes]:
    header = _u64_array([input_type, len(inputs), *map(len, inputs)])
    head = [EMPTY, u32(rpc_version), u32(MSG_CONTAINER_CONTENT), u32(msg_id),
            u32(REQUEST_PREDICT), _U64.pack(len(header)), header]
    if rpc_version >= RPC_VERSION:
        return [*head, b"".join(inputs)]
    return [*head, *inputs]


def parse_container_message(frames: Sequence[bytes]) -> tuple[int, list[bytes]]:
    """Split a container message (identity already removed) into ``(type, rest)``."""
    if len(frames) < 2:
        raise ProtocolError(f"expected at least 2 frames from a container, got {len(frames)}")
    return read_u32(frames[1]), list(frames[2:])


def parse_new_container(rest: Sequence[bytes]) -> tuple[str, str, int, int, bytes | None]:
    """``(model_name, model_version, input_type, rpc_version, secret)``; rpc_version 0 and
    secret None if absent."""
    if len(rest) < 3:
        raise ProtocolError("new-container message needs name, version and input type")
    rpc_version = read_u32(rest[3]) if len(rest) > 3 else 0
    secret = rest[4] or None if len(rest) > 4 else None
    return rest[0].decode(), rest[1].decode(), int(rest[2]), rpc_version, secret


def parse_response(rest: Sequence[bytes], rpc_version: int) -> tuple[int, list[bytes]]:
    """``(msg_id, outputs)`` of a ContainerContent message from a container."""
    msg_id = read_u32(rest[0])
    header = _read_u64_array(rest[2])
    n, sizes = header[0], header[1:]
    if len(sizes) != n:
        raise ProtocolError(f"response header announces {n} outputs but lists {len(sizes)} sizes")
    if rpc_version >= RPC_VERSION:
        blob, outputs, offset = rest[3], [], 0
        for size in sizes:
            outputs.append(blob[offset:offset + size])
            offset += size
        return msg_id, outputs
    return msg_id, list(rest[3:3 + n])


def parse_error(rest: Sequence[bytes]) -> tuple[int, str]:
    return read_u32(rest[0]), rest[1].decode("utf-8", "replace")
