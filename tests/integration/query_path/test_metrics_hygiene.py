"""/metrics follows the configuration: deleted apps and versions disappear; buckets fit SLOs."""

from __future__ import annotations

import time
from collections.abc import Callable

from .conftest import Cluster, wait_for


def echo(xs):
    return [str(sum(x)) for x in xs]


def echo_after_300us(xs):
    time.sleep(0.0003)
    return [str(sum(x)) for x in xs]


def prometheus(cluster: Cluster) -> str:
    return cluster.session.get(cluster.url + "/metrics", headers={"Accept": "text/plain"},
                               timeout=10).text


def test_deleted_apps_and_versions_leave_metrics(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.add_model("m", "1")
    cluster.add_model("m", "2")
    cluster.store.set_current_version("m", "1")
    cluster.add_app("short", slo_micros=20_000, model="m")
    cluster.add_app("other", model="m")
    cluster.start_replica("m", "1", echo)
    cluster.predict("short", {"input": [1.0]})
    cluster.predict("other", {"input": [2.0]})
    text = prometheus(cluster)
    assert 'clipper_app_prediction_latency_hist_bucket{app="short",le="20000"}' in text
    assert 'clipper_app_prediction_latency_hist_bucket{app="other",le="5000000"}' in text
    assert 'clipper_model_batch_size_hist_bucket{model="m",version="1",le="1"} ' in text

    cluster.store.delete_application("other")
    wait_for(lambda: 'app="other"' not in prometheus(cluster), what="app other gone")
    assert 'app="short"' in prometheus(cluster)
    cluster.store.set_current_version("m", "2")
    cluster.store.delete_model_version("m", "1")
    wait_for(lambda: 'version="1"' not in prometheus(cluster), what="m:1 gone from /metrics")
    report = cluster.session.get(cluster.url + "/metrics", timeout=10).text
    assert "model:m:1:" not in report
    assert "app:short:num_predictions" in report


def test_latencies_under_a_millisecond_are_measured(make_cluster: Callable[..., Cluster]) -> None:
    """uvloop's clock (``loop.time()``) moves in whole milliseconds, once per loop iteration:
    read from it, most answers of a 300 µs model took 0 µs."""
    cluster = make_cluster()
    cluster.add_model("m", "1")
    cluster.add_app("a", model="m")
    cluster.start_replica("m", "1", echo_after_300us)
    for i in range(20):
        assert cluster.predict("a", {"input": [float(i)]})["default"] is False
    for name in ("app:a:prediction_latency", "model:m:1:prediction_latency"):
        histogram = cluster.metric(name)
        assert int(histogram["size"]) == 20
        assert 300 <= int(histogram["min"]) <= float(histogram["p50"]), (name, histogram)
