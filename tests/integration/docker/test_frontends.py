"""Two query frontends on Docker sharing one Redis: both serve, each with its own replicas, and
killing one loses no query at the other and no registered state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from clipper_admin import ClipperConnection
from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.api import (
    CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL,
    CLIPPER_QUERY_FRONTEND_ID_LABEL,
)
from clipper_core.testing.load import QueryLoad

pytestmark = pytest.mark.docker


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


@pytest.fixture(scope="module")
def conn(docker_engine: Any, dh: Any) -> Iterator[ClipperConnection]:
    conn = ClipperConnection(dh.new_manager("two-fe"))
    try:
        conn.start_clipper(num_frontend_replicas=2)
        conn.register_application("fe-app", "doubles", "DEFAULT", 3_000_000)
        python_deployer.deploy_python_closure(conn, "fe-model", 1, "doubles", feature_sum)
        conn.link_model_to_app("fe-app", "fe-model")
        yield conn
    finally:
        conn.stop_all(graceful=False)
        dh.remove_model_images(conn.cm.cluster_name)


def test_each_frontend_serves_with_its_own_replicas(conn: ClipperConnection, dh: Any) -> None:
    addrs = conn.cm.get_query_addrs()
    assert len(addrs) == 2 and addrs[0] == conn.get_query_addr()
    frontends = dh.cluster_containers(conn, CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL)
    replicas = dh.replicas(conn, "fe-model_1")
    assert len(replicas) == 2 and conn.get_num_replicas("fe-model") == 1
    by_frontend = {c.labels[CLIPPER_QUERY_FRONTEND_ID_LABEL]: c.name for c in frontends}
    for replica in replicas:
        env = dict(e.split("=", 1) for e in replica.attrs["Config"]["Env"])
        assert env["CLIPPER_IP"] == by_frontend[replica.labels[CLIPPER_QUERY_FRONTEND_ID_LABEL]]
    for addr in addrs:
        deadline = time.monotonic() + 120
        while True:
            answer = requests.post(f"http://{addr}/fe-app/predict", json={"input": [1.0, 2.5]},
                                   timeout=10).json()
            if answer.get("default") is False or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert answer["output"] == 3.5, addr


def test_killed_frontend_loses_nothing(conn: ClipperConnection, dh: Any) -> None:
    addrs = conn.cm.get_query_addrs()
    victim = next(c for c in dh.cluster_containers(conn, CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL)
                  if c.labels[CLIPPER_QUERY_FRONTEND_ID_LABEL] == "1")
    with QueryLoad([addrs[0]], "fe-app") as survivor, \
            QueryLoad([addrs[1]], "fe-app", threads=1, retries=0) as killed:
        survivor.wait_for(20)
        victim.kill()
        killed_at = len(killed.answers)
        survivor.wait_for(40)
        deadline = time.monotonic() + 90
        while not any(a["default"] is False for a in killed.answers[killed_at:]):
            assert time.monotonic() < deadline, "the killed frontend does not serve again"
            time.sleep(0.5)
    assert not survivor.failures and survivor.connection_errors == 0
    defaults = [a for a in survivor.answers if a["default"]]
    assert not defaults, f"{len(defaults)} of {len(survivor.answers)}: {defaults[:3]}"
    assert conn.get_linked_models("fe-app") == ["fe-model"]
