"""Fixtures of the Docker backend tests: a running engine, the local base image, clusters.

The session fixture runs scripts/ensure-docker.sh (installs and starts dockerd if needed) and
scripts/build-base-image.sh (debootstraps clipper/base:bookworm once), and builds the project's
images FROM that base (CLIPPER_BASE_IMAGE), so the tests run on a machine without registries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from clipper_admin import ClipperConnection
from clipper_core.backends.api import CLIPPER_DOCKER_LABEL, CLIPPER_MODEL_CONTAINER_LABEL
from clipper_core.backends.docker import docker_client
from clipper_core.testing.docker import (
    base_image,
    is_prediction,
    new_manager,
    prepare_docker,
    remove_model_images,
)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A running Docker engine with the local base image; CLIPPER_BASE_IMAGE points at it."""
    prepare_docker()
    with base_image():
        yield docker_client()


@pytest.fixture(scope="session")
def start_cluster(docker_engine: Any) -> Iterator[Callable[[str], ClipperConnection]]:
    """Start clusters on demand; every cluster started is stopped at the end of the session."""
    started: list[ClipperConnection] = []

    def start(prefix: str) -> ClipperConnection:
        conn = ClipperConnection(new_manager(prefix))
        started.append(conn)
        conn.start_clipper()
        return conn

    yield start
    for conn in started:
        conn.stop_all(graceful=False)
        remove_model_images(conn.cm.cluster_name)


@pytest.fixture(scope="session")
def shared_conn(start_cluster: Callable[[str], ClipperConnection]) -> ClipperConnection:
    """One cluster shared by the admin scenarios (each test uses its own model names)."""
    return start_cluster("h4-shared")


class Helpers:
    """Helpers the tests use through the ``dh`` fixture (conftest is not importable)."""

    new_manager = staticmethod(new_manager)
    remove_model_images = staticmethod(remove_model_images)

    @staticmethod
    def cluster_containers(conn: ClipperConnection, *labels: str,
                           image: str | None = None) -> list[Any]:
        """Running containers of the connection's cluster with the given labels (and image)."""
        filters: dict[str, Any] = {
            "label": [f"{CLIPPER_DOCKER_LABEL}={conn.cm.cluster_name}", *labels]}
        if image:
            filters["ancestor"] = image
        return docker_client().containers.list(ignore_removed=True, filters=filters)

    @staticmethod
    def model_containers(conn: ClipperConnection) -> list[Any]:
        return Helpers.cluster_containers(conn, CLIPPER_MODEL_CONTAINER_LABEL)

    @staticmethod
    def replicas(conn: ClipperConnection, *models: str) -> list[Any]:
        """Running replica containers of ``name_version`` model labels (all models if none)."""
        return [c for c in Helpers.model_containers(conn)
                if not models or c.labels[CLIPPER_MODEL_CONTAINER_LABEL] in models]

    @staticmethod
    def registered_models(conn: ClipperConnection) -> set[tuple[str, str]]:
        return {(m["model_name"], m["model_version"]) for m in conn.get_all_models(verbose=True)}

    @staticmethod
    def predict(conn: ClipperConnection, app: str, body: dict[str, Any]) -> requests.Response:
        url = f"http://{conn.get_query_addr()}/{app}/predict"
        return requests.post(url, json=body, timeout=10)

    @staticmethod
    def wait_for_prediction(conn: ClipperConnection, app: str, body: dict[str, Any],
                            timeout: float = 60.0) -> dict[str, Any]:
        """POST until no output of the answer is the default one; return it (the last on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = Helpers.predict(conn, app, body).json()
            except requests.RequestException as exc:
                answer = {"default": True, "error": str(exc)}
            if is_prediction(answer) or time.monotonic() > deadline:
                return answer
            time.sleep(0.5)


@pytest.fixture(scope="session")
def dh() -> type[Helpers]:
    return Helpers
