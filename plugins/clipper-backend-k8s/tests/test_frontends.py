"""Two query frontends in a namespace the manager creates: queries spread over both, a killed
frontend pod loses no query and is replaced, and ``stop_all`` leaves the namespace empty."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from clipper_admin import ClipperConnection
from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.api import CLIPPER_DOCKER_LABEL
from clipper_core.testing.load import QueryLoad

pytestmark = pytest.mark.k8s


def hostname(xs):
    return [socket.gethostname() for _ in xs]


def frontend_of(pod_name: str) -> str:
    """``0`` for a pod of ``host-1-deployment-at-0-at-<cluster>-...``."""
    return pod_name.split("-deployment-at-", 1)[1].split("-", 1)[0]


@pytest.fixture(scope="module")
def conn(kh: Any, kube: str) -> Iterator[ClipperConnection]:
    namespace = f"clipper-ns-{uuid.uuid4().hex[:6]}"
    manager = kh.new_manager(kube, "k8s-fe", namespace=namespace,
                          create_namespace_if_not_exists=True)
    conn = ClipperConnection(manager)
    try:
        conn.start_clipper(num_frontend_replicas=2)
        conn.register_application("host-app", "doubles", "DEFAULT", 3_000_000)
        python_deployer.deploy_python_closure(conn, "host", 1, "doubles", hostname)
        conn.link_model_to_app("host-app", "host")
        yield conn
    finally:
        conn.stop_all(graceful=False)
        kh.remove_model_images(manager)
        manager.core.delete_namespace(namespace)


def frontend_pods(conn: ClipperConnection) -> list[Any]:
    pods = conn.cm.core.list_namespaced_pod(
        conn.cm.namespace, label_selector=f"{CLIPPER_DOCKER_LABEL}={conn.cm.cluster_name},"
        "ai.clipper.name=query-frontend").items
    return [p for p in pods if not p.metadata.deletion_timestamp]


def test_two_frontends_serve(kh: Any, conn: ClipperConnection) -> None:
    assert conn.cm.num_frontend_replicas == 2
    assert len(frontend_pods(conn)) == 2
    assert conn.get_num_replicas("host") == 1
    addr = conn.get_query_addr()
    kh.wait_for_prediction(addr, "host-app", [0.0])
    with QueryLoad([addr], "host-app") as load:
        deadline = time.monotonic() + 60
        while len({frontend_of(a["output"]) for a in load.answers if not a["default"]}) < 2:
            assert time.monotonic() < deadline, "queries reached only one frontend"
            time.sleep(0.2)
    assert not load.failures
    # Each frontend sees a change made through the management API without a restart.
    conn.set_num_replicas("host", 2)
    assert conn.get_num_replicas("host") == 2
    deadline = time.monotonic() + 60
    while len(conn.get_all_model_replicas()) != 4:  # 2 per frontend, once connected
        assert time.monotonic() < deadline, conn.get_all_model_replicas()
        time.sleep(0.5)


def test_killed_frontend_pod_is_replaced_and_no_query_is_lost(conn: ClipperConnection) -> None:
    addr = conn.get_query_addr()
    victim = frontend_pods(conn)[0]
    with QueryLoad([addr], "host-app") as load:
        load.wait_for(20)
        conn.cm.core.delete_namespaced_pod(victim.metadata.name, conn.cm.namespace,
                                           grace_period_seconds=0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = frontend_pods(conn)
            if len(pods) == 2 and victim.metadata.name not in {p.metadata.name for p in pods} \
                    and all(any(c.type == "Ready" and c.status == "True"
                                for c in p.status.conditions or []) for p in pods):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the killed frontend pod was not replaced")
        load.wait_for(40)
        replaced_at = len(load.answers)
        deadline = time.monotonic() + 90
        while len({frontend_of(a["output"]) for a in load.answers[replaced_at:]
                   if not a["default"]}) < 2:
            assert time.monotonic() < deadline, "the new frontend does not serve"
            time.sleep(0.2)
    assert not load.failures, load.failures[:5]
    assert all("output" in a for a in load.answers)
    assert conn.get_app_info("host-app") is not None


def test_stop_all_leaves_the_namespace_empty(conn: ClipperConnection) -> None:
    conn.stop_all(graceful=False)
    core, apps, ns = conn.cm.core, conn.cm.apps, conn.cm.namespace
    assert core.list_namespaced_pod(ns).items == []
    assert apps.list_namespaced_deployment(ns).items == []
    assert apps.list_namespaced_replica_set(ns).items == []
    assert core.list_namespaced_service(ns).items == []
    selector = f"{CLIPPER_DOCKER_LABEL}={conn.cm.cluster_name}"
    assert core.list_namespaced_secret(ns, label_selector=selector).items == []
