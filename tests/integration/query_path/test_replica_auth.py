"""Replica authentication on the RPC port: the cluster's secret, or an expected legacy model."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.query_path.conftest import Cluster, wait_for

SECRET = "the-cluster-secret"
DOUBLES = 3


def legacy_sum(inputs: list[bytes]) -> list[bytes]:
    return [repr(sum(struct.unpack(f"<{len(x) // 8}d", x))).encode() for x in inputs]


def triple(xs: Any) -> list[str]:
    return [str(3 * sum(x)) for x in xs]


def refused(cluster: Cluster, container: Any) -> None:
    """Asked to register again and again (never kept alive), never registered, no queries."""
    wait_for(lambda: container.registrations >= 3, 30, "three registration attempts")
    assert cluster.replica_count(container.name, container.version) == 0
    assert 1 not in container.received_types


def test_a_container_without_the_secret_gets_no_queries(
        make_cluster: Callable[..., Cluster], legacy_container: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cluster = make_cluster(replica_secret=SECRET, legacy_replica_timeout_s=5.0)
    cluster.add_model("m", "1")
    cluster.add_app("m", model="m")
    port = cluster.frontend.rpc_port
    wrong = legacy_container(port, "m", "1", DOUBLES, legacy_sum, b"guessed")
    unknown = legacy_container(port, "ghost", "1", DOUBLES, legacy_sum)
    mistyped = legacy_container(port, "m", "1", 5, legacy_sum)  # strings, not doubles
    for container in (wrong, unknown, mistyped):
        refused(cluster, container)
    answer = cluster.predict("m", {"input": [1.0, 2.0]})
    assert answer["default"] is True
    # Our runtime always speaks RPC v4, which must carry the secret.
    monkeypatch.delenv("CLIPPER_REPLICA_SECRET", raising=False)
    cluster.start_replica("m", "1", triple, wait=False)
    wait_for(lambda: "m:1: it presented no replica secret (docs" in caplog.text, 60,
             "the frontend to refuse the runtime without the secret")
    assert cluster.replica_count("m", "1") == 0
    monkeypatch.setenv("CLIPPER_REPLICA_SECRET", SECRET)
    cluster.start_replica("m", "1", triple)
    assert cluster.predict("m", {"input": [1.0, 2.0]})["output"] == 9.0
    for container in (wrong, unknown, mistyped):
        assert 1 not in container.received_types


def test_legacy_containers_are_admitted_for_expected_models_only(
        make_cluster: Callable[..., Cluster], legacy_container: Callable[..., Any]) -> None:
    cluster = make_cluster(replica_secret=SECRET, legacy_replica_timeout_s=5.0)
    cluster.add_model("legacy", "1")
    cluster.add_app("legacy", model="legacy")
    legacy_container(cluster.frontend.rpc_port, "legacy", "1", DOUBLES, legacy_sum)
    cluster.wait_replicas("legacy", "1", 1)
    assert cluster.predict("legacy", {"input": [1.5, 2.0]})["output"] == 3.5

    strict = make_cluster(replica_secret=SECRET, admit_legacy_replicas=False)
    strict.add_model("legacy", "1")
    refused(strict, legacy_container(strict.frontend.rpc_port, "legacy", "1", DOUBLES,
                                     legacy_sum))
    legacy_container(strict.frontend.rpc_port, "legacy", "1", DOUBLES, legacy_sum,
                     SECRET.encode())
    strict.wait_replicas("legacy", "1", 1)
