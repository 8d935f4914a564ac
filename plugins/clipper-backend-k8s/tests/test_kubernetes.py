"""The Kubernetes backend on the real local cluster: the seeds' quickstart, the original's
admin scenarios (spec §11.2), scaling, rollouts and a killed model pod, on one shared cluster."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from clipper_backend_k8s.backend import KubernetesContainerManager as PluginManager

from clipper_admin import ClipperConnection, ClipperException, KubernetesContainerManager
from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.api import CLIPPER_DOCKER_LABEL, CLIPPER_MODEL_CONTAINER_LABEL
from clipper_core.backends.docker import docker_client
from clipper_core.deployers.api import write_bundle
from clipper_core.deployers.python import PythonDeployer
from clipper_core.testing.docker import local_registry
from clipper_core.testing.load import QueryLoad

pytestmark = pytest.mark.k8s


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def hostname(xs):
    return [socket.gethostname() for _ in xs]


def model_pods(conn: ClipperConnection, label: str | None = None) -> list[Any]:
    """Running, not terminating, model pods of the cluster (of one ``<name>_<version>``)."""
    selector = f"{CLIPPER_DOCKER_LABEL}={conn.cm.cluster_name},"
    selector += f"{CLIPPER_MODEL_CONTAINER_LABEL}={label}" if label else CLIPPER_MODEL_CONTAINER_LABEL
    pods = conn.cm.core.list_namespaced_pod(conn.cm.namespace, label_selector=selector).items
    return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


@pytest.fixture(scope="module")
def closure_image(shared_conn: ClipperConnection) -> str:
    return shared_conn.cm.default_base_image("python")


@pytest.fixture
def model_dir(tmp_path: Path) -> str:
    write_bundle(PythonDeployer(), tmp_path / "model", "doubles", feature_sum)
    return str(tmp_path / "model")


def test_clipper_admin_resolves_to_the_plugin(kube: str) -> None:
    assert isinstance(KubernetesContainerManager(kubeconfig=kube), PluginManager)


def test_a_pid_file_naming_another_process_does_not_count_as_running(kh: Any, kube: str) -> None:
    """kube-local.sh trusts a component's pid file only while that pid runs the component's
    binary: once pids wrap, a stale file can name another process, and `start` skipped the kubelet."""
    pid_file = Path(kube).parent / "kubelet.pid"
    kubelets_pid = pid_file.read_text()
    with subprocess.Popen(["sleep", "60"]) as stranger:
        try:
            pid_file.write_text(f"{stranger.pid}\n")
            assert kh.kube_local("status").returncode == 1
        finally:
            pid_file.write_text(kubelets_pid)
            stranger.kill()
    assert kh.kube_local("status").returncode == 0


def test_a_session_letting_go_leaves_the_cluster_to_the_others_holding_it(
        kh: Any, kube: str) -> None:
    """Test sessions side by side share the local cluster (`kube-local.sh use PID`): while this
    one holds it, another's `release` leaves it running, and a holder that died is forgotten."""
    holders = Path(kube).parent / "holders"
    with subprocess.Popen(["sleep", "60"]) as other, subprocess.Popen(["sleep", "60"]) as dead:
        for holder in (other, dead):
            assert kh.kube_local("use", str(holder.pid)).returncode == 0
        assert {p.name for p in holders.iterdir()} >= {str(other.pid), str(dead.pid)}
        dead.kill()
        dead.wait()
        assert kh.kube_local("release", str(other.pid)).returncode == 0
        other.kill()
    assert kh.kube_local("status").returncode == 0
    left = {p.name for p in holders.iterdir()}
    assert str(os.getpid()) in left
    assert not left & {str(other.pid), str(dead.pid)}


@pytest.mark.parametrize(("service_types", "message"), [
    (["NodePort"], "service_types must be 'dict' type"),
    ({"redis": "NodePort", "frontend": "NodePort"}, "service_types has unknown keys"),
    ({"query": "Ingress"}, "service_types has unknown values"),
    ({"query": "ExternalName"}, "Clipper does not support 'ExternalName' service"),
])
def test_service_types_are_checked(service_types: Any, message: str) -> None:
    with pytest.raises(ClipperException, match=message):
        KubernetesContainerManager(service_types=service_types)


