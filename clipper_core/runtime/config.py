"""The replica's settings, read from the environment of spec §5.1 (plus optional ones of ours)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import attrs

from clipper_core.exceptions import ClipperError, ValidationError
from clipper_core.types import InputType

DEFAULT_IP = "127.0.0.1"
DEFAULT_PORT = 7000
DEFAULT_MODEL_PATH = "/model"
DEFAULT_HEARTBEAT_INTERVAL_S = 0.5
DEFAULT_READY_FILE = "/model_is_ready.check"
#: The frontend is presumed gone after this many heartbeat intervals without a message...
SILENT_INTERVALS = 5
#: ...but never sooner than this many seconds.
MIN_ACTIVITY_TIMEOUT_S = 3.0

N = TypeVar("N", int, float)


class RuntimeConfigError(ClipperError):
    """The replica's environment is missing a variable or holds an invalid value."""


@attrs.frozen
class RuntimeConfig:
    """Everything a replica needs to know before it loads its model and connects."""

    model_name: str
    model_version: str
    #: The frontend's host name or IP address (``CLIPPER_IP``).
    host: str
    port: int
    #: ``None`` when ``CLIPPER_INPUT_TYPE`` is unset: the bundle's input type is used.
    input_type: InputType | None
    model_path: Path
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    #: Written with ``READY`` once serving; ``None`` disables it.
    ready_file: Path | None = Path(DEFAULT_READY_FILE)
    #: The cluster's replica secret (``CLIPPER_REPLICA_SECRET``), sent when registering.
    replica_secret: str | None = attrs.field(default=None, repr=False)
    #: The frontend's Unix socket on this host (``CLIPPER_RPC_SOCKET``: a path, or ``@name``
    #: in the abstract namespace), used instead of the TCP port when set.
    rpc_socket: str | None = None

    @property
    def activity_timeout_s(self) -> float:
        """Silence after which the replica reconnects with a new socket."""
        return max(SILENT_INTERVALS * self.heartbeat_interval_s, MIN_ACTIVITY_TIMEOUT_S)

    @property
    def address(self) -> str:
        """``tcp://<ip>:<port>``, resolving the host anew: a restarted frontend may have moved."""
        try:
            ip = socket.gethostbyname(self.host)
        except OSError:
            ip = self.host
        return f"tcp://{ip}:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RuntimeConfig:
        """Read ``CLIPPER_*`` variables; raise :class:`RuntimeConfigError` naming the bad one."""
        env = os.environ if environ is None else environ
        name = _required(env, "CLIPPER_MODEL_NAME")
        version = _required(env, "CLIPPER_MODEL_VERSION")
        host = env.get("CLIPPER_IP") or DEFAULT_IP
        try:
            socket.gethostbyname(host)
        except OSError as exc:
            msg = f"ERROR: CLIPPER_IP={host!r} could not be resolved ({exc}). Set it to the host of the query frontend"
            raise RuntimeConfigError(msg) from None
        raw_type = env.get("CLIPPER_INPUT_TYPE")
        try:
            input_type = InputType.parse(raw_type) if raw_type else None
        except ValidationError as exc:
            raise RuntimeConfigError(f"ERROR: CLIPPER_INPUT_TYPE: {exc}") from None
        interval = _number(env, "CLIPPER_HEARTBEAT_INTERVAL_S", DEFAULT_HEARTBEAT_INTERVAL_S, float)
        if interval <= 0:
            msg = f"ERROR: CLIPPER_HEARTBEAT_INTERVAL_S must be a positive number of seconds, got {interval}"
            raise RuntimeConfigError(msg)
        port = _number(env, "CLIPPER_PORT", DEFAULT_PORT, int)
        if not 0 < port < 65536:
            raise RuntimeConfigError(f"ERROR: CLIPPER_PORT must be between 1 and 65535, got {port}")
        ready = env.get("CLIPPER_READY_FILE", DEFAULT_READY_FILE)
        return cls(
            model_name=name,
            model_version=version,
            host=host,
            port=port,
            input_type=input_type,
            model_path=Path(env.get("CLIPPER_MODEL_PATH") or DEFAULT_MODEL_PATH),
            heartbeat_interval_s=interval,
            ready_file=Path(ready) if ready else None,
            replica_secret=env.get("CLIPPER_REPLICA_SECRET") or None,
            rpc_socket=env.get("CLIPPER_RPC_SOCKET") or None,
        )


def _required(env: Mapping[str, str], key: str) -> str:
    value = env.get(key, "")
    if not value:
        raise RuntimeConfigError(f"ERROR: {key} environment variable must be set")
    return value


def _number(env: Mapping[str, str], key: str, default: N, kind: Callable[[str], N]) -> N:
    raw = env.get(key)
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        msg = f"ERROR: {key} must be {'an integer' if kind is int else 'a number'}, got {raw!r}"
        raise RuntimeConfigError(msg) from None
