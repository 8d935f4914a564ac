"""Configuration of a Clipper cluster's server processes.

One :class:`ClusterConfig` describes what a server process runs: which roles (query frontend,
management frontend), on which ports, with which state store. The local backend writes it to
``<cluster_dir>/cluster.json``; the Docker backend passes it as environment variables.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
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


def write_atomic(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` all at once: readers and crashes see the old or the new file.

    The text goes to a temporary file beside it (created with ``mode``), is flushed to disk and
    renamed over ``path``; a failed write (disk full) raises and leaves the old file untouched.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as handle:
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
def is_loopback(host: str) -> bool:
    """True if ``host`` (a bind address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: Name of the file in a cluster's directory that holds its secrets (mode 0600).
SECRETS_FILE = "secrets.json"
#: The keys of :data:`SECRETS_FILE`: what ``start_clipper`` generates for a cluster.
SECRET_KEYS = ("management_token", "replica_secret", "redis_password")


def load_secrets(path: str | os.PathLike[str], create: bool = False) -> dict[str, str]:
    """The secrets in ``path``; with ``create``, generate the missing ones and write the file.

    The file is written with mode 0600: whoever can read it administers the cluster.
    """
    target = Path(path)
    try:
        found = json.loads(target.read_text())
    except FileNotFoundError:
        found = {}
    except (OSError, ValueError) as exc:
        msg = f"Cannot read the cluster's secrets from {target}: {exc}"
        raise ValidationError(msg) from None
    if create and any(key not in found for key in SECRET_KEYS):
        found = {key: found.get(key) or secrets.token_urlsafe(32) for key in SECRET_KEYS}
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, json.dumps(found, indent=2), mode=0o600)
    return {key: str(found[key]) for key in SECRET_KEYS if found.get(key)}


def redact_url(url: str) -> str:
    """``url`` with its password (``redis://:secret@host``) replaced by ``***``, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{netloc}").geturl()


def _ratio(value: Any) -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        msg = f"tracing_sample_ratio must be a number from 0 to 1, found {value!r}"
        raise ValidationError(msg)
    return ratio


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
    #: A Unix socket the RPC listener also accepts our runtime's replicas on (a path, or
    #: ``@name`` in Linux's abstract namespace); the local backend sets it, since a replica
    #: on the frontend's host answers faster through it than through the TCP port.
    rpc_socket: str | None = None
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
    #: Most replicas of one model version the management API's set_num_replicas route starts.
    max_replicas: int = 64
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
    #: The management API's token (``Authorization: Bearer <token>``): required when the API
    #: is bound off loopback (it then refuses to start without one), and on loopback too with
    #: ``require_management_token``; a wrong token is always refused.
    management_token: str | None = None
    require_management_token: bool = False
    #: The secret a replica presents when it registers on the RPC port (docs/security.md);
    #: None admits every replica.
    replica_secret: str | None = None
    #: With a ``replica_secret``: admit RPC v3 containers (the original's images, which cannot
    #: present it) for model versions registered in the store with their input type.
    admit_legacy_replicas: bool = True
    #: A :data:`SECRETS_FILE` whose keys fill ``management_token`` and ``replica_secret`` when
    #: unset (the local backend's ``cluster.json`` names it instead of holding secrets).
    secrets_file: str | None = None
    #: Identifies this query frontend when several share one store.
    frontend_id: str = "0"
    #: OTLP/HTTP collector the query frontend exports traces to (``/v1/traces`` is added to
    #: a URL without a path); None (the default, unless ``$CLIPPER_TRACING_ENDPOINT`` is set
    #: where the config is made): no tracing. See docs/tracing.md.
    tracing_endpoint: str | None = attrs.field(
        factory=lambda: os.environ.get(ENV_PREFIX + "TRACING_ENDPOINT"),
        converter=lambda value: value or None, validator=_tracing_endpoint)
    #: The share of requests traced (those with a ``traceparent`` header follow their caller);
    #: ``$CLIPPER_TRACING_SAMPLE_RATIO`` where the config is made, else 1.
    tracing_sample_ratio: float = attrs.field(
        factory=lambda: os.environ.get(ENV_PREFIX + "TRACING_SAMPLE_RATIO", 1.0),
        converter=_ratio)

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
        return cls.from_mapping(json.loads(Path(path).read_text())).with_secrets()

    def with_secrets(self) -> ClusterConfig:
        """This configuration with the unset secrets read from ``secrets_file``."""
        if not self.secrets_file:
            return self
        found = load_secrets(self.secrets_file)
        return attrs.evolve(self, **{
            key: found.get(key) for key in ("management_token", "replica_secret")
            if getattr(self, key) is None})

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
            elif field.type in ("bool", bool):
                values[field.name] = raw.strip().lower() in ("1", "true", "yes")
            else:
                values[field.name] = raw
        return cls(**values).with_secrets()

    def to_mapping(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["roles"] = list(self.roles)
        return data

    def write(self, path: str | os.PathLike[str]) -> None:
        write_atomic(path, json.dumps(self.to_mapping(), indent=2))


def tracing_environment() -> dict[str, str]:
    """The tracing settings of this process's environment (``CLIPPER_TRACING_*``, checked as
    a configuration checks them, and OpenTelemetry's ``OTEL_*``), for the query frontends a
    backend starts in containers."""
    ClusterConfig()  # raises ValidationError naming a bad endpoint or sample ratio
    names = (ENV_PREFIX + "TRACING_ENDPOINT", ENV_PREFIX + "TRACING_SAMPLE_RATIO")
    return {name: value for name, value in os.environ.items()
            if name in names or name.startswith("OTEL_")}