def test_missing_namespace_is_an_error(kh: Any, kube: str) -> None:
    manager = kh.new_manager(kube, "k8s-nons", namespace=f"missing-{uuid.uuid4().hex[:6]}")
    with pytest.raises(ClipperException, match="Namespace does not exist"):
        ClipperConnection(manager).start_clipper()


def test_quickstart_answers_6_6(kh: Any, shared_conn: ClipperConnection) -> None:
    conn = shared_conn
    conn.register_application(name="hello-world", input_type="doubles",
                              default_output="-1.0", slo_micros=100000)
    python_deployer.deploy_python_closure(conn, name="sum-model", version=1,
                                          input_type="doubles", func=feature_sum)
    conn.link_model_to_app(app_name="hello-world", model_name="sum-model")
    answer = kh.wait_for_prediction(conn.get_query_addr(), "hello-world", [1.1, 2.2, 3.3])
    assert answer["output"] == 6.6
    (pod,) = model_pods(conn, "sum-model_1")
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["CLIPPER_MODEL_NAME"] == "sum-model"
    assert env["CLIPPER_INPUT_TYPE"] == "doubles"
    frontend_rpc = conn.cm.core.read_namespaced_service(
        f"query-frontend-0-at-{conn.cm.cluster_name}", "default")
    assert env["CLIPPER_IP"] == frontend_rpc.spec.cluster_ip
    (state,) = conn.cm.replica_states("sum-model", "1")
    assert (state.replica, state.failed, state.detail) == (
        f"pod {pod.metadata.name}", False, "Running, ready")


def test_start_clipper_again_converges(shared_conn: ClipperConnection) -> None:
    shared_conn.start_clipper()
    assert shared_conn.get_app_info("hello-world") is not None  # Redis kept its state


def test_connect_finds_the_running_cluster(shared_conn: ClipperConnection, kube: str) -> None:
    manager = KubernetesContainerManager(cluster_name=shared_conn.cm.cluster_name,
                                         kubeconfig=kube, node_address="127.0.0.1")
    conn = ClipperConnection(manager)
    conn.connect()
    assert conn.get_query_addr() == shared_conn.get_query_addr()
    assert "hello-world" in conn.get_all_apps()


def test_unlinked_app_returns_default(kh: Any, shared_conn: ClipperConnection) -> None:
    shared_conn.register_application("k8s-app4", "doubles", "DEFAULT", 3_000_000)
    answer = kh.predict(shared_conn.get_query_addr(), "k8s-app4", [99.3, 18.9, 67.2, 34.2])
    assert answer["output"] == "DEFAULT"
    assert answer["default"] is True


def test_build_and_deploy_from_directory(kh: Any, shared_conn: ClipperConnection, model_dir: str,
                                         closure_image: str) -> None:
    conn = shared_conn
    conn.register_application("bd-app", "doubles", "DEFAULT", 3_000_000)
    conn.build_and_deploy_model("bd-model", "v1", "doubles", model_dir, closure_image)
    assert isinstance(conn.get_model_info("bd-model", "v1"), dict)
    (pod,) = model_pods(conn, "bd-model_v1")
    assert pod.spec.containers[0].image == f"{conn.cm.cluster_name}-bd-model:v1"
    conn.link_model_to_app("bd-app", "bd-model")
    assert kh.wait_for_prediction(conn.get_query_addr(), "bd-app", [1.5, 2.0])["output"] == 3.5


def test_stop_models(kh: Any, shared_conn: ClipperConnection, model_dir: str,
                     closure_image: str) -> None:
    """Stopped replicas are gone, and went gracefully: each said goodbye to the frontend
    before its stopped pod was removed."""
    conn = shared_conn
    image = conn.build_model("stop-model", "1", model_dir, closure_image)
    for name in ("jimmypage", "robertplant"):
        for version in ("i", "ii"):
            conn.deploy_model(name, version, "doubles", image)
    assert len(model_pods(conn, "jimmypage_i") + model_pods(conn, "jimmypage_ii")
               + model_pods(conn, "robertplant_i") + model_pods(conn, "robertplant_ii")) == 4
    conn.stop_models(["jimmypage"])
    assert not model_pods(conn, "jimmypage_i") + model_pods(conn, "jimmypage_ii")
    conn.stop_versioned_models({"robertplant": ["ii"]})
    assert len(model_pods(conn, "robertplant_i")) == 1
    assert not model_pods(conn, "robertplant_ii")
    assert {(m["model_name"], m["model_version"]) for m in conn.get_all_models(verbose=True)
            if m["model_name"] in ("jimmypage", "robertplant")} == {("robertplant", "i")}
    log = kh.frontend_log(conn)
    for version in ("jimmypage:i", "jimmypage:ii", "robertplant:ii"):
        assert re.search(rf"replica {version}#\S+ dropped: said goodbye", log), version
    assert not re.search(r"replica robertplant:i#\S+ dropped", log)


