"""The original's admin scenarios (spec §11.2) on a real Docker engine, on one shared cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from clipper_admin import ClipperConnection, ClipperException, DockerContainerManager
from clipper_core.backends.docker import docker_client
from clipper_core.deployers.api import write_bundle
from clipper_core.deployers.python import PythonDeployer
from clipper_core.testing.docker import local_registry

pytestmark = pytest.mark.docker


@pytest.fixture
def model_dir(tmp_path: Path) -> str:
    """A model directory: a python-closure bundle (a local function: pickled by value)."""

    def feature_sum(xs):
        return [sum(x) for x in xs]

    write_bundle(PythonDeployer(), tmp_path / "model", "doubles", feature_sum)
    return str(tmp_path / "model")


@pytest.fixture(scope="module")
def closure_image(shared_conn: ClipperConnection) -> str:
    return shared_conn.cm.default_base_image("python")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A local image registry (Debian's docker-registry) on a free port."""
    with local_registry(tmp_path) as address:
        yield address


def test_build_and_deploy_model_with_model_directory(
        shared_conn: ClipperConnection, model_dir: str, closure_image: str, dh: Any) -> None:
    conn = shared_conn
    conn.register_application("bd-app", "doubles", "DEFAULT", 3_000_000)
    conn.build_and_deploy_model("bd-model", "v1", "doubles", model_dir, closure_image)
    assert isinstance(conn.get_model_info("bd-model", "v1"), dict)
    (container,) = dh.replicas(conn, "bd-model_v1")
    assert container.image.tags == [f"{conn.cm.cluster_name}-bd-model:v1"]
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["CLIPPER_MODEL_NAME"] == "bd-model"
    assert env["CLIPPER_MODEL_VERSION"] == "v1"
    assert env["CLIPPER_INPUT_TYPE"] == "doubles"
    assert env["CLIPPER_IP"].startswith("query_frontend-")
    assert container.labels["ai.clipper.model_container.label"] == "bd-model_v1"
    conn.link_model_to_app("bd-app", "bd-model")
    answer = dh.wait_for_prediction(conn, "bd-app", {"input": [1.5, 2.0]})
    assert answer["output"] == 3.5
    assert answer["default"] is False


def test_set_num_replicas_counts_containers(
        shared_conn: ClipperConnection, model_dir: str, closure_image: str, dh: Any) -> None:
    conn = shared_conn
    conn.build_and_deploy_model("set-num-reps-model", 1, "doubles", model_dir, closure_image)
    conn.set_num_replicas("set-num-reps-model", 4)
    assert conn.get_num_replicas("set-num-reps-model") == 4
    assert len(dh.replicas(conn, "set-num-reps-model_1")) == 4
    conn.set_num_replicas("set-num-reps-model", 2)
    assert conn.get_num_replicas("set-num-reps-model") == 2
    assert len(dh.replicas(conn, "set-num-reps-model_1")) == 2
    conn.stop_models(["set-num-reps-model"])
    assert dh.replicas(conn, "set-num-reps-model_1") == []


def test_remove_inactive_containers_succeeds(
        shared_conn: ClipperConnection, model_dir: str, closure_image: str, dh: Any) -> None:
    conn = shared_conn
    name = "remove-inactive-test-model"
    label = "ai.clipper.model_container.label"

    def containers() -> list[Any]:
        return dh.replicas(conn, f"{name}_1", f"{name}_2")

    def models() -> set[tuple[str, str]]:
        return {m for m in dh.registered_models(conn) if m[0] == name}

    conn.build_and_deploy_model(name, 1, "doubles", model_dir, closure_image, num_replicas=2)
    assert len(containers()) == 2
    assert models() == {(name, "1")}
    conn.build_and_deploy_model(name, 2, "doubles", model_dir, closure_image, num_replicas=3)
    assert len(containers()) == 5
    assert models() == {(name, "1"), (name, "2")}
    conn.stop_inactive_model_versions([name])
    assert len(containers()) == 3
    assert {c.labels[label] for c in containers()} == {f"{name}_2"}
    assert models() == {(name, "2")}
    conn.stop_models([name])


