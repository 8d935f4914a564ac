"""Replicas over RPC: an original-protocol (v3) container, lost replicas, goodbye, rollout."""

from __future__ import annotations

import signal
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import pytest
import requests
import zmq

from clipper_core.exceptions import ClipperError
from clipper_core.frontend.query import QueryFrontend
from clipper_core.plugins import get_plugin_manager
from clipper_core.types import InputType, Replica

Cluster = Any  # conftest.Cluster
NO_MODELS = "No connected models found for query"


def slow_sum(xs: Any) -> list[str]:
    import time

    time.sleep(1.0)
    return [str(float(x.sum())) for x in xs]


def version_one(xs: Any) -> list[str]:
    return ["v1"] * len(xs)


def version_two(xs: Any) -> list[str]:
    return ["v2"] * len(xs)


def legacy_sum(inputs: list[bytes]) -> list[bytes]:
    return [repr(sum(struct.unpack(f"<{len(x) // 8}d", x))).encode() for x in inputs]


def test_rpc_v3_container_from_the_spec(make_cluster: Callable[..., Cluster],
                                        legacy_container: Callable[..., Any]) -> None:
    cluster = make_cluster(legacy_replica_timeout_s=1.5)
    cluster.add_model("legacy", "1")
    cluster.add_app("legacy", model="legacy")
    container = legacy_container(cluster.frontend.rpc_port, "legacy", "1", 3, legacy_sum)
    cluster.wait_replicas("legacy", "1", 1)
    (replica,) = cluster.store.list_replicas()
    assert (replica.replica_id, replica.frontend_id) == (0, cluster.config.frontend_id)
    assert cluster.predict("legacy", {"input": [1.5, 2.0]})["output"] == 3.5
    batch = cluster.predict("legacy", {"input_batch": [[1.0], [2.0, 2.0], [], [0.5]]})
    assert [p["output"] for p in batch["batch_predictions"]] == [1.0, 4.0, 0, 0.5]
    assert not any(p["default"] for p in batch["batch_predictions"])
    time.sleep(1.2)  # heartbeats get KeepAlive replies: the container stays registered
    assert cluster.replica_count("legacy", "1") == 1
    assert container.bad_versions == []  # the frontend spoke v3 only
    assert 1 in container.received_types and 2 in container.received_types
    container.stop()  # silence: dropped after the legacy timeout
    cluster.wait_replicas("legacy", "1", 0, timeout=5)
    result = cluster.predict("legacy", {"input": [1.0]})
    assert result["default"] is True and result["default_explanation"] == NO_MODELS


def test_killing_a_replica_mid_batch_loses_no_query(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(replica_timeout_s=1.5)
    cluster.add_model("slow", "1")
    cluster.add_app("slow", model="slow", slo_micros=10_000_000)
    victim = cluster.start_replica("slow", "1", slow_sum)
    cluster.start_replica("slow", "1", slow_sum)
    session = requests.Session()

    def query(i: int) -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        body = session.post(f"{cluster.url}/slow/predict", json={"input": [float(i)]},
                            timeout=30).json()
        return body, time.monotonic() - started

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(query, i) for i in range(8)]
        time.sleep(0.4)  # both replicas are inside a batch
        victim.send_signal(signal.SIGKILL)
        results = [f.result() for f in futures]
    for i, (body, elapsed) in enumerate(results):
        assert elapsed < 10.0
        assert body["default"] is False and body["output"] == float(i), body
    cluster.wait_replicas("slow", "1", 1)
    assert cluster.predict("slow", {"input": [42.0]})["output"] == 42.0