def test_remove_inactive_versions(shared_conn: ClipperConnection, model_dir: str,
                                  closure_image: str) -> None:
    conn = shared_conn
    conn.build_and_deploy_model("inactive", "1", "doubles", model_dir, closure_image,
                                num_replicas=2)
    conn.build_and_deploy_model("inactive", "2", "doubles", model_dir, closure_image,
                                num_replicas=1)
    assert len(model_pods(conn, "inactive_1")) == 2
    conn.stop_inactive_model_versions(["inactive"])
    assert not model_pods(conn, "inactive_1")
    assert len(model_pods(conn, "inactive_2")) == 1
    assert [m["model_version"] for m in conn.get_all_models(verbose=True)
            if m["model_name"] == "inactive"] == ["2"]


def test_three_replicas_all_serve(kh: Any, shared_conn: ClipperConnection,
                                  tmp_path: Path) -> None:
    """Three replicas all answer; scaled back to one, the two stopped pods are left out at
    once, also from the logs (their containers may already be removed)."""
    conn = shared_conn
    conn.register_application("host-app", "doubles", "DEFAULT", 3_000_000)
    python_deployer.deploy_python_closure(conn, "host-model", 1, "doubles", hostname)
    conn.link_model_to_app("host-app", "host-model")
    conn.set_num_replicas("host-model", 3)
    assert conn.get_num_replicas("host-model") == 3
    pods = {p.metadata.name for p in model_pods(conn, "host-model_1")}
    assert len(pods) == 3
    addr = conn.get_query_addr()
    kh.wait_for_prediction(addr, "host-app", [0.0])
    with QueryLoad([addr], "host-app", threads=6) as load:
        deadline = time.monotonic() + 60
        while {a["output"] for a in load.answers} < pods and time.monotonic() < deadline:
            time.sleep(0.5)
    assert not load.failures
    assert {a["output"] for a in load.answers if not a["default"]} == pods
    conn.set_num_replicas("host-model", 1)
    (kept,) = [p.metadata.name for p in model_pods(conn, "host-model_1")]
    logs = [Path(p).name for p in conn.get_clipper_logs(str(tmp_path / "logs"))]
    assert [n for n in logs if n.startswith("host-model-")] == [f"{kept}_model.log"]


def test_rollout_to_v2_and_back_drops_no_query(kh: Any, shared_conn: ClipperConnection) -> None:
    conn = shared_conn
    conn.register_application("roll-app", "doubles", "DEFAULT", 10_000_000)
    python_deployer.deploy_python_closure(conn, "roll", 1, "doubles", lambda xs: ["1"] * len(xs))
    conn.link_model_to_app("roll-app", "roll")
    addr = conn.get_query_addr()
    kh.wait_for_prediction(addr, "roll-app", [0.0])
    with QueryLoad([addr], "roll-app") as load:
        load.wait_for(20)
        python_deployer.deploy_python_closure(conn, "roll", 2, "doubles",
                                              lambda xs: ["2"] * len(xs))
        deadline = time.monotonic() + 60
        while load.answers[-1]["output"] != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        load.wait_for(20)
        conn.set_model_version("roll", "1")
        deadline = time.monotonic() + 60
        while load.answers[-1]["output"] != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        load.wait_for(20)
    assert not load.failures
    assert load.connection_errors == 0
    assert [a for a in load.answers if a["default"]] == []
    outputs = [a["output"] for a in load.answers]
    assert outputs[-1] == 1 and 2 in outputs


