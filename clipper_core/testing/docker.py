"""Pytest fixtures for testing a plugin under ``DockerContainerManager``.

Name this module in ``pytest_plugins`` of the test module and use its fixtures (import nothing
else from it there: pytest can only rewrite the asserts of a plugin it imports first)::

    pytest_plugins = ["clipper_core.testing.docker"]
    pytestmark = pytest.mark.docker

    def test_in_docker(docker_cluster, model, func):
        conn = docker_cluster.conn
        conn.register_application("app", "floats", "-1", 10_000_000)
        deploy_my_model(conn, "app", 1, "floats", func, model)
        conn.link_model_to_app("app", "app")
        singles, batch = docker_cluster.single_and_batch_outputs("app", [[1.0], [2.0]])

``docker_cluster`` (module scope) runs ``scripts/ensure-docker.sh`` (starts dockerd if needed)
and ``scripts/build-base-image.sh`` (the registry-free base image) of the clipper-core
checkout, sets ``CLIPPER_BASE_IMAGE=clipper/base:bookworm`` while it lives, starts a cluster on
free host ports, and afterwards removes its containers and the model images it built.
Outside pytest, use :func:`start_docker_cluster`.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

import clipper_core
from clipper_core.backends.api import CLIPPER_DOCKER_LABEL, CLIPPER_MODEL_CONTAINER_LABEL
from clipper_core.backends.docker import DockerContainerManager, find_unbound_port
from clipper_core.backends.docker_images import docker_client
from clipper_core.exceptions import ClipperError

if TYPE_CHECKING:
    from clipper_admin import ClipperConnection

#: The image ``scripts/build-base-image.sh`` builds without a registry.
BASE_IMAGE = "clipper/base:bookworm"
#: Seconds each preparation script may take (the first base image build debootstraps).
SCRIPT_TIMEOUT_S = 900


def scripts_dir() -> Path:
    """``scripts/`` of the clipper-core checkout this package is installed from (editable)."""
    for parent in Path(clipper_core.__file__).resolve().parents:
        if (parent / "scripts" / "ensure-docker.sh").is_file():
            return parent / "scripts"
    msg = (f"No scripts/ensure-docker.sh above {clipper_core.__file__}: the Docker test "
           "fixtures need clipper-core installed from its checkout "
           "(pip install -e /path/to/clipper). Install it that way and run the tests again")
    raise ClipperError(msg)


def prepare_docker() -> None:
    """Start dockerd if needed and build the local base image (both no-ops when done)."""
    for script in ("ensure-docker.sh", "build-base-image.sh"):
        subprocess.run(["bash", str(scripts_dir() / script)], check=True,
                       timeout=SCRIPT_TIMEOUT_S)


@contextmanager
def base_image(image: str = BASE_IMAGE) -> Iterator[str]:
    """Set ``CLIPPER_BASE_IMAGE`` to ``image`` inside the block; restore it afterwards."""
    previous = os.environ.get("CLIPPER_BASE_IMAGE")
    os.environ["CLIPPER_BASE_IMAGE"] = image
    try:
        yield image
    finally:
        if previous is None:
            os.environ.pop("CLIPPER_BASE_IMAGE", None)
        else:
            os.environ["CLIPPER_BASE_IMAGE"] = previous


def new_manager(prefix: str, **kwargs: Any) -> DockerContainerManager:
    """A manager of a fresh cluster ``<prefix>-<6 hex>`` whose host ports are all free
    (``kwargs``: more constructor arguments)."""
    return DockerContainerManager(
        cluster_name=f"{prefix}-{uuid.uuid4().hex[:6]}",
        clipper_query_port=find_unbound_port(0), clipper_management_port=find_unbound_port(0),
        clipper_rpc_port=find_unbound_port(0), redis_port=find_unbound_port(0), **kwargs)


def remove_model_images(cluster_name: str) -> None:
    """Remove the model images ``<cluster>-<model>:<version>`` a cluster built."""
    client = docker_client()
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{cluster_name}-"):
                client.images.remove(tag)


@contextmanager
def local_registry(directory: Path) -> Iterator[str]:
    """Debian's ``docker-registry`` on a free loopback port, storing its images in
    ``directory``, for the block; yields its address ``localhost:<port>``."""
    port = find_unbound_port(0)
    config = directory / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {directory}/r\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


class DockerCluster:
    """A running Docker cluster: its ``ClipperConnection`` and queries over REST."""

    def __init__(self, conn: ClipperConnection) -> None:
        self.conn = conn

    def logs(self, tail: int = 40) -> str:
        """The last ``tail`` log lines of every model container of the cluster."""
        containers = docker_client().containers.list(all=True, ignore_removed=True, filters={
            "label": [f"{CLIPPER_DOCKER_LABEL}={self.conn.cm.cluster_name}",
                      CLIPPER_MODEL_CONTAINER_LABEL]})
        return "\n".join(
            f"== {c.name} ({c.status})\n{c.logs(tail=tail).decode(errors='replace')}"
            for c in containers) or "(no model containers)"

    def predict(self, app: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``/<app>/predict``; the JSON answer (HTTP 200 only)."""
        response = requests.post(f"http://{self.conn.get_query_addr()}/{app}/predict",
                                 json=body, timeout=30)
        assert response.status_code == 200, f"{app}: {response.status_code} {response.text}"
        return response.json()

    def wait_for_prediction(self, app: str, body: dict[str, Any],
                            timeout: float = 300.0) -> dict[str, Any]:
        """POST ``body`` until no output of the answer is the default one; return the answer.

        ``body`` is ``{"input": x}`` or ``{"input_batch": [...]}``. A replica starts once its
        image is built and its framework imported, so the deadline is generous. On timeout,
        fails with the last answer and the replicas' logs.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.predict(app, body)
            except (requests.RequestException, AssertionError) as exc:
                answer = {"default": True, "error": str(exc)}
            if is_prediction(answer):
                return answer
            if time.monotonic() > deadline:
                msg = (f"{app} answered only with default outputs for {timeout:g} s "
                       f"(last: {answer}). Replica logs:\n{self.logs()}")
                raise AssertionError(msg)
            time.sleep(1)

    def single_and_batch_outputs(self, app: str, inputs: list[Any],
                                 timeout: float = 300.0) -> tuple[list[Any], list[Any]]:
        """Outputs of each input queried alone, and of all of them in one ``input_batch``.

        Waits (up to ``timeout``) for the first prediction, then fails on any default output.
        ``inputs`` are JSON values (see :func:`clipper_core.testing.conformance.rest_input`).
        """
        answers = [self.wait_for_prediction(app, {"input": inputs[0]}, timeout)]
        answers += [self.predict(app, {"input": x}) for x in inputs[1:]]
        batch = self.predict(app, {"input_batch": inputs})["batch_predictions"]
        for answer in [*answers, *batch]:
            assert is_prediction(answer), f"{app}: default output {answer}"
        return [a["output"] for a in answers], [p["output"] for p in batch]


def is_prediction(answer: dict[str, Any]) -> bool:
    """Whether ``answer`` (single or ``input_batch``) holds no default output."""
    if "batch_predictions" in answer:
        return not any(p.get("default") for p in answer["batch_predictions"])
    return "output" in answer and not answer.get("default")


@contextmanager
def start_docker_cluster(prefix: str = "plugin-test") -> Iterator[DockerCluster]:
    """A started cluster on free host ports; stopped, and its model images removed, after."""
    from clipper_admin import ClipperConnection

    prepare_docker()
    with base_image():
        conn = ClipperConnection(new_manager(prefix))
        try:
            conn.start_clipper()
            yield DockerCluster(conn)
        finally:
            conn.stop_all(graceful=False)
            remove_model_images(conn.cm.cluster_name)


@pytest.fixture(scope="module")
def docker_cluster() -> Iterator[DockerCluster]:
    """A Docker cluster shared by the tests of one module (:class:`DockerCluster`)."""
    with start_docker_cluster() as cluster:
        yield cluster

