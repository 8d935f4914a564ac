"""SLO defaults, model errors, fixed and adaptive batching with real replica processes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

Cluster = Any  # conftest.Cluster


def slow_echo(xs: Any) -> list[str]:
    import time

    time.sleep(1.0)
    return [str(float(x[0])) for x in xs]


def divide(xs: Any) -> list[str]:
    return [str(1.0 / float(x[0])) for x in xs]


def batch_reporter(xs: Any) -> list[str]:
    import time

    time.sleep(0.5)
    return [str(len(xs))] * len(xs)


def per_call_cost(xs: Any) -> list[str]:
    import time

    time.sleep(0.02 + 0.0002 * len(xs))
    return [str(len(xs))] * len(xs)


def test_slo_default_then_late_answer_fills_the_cache(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.add_model("slow", "1")
    cluster.add_app("slow", model="slow", slo_micros=200_000, default="late")
    cluster.start_replica("slow", "1", slow_echo)
    started = time.monotonic()
    result = cluster.predict("slow", {"input": [7.0]})
    elapsed = time.monotonic() - started
    assert result["default"] is True and result["output"] == "late"
    assert result["default_explanation"] == (
        "Failed to retrieve a prediction response within the specified latency SLO")
    assert 0.15 < elapsed < 0.8
    time.sleep(1.2)  # the model's answer arrives after the SLO and is cached
    started = time.monotonic()
    cached = cluster.predict("slow", {"input": [7.0]})
    assert cached == {"query_id": result["query_id"] + 1, "output": 7.0, "default": False}
    assert time.monotonic() - started < 0.15


def test_model_error_gives_default_with_explanation_and_replica_keeps_serving(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.add_model("div", "1")
    cluster.add_app("div", model="div", default="-1")
    process = cluster.start_replica("div", "1", divide)
    failed = cluster.predict("div", {"input": [0.0]})
    assert failed["default"] is True and failed["output"] == -1
    assert failed["default_explanation"].startswith("Model error: ZeroDivisionError")
    assert cluster.predict("div", {"input": [4.0]}) == {
        "query_id": failed["query_id"] + 1, "output": 0.25, "default": False}
    assert process.poll() is None and cluster.replica_count("div", "1") == 1
    again = cluster.predict("div", {"input": [0.0]})  # errors are not cached
    assert again["default_explanation"].startswith("Model error: ZeroDivisionError")
    assert int(cluster.metric("model:div:1:num_errors")["count"]) == 2


def test_fixed_batch_size_with_one_batch_request(make_cluster: Callable[..., Cluster]) -> None:
    """Spec §11.2 as written: one replica, one request of 450 distinct 5-element inputs."""
    cluster = make_cluster()
    cluster.add_model("nine", "1", batch_size=9)
    cluster.add_app("nine", model="nine", slo_micros=30_000_000)
    cluster.start_replica("nine", "1", batch_reporter)
    batch = [[float(i + j) for j in range(5)] for i in range(450)]
    predictions = cluster.predict("nine", {"input_batch": batch})["batch_predictions"]
    assert len(predictions) == 450
    nines = [p for p in predictions if p["output"] == 9 and not p["default"]]
    assert len(nines) >= 0.7 * 450


def test_fixed_batch_size_under_concurrent_load(make_cluster: Callable[..., Cluster]) -> None:
    """450 separate requests at once on three replicas: still batches of exactly 9."""
    cluster = make_cluster()
    cluster.add_model("nine", "1", batch_size=9)
    cluster.add_app("nine", model="nine", slo_micros=30_000_000)
    for _ in range(3):
        cluster.start_replica("nine", "1", batch_reporter, wait=False)
    cluster.wait_replicas("nine", "1", 3)
    session = requests.Session()

    def query(i: int) -> Any:
        return session.post(f"{cluster.url}/nine/predict", json={"input": [float(i)]},
                            timeout=60).json()

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(query, range(450)))
    assert not any(r["default"] for r in results)
    sizes = Counter(r["output"] for r in results)
    assert max(sizes) == 9
    assert sizes[9] >= 0.7 * 450, sizes


def test_adaptive_batches_grow_with_load_within_the_slo(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.add_model("grow", "1")
    cluster.add_app("grow", model="grow", slo_micros=2_000_000)
    cluster.start_replica("grow", "1", per_call_cost)
    session = requests.Session()
    light = [session.post(f"{cluster.url}/grow/predict", json={"input": [float(i)]}).json()
             for i in range(5)]
    assert all(r["output"] == 1 for r in light)  # one at a time: batches of one
    batch = {"input_batch": [[float(i)] for i in range(1000, 1800)]}
    loaded = session.post(f"{cluster.url}/grow/predict", json=batch, timeout=60).json()
    predictions = loaded["batch_predictions"]
    assert not any(p["default"] for p in predictions)
    assert max(p["output"] for p in predictions) >= 20


def test_a_batch_larger_than_the_queue_gets_413(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(max_queue_depth=4)
    cluster.add_model("shed", "1")
    cluster.add_app("shed", model="shed")
    cluster.start_replica("shed", "1", batch_reporter)
    response = cluster.post("/shed/predict", {"input_batch": [[float(i)] for i in range(5)]})
    assert response.status_code == 413  # retrying could never help: not 503
    assert "5 inputs" in response.json()["cause"]
    assert "max_queue_depth" in response.json()["cause"]
    assert cluster.predict("shed", {"input_batch": [[1.0], [2.0]]})["batch_predictions"]
