"""The Docker backend: ``DockerContainerManager``, Clipper's original way of running a cluster.

A cluster is a set of containers on one Docker network, all labelled
``ai.clipper.container.label=<cluster name>`` (spec §10.4)::

    redis-<id>            clipper/redis (unless redis_ip is given)
    mgmt_frontend-<id>    clipper/server, CLIPPER_ROLES=management   1338 -> management port
    query_frontend-<id>   clipper/server, CLIPPER_ROLES=query        1337, 7000 -> query, RPC ports
                          (one per num_frontend_replicas, label ai.clipper.query_frontend.id)
    supervisor-<id>       restarts the cluster's containers that die (docker_supervisor)
    <model>_<version>-<id> one per replica and query frontend, model label <model>_<version>,
                          spec §5.1 environment with CLIPPER_IP = that frontend

Published host ports are found free at start (:func:`find_unbound_port`) and recorded in the
containers' labels, from which :meth:`DockerContainerManager.connect` reads them back. Images
are built on demand by :class:`~clipper_core.backends.docker_images.ImageBuilder`.

Secrets (docs/security.md): ``start_clipper`` generates the management token, the replica
secret and Redis's password into ``$CLIPPER_HOME/<cluster>/secrets.json`` (mode 0600) and
hands them to the containers in their environment, whence :meth:`connect` reads them back.
Redis requires its password and is published on 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import random
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from clipper_core.backends.api import (
    CLIPPER_DOCKER_LABEL,
    CLIPPER_DOCKER_PORT_LABELS,
    CLIPPER_INTERNAL_MANAGEMENT_PORT,
    CLIPPER_INTERNAL_QUERY_PORT,
    CLIPPER_INTERNAL_REDIS_PORT,
    CLIPPER_INTERNAL_RPC_PORT,
    CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL,
    CLIPPER_MODEL_CONTAINER_LABEL,
    CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL,
    CLIPPER_QUERY_FRONTEND_ID_LABEL,
    REPLICA_LOG_TAIL,
    ClusterAdapter,
    ContainerManager,
    ReplicaState,
    create_model_container_label,
    parse_model_container_label,
    tls_files,
)
from clipper_core.backends.docker_images import ImageBuilder, docker_client
from clipper_core.backends.docker_supervisor import CLIPPER_SUPERVISOR_LABEL
from clipper_core.config import SECRETS_FILE, clipper_home, load_secrets, tracing_environment
from clipper_core.exceptions import BackendError, ClipperException
from clipper_core.hookspecs import hookimpl

logger = logging.getLogger("clipper.docker")

CLIPPER_FLUENTD_PORT_LABEL = CLIPPER_DOCKER_PORT_LABELS["fluentd"]
CLIPPER_REDIS_CONTAINER_LABEL = "ai.clipper.redis.label"
#: Seconds to wait for a container to be running (or, for Redis, to answer).
CONTAINER_START_TIMEOUT_S = 60.0
#: Where the Docker engine's socket is on the Docker host (mounted into the supervisor).
DOCKER_SOCKET = "/var/run/docker.sock"
_LOCAL_HOSTS = ("localhost", "127.0.0.1")
#: Where the frontends find the TLS certificate and key (mounted read-only).
_TLS_FILES = {"CLIPPER_TLS_CERT_FILE": "/run/clipper-tls/cert.pem",
              "CLIPPER_TLS_KEY_FILE": "/run/clipper-tls/key.pem"}
#: Redis's command line (Docker and Kubernetes): the password comes from ``$REDIS_PASSWORD``
#: into a config file, so it never shows in a process list.
REDIS_COMMAND = ["sh", "-c", 'printf "requirepass %s\n" "$REDIS_PASSWORD" > /tmp/auth.conf '
                  '&& exec redis-server /tmp/auth.conf --bind 0.0.0.0 --protected-mode no '
                  '--dir /data --appendonly yes --notify-keyspace-events KEA']


def find_unbound_port(start: int | None = None) -> int:
    """``start`` if it can be bound on 127.0.0.1, else a random free port in [10000, 50000]."""
    candidates = [start] if start else []
    while True:
        port = candidates.pop() if candidates else random.randint(10000, 50000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@attrs.frozen
class FluentdLogging:
    """The centralized logging of a cluster (the original's ``Fluentd``): containers log with
    Docker's fluentd driver to your fluentd at ``127.0.0.1:<port>``, which is not started here."""

    port: int = attrs.field(validator=attrs.validators.instance_of(int))

    @staticmethod
    def get_type() -> str:
        return "Fluentd"

    def get_log_config(self) -> dict[str, Any]:
        """The ``log_config`` of every container of the cluster."""
        return {"type": "fluentd", "config": {"fluentd-address": f"127.0.0.1:{self.port}",
                                              "fluentd-async": "true"}}


def is_default_frontend_image(image: str | None) -> bool:
    """The original's frontend image names (and None/"default") mean: our server image."""
    if not image or image == "default":
        return True
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return repository.rsplit("/", 1)[-1] in ("query_frontend", "management_frontend")


class DockerContainerManager(ContainerManager):
    """Runs a cluster as Docker containers on one network (the seeds' DockerContainerManager)."""

    name = "docker"

    def __init__(
        self,
        cluster_name: str = "default-cluster",
        docker_ip_address: str = "localhost",
        use_centralized_log: bool = False,
        fluentd_port: int = 24224,
        clipper_query_port: int = 1337,
        clipper_management_port: int = 1338,
        clipper_rpc_port: int = 7000,
        redis_ip: str | None = None,
        redis_port: int = 6379,
        prometheus_port: int = 9090,
        docker_network: str = "clipper_network",
        extra_container_kwargs: dict[str, Any] | None = None,
        base_image: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
    ) -> None:
        """With ``tls_cert_file`` and ``tls_key_file`` (PEM files on the Docker host), both
        frontends speak HTTPS only."""
        self.tls_cert_file, self.tls_key_file = tls_files(tls_cert_file, tls_key_file)
        self.cluster_name = cluster_name
        self.public_hostname = docker_ip_address
        self.use_centralized_log = use_centralized_log
        self.fluentd_port = fluentd_port
        self.clipper_query_port = clipper_query_port
        self.clipper_management_port = clipper_management_port
        self.clipper_rpc_port = clipper_rpc_port
        #: Host query port of each query frontend, by frontend id (set by connect()).
        self.query_ports: list[int] = [clipper_query_port]
        self.redis_ip = redis_ip
        self.external_redis = redis_ip is not None
        self.redis_port = redis_port
        self.prometheus_port = prometheus_port
        if docker_network == "host":
            msg = (
                "DockerContainerManager does not support the 'host' Docker network: containers "
                "find each other by name on a user-defined network. Use the default "
                "docker_network='clipper_network' or another bridge network"
            )
            raise ClipperException(msg)
        self.docker_network = docker_network
        extra = dict(extra_container_kwargs or {})
        self.common_labels = {**extra.pop("labels", {}), CLIPPER_DOCKER_LABEL: cluster_name}
        self.extra_container_kwargs = extra
        self.logger = ClusterAdapter(logger, {"cluster_name": cluster_name})
        self._images = ImageBuilder(base_image=base_image, progress=self.logger.info)
        self.management_token: str | None = None
        #: What replicas present on the RPC port (known after start_clipper or connect).
        self.replica_secret: str | None = None

    @property
    def tls_ca_file(self) -> str | None:
        """The certificate clients verify the frontends with (None: plain HTTP)."""
        return self.tls_cert_file

    def _tls(self) -> dict[str, Any]:
        """The environment and volumes that give a frontend container TLS (or nothing)."""
        if not self.tls_cert_file or not self.tls_key_file:
            return {}
        sources = {"CLIPPER_TLS_CERT_FILE": self.tls_cert_file,
                   "CLIPPER_TLS_KEY_FILE": self.tls_key_file}
        return {"environment": _TLS_FILES, "volumes": {
            sources[key]: {"bind": path, "mode": "ro"} for key, path in _TLS_FILES.items()}}

    @property
    def secrets_path(self) -> Path:
        """Where start_clipper keeps the cluster's secrets for this machine's clients."""
        return clipper_home() / self.cluster_name / SECRETS_FILE

    # -- engine, images ---------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The Docker client (connected on first use)."""
        return self._images.client

    @property
    def docker_client(self) -> Any:
        """The original's name of :attr:`client`."""
        return self.client

    @property
    def centralize_log(self) -> bool:
        """The original's name of ``use_centralized_log``."""
        return self.use_centralized_log

    @centralize_log.setter
    def centralize_log(self, value: bool) -> None:
        self.use_centralized_log = value

    @property
    def logging_system_instance(self) -> FluentdLogging | None:
        """The cluster's centralized logging, or None (each container keeps its own log)."""
        return FluentdLogging(self.fluentd_port) if self.use_centralized_log else None

    @property
    def log_config(self) -> dict[str, Any]:
        """The Docker ``log_config`` the cluster's containers are started with."""
        logging_system = self.logging_system_instance
        return logging_system.get_log_config() if logging_system else {"type": "json-file"}

    @property
    def images(self) -> ImageBuilder:
        """The builder of the project's images (base image: ``base_image`` or the default)."""
        return self._images

    def default_base_image(self, deployer_name: str) -> str:
        """The closure image of ``deployer_name`` (built now if missing or out of date)."""
        return self.images.deployer(deployer_name)

    # -- the cluster ------------------------------------------------------------------------

    def start_clipper(
        self,
        query_frontend_image: str | None = None,
        mgmt_frontend_image: str | None = None,
        frontend_exporter_image: str | None = None,
        cache_size: int = 33554432,
        qf_http_thread_pool_size: int = 1,
        qf_http_timeout_request: int = 5,
        qf_http_timeout_content: int = 300,
        num_frontend_replicas: int = 1,
    ) -> None:
        """Start Redis (unless ``redis_ip``), the frontends and the supervisor; then connect.

        ``num_frontend_replicas`` query frontends share the Redis; frontend 0 publishes
        ``clipper_query_port``/``clipper_rpc_port``, the others free ports
        (:meth:`get_query_addrs`). Images missing locally are built (``frontend_exporter_image``
        is not used: the query frontend serves ``/metrics`` itself). The query frontends get
        this process's tracing settings (:func:`~clipper_core.config.tracing_environment`).
        """
        if num_frontend_replicas < 1:
            msg = f"num_frontend_replicas must be at least 1, got {num_frontend_replicas}"
            raise ClipperException(msg)
        if self._running_containers():
            msg = (
                f"A Clipper cluster named {self.cluster_name!r} is already running on this Docker "
                "engine. Call connect() to use it, stop_all() to stop it, or choose another "
                "cluster_name"
            )
            raise ClipperException(msg)
        tracing = tracing_environment()
        query_image = self._frontend_image(query_frontend_image)
        mgmt_image = self._frontend_image(mgmt_frontend_image)
        supervisor_image = self.images.server()
        self._ensure_network()
        self.secrets_path.unlink(missing_ok=True)  # a new cluster gets new secrets
        secrets = load_secrets(self.secrets_path, create=True)

        if self.external_redis:
            store_url = f"redis://{self.redis_ip}:{self.redis_port}/0"
        else:
            self.logger.info("Starting managed Redis instance in Docker")
            password = secrets["redis_password"]
            redis = self._run(
                self.images.redis(), "redis", {CLIPPER_REDIS_CONTAINER_LABEL: ""},
                {CLIPPER_INTERNAL_REDIS_PORT: ("redis", self.redis_port, "127.0.0.1")},
                command=REDIS_COMMAND, environment={"REDIS_PASSWORD": password})
            self._wait_for_redis(redis, password)
            store_url = f"redis://:{password}@{redis.name}:{CLIPPER_INTERNAL_REDIS_PORT}/0"
        common_env = {"CLIPPER_CLUSTER_NAME": self.cluster_name, "CLIPPER_STORE_URL": store_url}

        mgmt_host = "127.0.0.1" if self.public_hostname in _LOCAL_HOSTS else None
        tls = self._tls()
        common_env.update(tls.get("environment", {}))
        volumes = tls.get("volumes", {})
        mgmt = self._run(
            mgmt_image, "mgmt_frontend", {CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL: ""},
            {CLIPPER_INTERNAL_MANAGEMENT_PORT:
                ("management", self.clipper_management_port, mgmt_host)},
            environment={**common_env, "CLIPPER_ROLES": "management",
                         "CLIPPER_MANAGEMENT_HOST": "0.0.0.0",
                         "CLIPPER_MANAGEMENT_TOKEN": secrets["management_token"],
                         "CLIPPER_MANAGEMENT_PORT": str(CLIPPER_INTERNAL_MANAGEMENT_PORT)},
            volumes=volumes)
        queries = [self._run(
            query_image, "query_frontend",
            {CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL: "", CLIPPER_QUERY_FRONTEND_ID_LABEL: str(i)},
            {CLIPPER_INTERNAL_QUERY_PORT: ("query_rest", self.clipper_query_port if i == 0 else 0,
                                           None),
             CLIPPER_INTERNAL_RPC_PORT: ("query_rpc", self.clipper_rpc_port if i == 0 else 0,
                                         None)},
            environment={**common_env, "CLIPPER_ROLES": "query", "CLIPPER_BIND_HOST": "0.0.0.0",
                         "CLIPPER_QUERY_PORT": str(CLIPPER_INTERNAL_QUERY_PORT),
                         "CLIPPER_RPC_PORT": str(CLIPPER_INTERNAL_RPC_PORT),
                         "CLIPPER_FRONTEND_ID": str(i),
                         "CLIPPER_REPLICA_SECRET": secrets["replica_secret"],
                         "CLIPPER_CACHE_SIZE": str(cache_size),
                         "CLIPPER_REQUEST_TIMEOUT_S": str(qf_http_timeout_request), **tracing},
            volumes=volumes)
            for i in range(num_frontend_replicas)]
        self._run(
            supervisor_image, "supervisor", {CLIPPER_SUPERVISOR_LABEL: ""}, {},
            command=["python", "-m", "clipper_core.backends.docker_supervisor",
                     "--cluster", self.cluster_name],
            volumes={DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"}})
        for container in (mgmt, *queries):
            self._wait_running(container)
        self.connect()

    def connect(self) -> None:
        """Find the running cluster by its label and read its published ports from labels."""
        containers = self._running_containers()
        if not containers:
            msg = (
                f"No running Clipper cluster named {self.cluster_name!r} on this Docker engine. "
                "Start one with ClipperConnection.start_clipper() or check cluster_name"
            )
            raise ClipperException(msg)
        labels: dict[str, str] = {}
        frontends = sorted((c for c in containers if CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL
                            in c.labels), key=_frontend_id, reverse=True)
        for container in [c for c in containers if c not in frontends] + frontends:
            labels.update(container.labels)  # frontend 0's ports last, so they win
        ports = CLIPPER_DOCKER_PORT_LABELS
        if ports["query_rest"] not in labels or ports["management"] not in labels:
            msg = (
                f"Cluster {self.cluster_name!r} has running containers but no query or "
                "management frontend (they may be restarting). Retry, or stop_all() and "
                "start_clipper() again"
            )
            raise ClipperException(msg)
        self.clipper_query_port = int(labels[ports["query_rest"]])
        self.clipper_rpc_port = int(labels[ports["query_rpc"]])
        self.clipper_management_port = int(labels[ports["management"]])
        self.query_ports = [int(c.labels[ports["query_rest"]]) for c in reversed(frontends)]
        if ports["redis"] in labels:
            self.redis_port = int(labels[ports["redis"]])
        has_fluentd = CLIPPER_FLUENTD_PORT_LABEL in labels
        if self.use_centralized_log and not has_fluentd:
            msg = (
                "Invalid state detected: use_centralized_log=True, but cluster "
                f"{self.cluster_name!r} was started without centralized logging. Connect with "
                "use_centralized_log=False"
            )
            raise ClipperException(msg)
        if has_fluentd:
            self.use_centralized_log = True
            self.fluentd_port = int(labels[CLIPPER_FLUENTD_PORT_LABEL])
        env = {}
        for container in containers:  # the secrets the frontends were started with
            env.update(_environment(container))
        self.management_token = env.get("CLIPPER_MANAGEMENT_TOKEN")
        self.replica_secret = env.get("CLIPPER_REPLICA_SECRET")
        mounts = {m["Destination"]: m["Source"] for m in frontends[-1].attrs.get("Mounts", ())}
        self.tls_cert_file = mounts.get(_TLS_FILES["CLIPPER_TLS_CERT_FILE"])
        self.tls_key_file = mounts.get(_TLS_FILES["CLIPPER_TLS_KEY_FILE"])
        self.logger.info("Connected to cluster: query %s, management %s",
                         self.get_query_addr(), self.get_admin_addr())

    # -- model images -----------------------------------------------------------------------

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Build ``FROM base_image`` + ``pkgs_to_install`` + ``COPY model /model/``; push if a
        registry is given. Returns the image tag ``[<registry>/]<cluster>-<name>:<version>``."""
        version = str(version)
        image = f"{self.cluster_name}-{name}:{version}"
        if container_registry:
            image = f"{container_registry}/{image}"
        if not Path(model_data_path).is_dir():
            msg = f"model_data_path {model_data_path!r} is not a directory; pass the model's directory"
            raise ClipperException(msg)
        if base_image == "default":
            base_image = self.default_base_image("python")
        self.images.ensure_present(base_image)
        self.logger.info("Building model Docker image with model data from %s", model_data_path)
        with tempfile.TemporaryDirectory(prefix="clipper-model-") as ctx:
            shutil.copytree(model_data_path, Path(ctx, "model"))
            lines = [f"FROM {base_image}"]
            if pkgs_to_install:
                wheels = Path(ctx, "wheels")
                wheels.mkdir()
                self.images.requirement_wheels(pkgs_to_install, wheels, base_image)
                Path(ctx, "requirements.txt").write_text("\n".join(pkgs_to_install) + "\n")
                lines += [
                    "COPY wheels /tmp/clipper-wheels",
                    "COPY requirements.txt /tmp/clipper-requirements.txt",
                    "RUN python3 -m pip install --no-cache-dir --no-index --find-links "
                    "/tmp/clipper-wheels -r /tmp/clipper-requirements.txt "
                    "&& rm -rf /tmp/clipper-wheels /tmp/clipper-requirements.txt",
                ]
            lines.append("COPY model /model/")
            Path(ctx, "Dockerfile").write_text("\n".join(lines) + "\n")
            self.images.build_context(ctx, image)
        if container_registry:
            self._push(image)
        return image

    def _push(self, image: str) -> None:
        self.logger.info("Pushing model Docker image to %s", image)
        repository, tag = image.rsplit(":", 1)
        for chunk in self.client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                msg = (
                    f"Pushing {image} failed: {chunk['error']}. Check that the registry is "
                    "reachable from the Docker engine and that you are logged in (docker login)"
                )
                raise ClipperException(msg)
            if "status" in chunk and "progress" not in chunk:
                self.logger.info("%s", chunk["status"])

    # -- model replicas ---------------------------------------------------------------------

    def deploy_model(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1
    ) -> None:
        self.set_num_replicas(name, version, input_type, image, num_replicas)

    def get_num_replicas(self, name: str, version: str) -> int:
        """Replicas per query frontend (each frontend has its own ``num_replicas``)."""
        return len(self._get_replicas(name, version, "0"))

    def replica_states(self, name: str, version: str) -> list[ReplicaState]:
        """A replica container has failed once it exited or Docker restarted it."""
        states = []
        for container in self._get_replicas(name, version):
            state = container.attrs.get("State", {})
            restarts = container.attrs.get("RestartCount", 0)
            failed = restarts > 0 or container.status in ("exited", "dead", "restarting")
            detail = container.status
            if failed:
                detail += (f", last exit code {state.get('ExitCode')}, restarted {restarts} "
                           "times by Docker")
            tail = container.logs(tail=REPLICA_LOG_TAIL).decode(errors="replace").rstrip()
            states.append(ReplicaState(f"container {container.name}", failed, detail, tail))
        return states

    def set_num_replicas(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int
    ) -> None:
        """Add or remove replica containers of ``name:version`` until ``num_replicas`` run
        for each query frontend."""
        version = str(version)
        frontends = self.client.containers.list(ignore_removed=True, filters={"label": [
            f"{CLIPPER_DOCKER_LABEL}={self.cluster_name}", CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL]})
        if not frontends:
            msg = (
                "No Clipper query frontend to attach model container to: cluster "
                f"{self.cluster_name!r} is not running. Call start_clipper() or connect() first"
            )
            raise ClipperException(msg)
        added = []
        for frontend in frontends:
            frontend_id = _frontend_id(frontend)
            replicas = self._get_replicas(name, version, frontend_id)
            missing = num_replicas - len(replicas)
            if missing > 0:
                self.logger.info("Found %d replicas for %s:%s at query frontend %s. Adding %d",
                                 len(replicas), name, version, frontend_id, missing)
                self.images.ensure_present(image)
                added += [self._add_replica(name, version, input_type, image, frontend)
                          for _ in range(missing)]
            elif missing < 0:
                self.logger.info("Found %d replicas for %s:%s at query frontend %s. Removing %d",
                                 len(replicas), name, version, frontend_id, -missing)
                # Not-running replicas go first, then the newest ones.
                replicas.sort(key=lambda c: (c.status == "running", c.attrs["Created"]))
                for container in replicas[:-missing]:
                    self._remove(container)
        for container in added:
            self._wait_running(container)

    def _get_replicas(self, name: str, version: str, frontend_id: str | None = None
                      ) -> list[Any]:
        """The model's replica containers (at one query frontend, or at all of them), running
        or exited (not those being removed)."""
        label = create_model_container_label(name, str(version))
        containers = self.client.containers.list(ignore_removed=True, all=True, filters={"label": [
            f"{CLIPPER_DOCKER_LABEL}={self.cluster_name}",
            f"{CLIPPER_MODEL_CONTAINER_LABEL}={label}"]})
        return [c for c in containers if c.status not in ("removing", "dead")
                and frontend_id in (None, _frontend_id(c))]

    def _add_replica(self, name: str, version: str, input_type: str, image: str,
                     frontend: Any) -> Any:
        label = create_model_container_label(name, version)
        return self._run(
            image, label, {CLIPPER_MODEL_CONTAINER_LABEL: label,
                           CLIPPER_QUERY_FRONTEND_ID_LABEL: _frontend_id(frontend)}, {},
            environment={"CLIPPER_MODEL_NAME": name, "CLIPPER_MODEL_VERSION": version,
                         "CLIPPER_IP": frontend.name, "CLIPPER_INPUT_TYPE": input_type,
                         **_environment(frontend, "CLIPPER_REPLICA_SECRET")},
            restart_policy={"Name": "on-failure"})

    # -- logs and stopping ------------------------------------------------------------------

    def get_logs(self, logging_dir: str) -> list[str]:
        """Write each running container's stdout and stderr to ``logging_dir``; return the paths."""
        if self.use_centralized_log:
            msg = (
                "get_logs() is not available with centralized logging: the logs are in your "
                f"fluentd at 127.0.0.1:{self.fluentd_port}"
            )
            raise ClipperException(msg)
        directory = Path(logging_dir)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for container in self._running_containers():
            path = directory / (f"image_{container.image.short_id.split(':')[-1]}:"
                                f"container_{container.short_id}.log")
            path.write_bytes(container.logs(stdout=True, stderr=True))
            paths.append(str(path))
        return paths

    def stop_models(self, models: dict[str, list[str]]) -> None:
        wanted = {(name, str(v)) for name, versions in models.items() for v in versions}
        for container in self._model_containers():
            label = container.labels[CLIPPER_MODEL_CONTAINER_LABEL]
            if parse_model_container_label(label) in wanted:
                self._remove(container)

    def stop_all_model_containers(self) -> None:
        for container in self._model_containers():
            self._remove(container)

    def stop_all(self, graceful: bool = True) -> None:
        """Stop and remove every container of the cluster (the supervisor first).

        The Docker network is kept: other clusters may use it.
        """
        containers = self.client.containers.list(
            all=True, ignore_removed=True,
            filters={"label": f"{CLIPPER_DOCKER_LABEL}={self.cluster_name}"})
        containers.sort(key=lambda c: CLIPPER_SUPERVISOR_LABEL not in c.labels)
        for container in containers:
            if graceful and CLIPPER_SUPERVISOR_LABEL not in container.labels:
                try:
                    container.stop(timeout=10)
                except Exception as exc:  # already gone
                    self.logger.debug("stop %s: %s", container.name, exc)
            self._remove(container)
        self.secrets_path.unlink(missing_ok=True)
        self.logger.info("Stopped all Clipper cluster and all model containers")

    # -- addresses --------------------------------------------------------------------------

    def get_admin_addr(self) -> str:
        return f"{self.public_hostname}:{self.clipper_management_port}"

    def get_query_addr(self) -> str:
        """Query frontend 0's address."""
        return f"{self.public_hostname}:{self.clipper_query_port}"

    def get_query_addrs(self) -> list[str]:
        """Every query frontend's address, by frontend id."""
        return [f"{self.public_hostname}:{port}" for port in self.query_ports]

    # -- internals --------------------------------------------------------------------------

    def _frontend_image(self, image: str | None) -> str:
        if is_default_frontend_image(image):
            return self.images.server()
        assert image is not None
        self.images.ensure_present(image)
        return image

    def _ensure_network(self) -> None:
        import docker.errors

        try:
            self.client.networks.get(self.docker_network)
        except docker.errors.NotFound:
            self.logger.info("Creating Docker network %s", self.docker_network)
            try:
                self.client.networks.create(self.docker_network, check_duplicate=True)
            except docker.errors.APIError as exc:  # created meanwhile by another cluster
                if "already exists" not in str(exc):
                    raise

    def _running_containers(self) -> list[Any]:
        return self.client.containers.list(
            ignore_removed=True, filters={"label": f"{CLIPPER_DOCKER_LABEL}={self.cluster_name}"})

    def _model_containers(self) -> list[Any]:
        containers = self.client.containers.list(ignore_removed=True, all=True, filters={"label": [
            f"{CLIPPER_DOCKER_LABEL}={self.cluster_name}", CLIPPER_MODEL_CONTAINER_LABEL]})
        return [c for c in containers if c.status not in ("removing", "dead")]

    def _run(
        self,
        image: str,
        prefix: str,
        role_labels: dict[str, str],
        ports: dict[int, tuple[str, int, str | None]],
        restart_policy: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``image`` as ``<prefix>-<id>`` on the cluster network.

        ``ports`` maps a container port to (port label key, wanted host port, host IP); each
        host port is found free and recorded in the container's labels. A port taken between
        the check and the start is replaced by a random one.
        """
        import docker.errors

        wanted = {internal: spec[1] for internal, spec in ports.items()}
        for attempt in range(5):
            host_ports = {internal: find_unbound_port(port) for internal, port in wanted.items()}
            labels = {**self.common_labels, **role_labels}
            if self.use_centralized_log:
                labels[CLIPPER_FLUENTD_PORT_LABEL] = str(self.fluentd_port)
            for internal, (key, _, _) in ports.items():
                labels[CLIPPER_DOCKER_PORT_LABELS[key]] = str(host_ports[internal])
            published = {
                f"{internal}/tcp": (spec[2], host_ports[internal]) if spec[2]
                else host_ports[internal]
                for internal, spec in ports.items()}
            name = f"{prefix}-{random.randint(0, 10**6):06d}"
            try:
                return self.client.containers.run(image, **{
                    "log_config": self.log_config,
                    "restart_policy": restart_policy or {"Name": "always"},
                    **self.extra_container_kwargs, **kwargs,
                    "name": name, "labels": labels, "ports": published,
                    "network": self.docker_network, "detach": True})
            except docker.errors.APIError as exc:
                self._remove_by_name(name)
                text = str(exc)
                if attempt < 4 and ("already allocated" in text or "already in use" in text):
                    self.logger.info("Port clash starting %s (%s); retrying", name, text)
                    wanted = dict.fromkeys(wanted, 0)
                    continue
                msg = f"Docker could not start container {name} from image {image}: {text}"
                raise BackendError(msg) from exc
        raise AssertionError("unreachable")

    def _remove_by_name(self, name: str) -> None:
        import docker.errors

        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.APIError:
            pass

    def _remove(self, container: Any) -> None:
        import docker.errors

        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # removal already in progress
            if "already in progress" not in str(exc):
                raise

    def _wait_running(self, container: Any) -> None:
        deadline = time.monotonic() + CONTAINER_START_TIMEOUT_S
        while True:
            container.reload()
            if container.status == "running":
                return
            if container.status in ("exited", "dead", "restarting") or time.monotonic() > deadline:
                tail = container.logs(tail=20).decode(errors="replace")
                msg = (
                    f"Container {container.name} ({container.image.tags or container.image.id}) "
                    f"is {container.status}, not running. Its last log lines:\n{tail}"
                )
                raise BackendError(msg)
            time.sleep(0.2)

    def _wait_for_redis(self, container: Any, password: str) -> None:
        deadline = time.monotonic() + CONTAINER_START_TIMEOUT_S
        self._wait_running(container)
        while time.monotonic() < deadline:
            code, out = container.exec_run(["redis-cli", "ping"],
                                           environment={"REDISCLI_AUTH": password})
            if code == 0 and b"PONG" in out:
                return
            time.sleep(0.2)
        msg = f"Redis in container {container.name} did not answer within {CONTAINER_START_TIMEOUT_S}s"
        raise BackendError(msg)


def _environment(container: Any, *names: str) -> dict[str, str]:
    """A container's ``CLIPPER_*`` environment (only ``names`` if given)."""
    pairs = (item.partition("=") for item in container.attrs["Config"].get("Env") or ())
    return {k: v for k, _, v in pairs
            if k.startswith("CLIPPER_") and (not names or k in names)}


def _frontend_id(container: Any) -> str:
    """The query frontend a frontend or replica container belongs to (``0`` when unlabelled)."""
    return container.labels.get(CLIPPER_QUERY_FRONTEND_ID_LABEL, "0")


@hookimpl
def clipper_register_backends() -> list[type[ContainerManager]]:
    return [DockerContainerManager]


__all__ = ["DockerContainerManager", "FluentdLogging", "docker_client", "find_unbound_port"]