def test_stop_models(shared_conn: ClipperConnection, model_dir: str, closure_image: str,
                     dh: Any) -> None:
    conn = shared_conn
    image = conn.build_model("stop-models-image", 1, model_dir, closure_image)
    others = dh.registered_models(conn) - {(n, v) for n in ("jimmypage", "robertplant")
                                           for v in ("i", "ii")}
    for name in ("jimmypage", "robertplant"):
        for version in ("i", "ii"):
            conn.deploy_model(name, version, "doubles", image)
    labels = [f"{n}_{v}" for n in ("jimmypage", "robertplant") for v in ("i", "ii")]
    assert len(dh.replicas(conn, *labels)) == 4
    assert dh.registered_models(conn) - others == {
        ("jimmypage", "i"), ("jimmypage", "ii"), ("robertplant", "i"), ("robertplant", "ii")}
    conn.stop_models(["jimmypage"])
    assert len(dh.replicas(conn, *labels)) == 2
    conn.stop_versioned_models({"robertplant": ["ii"]})
    assert [c.labels["ai.clipper.model_container.label"] for c in dh.replicas(conn, *labels)
            ] == ["robertplant_i"]
    assert dh.registered_models(conn) - others == {("robertplant", "i")}
    conn.stop_all_model_containers()
    assert dh.model_containers(conn) == []
    assert dh.registered_models(conn) == set()


def test_build_model_installs_packages_and_pushes(
        shared_conn: ClipperConnection, model_dir: str, closure_image: str,
        registry: str) -> None:
    image = shared_conn.build_model("pkg-model", "v2", model_dir, closure_image,
                                    container_registry=registry, pkgs_to_install=["six"])
    assert image == f"{registry}/{shared_conn.cm.cluster_name}-pkg-model:v2"
    client = docker_client()
    out = client.containers.run(image, ["python", "-c", "import six; print(sorted(__import__"
                                        "('os').listdir('/model')))"], remove=True)
    assert "bundle.json" in out.decode()
    catalog = requests.get(f"http://{registry}/v2/_catalog", timeout=5).json()
    assert f"{shared_conn.cm.cluster_name}-pkg-model" in catalog["repositories"]
    client.images.remove(image)


def test_failed_build_reports_the_log_tail(shared_conn: ClipperConnection, model_dir: str,
                                           docker_engine: Any) -> None:
    # Debian's own python3 refuses pip installs (PEP 668): the RUN step fails.
    with pytest.raises(ClipperException, match=r"(?s)failed\. Last lines of the build log:.*"
                                               r"externally-managed-environment"):
        shared_conn.build_model("broken-model", 1, model_dir, "clipper/base:bookworm",
                                pkgs_to_install=["six"])


def test_get_logs_creates_log_files(shared_conn: ClipperConnection, tmp_path: Path) -> None:
    paths = shared_conn.get_clipper_logs(str(tmp_path / "logs"))
    assert len(paths) >= 4  # redis, management, query frontend, supervisor
    assert all(Path(p).is_file() for p in paths)


def test_connect_reads_ports_from_labels(shared_conn: ClipperConnection) -> None:
    conn = ClipperConnection(DockerContainerManager(cluster_name=shared_conn.cm.cluster_name))
    conn.connect()
    assert conn.get_query_addr() == shared_conn.get_query_addr()
    assert conn.cm.get_admin_addr() == shared_conn.cm.get_admin_addr()
    assert conn.get_all_apps() == shared_conn.get_all_apps()


def test_starting_a_running_cluster_again_fails(shared_conn: ClipperConnection) -> None:
    manager = DockerContainerManager(cluster_name=shared_conn.cm.cluster_name)
    with pytest.raises(ClipperException, match="already running"):
        manager.start_clipper()


def test_no_query_frontend_is_refused_with_a_reason(docker_engine: Any, dh: Any) -> None:
    manager = dh.new_manager("h4-scale")
    with pytest.raises(ClipperException, match="num_frontend_replicas must be at least 1"):
        ClipperConnection(manager).start_clipper(num_frontend_replicas=0)


def test_host_network_is_refused() -> None:
    with pytest.raises(ClipperException, match="'host' Docker network"):
        DockerContainerManager(docker_network="host")
