"""Configuration of a Clipper cluster's server processes.

One :class:`ClusterConfig` describes what a server process runs: which roles (query frontend,
management frontend), on which ports, with which state store. The local backend writes it to
``<cluster_dir>/cluster.json``; the Docker backend passes it as environment variables.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from clipper_core.exceptions import ValidationError

DEFAULT_QUERY_PORT = 1337
DEFAULT_MANAGEMENT_PORT = 1338
DEFAULT_RPC_PORT = 7000
DEFAULT_CACHE_SIZE = 33554432  # 32 MiB, as Clipper
ROLES = ("query", "management")

#: Environment variable prefix of :meth:`ClusterConfig.from_env`.
ENV_PREFIX = "CLIPPER_"


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` all at once: readers and crashes see the old or the new file.

    The text goes to a temporary file beside it, is flushed to disk and renamed over ``path``;
    a failed write (disk full) raises and leaves the old file untouched.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def clipper_home() -> Path:
    """Where local clusters keep their state: ``$CLIPPER_HOME`` or ``~/.clipper``."""
    return Path(os.environ.get("CLIPPER_HOME", Path.home() / ".clipper"))


def _tracing_endpoint(instance: Any, attribute: Any, value: str | None) -> None:
    if value is not None and urlsplit(value).scheme not in ("http", "https"):
        msg = (f"tracing_endpoint must be an OTLP/HTTP URL such as http://collector:4318, "
               f"found {value!r}")
        raise ValidationError(msg)


def _roles(value: Any) -> tuple[str, ...]:
    roles = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        msg = f"Unknown server roles {unknown or roles!r}; expected some of {', '.join(ROLES)}"
        raise ValidationError(msg)
    return roles


@attrs.frozen(kw_only=True)
class ClusterConfig:
    """Everything a server process needs to know; every field has a sensible default."""

    cluster_name: str = "default-cluster"
    #: Which frontends this process hosts.
    roles: tuple[str, ...] = attrs.field(default=ROLES, converter=_roles)
    #: Address the query frontend and RPC listener bind to.
    bind_host: str = "0.0.0.0"
    #: Address the management API binds to (localhost unless configured otherwise).
    management_host: str = "127.0.0.1"
    query_port: int = DEFAULT_QUERY_PORT
    management_port: int = DEFAULT_MANAGEMENT_PORT
    rpc_port: int = DEFAULT_RPC_PORT
    #: ``sqlite:///abs/path/state.db`` or ``redis://host:port/db``.
    store_url: str = "sqlite:///" + str(clipper_home() / "default-cluster" / "state.db")
    #: Prediction cache bound in bytes; 0 disables caching (coalescing still happens).
    cache_size: int = DEFAULT_CACHE_SIZE
    cache: str = "lru"
    #: Largest accepted request body; larger ones get HTTP 413.
    max_body_bytes: int = 16 * 1024 * 1024
    #: Most queries waiting per model version before new ones are shed (503); a request with
    #: more inputs than this gets 413.
    max_queue_depth: int = 100_000
    #: Most input bytes waiting per model version, likewise (503, or 413 for one request).
    max_queue_bytes: int = 64 * 1024 * 1024
    #: How long an idle replica waits for more queries to fill a batch (0: never waits).
    batch_wait_micros: int = 0
    #: Seconds a replica may take to answer a batch (and at least until the SLO of every query
    #: in it ran out) before it counts as hung: it is dropped and told to exit.
    batch_timeout_s: float = 30.0
    #: Times a query is sent again after the replica that had it died or hung; then it gets
    #: the default output (an input that makes replicas exit takes down at most this + 1).
    max_retries: int = 1
    #: Seconds a replica may stay silent before it is dropped.
    replica_timeout_s: float = 3.0
    #: Seconds of silence before a replica speaking the original RPC v3 is dropped
    #: (those heartbeat only every 5 s while idle).
    legacy_replica_timeout_s: float = 15.0
    #: Seconds a slow client may take to send a request.
    request_timeout_s: float = 5.0
    #: Seconds an idle keep-alive connection stays open.
    keepalive_timeout_s: float = 75.0
    #: Most open client connections per frontend; further ones get 503 and are closed.
    max_connections: int = 4096
    #: Seconds a stopping server (SIGTERM) waits for the requests in flight to be answered.
    drain_timeout_s: float = 10.0
    #: PEM certificate (chain) and private key: when both are set, the query and management
    #: frontends speak HTTPS only.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    #: If set, the management API requires ``Authorization: Bearer <token>``.
    management_token: str | None = None
    #: Identifies this query frontend when several share one store.
    frontend_id: str = "0"
    #: OTLP/HTTP collector the query frontend exports traces to (``/v1/traces`` is added to
    #: a URL without a path); None (the default, unless ``$CLIPPER_TRACING_ENDPOINT`` is set
    #: where the config is made): no tracing. See docs/tracing.md.
    tracing_endpoint: str | None = attrs.field(
        factory=lambda: os.environ.get(ENV_PREFIX + "TRACING_ENDPOINT"),
        converter=lambda value: value or None, validator=_tracing_endpoint)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> ClusterConfig:
        """Build from a dict (``cluster.json``), rejecting unknown keys with their names."""
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"Unknown configuration keys {unknown}; known keys: {sorted(known)}"
            raise ValidationError(msg)
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ClusterConfig:
        return cls.from_mapping(json.loads(Path(path).read_text()))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ClusterConfig:
        """Build from ``CLIPPER_<FIELD>`` variables (e.g. ``CLIPPER_QUERY_PORT=1337``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            if field.type in ("int", int):
                values[field.name] = int(raw)
            elif field.type in ("float", float):
                values[field.name] = float(raw)
            else:
                values[field.name] = raw
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["roles"] = list(self.roles)
        return data

    def write(self, path: str | os.PathLike[str]) -> None:
        write_atomic(path, json.dumps(self.to_mapping(), indent=2))
