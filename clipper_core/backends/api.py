"""The container backend interface (Clipper's ``ContainerManager``).

A container manager starts the cluster's server processes and the model replicas, and knows
how to find them again. :class:`~clipper_core.admin.connection.ClipperConnection` talks to the
management API over HTTP and delegates everything that runs processes to its manager.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import attrs

from clipper_core.exceptions import ClipperException

#: Ports inside a container (spec §0); backends map them to host ports.
CLIPPER_INTERNAL_QUERY_PORT = 1337
CLIPPER_INTERNAL_MANAGEMENT_PORT = 1338
CLIPPER_INTERNAL_RPC_PORT = 7000
CLIPPER_INTERNAL_REDIS_PORT = 6379
#: The original's frontend-exporter and fluentd ports (here the query port serves /metrics).
CLIPPER_INTERNAL_METRIC_PORT = 1390
CLIPPER_INTERNAL_FLUENTD_PORT = 24224

# Container labels (spec §10.4).
CLIPPER_DOCKER_LABEL = "ai.clipper.container.label"
CLIPPER_NAME_LABEL = "ai.clipper.name"
CLIPPER_MODEL_CONTAINER_LABEL = "ai.clipper.model_container.label"
CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL = "ai.clipper.query_frontend.label"
CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL = "ai.clipper.management_frontend.label"
#: Which query frontend (``0``, ``1``...) a frontend is, or which one a model replica serves.
CLIPPER_QUERY_FRONTEND_ID_LABEL = "ai.clipper.query_frontend.id"
CLIPPER_DOCKER_PORT_LABELS = {
    "redis": "ai.clipper.redis.port",
    "query_rest": "ai.clipper.query_frontend.query.port",
    "query_rpc": "ai.clipper.query_frontend.rpc.port",
    "management": "ai.clipper.management.port",
    "metric": "ai.clipper.metric.port",
    "fluentd": "ai.clipper.fluentd.port",
}
CLIPPER_METRIC_CONFIG_LABEL = "ai.clipper.metric.config"
CLIPPER_FLUENTD_CONFIG_LABEL = "ai.clipper.fluentd.config"
#: Separator of ``<name>_<version>`` in model labels: illegal in DNS-1123 names.
_MODEL_CONTAINER_LABEL_DELIMITER = "_"


def create_model_container_label(name: str, version: str) -> str:
    """``<name>_<version>``, the value of a replica's model label."""
    return f"{name}{_MODEL_CONTAINER_LABEL_DELIMITER}{version}"


def tls_files(cert_file: str | None, key_file: str | None) -> tuple[str | None, str | None]:
    """A backend's TLS certificate and key as absolute paths (None, None: plain HTTP);
    ``ClipperException`` when only one is given."""
    if bool(cert_file) != bool(key_file):
        msg = "TLS needs both tls_cert_file and tls_key_file"
        raise ClipperException(msg)
    return (str(Path(cert_file).resolve()) if cert_file else None,
            str(Path(key_file).resolve()) if key_file else None)


def parse_model_container_label(label: str) -> tuple[str, str]:
    """``(name, version)`` of a model label; ClipperException unless it has exactly one ``_``."""
    parts = label.split(_MODEL_CONTAINER_LABEL_DELIMITER)
    if len(parts) != 2:
        msg = (f"Unable to parse model container label {label}: expected "
               f"<model name>{_MODEL_CONTAINER_LABEL_DELIMITER}<model version>")
        raise ClipperException(msg)
    return parts[0], parts[1]


#: Lines of a replica's log quoted when it cannot start.
REPLICA_LOG_TAIL = 25


@attrs.frozen
class ReplicaState:
    """What a backend knows of one replica process/container of a model version."""

    #: The replica's name on the backend (container name, supervisor index...).
    replica: str
    #: True once the replica has exited (or restarted) without serving: it cannot start.
    failed: bool
    #: One line for the user: ``exited with code 1, restarting``, ``running``...
    detail: str
    #: The last :data:`REPLICA_LOG_TAIL` lines of its log.
    log_tail: str = ""


class ClusterAdapter(logging.LoggerAdapter):
    """Prefixes log lines with ``[<cluster name>]`` as Clipper did."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['cluster_name']}] {msg}", kwargs


class ContainerManager(ABC):
    """Runs a cluster's frontends and model replicas on some substrate."""

    #: Registry key (``local``, ``docker``, ``kubernetes``).
    name: ClassVar[str]

    cluster_name: str
    logger: ClusterAdapter
    #: The token the management API wants (``Authorization: Bearer``), known after
    #: start_clipper or connect; None when the cluster has none.
    management_token: str | None = None

    @property
    def tls_ca_file(self) -> str | None:
        """The certificate clients verify the frontends' HTTPS with; None for plain HTTP."""
        return None

    @abstractmethod
    def start_clipper(
        self,
        query_frontend_image: str,
        mgmt_frontend_image: str,
        frontend_exporter_image: str,
        cache_size: int,
        qf_http_thread_pool_size: int,
        qf_http_timeout_request: int,
        qf_http_timeout_content: int,
        num_frontend_replicas: int = 1,
    ) -> None:
        """Start the frontends (and the store, if the backend manages one)."""

    @abstractmethod
    def connect(self) -> None:
        """Find a running cluster of this name and learn its addresses."""

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Package ``model_data_path`` so replicas can run it; return the image reference.

        Not abstract: managers written for the original ``ContainerManager`` have no
        ``build_model`` (it was ``ClipperConnection``'s), and still deploy prebuilt images.
        """
        msg = (f"{type(self).__name__} cannot build models: deploy a prebuilt image with "
               "deploy_model(), or use a container manager that builds (local, docker)")
        raise ClipperException(msg)

    def default_base_image(self, deployer_name: str) -> str:
        """The image a deployer's bundles build FROM when ``base_image="default"``."""
        return deployer_name

    @abstractmethod
    def deploy_model(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1
    ) -> None: ...

    @abstractmethod
    def get_num_replicas(self, name: str, version: str) -> int: ...

    def replica_states(self, name: str, version: str) -> list[ReplicaState]:
        """The replicas of ``name:version`` as the backend sees them; polled while a deploy
        waits for them to connect, so that one that crashes fails the deploy with its log.
        Backends that cannot tell return ``[]`` (the deploy then only times out)."""
        return []

    @abstractmethod
    def set_num_replicas(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int
    ) -> None: ...

    @abstractmethod
    def get_logs(self, logging_dir: str) -> list[str]:
        """Write every process's log into ``logging_dir``; return the file paths."""

    @abstractmethod
    def stop_models(self, models: dict[str, list[str]]) -> None:
        """Stop all replicas of the given ``{name: [versions]}``."""

    @abstractmethod
    def stop_all_model_containers(self) -> None: ...

    @abstractmethod
    def stop_all(self, graceful: bool = True) -> None:
        """Stop everything this cluster started (frontends, store, replicas)."""

    @abstractmethod
    def get_admin_addr(self) -> str:
        """``host:port`` of the management API."""

    @abstractmethod
    def get_query_addr(self) -> str:
        """``host:port`` of the query frontend."""

    def get_query_addrs(self) -> list[str]:
        """``host:port`` of every entry point for queries (one per query frontend, or one
        address that spreads queries over them)."""
        return [self.get_query_addr()]

    def get_metric_addr(self) -> str:
        """``host:port`` serving metrics (the query frontend's ``/metrics``)."""
        return self.get_query_addr()
