"""Fixtures of the Kubernetes backend tests: the local cluster of scripts/kube-local.sh.

``kube`` (session) starts the Docker engine, builds the registry-free base image and holds
the local cluster (``kube-local.sh use``: started if needed, its binaries built once and cached);
at the end it lets go (``release``), which stops the cluster when no other test session holds it
and a session started it. ``start_cluster`` starts Clipper clusters on it; each is stopped
after the session.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker.errors
import pytest
import requests
from clipper_backend_k8s import manifests

from clipper_admin import ClipperConnection, KubernetesContainerManager
from clipper_core.backends.docker import docker_client
from clipper_core.testing.docker import base_image, prepare_docker, remove_model_images, scripts_dir

#: Minutes the first `kube-local.sh start` may take (it compiles Kubernetes when not cached).
KUBE_START_TIMEOUT_S = 1800


@pytest.fixture(scope="session")
def kube() -> Iterator[str]:
    """The path of the local cluster's kubeconfig; the cluster runs while the session lasts."""
    prepare_docker()
    started = Helpers.kube_local("use", str(os.getpid()))
    assert started.returncode == 0, f"kube-local.sh use failed:\n{started.stdout}"
    kubeconfig = started.stdout.strip().splitlines()[-1].removeprefix("export KUBECONFIG=")
    try:
        with base_image():
            yield kubeconfig
    finally:
        Helpers.kube_local("release", str(os.getpid()))


@pytest.fixture(scope="session")
def start_cluster(kube: str) -> Iterator[Callable[..., ClipperConnection]]:
    """``start(prefix, num_frontend_replicas=1, **manager_kwargs)``: a started cluster."""
    started: list[ClipperConnection] = []

    def start(prefix: str, num_frontend_replicas: int = 1, **kwargs: Any) -> ClipperConnection:
        conn = ClipperConnection(Helpers.new_manager(kube, prefix, **kwargs))
        started.append(conn)
        conn.start_clipper(num_frontend_replicas=num_frontend_replicas)
        return conn

    yield start
    for conn in started:
        conn.stop_all(graceful=False)
        Helpers.remove_model_images(conn.cm)


@pytest.fixture(scope="session")
def shared_conn(start_cluster: Callable[..., ClipperConnection]) -> ClipperConnection:
    """One cluster (one query frontend, namespace default) shared by most scenarios."""
    return start_cluster("k8s-shared")


class Helpers:
    """Helpers the tests use through the ``kh`` fixture (conftest is not importable)."""

    @staticmethod
    def kube_local(*command: str) -> subprocess.CompletedProcess[str]:
        """Run ``scripts/kube-local.sh <command...>``; its log lines go to the test's stderr."""
        return subprocess.run(["bash", str(scripts_dir() / "kube-local.sh"), *command], text=True,
                              stdout=subprocess.PIPE, timeout=KUBE_START_TIMEOUT_S, check=False)

    @staticmethod
    def frontend_log(conn: ClipperConnection) -> str:
        """The log of the cluster's one query frontend pod."""
        cm = conn.cm
        (pod,) = cm.core.list_namespaced_pod(cm.namespace, label_selector=manifests.selector(
            manifests.labels(cm.cluster_name, "query-frontend"))).items
        return str(cm.core.read_namespaced_pod_log(pod.metadata.name, cm.namespace))

    @staticmethod
    def new_manager(kubeconfig: str, prefix: str, **kwargs: Any) -> KubernetesContainerManager:
        """A manager of a fresh cluster ``<prefix>-<6 hex>`` reached at 127.0.0.1's NodePorts."""
        return KubernetesContainerManager(cluster_name=f"{prefix}-{uuid.uuid4().hex[:6]}",
                                          kubeconfig=kubeconfig, node_address="127.0.0.1", **kwargs)


    @staticmethod
    def remove_model_images(manager: KubernetesContainerManager, timeout: float = 30) -> None:
        """Remove the cluster's model images, once the kubelet's exited containers of its
        (deleted) pods, which still hold them, are gone: removed here or by the kubelet."""
        client = docker_client()

        def containers() -> list[Any]:
            in_namespace = client.containers.list(ignore_removed=True, all=True, filters={
                "label": f"io.kubernetes.pod.namespace={manager.namespace}"})
            return [c for c in in_namespace
                    if manager.cluster_name in c.labels.get("io.kubernetes.pod.name", "")]

        deadline = time.monotonic() + timeout
        while left := containers():
            if time.monotonic() > deadline:
                raise AssertionError(f"containers of {manager.cluster_name}'s pods are still "
                                     f"there after {timeout:g} s: {[c.name for c in left]}")
            for container in left:
                try:
                    container.remove(force=True)
                except docker.errors.APIError as exc:
                    if exc.status_code not in (404, 409):  # the kubelet removed it, or is
                        raise
            time.sleep(0.2)
        remove_model_images(manager.cluster_name)

    @staticmethod
    def predict(addr: str, app: str, x: Any, timeout: float = 10) -> dict[str, Any]:
        response = requests.post(f"http://{addr}/{app}/predict", json={"input": x}, timeout=timeout)
        assert response.status_code == 200, f"{app}: {response.status_code} {response.text}"
        return response.json()


    @staticmethod
    def wait_for_prediction(addr: str, app: str, x: Any, timeout: float = 300) -> dict[str, Any]:
        """POST until the answer is not the default output; fail with the last answer."""
        deadline = time.monotonic() + timeout
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                answer = Helpers.predict(addr, app, x)
            except (requests.RequestException, AssertionError) as exc:
                answer = {"error": str(exc)}
            if answer.get("default") is False:
                return answer
            time.sleep(0.5)
        raise AssertionError(f"{app} gave only default outputs for {timeout:g}s (last: {answer})")


@pytest.fixture(scope="session")
def kh() -> type[Helpers]:
    return Helpers
