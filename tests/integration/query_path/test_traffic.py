"""Traffic between versions of one model through a real frontend and real replica processes:
a weighted canary, a shadow version, promotion and rollback (bad input to the routes:
tests/unit/management/test_routes.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from clipper_core.frontend.management import ManagementService
from clipper_core.types import InputType
from tests.integration.query_path.conftest import Cluster, LegacyContainer, wait_for
from tests.integration.query_path.test_selection import constant

DOUBLES = int(InputType.DOUBLES)


def two_versions(cluster: Cluster, legacy_container: Callable[..., LegacyContainer],
                 outputs: tuple[bytes, bytes] = (b"1", b"2")) -> ManagementService:
    """App ``app`` on model ``m`` (version 1 current, version 2 deployed), both serving."""
    cluster.add_model("m", "1")
    cluster.add_app("app", model="m")
    cluster.add_model("m", "2")
    cluster.store.set_current_version("m", "1")
    for version, output in zip(("1", "2"), outputs, strict=True):
        legacy_container(cluster.frontend.rpc_port, "m", version, DOUBLES, constant(output))
        cluster.wait_replicas("m", version, 1)
    return ManagementService(cluster.store)


def answered_by(cluster: Cluster) -> str:
    response = cluster.post("/app/predict", {"input": [1.0]})
    assert response.status_code == 200, response.text
    return response.headers.get("Clipper-Model-Versions", "")


def routed_to(cluster: Cluster, version: str) -> None:
    wait_for(lambda: all(answered_by(cluster) == f"m:{version}" for _ in range(5)),
             what=f"every query to go to m:{version}")


def test_a_90_10_canary_sends_10_percent_to_the_canary(
        make_cluster: Callable[..., Cluster], legacy_container: Callable[..., LegacyContainer],
) -> None:
    cluster = make_cluster()
    service = two_versions(cluster, legacy_container)
    routed_to(cluster, "1")
    service.set_traffic_split("m", {"1": 90, "2": 10})
    wait_for(lambda: cluster.frontend._routing.apps["app"].split is not None,  # type: ignore[union-attr]
             what="the split to be applied")

    def send(n: int) -> list[str]:
        with requests.Session() as session:
            return [session.post(cluster.url + "/app/predict", json={"input": [1.0]},
                                 timeout=30).headers["Clipper-Model-Versions"]
                    for _ in range(n)]

    with ThreadPoolExecutor(8) as pool:
        counts = Counter(v for batch in pool.map(send, [625] * 8) for v in batch)
    assert sum(counts.values()) == 5000
    assert 0.08 <= counts["m:2"] / 5000 <= 0.12, counts
    assert int(cluster.metric("model:m:2:split_queries")["count"]) == counts["m:2"]


def test_a_shadow_answers_in_metrics_only(
        make_cluster: Callable[..., Cluster], legacy_container: Callable[..., LegacyContainer],
) -> None:
    cluster = make_cluster()
    service = two_versions(cluster, legacy_container, outputs=(b"1", b"1"))
    routed_to(cluster, "1")
    service.set_shadow_versions("m", ["2"])
    wait_for(lambda: cluster.frontend._routing.apps["app"].shadows is not None,  # type: ignore[union-attr]
             what="the shadow to be applied")
    for index in range(50):  # distinct inputs: no cache hit on either version
        response = cluster.post("/app/predict", {"input": [float(index)]})
        assert response.headers["Clipper-Model-Versions"] == "m:1"
        assert response.json()["output"] == 1
    wait_for(lambda: int(cluster.metric("model:m:2:shadow_queries")["count"]) == 50,
             what="50 shadow queries")
    wait_for(lambda: cluster.metric("model:m:2:shadow_agreement")["ratio"] in ("1", "1.0"),
             what="full agreement")

    # A shadow that disagrees is never returned, and its agreement drops.
    cluster.store.delete_model_version("m", "2")
    cluster.add_model("m", "3")
    cluster.store.set_current_version("m", "1")
    legacy_container(cluster.frontend.rpc_port, "m", "3", DOUBLES, constant(b"3"))
    cluster.wait_replicas("m", "3", 1)
    service.set_shadow_versions("m", ["3"])
    wait_for(lambda: cluster.frontend._routing.apps["app"].shadows is not None  # type: ignore[union-attr]
             and cluster.frontend._routing.apps["app"].shadows.entries[0][0].version == "3",  # type: ignore[union-attr]
             what="shadow version 3")
    for index in range(20):
        response = cluster.post("/app/predict", {"input": [100.0 + index]})
        assert response.json()["output"] == 1
        assert response.headers["Clipper-Model-Versions"] == "m:1"
    wait_for(lambda: (m := cluster.metric("model:m:3:shadow_agreement")) is not None
             and m["ratio"] in ("0", "0.0"), what="no agreement from version 3")
    assert float(cluster.metric("model:m:3:shadow_latency")["mean"]) > 0


def test_promote_and_rollback_each_change_routing(
        make_cluster: Callable[..., Cluster], legacy_container: Callable[..., LegacyContainer],
) -> None:
    cluster = make_cluster()
    service = two_versions(cluster, legacy_container)
    routed_to(cluster, "1")
    service.set_traffic_split("m", {"1": 95, "2": 5})
    service.promote_canary("m")
    routed_to(cluster, "2")
    assert service.get_traffic("m") == {"current": "2", "split": {}, "shadows": [],
                                        "previous": "1"}
    service.rollback("m")
    routed_to(cluster, "1")
    assert service.get_traffic("m") == {"current": "1", "split": {}, "shadows": [],
                                        "previous": None}
