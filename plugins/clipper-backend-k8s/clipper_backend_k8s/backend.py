"""``KubernetesContainerManager``: a Clipper cluster as Deployments and Services.

Objects and names are in :mod:`clipper_backend_k8s.manifests`. Every object is applied
idempotently (created, or patched when it exists), so a second ``start_clipper`` or a repeated
deploy converges. Each query frontend has its own model Deployments (its replicas connect to
that frontend's RPC Service), as in the original; the frontends share one Redis and the
``query-frontend-at-<cluster>`` Service spreads queries over them. Images are built on a Docker
engine the nodes can use, or pushed to ``container_registry``.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipper_backend_k8s import manifests
from clipper_core.backends.api import (
    CLIPPER_DOCKER_LABEL,
    CLIPPER_MODEL_CONTAINER_LABEL,
    CLIPPER_NAME_LABEL,
    CLIPPER_QUERY_FRONTEND_ID_LABEL,
    REPLICA_LOG_TAIL,
    ClusterAdapter,
    ContainerManager,
    ReplicaState,
    create_model_container_label,
    tls_files,
)
from clipper_core.backends.docker import DockerContainerManager, is_default_frontend_image
from clipper_core.config import clipper_home, tracing_environment, write_atomic
from clipper_core.exceptions import BackendError, ClipperException

logger = logging.getLogger("clipper.kubernetes")

#: Container states that do not heal by waiting: a rollout fails at once on them.
FATAL_WAITING_REASONS = ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull",
                         "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError",
                         "CreateContainerError", "RunContainerError")
#: Seconds a pod may stay unschedulable before a rollout fails.
UNSCHEDULABLE_GRACE_S = 30.0
_STRATEGIC_MERGE = "application/strategic-merge-patch+json"
_HINTS = {
    "ImagePullBackOff": "the node cannot get the image: build it on the node's Docker engine "
                        "(the local cluster) or push it to a registry the nodes can pull from "
                        "(container_registry=... / registry=...)",
    "CrashLoopBackOff": "the container keeps exiting: its log lines below say why",
    "Unschedulable": "no node can run the pod: its events below say why (resources, taints)",
}
_HINTS["ErrImagePull"] = _HINTS["ErrImageNeverPull"] = _HINTS["ImagePullBackOff"]


def _default_service_types() -> dict[str, str]:
    # Pods reach Redis and the RPC Services by ClusterIP; users reach the frontends.
    return {"redis": "ClusterIP", "management": "NodePort", "query": "NodePort",
            "query-rpc": "ClusterIP", "metric": "NodePort"}


def check_service_types(service_types: Any) -> dict[str, str]:
    """``service_types`` merged over the defaults, checked as the original checked it."""
    if service_types is None:
        return _default_service_types()
    if not isinstance(service_types, dict):
        raise ClipperException(f"service_types must be 'dict' type: {service_types!r}")
    unknown_keys = sorted(set(service_types) - set(manifests.SERVICE_KEYS))
    if unknown_keys:
        raise ClipperException(f"service_types has unknown keys: {unknown_keys}; expected some "
                               f"of {list(manifests.SERVICE_KEYS)}")
    if "ExternalName" in service_types.values():
        raise ClipperException("Clipper does not support 'ExternalName' service")
    unknown_values = sorted(set(service_types.values()) - set(manifests.SERVICE_TYPES))
    if unknown_values:
        raise ClipperException(f"service_types has unknown values: {unknown_values}; expected "
                               f"some of {list(manifests.SERVICE_TYPES)}")
    return {**_default_service_types(), **service_types}


class KubernetesContainerManager(ContainerManager):
    """Runs a cluster on Kubernetes (the seeds' KubernetesContainerManager).

    The seeds' parameters come first; the rest are keyword-only: ``cluster_name`` (several
    clusters per namespace), ``service_types`` (the original's dict), ``kubeconfig`` and
    ``context`` (default: ``$KUBECONFIG`` or ``~/.kube/config``, else the in-cluster
    configuration), ``node_address`` (the host at which NodePorts answer, instead of a node's
    ExternalDNS/InternalIP address: ``127.0.0.1`` on ``scripts/kube-local.sh``'s cluster),
    ``redis_image``, ``base_image`` (of the images built with Docker),
    ``rollout_timeout_s``, and ``tls_cert_file`` + ``tls_key_file`` (PEM files on this machine:
    both frontends then speak HTTPS only, the pair kept in the Secret ``tls-at-<cluster>``).
    """

    name = "kubernetes"

    def __init__(
        self,
        kubernetes_proxy_addr: str | None = None,
        redis_ip: str | None = None,
        redis_port: int = 6379,
        useInternalIP: bool = False,
        namespace: str = "default",
        create_namespace_if_not_exists: bool = False,
        *,
        cluster_name: str = "default-cluster",
        service_types: dict[str, str] | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        node_address: str | None = None,
        redis_image: str | None = None,
        base_image: str | None = None,
        rollout_timeout_s: float = 600.0,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
    ) -> None:
        self.tls_cert_file, self.tls_key_file = tls_files(tls_cert_file, tls_key_file)
        #: The certificate clients verify the frontends with, once connected (None: HTTP).
        self._tls_ca_file: str | None = None
        self.cluster_name = cluster_name
        self.kubernetes_proxy_addr = kubernetes_proxy_addr
        self.redis_ip = redis_ip
        self.redis_port = redis_port
        self.useInternalIP = useInternalIP
        self.namespace = namespace
        self.create_namespace_if_not_exists = create_namespace_if_not_exists
        self.service_types = check_service_types(service_types)
        self.kubeconfig = kubeconfig
        self.context = context
        self.node_address = node_address
        self.redis_image = redis_image
        self.rollout_timeout_s = rollout_timeout_s
        self.num_frontend_replicas = 0
        self.management_token: str | None = None
        self.logger = ClusterAdapter(logger, {"cluster_name": cluster_name})
        # Images are built (and pushed) exactly as the Docker backend builds them.
        self._docker = DockerContainerManager(cluster_name=cluster_name, base_image=base_image)
        self._docker.logger = self.logger
        self._core: Any = None
        self._apps: Any = None
        self._admin_addr: str | None = None
        self._query_addr: str | None = None

    # -- the API ----------------------------------------------------------------------------

    @property
    def tls_ca_file(self) -> str | None:
        """The certificate clients verify the frontends with (None: plain HTTP)."""
        return self._tls_ca_file

    @property
    def core(self) -> Any:
        """``CoreV1Api`` (configured on first use)."""
        if self._core is None:
            self._configure()
        return self._core

    @property
    def apps(self) -> Any:
        """``AppsV1Api`` (configured on first use)."""
        if self._apps is None:
            self._configure()
        return self._apps

    def _configure(self) -> None:
        from kubernetes import client, config

        path = self.kubeconfig or os.environ.get("KUBECONFIG") or str(
            Path("~/.kube/config").expanduser())
        if Path(path).is_file():
            api_client = config.new_client_from_config(config_file=path, context=self.context)
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException as exc:
                msg = (f"No kubeconfig at {path} and not running in a pod ({exc}). Pass "
                       "kubeconfig=..., set KUBECONFIG, or start the local cluster with "
                       "scripts/kube-local.sh start")
                raise ClipperException(msg) from exc
            api_client = client.ApiClient()
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)

    def _call(self, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)``; an API error becomes a BackendError naming ``what``."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return func(*args, **kwargs)
        except ApiException as exc:
            msg = f"Kubernetes refused {what}: {exc.status} {exc.reason}: {exc.body}"
            raise BackendError(msg) from exc
        except HTTPError as exc:
            msg = (f"Cannot reach the Kubernetes API server for {what}: {exc}. Check the "
                   "kubeconfig (scripts/kube-local.sh start for the local cluster)")
            raise BackendError(msg) from exc

    def _status_of(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
        """(HTTP status, result) of an API call whose 404/409 the caller handles."""
        from kubernetes.client.exceptions import ApiException

        try:
            return 200, func(*args, **kwargs)
        except ApiException as exc:
            if exc.status in (404, 409):
                return exc.status, None
            raise

    def _apply(self, obj: dict[str, Any]) -> None:
        """Create ``obj``, or patch it when it exists (the token Secret only gains missing
        keys)."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        create, patch = {
            "Deployment": (self.apps.create_namespaced_deployment,
                           self.apps.patch_namespaced_deployment),
            "Service": (self.core.create_namespaced_service, self.core.patch_namespaced_service),
            "Secret": (self.core.create_namespaced_secret, self.core.patch_namespaced_secret),
        }[kind]
        status, _ = self._call(f"creating {kind} {name}", self._status_of, create,
                               self.namespace, obj)
        if status != 409:
            return
        if name == manifests.token_name(self.cluster_name):
            self._add_missing_keys(name, obj["stringData"])  # its values are in use
        else:
            self._call(f"updating {kind} {name}", patch, name, self.namespace, obj,
                       _content_type=_STRATEGIC_MERGE)

    def _add_missing_keys(self, name: str, values: dict[str, str]) -> None:
        """Add to Secret ``name`` the keys it lacks (one made by an earlier release has no
        replica secret or Redis password); the values it holds are in use and stay."""
        secret = self._call(f"reading Secret {name}", self.core.read_namespaced_secret, name,
                            self.namespace)
        missing = {key: value for key, value in values.items() if key not in (secret.data or {})}
        if missing:
            self.logger.info("Adding %s to Secret %s", ", ".join(sorted(missing)), name)
            self._call(f"updating Secret {name}", self.core.patch_namespaced_secret, name,
                       self.namespace, {"stringData": missing})

    def _ensure_namespace(self) -> None:
        status, _ = self._call(f"reading namespace {self.namespace}", self._status_of,
                               self.core.read_namespace, self.namespace)
        if status != 404:
            return
        if not self.create_namespace_if_not_exists:
            msg = (f"Error connecting to Kubernetes cluster. Namespace does not exist. Create "
                   f"namespace {self.namespace!r} or pass create_namespace_if_not_exists=True")
            raise ClipperException(msg)
        self.logger.info("Creating namespace %s", self.namespace)
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        self._call(f"creating namespace {self.namespace}", self._status_of,
                   self.core.create_namespace, body)

    # -- images -----------------------------------------------------------------------------

    def default_base_image(self, deployer_name: str) -> str:
        return self._docker.default_base_image(deployer_name)

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Build the model image with Docker (see ``DockerContainerManager.build_model``).

        On a cluster whose nodes do not share this Docker engine, pass ``container_registry``
        so the image is pushed where the nodes pull from.
        """
        return self._docker.build_model(name, version, model_data_path, base_image,
                                        container_registry, pkgs_to_install)

    def _frontend_image(self, image: str | None) -> str:
        return self._docker.images.server() if is_default_frontend_image(image) else str(image)

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
        """Apply Redis (unless ``redis_ip``), the management and ``num_frontend_replicas``
        query frontends (with this process's tracing settings,
        :func:`~clipper_core.config.tracing_environment`), wait until every pod is ready, then
        connect.

        Idempotent: on a running cluster it converges (a smaller ``num_frontend_replicas``
        removes the extra frontends and their model replicas).
        """
        if num_frontend_replicas < 1:
            msg = f"num_frontend_replicas must be at least 1, got {num_frontend_replicas}"
            raise ClipperException(msg)
        tracing = tracing_environment()
        self._ensure_namespace()
        cluster, types = self.cluster_name, self.service_types
        query_image = self._frontend_image(query_frontend_image)
        mgmt_image = self._frontend_image(mgmt_frontend_image)
        self._apply(manifests.token_secret(cluster, *(secrets.token_urlsafe(32)
                                                      for _ in range(3))))
        tls = self._apply_tls()
        if self.redis_ip is None:
            self.logger.info("Starting Redis (Deployment %s)", manifests.redis_name(cluster))
            for obj in manifests.redis(cluster, self.redis_image or self._docker.images.redis(),
                                       self.redis_port, types["redis"]):
                self._apply(obj)
            self._wait_rollout([manifests.redis_name(cluster)], "Redis")
            store = manifests.store_url(cluster, self._cluster_ip(manifests.redis_name(cluster)),
                                        self.redis_port, with_password=True)
        else:
            store = manifests.store_url(cluster, self.redis_ip, self.redis_port,
                                        with_password=False)
        objects = manifests.management(cluster, mgmt_image, store, types["management"], tls)
        for i in range(num_frontend_replicas):
            objects += manifests.query_frontend(cluster, i, query_image, store, cache_size,
                                                qf_http_timeout_request, types["query-rpc"], tls,
                                                tracing)
        objects.append(manifests.query_service(cluster, types["query"]))
        self.logger.info("Starting the management frontend and %d query frontend(s)",
                         num_frontend_replicas)
        for obj in objects:
            self._apply(obj)
        self._remove_frontends_from(num_frontend_replicas)
        self._wait_rollout([o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"],
                           "the frontends")
        self.connect()

    def _apply_tls(self) -> bool:
        """Put the certificate and key in the TLS Secret (or delete it, without them); True
        when the frontends are to speak HTTPS."""
        name = manifests.tls_name(self.cluster_name)
        if not self.tls_cert_file or not self.tls_key_file:
            self._call(f"deleting Secret {name}", self._status_of,
                       self.core.delete_namespaced_secret, name, self.namespace)
            return False
        try:
            cert, key = Path(self.tls_cert_file).read_text(), Path(self.tls_key_file).read_text()
        except OSError as exc:
            msg = f"Cannot read the TLS certificate or key: {exc}"
            raise ClipperException(msg) from exc
        self.logger.info("Frontends speak HTTPS with %s (Secret %s)", self.tls_cert_file, name)
        self._apply(manifests.tls_secret(self.cluster_name, cert, key))
        return True

    def _remove_frontends_from(self, first_id: int) -> None:
        """Delete query frontends ``first_id, first_id+1, ...`` and their model replicas."""
        for dep in self._list("deployments", query_frontend=True):
            frontend_id = int(dep.metadata.labels[CLIPPER_QUERY_FRONTEND_ID_LABEL])
            if frontend_id >= first_id:
                self.logger.info("Removing query frontend %d", frontend_id)
                self._delete_where({CLIPPER_QUERY_FRONTEND_ID_LABEL: str(frontend_id)})

    def connect(self) -> None:
        """Find the cluster's Services and learn the frontends' addresses and the token."""
        cluster = self.cluster_name
        mgmt = self._read_service(manifests.mgmt_name(cluster))
        query = self._read_service(manifests.query_name(cluster))
        self.num_frontend_replicas = len(self._list("deployments", query_frontend=True))
        self._admin_addr = self._service_addr(mgmt)
        self._query_addr = self._service_addr(query)
        secret = self._call("reading the management token", self.core.read_namespaced_secret,
                            manifests.token_name(cluster), self.namespace)
        self.management_token = base64.b64decode(secret.data[manifests.TOKEN_KEY]).decode()
        self._tls_ca_file = self._frontends_certificate()
        self.logger.info("Connected to cluster: query %s, management %s, %d query frontend(s)",
                         self._query_addr, self._admin_addr, self.num_frontend_replicas)

    def _frontends_certificate(self) -> str | None:
        """The certificate file the running frontends speak HTTPS with (None: HTTP): this
        manager's own, or the TLS Secret's, written under ``clipper_home()``."""
        dep = self._call("reading the management frontend", self.apps.read_namespaced_deployment,
                         manifests.mgmt_name(self.cluster_name), self.namespace)
        env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env or ()}
        if not env.get("CLIPPER_TLS_CERT_FILE"):
            return None
        if self.tls_cert_file:
            return self.tls_cert_file
        secret = self._call("reading the TLS certificate", self.core.read_namespaced_secret,
                            manifests.tls_name(self.cluster_name), self.namespace)
        path = clipper_home() / self.cluster_name / f"tls-cert-{self.namespace}.pem"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, base64.b64decode(secret.data["tls.crt"]).decode())
        return str(path)

    def _read_service(self, name: str) -> Any:
        status, svc = self._call(f"reading Service {name}", self._status_of,
                                 self.core.read_namespaced_service, name, self.namespace)
        if status == 404:
            msg = (f"No Clipper cluster named {self.cluster_name!r} in namespace "
                   f"{self.namespace!r} (Service {name} is missing). Start one with "
                   "ClipperConnection.start_clipper() or check cluster_name and namespace")
            raise ClipperException(msg)
        return svc

    def _cluster_ip(self, service_name: str) -> str:
        return str(self._read_service(service_name).spec.cluster_ip)

    def _service_addr(self, svc: Any) -> str:
        """``host:port`` at which this client reaches ``svc``."""
        port = svc.spec.ports[0]
        if self.kubernetes_proxy_addr:
            return (f"{self.kubernetes_proxy_addr}/api/v1/namespaces/{self.namespace}/services/"
                    f"{svc.metadata.name}:{port.port}/proxy")
        if svc.spec.type == "LoadBalancer":
            ingress = (svc.status.load_balancer.ingress or []) if svc.status.load_balancer else []
            if not ingress:
                msg = (f"Service {svc.metadata.name} has no load balancer address yet; retry "
                       "connect() once the cloud provider has assigned one")
                raise ClipperException(msg)
            return f"{ingress[0].ip or ingress[0].hostname}:{port.port}"
        if svc.spec.type == "NodePort":
            return f"{self._node_host()}:{port.node_port}"
        return f"{svc.spec.cluster_ip}:{port.port}"

    def _node_host(self) -> str:
        if self.node_address:
            return self.node_address
        nodes = self._call("listing nodes", self.core.list_node).items
        addresses = [a for n in nodes for a in (n.status.addresses or [])]
        for wanted in ("ExternalDNS", "InternalIP") if self.useInternalIP else ("ExternalDNS",):
            found = [a.address for a in addresses if a.type == wanted]
            if found:
                return found[0]
        msg = ("Error connecting to Kubernetes cluster. No external node addresses found. "
               "Pass useInternalIP=True to use the nodes' internal IPs, node_address=<host> "
               "(127.0.0.1 for scripts/kube-local.sh), or kubernetes_proxy_addr")
        raise ClipperException(msg)

    # -- model replicas ---------------------------------------------------------------------

    def deploy_model(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1
    ) -> None:
        self.set_num_replicas(name, version, input_type, image, num_replicas)

    def get_num_replicas(self, name: str, version: str) -> int:
        """Replicas per query frontend (each frontend has its own ``num_replicas``)."""
        status, dep = self._call(
            "reading a model Deployment", self._status_of, self.apps.read_namespaced_deployment,
            manifests.model_name(self.cluster_name, name, str(version), 0), self.namespace)
        return 0 if status == 404 else int(dep.spec.replicas)

    def replica_states(self, name: str, version: str) -> list[ReplicaState]:
        """A replica pod has failed when it cannot start by waiting (a crash loop, an image
        that cannot be pulled), its phase is Failed, or its container exited or was restarted
        and has not become ready (loaded its model) since. Terminating pods are left out."""
        label = create_model_container_label(name, str(version))
        states = []
        for pod in self._pods({CLIPPER_DOCKER_LABEL: self.cluster_name,
                               CLIPPER_MODEL_CONTAINER_LABEL: label}):
            if pod.metadata.deletion_timestamp is not None:
                continue
            ready = _is_ready(pod)
            statuses = pod.status.container_statuses or []
            restarts = sum(s.restart_count or 0 for s in statuses)
            exited = [t for t in map(_last_exit, statuses) if t is not None]
            problem = _pod_problem(pod)
            failed = (problem is not None or pod.status.phase == "Failed"
                      or (bool(exited) and not ready))
            detail = f"{pod.status.phase}, {'ready' if ready else 'not ready'}"
            if problem is not None:
                detail += f", {problem[0]}"
            if exited:
                detail += (f", last exit code {exited[0].exit_code} ({exited[0].reason}), "
                           f"restarted {restarts} times by Kubernetes")
            tail = "\n".join(self._container_log(pod, c.name, REPLICA_LOG_TAIL, bool(restarts))
                             for c in pod.spec.containers)
            states.append(ReplicaState(f"pod {pod.metadata.name}", failed, detail, tail))
        return states

    def _container_log(self, pod: Any, container: str, lines: int, previous_first: bool) -> str:
        """The last ``lines`` log lines of a container of ``pod``: of its previous run first
        when ``previous_first`` (a restarted container), else of its current one; ``""`` when
        it has no log (it never started)."""
        for previous in (previous_first, False):
            try:
                log = self.core.read_namespaced_pod_log(
                    pod.metadata.name, self.namespace, container=container, tail_lines=lines,
                    previous=previous)
            except Exception:  # no log (the container never started)
                continue
            if log:
                return str(log).rstrip()
        return ""

    def set_num_replicas(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int
    ) -> None:
        """Apply ``name:version``'s Deployment of every query frontend with ``num_replicas``
        pods and wait until exactly that many run and are ready."""
        version = str(version)
        frontends = self._frontend_rpc_ips()
        self.logger.info("Setting %s:%s to %d replica(s) per query frontend (%d frontend(s))",
                         name, version, num_replicas, len(frontends))
        names = []
        for frontend_id, ip in frontends:
            obj = manifests.model(self.cluster_name, name, version, input_type, image,
                                  num_replicas, frontend_id, ip)
            self._apply(obj)
            names.append(obj["metadata"]["name"])
        self._wait_rollout(names, f"model {name}:{version}")

    def _frontend_rpc_ips(self) -> list[tuple[int, str]]:
        """(frontend id, ClusterIP of its RPC Service) of every query frontend."""
        services = self._list("services", query_frontend=True)
        found = sorted((int(s.metadata.labels[CLIPPER_QUERY_FRONTEND_ID_LABEL]), s.spec.cluster_ip)
                       for s in services if CLIPPER_QUERY_FRONTEND_ID_LABEL in s.metadata.labels)
        if not found:
            msg = (f"No query frontend to attach model replicas to: cluster "
                   f"{self.cluster_name!r} is not running in namespace {self.namespace!r}. "
                   "Call start_clipper() or connect() first")
            raise ClipperException(msg)
        return found

    # -- rollouts ---------------------------------------------------------------------------

    def _wait_rollout(self, names: list[str], what: str) -> None:
        """Wait until each Deployment runs exactly its replicas, all updated and ready.

        Logs progress when it changes; fails at once when a pod cannot start (image pull,
        crash loop, unschedulable), and after ``rollout_timeout_s`` otherwise, naming the pod
        with its last events and log lines.
        """
        deadline = time.monotonic() + self.rollout_timeout_s
        last_progress = None
        while True:
            progress, pods = [], []
            for name in names:
                dep = self._call(f"reading Deployment {name}", self.apps.read_namespaced_deployment,
                                 name, self.namespace)
                own = [p for p in self._pods(dep.spec.selector.match_labels) if not _gone(p)]
                pods += own
                ready = sum(1 for p in own if _is_ready(p) and p.metadata.deletion_timestamp is None)
                done = ((dep.status.observed_generation or 0) >= dep.metadata.generation
                        and (dep.status.updated_replicas or 0) == dep.spec.replicas
                        and ready == dep.spec.replicas == len(own))
                progress.append((name, ready, dep.spec.replicas, len(own), done))
            if all(p[-1] for p in progress):
                return
            if progress != last_progress:
                self.logger.info("Waiting for %s: %s", what, "; ".join(
                    f"{n} {r}/{w} ready" + (f" ({t} pods)" if t != w else "")
                    for n, r, w, t, _ in progress))
                last_progress = progress
            for pod in pods:
                problem = _pod_problem(pod)
                if problem:
                    raise BackendError(self._pod_report(pod, what, *problem))
            if time.monotonic() > deadline:
                stuck = [p for p in pods if not _is_ready(p)] or pods
                detail = (self._pod_report(stuck[0], what, "not ready", "")
                          if stuck else "no pods were created")
                msg = f"Timed out after {self.rollout_timeout_s:g}s waiting for {what}: {detail}"
                raise BackendError(msg)
            time.sleep(0.5)

    def _pod_report(self, pod: Any, what: str, reason: str, message: str) -> str:
        """The error text for a pod of ``what`` that fails: reason, hint, events, log lines."""
        name = pod.metadata.name
        events = self._call("listing events", self.core.list_namespaced_event, self.namespace,
                            field_selector=f"involvedObject.name={name}").items
        events.sort(key=lambda e: str(e.last_timestamp or e.event_time or ""))
        event_lines = "\n".join(f"  {e.type} {e.reason}: {e.message}" for e in events[-8:])
        log_lines = ""
        for container in pod.spec.containers:
            log = self._container_log(pod, container.name, 20, reason == "CrashLoopBackOff")
            if log:
                log_lines += f"\n[{container.name}]\n{log}"
        hint = _HINTS.get(reason, "")
        return (f"pod {name} of {what} is {reason}" + (f": {message}" if message else "")
                + (f". Likely cause: {hint}" if hint else "")
                + f"\nIts last events:\n{event_lines or '  (none)'}"
                + f"\nIts last log lines:{log_lines or ' (none)'}")

    # -- listing and deleting ---------------------------------------------------------------

    def _selector(self, **labels: str | None) -> str:
        return manifests.selector({CLIPPER_DOCKER_LABEL: self.cluster_name, **labels})

    def _list(self, kind: str, query_frontend: bool = False) -> list[Any]:
        selector = self._selector(**{CLIPPER_NAME_LABEL: "query-frontend"}) if query_frontend \
            else self._selector()
        func = {"deployments": self.apps.list_namespaced_deployment,
                "services": self.core.list_namespaced_service,
                "pods": self.core.list_namespaced_pod,
                "secrets": self.core.list_namespaced_secret}[kind]
        return self._call(f"listing {kind}", func, self.namespace, label_selector=selector).items

    def _pods(self, labels: dict[str, str | None]) -> list[Any]:
        return self._call("listing pods", self.core.list_namespaced_pod, self.namespace,
                          label_selector=manifests.selector(labels)).items

    def _delete_where(self, *selections: dict[str, str | None],
                      grace_s: int | None = None) -> None:
        """Delete this cluster's Deployments (and their ReplicaSets, so that none recreates a
        pod while the garbage collector catches up), Services and Secrets matching each of
        ``selections`` (label dicts), then wait until their pods are gone.

        A pod that is :func:`gone <_gone>` is then removed at once (grace period 0): nothing of
        it runs any more, and the 1.20 kubelet would only confirm the deletion at its next
        status sync, up to 10 s later.
        """
        ns = self.namespace
        for labels in selections:
            selector = self._selector(**labels)
            self._call("deleting Deployments", self.apps.delete_collection_namespaced_deployment,
                       ns, label_selector=selector, propagation_policy="Background")
            self._call("deleting ReplicaSets",
                       self.apps.delete_collection_namespaced_replica_set, ns,
                       label_selector=selector, propagation_policy="Background")
            for svc in self._call("listing Services", self.core.list_namespaced_service, ns,
                                  label_selector=selector).items:
                # The 1.20 server's answer to a Service delete does not deserialize in the
                # client.
                self._call(f"deleting Service {svc.metadata.name}", self._status_of,
                           self.core.delete_namespaced_service, svc.metadata.name, ns,
                           _preload_content=False)
            self._call("deleting Secrets", self.core.delete_collection_namespaced_secret, ns,
                       label_selector=selector)
            if grace_s is not None:
                self._call("deleting pods", self.core.delete_collection_namespaced_pod, ns,
                           label_selector=selector, grace_period_seconds=grace_s)
        deadline = time.monotonic() + 120
        while pods := [pod for labels in selections
                       for pod in self._pods({CLIPPER_DOCKER_LABEL: self.cluster_name, **labels})]:
            for pod in pods:
                if _gone(pod):
                    self._call(f"removing the stopped pod {pod.metadata.name}", self._status_of,
                               self.core.delete_namespaced_pod, pod.metadata.name, ns,
                               grace_period_seconds=0)
            if time.monotonic() > deadline:
                msg = (f"{len(pods)} pod(s) of cluster {self.cluster_name!r} still exist 120 s "
                       f"after deletion: {', '.join(p.metadata.name for p in pods)}")
                raise BackendError(msg)
            time.sleep(0.5)

    def get_logs(self, logging_dir: str) -> list[str]:
        """Write each container's log of every cluster pod (but those :func:`_gone`) to
        ``<dir>/<pod>_<container>.log``."""
        directory = Path(logging_dir)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for pod in self._list("pods"):
            if _gone(pod):  # its stopped containers may be removed, logs and all
                continue
            for container in pod.spec.containers:
                path = directory / f"{pod.metadata.name}_{container.name}.log"
                log = self._call(f"reading the log of {pod.metadata.name}",
                                 self.core.read_namespaced_pod_log, pod.metadata.name,
                                 self.namespace, container=container.name)
                path.write_text(log or "")
                paths.append(str(path))
        return paths

    def stop_models(self, models: dict[str, list[str]]) -> None:
        self._delete_where(*({CLIPPER_MODEL_CONTAINER_LABEL: create_model_container_label(
            name, str(version))} for name, versions in models.items() for version in versions))

    def stop_all_model_containers(self) -> None:
        self._delete_where({CLIPPER_NAME_LABEL: "model"})

    def stop_all(self, graceful: bool = True) -> None:
        """Delete every object of the cluster and wait until its pods are gone."""
        self._delete_where({}, grace_s=None if graceful else 0)
        self.logger.info("Stopped all Clipper cluster and all model containers")

    # -- addresses --------------------------------------------------------------------------

    def get_admin_addr(self) -> str:
        return self._require(self._admin_addr)

    def get_query_addr(self) -> str:
        return self._require(self._query_addr)

    def _require(self, addr: str | None) -> str:
        if addr is None:
            msg = "Not connected to a Kubernetes cluster: call start_clipper() or connect() first"
            raise ClipperException(msg)
        return addr


def _gone(pod: Any) -> bool:
    """Whether ``pod`` is deleted and none of its containers runs: gone in all but the API
    object, which the kubelet removes at its next status sync."""
    return pod.metadata.deletion_timestamp is not None and not any(
        s.state is not None and s.state.running is not None
        for s in pod.status.container_statuses or [])


def _is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _last_exit(status: Any) -> Any:
    """How a container last exited (``V1ContainerStateTerminated``), None if it never did."""
    for state in (status.state, status.last_state):
        if state is not None and state.terminated is not None:
            return state.terminated
    return None


def _pod_problem(pod: Any) -> tuple[str, str] | None:
    """(reason, message) when ``pod`` cannot become ready by waiting, else None."""
    for status in pod.status.container_statuses or []:
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason in FATAL_WAITING_REASONS:
            return waiting.reason, waiting.message or ""
    for condition in pod.status.conditions or []:
        if (condition.type == "PodScheduled" and condition.status == "False"
                and condition.reason == "Unschedulable" and condition.last_transition_time
                and time.time() - condition.last_transition_time.timestamp()
                > UNSCHEDULABLE_GRACE_S):
            return "Unschedulable", condition.message or ""
    return None