def test_goodbye_removes_a_replica_at_once(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(replica_timeout_s=60.0)
    cluster.add_model("bye", "1")
    cluster.add_app("bye", model="bye")
    process = cluster.start_replica("bye", "1", version_one)
    assert cluster.predict("bye", {"input": [1.0]})["output"] == "v1"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    cluster.wait_replicas("bye", "1", 0, timeout=10)
    assert time.monotonic() - started < 10
    result = cluster.predict("bye", {"input": [2.0]})
    assert result["default_explanation"] == NO_MODELS


def test_rollout_has_no_window_of_defaults(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.add_model("roll", "1")
    cluster.add_app("roll", model="roll")
    cluster.start_replica("roll", "1", version_one)
    outputs: list[Any] = []
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        i = 0
        while not stop.is_set():
            i += 1
            body = session.post(f"{cluster.url}/roll/predict", json={"input": [float(i)]},
                                timeout=30).json()
            outputs.append("DEFAULT" if body["default"] else body["output"])

    thread = threading.Thread(target=client)
    thread.start()
    try:
        time.sleep(0.3)
        cluster.add_model("roll", "2")  # current now, but no replica yet: v1 keeps answering
        time.sleep(0.5)
        cluster.start_replica("roll", "2", version_two)
        seen = len(outputs)
        time.sleep(0.5)
        assert "v2" in outputs[seen:]
    finally:
        stop.set()
        thread.join()
    assert "DEFAULT" not in outputs
    first_v2 = outputs.index("v2")
    assert set(outputs[:first_v2]) == {"v1"} and set(outputs[first_v2:]) == {"v2"}
    assert first_v2 > 20


def test_start_clears_stale_replicas_and_reports_busy_ports(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.store.add_replica(Replica("gone", "1", 0, InputType.DOUBLES, "other"))
    pm = get_plugin_manager(load_entrypoints=False)
    other = QueryFrontend(attrs.evolve(cluster.config, frontend_id="other"), cluster.store, pm)
    cluster.call(other.start())
    try:
        assert [r for r in cluster.store.list_replicas() if r.frontend_id == "other"] == []
    finally:
        cluster.call(other.stop())
    busy = QueryFrontend(attrs.evolve(cluster.config, rpc_port=cluster.frontend.rpc_port),
                         cluster.store, pm)
    with pytest.raises(ClipperError, match="Could not bind the model RPC listener"):
        cluster.call(busy.start())


def test_store_changes_are_picked_up_without_restart(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.add_model("live", "1")
    cluster.add_app("live")
    cluster.start_replica("live", "1", version_one)
    assert cluster.predict("live", {"input": [1.0]})["default_explanation"] == NO_MODELS
    cluster.store.add_link("live", "live")
    assert wait_for_output(cluster, "live", "v1")
    cluster.add_model("live", "3")  # exists, current, but no replica: v1 still answers
    assert cluster.predict("live", {"input": [2.0]})["output"] == "v1"
    # The change feed is asynchronous: until the frontend has read version 3, pinning it is a 400.
    deadline = time.monotonic() + 10
    while (pinned := cluster.post("/live/predict", {"input": [2.0], "version": "3"})).status_code != 200:
        assert time.monotonic() < deadline, pinned.text
        time.sleep(0.02)
    pinned = pinned.json()
    assert pinned["default"] is True and pinned["default_explanation"] == NO_MODELS
    cluster.store.delete_application("live")
    deadline = time.monotonic() + 10
    while cluster.post("/live/predict", {"input": [1.0]}).status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def wait_for_output(cluster: Cluster, app: str, output: Any) -> bool:
    deadline = time.monotonic() + 10
    while cluster.predict(app, {"input": [time.monotonic()]})["output"] != output:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_malformed_rpc_messages_do_not_disturb_the_frontend(
        make_cluster: Callable[..., Cluster], legacy_container: Callable[..., Any]) -> None:
    cluster = make_cluster()
    cluster.add_model("legacy", "1")
    cluster.add_app("legacy", model="legacy")
    ctx = zmq.Context()
    rogue = ctx.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.connect(f"tcp://127.0.0.1:{cluster.frontend.rpc_port}")
    try:
        for frames in ([b""], [b"", b"xx"], [b"", struct.pack("<I", 9)],
                       [b"", struct.pack("<I", 0), b"m"],  # registration without fields
                       [b"", struct.pack("<I", 0), b"m", b"1", b"x", struct.pack("<I", 3)],
                       [b"", struct.pack("<I", 0), b"m", b"1", b"3", struct.pack("<I", 99)],
                       [b"", struct.pack("<I", 1), b"\0\0\0\0", b"", b"garbage"]):
            rogue.send_multipart(frames)
        legacy_container(cluster.frontend.rpc_port, "legacy", "1", 3, legacy_sum)
        cluster.wait_replicas("legacy", "1", 1)
        assert cluster.predict("legacy", {"input": [2.0, 0.5]})["output"] == 2.5
        assert cluster.store.list_replicas()[0].model_name == "legacy"
    finally:
        rogue.close(0)
        ctx.term()


def test_an_app_registered_a_moment_ago_is_served_not_404(
        make_cluster: Callable[..., Cluster]) -> None:
    """The change feed is asynchronous; a query right after registration must still find it."""
    cluster = make_cluster()
    for i in range(20):
        cluster.add_app(f"fresh-{i}")
        answer = cluster.predict(f"fresh-{i}", {"input": [1.0]})
        assert answer["default"] is True
        assert answer["default_explanation"] == NO_MODELS


def answer_old(xs: Any) -> list[str]:
    return ["old"] * len(xs)


def answer_new(xs: Any) -> list[str]:
    return ["new"] * len(xs)


def test_a_version_registered_again_does_not_get_the_old_ones_cached_answers(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.add_model("m", "1")
    cluster.add_app("m", model="m")
    old = cluster.start_replica("m", "1", answer_old)
    assert cluster.predict("m", {"input": [1.0]})["output"] == "old"
    assert cluster.predict("m", {"input": [1.0]})["output"] == "old"  # from the cache
    old.terminate()  # says goodbye: dropped at once
    cluster.wait_replicas("m", "1", 0)
    cluster.store.delete_model_version("m", "1")
    cluster.add_model("m", "1")  # another model under the same name and version
    cluster.start_replica("m", "1", answer_new)
    answer = cluster.predict("m", {"input": [1.0]})
    assert (answer["output"], answer["default"]) == ("new", False)