def test_killed_model_pod_is_replaced_and_no_query_is_lost(shared_conn: ClipperConnection
                                                          ) -> None:
    conn = shared_conn
    conn.set_num_replicas("sum-model", 2)
    addr = conn.get_query_addr()
    victim, _ = model_pods(conn, "sum-model_1")
    with QueryLoad([addr], "hello-world") as load:
        load.wait_for(20)
        conn.cm.core.delete_namespaced_pod(victim.metadata.name, "default",
                                           grace_period_seconds=0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = {p.metadata.name for p in model_pods(conn, "sum-model_1")}
            if len(pods) == 2 and victim.metadata.name not in pods and all(
                    any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
                    for p in model_pods(conn, "sum-model_1")):
                break
            time.sleep(0.5)
        load.wait_for(20)
    assert victim.metadata.name not in pods and len(pods) == 2, "the pod was not replaced"
    assert not load.failures
    assert load.connection_errors == 0
    assert all("output" in a for a in load.answers)
    assert sum(not a["default"] for a in load.answers) > len(load.answers) // 2


def test_query_specific_version(shared_conn: ClipperConnection) -> None:
    addr = shared_conn.get_query_addr()
    for version, output in (("1", 1), ("2", 2)):
        response = requests.post(f"http://{addr}/roll-app/predict",
                                 json={"input": [1.0], "version": version}, timeout=10)
        assert response.json()["output"] == output
    response = requests.post(f"http://{addr}/roll-app/predict",
                             json={"input": [1.0], "version": "skjfhkdjshfjksdhkjf"}, timeout=10)
    assert response.status_code != 200
    assert response.json()["cause"] == ("Requested version: skjfhkdjshfjksdhkjf does not exist "
                                        "for model: roll")


def test_get_logs_writes_every_container(shared_conn: ClipperConnection, tmp_path: Path) -> None:
    paths = shared_conn.get_clipper_logs(str(tmp_path / "logs"))
    names = [Path(p).name for p in paths]
    assert any(n.startswith(f"query-frontend-0-at-{shared_conn.cm.cluster_name}") for n in names)
    assert any(n.startswith("sum-model-1-deployment-at-0-at-") for n in names)
    assert all(Path(p).is_file() for p in paths)


def test_failed_rollout_names_the_pod_and_its_events(shared_conn: ClipperConnection) -> None:
    with pytest.raises(ClipperException) as info:
        shared_conn.deploy_model("ghost", "1", "doubles", "clipper/does-not-exist:1")
    text = str(info.value)
    assert "ghost-1-deployment-at-0-at-" in text
    assert "ErrImagePull" in text or "ImagePullBackOff" in text
    assert "Its last events" in text
    shared_conn.cm.stop_models({"ghost": ["1"]})


def test_replica_states_report_a_crash_loop_with_its_log(shared_conn: ClipperConnection,
                                                         closure_image: str) -> None:
    # The closure image alone has no bundle in /model: its runtime exits at once.
    with pytest.raises(ClipperException, match="CrashLoopBackOff"):
        shared_conn.deploy_model("no-bundle", "1", "doubles", closure_image)
    (state,) = shared_conn.cm.replica_states("no-bundle", "1")
    assert state.replica.startswith("pod no-bundle-1-deployment-at-0-at-")
    assert state.failed
    assert "last exit code 2" in state.detail and "restarted" in state.detail
    assert "/model is not a model bundle" in state.log_tail
    shared_conn.cm.stop_models({"no-bundle": ["1"]})
    assert shared_conn.cm.replica_states("no-bundle", "1") == []


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    with local_registry(tmp_path) as address:
        yield address


def test_model_image_is_pushed_to_the_registry(shared_conn: ClipperConnection, model_dir: str,
                                               closure_image: str, registry: str) -> None:
    conn = shared_conn
    repository = f"{conn.cm.cluster_name}-pushed"
    image = conn.build_model("pushed", "1", model_dir, closure_image,
                             container_registry=registry)
    assert image == f"{registry}/{repository}:1"
    tags = requests.get(f"http://{registry}/v2/{repository}/tags/list", timeout=10).json()
    assert tags["tags"] == ["1"]
    conn.deploy_model("pushed", "1", "doubles", image)
    (pod,) = model_pods(conn, "pushed_1")
    assert pod.spec.containers[0].image == image
    conn.stop_versioned_models({"pushed": ["1"]})
    docker_client().images.remove(image)
