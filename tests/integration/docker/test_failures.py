"""Containers that die come back: a killed model replica, a killed query frontend."""

from __future__ import annotations

import time
from typing import Any

import pytest

from clipper_admin import ClipperConnection, ClipperException
from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.api import CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL
from clipper_core.backends.docker_supervisor import CLIPPER_SUPERVISOR_LABEL

pytestmark = pytest.mark.docker

QUERY = {"input": [1.0, 2.0, 3.5]}
DOCKER_NETWORK = "clipper_network"


def _wait_restarted(container: Any, started_at: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "running" and container.attrs["State"]["StartedAt"] != started_at:
            return
        time.sleep(0.5)
    raise AssertionError(f"{container.name} was not restarted: {container.status}")


@pytest.fixture(scope="module")
def endpoint(shared_conn: ClipperConnection, dh: Any) -> str:
    python_deployer.create_endpoint(shared_conn, "kill-app", "doubles",
                                    lambda xs: [sum(x) for x in xs], default_output="-1.0",
                                    slo_micros=1_000_000)
    assert dh.wait_for_prediction(shared_conn, "kill-app", QUERY)["output"] == 6.5
    return "kill-app"


def test_killed_model_container_is_replaced(shared_conn: ClipperConnection, endpoint: str,
                                            dh: Any) -> None:
    (container,) = [c for c in dh.model_containers(shared_conn)
                    if c.labels["ai.clipper.model_container.label"] == "kill-app_1"]
    started_at = container.attrs["State"]["StartedAt"]
    container.kill()
    # Queries keep being answered (the default output at worst) while the replica is gone.
    for _ in range(6):
        response = dh.predict(shared_conn, endpoint, QUERY)
        assert response.status_code == 200
        assert response.json()["output"] in (6.5, -1.0)
        time.sleep(0.5)
    _wait_restarted(container, started_at)
    answer = dh.wait_for_prediction(shared_conn, endpoint, QUERY)
    assert answer == {"query_id": answer["query_id"], "output": 6.5, "default": False}
    assert shared_conn.get_num_replicas("kill-app", 1) == 1


def test_killed_query_frontend_comes_back_with_its_state(shared_conn: ClipperConnection,
                                                         endpoint: str, dh: Any) -> None:
    (frontend,) = dh.cluster_containers(shared_conn, CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL)
    started_at = frontend.attrs["State"]["StartedAt"]
    frontend.kill()
    _wait_restarted(frontend, started_at)
    assert "kill-app" in shared_conn.get_all_apps()
    assert shared_conn.get_linked_models("kill-app") == ["kill-app"]
    answer = dh.wait_for_prediction(shared_conn, endpoint, QUERY, timeout=90)
    assert answer["output"] == 6.5
    assert answer["default"] is False


def _address(container: Any) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][DOCKER_NETWORK]["IPAddress"]


def test_query_frontend_back_at_another_address_gets_its_replicas_back(
        shared_conn: ClipperConnection, endpoint: str, dh: Any, docker_engine: Any) -> None:
    (frontend,) = dh.cluster_containers(shared_conn, CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL)
    (supervisor,) = dh.cluster_containers(shared_conn, CLIPPER_SUPERVISOR_LABEL)
    old_address = _address(frontend)
    started_at = frontend.attrs["State"]["StartedAt"]
    squatters = []
    supervisor.pause()
    try:
        frontend.kill()
        # While the frontend is down, other containers take addresses until one has its old one.
        for _ in range(60):
            squatter = docker_engine.containers.run(
                "clipper/base:bookworm", ["sleep", "600"], network=DOCKER_NETWORK, detach=True)
            squatters.append(squatter)
            if _address(squatter) == old_address:
                break
        assert _address(squatters[-1]) == old_address
    finally:
        supervisor.unpause()
    try:
        _wait_restarted(frontend, started_at)
        assert _address(frontend) != old_address
        answer = dh.wait_for_prediction(shared_conn, endpoint, QUERY, timeout=90)
        assert answer["output"] == 6.5
        assert answer["default"] is False
    finally:
        for squatter in squatters:
            squatter.remove(force=True)


def test_a_replica_that_cannot_import_fails_the_deploy_with_its_error(
        shared_conn: ClipperConnection, dh: Any, tmp_path: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The container of a model whose bundle needs a module the image lacks exits; the deploy
    raises with the container's log instead of saying "Done", and leaves nothing behind."""
    src = tmp_path / "only-here"
    src.mkdir()
    (src / "h9_docker_only_here.py").write_text("FACTOR = 2\n")
    monkeypatch.syspath_prepend(str(src))
    import h9_docker_only_here

    def predict(xs: Any) -> list[str]:
        return [str(h9_docker_only_here.FACTOR * sum(x)) for x in xs]

    started = time.monotonic()
    with pytest.raises(ClipperException) as info:
        python_deployer.deploy_python_closure(shared_conn, "cannot-import", 1, "doubles",
                                              predict)
    assert time.monotonic() - started < 120
    message = str(info.value)
    assert "Model cannot-import:1 did not start: a replica exited before it served" in message
    assert "restarted" in message and "by Docker" in message
    assert "ModuleNotFoundError: No module named 'h9_docker_only_here'" in message
    assert dh.replicas(shared_conn, "cannot-import_1") == []
    assert ("cannot-import", "1") not in dh.registered_models(shared_conn)
