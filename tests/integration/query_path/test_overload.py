"""Overload on real replica processes: expired queries are freed, queues are bounded in bytes,
and a request larger than any queue gets 413."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from .conftest import Cluster, wait_for

#: An input that keeps the model busy for a long time.
BUSY = b"busy"


def busy_on_marker(xs: Any) -> list[str]:
    import time

    if any(bytes(x) == b"busy" for x in xs):
        time.sleep(30)
    return [str(len(x)) for x in xs]


def post(cluster: Cluster, body: dict[str, Any]) -> requests.Response:
    """POST to ``/m/predict`` on a connection of its own (callable from any thread)."""
    return requests.post(f"{cluster.url}/m/predict", json=body, timeout=60)


def in_background(cluster: Cluster, body: dict[str, Any]) -> None:
    threading.Thread(target=post, args=(cluster, body), daemon=True).start()


def occupy(cluster: Cluster) -> None:
    """Send the input that keeps the only replica busy; returns once it is in flight."""
    in_background(cluster, {"input": base64.b64encode(BUSY).decode()})
    wait_for(lambda: int(cluster.metric("internal:aggregate_num_predictions")["count"]) >= 1,
             what="the busy query to reach the replica")


def large(i: int, size: int = 200_000) -> dict[str, str]:
    return {"input": base64.b64encode(i.to_bytes(4, "little") * (size // 4)).decode()}


def gauge(cluster: Cluster, name: str) -> int:
    return int(float(cluster.metric(name)["value"]))


def test_expired_queries_are_freed_while_no_replica_pulls(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.add_model("m", "1", input_type="bytes")
    cluster.add_app("m", input_type="bytes", model="m", slo_micros=300_000)
    cluster.start_replica("m", "1", busy_on_marker, input_type="bytes")
    occupy(cluster)
    with ThreadPoolExecutor(8) as pool:  # 12 MB of inputs the busy replica does not take
        answers = list(pool.map(lambda i: post(cluster, large(i)).json(), range(60)))
    assert all(answer["default"] is True for answer in answers)
    # Their SLO ran out: they leave the queue and their memory is freed.
    wait_for(lambda: gauge(cluster, "model:m:1:queue_depth") == 0, timeout=5,
             what="the expired queries to leave the queue")
    assert gauge(cluster, "model:m:1:queue_bytes") == 0
    assert len(cluster.frontend._scheduler.pending) == 1  # only the busy query is in flight


def test_queues_are_bounded_in_bytes_and_oversized_requests_get_413(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(max_queue_bytes=900_000, max_queue_depth=10)
    cluster.add_model("m", "1", input_type="bytes")
    cluster.add_app("m", input_type="bytes", model="m", slo_micros=5_000_000)
    cluster.start_replica("m", "1", busy_on_marker, input_type="bytes")
    occupy(cluster)
    for i in range(4):  # 800 KB queued behind the busy query
        in_background(cluster, large(i))
    wait_for(lambda: gauge(cluster, "model:m:1:queue_bytes") == 800_000,
             what="four large queries queued")
    full = cluster.post("/m/predict", large(9))
    assert full.status_code == 503 and full.headers["Retry-After"] == "1"
    assert "is full" in full.json()["cause"] and "max_queue_bytes" in full.json()["cause"]
    too_many = {"input_batch": [base64.b64encode(b"%d" % i).decode() for i in range(11)]}
    response = cluster.post("/m/predict", too_many)
    assert response.status_code == 413
    assert "max_queue_depth" in response.json()["cause"]
    assert "11 inputs" in response.json()["cause"]
    too_big = cluster.post("/m/predict", large(0, size=900_004))
    assert too_big.status_code == 413
    assert "900004 bytes" in too_big.json()["cause"]
    small = {"input_batch": [base64.b64encode(b"%d" % i).decode() for i in range(3)]}
    assert cluster.post("/m/predict", small).status_code == 200  # small ones still fit
