"""The metric registry: Clipper's JSON format (spec §9.1) and the Prometheus exposition."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from clipper_core.metrics import (
    BATCH_SIZE_BOUNDS,
    LATENCY_BOUNDS_MICROS,
    Histogram,
    MetricsRegistry,
    slo_bounds,
)


def test_same_name_gives_the_same_object() -> None:
    registry = MetricsRegistry()
    assert registry.counter("app:a:num_predictions") is registry.counter("app:a:num_predictions")


def test_json_report_format() -> None:
    registry = MetricsRegistry()
    registry.counter("internal:aggregate_num_predictions").increment(3)
    registry.ratio("app:a:default_prediction_ratio").increment(1, 4)
    registry.ratio("internal:prediction_cache_hit_ratio")
    meter = registry.meter("model:m:1:prediction_throughput")
    meter.mark(10)
    hist = registry.histogram("app:a:prediction_latency")
    for value in (10, 20, 30, 40):
        hist.insert(value)
    report = json.loads(registry.report_json())
    assert list(report) == ["counters", "ratio_counters", "meters", "histograms"]
    assert report["counters"] == [{"internal:aggregate_num_predictions": {"count": "3"}}]
    ratios = {k: v for item in report["ratio_counters"] for k, v in item.items()}
    assert ratios["app:a:default_prediction_ratio"] == {"ratio": "0.25"}
    assert ratios["internal:prediction_cache_hit_ratio"] == {"ratio": "nan"}
    (meter_report,) = report["meters"]
    assert meter_report["model:m:1:prediction_throughput"]["unit"] == "events per second"
    assert meter_report["model:m:1:prediction_throughput"]["rate_1min"] == "-1.0"
    (hist_report,) = report["histograms"]
    values = hist_report["app:a:prediction_latency"]
    assert values["size"] == "4" and values["min"] == "10" and values["max"] == "40"
    assert values["mean"] == "25.0" and values["unit"] == "microseconds"
    assert all(isinstance(v, str) for v in values.values())
    assert b'\n    "counters"' in registry.report_json()  # 4-space indent


def test_meter_ticks_into_ewma() -> None:
    registry = MetricsRegistry()
    meter = registry.meter("internal:aggregate_model_throughput")
    meter.mark(50)
    registry.tick()
    assert meter.rates == [10.0, 10.0, 10.0]
    registry.tick()
    assert 0 < meter.rates[0] < 10.0 and meter.rates[0] < meter.rates[2]


def test_histogram_percentiles_and_reservoir_bound() -> None:
    hist = Histogram("h", sample_size=100)
    for value in range(1, 1001):
        hist.insert(value)
    assert len(hist.reservoir) == 100
    assert hist.count == 1000 and hist.total == sum(range(1, 1001))
    small = Histogram("s")
    for value in (1, 2, 3, 4):
        small.insert(value)
    assert small.percentile(0.5) == 2.5
    assert small.percentile(0.99) == 4.0
    assert small.percentile(0.01) == 1.0
    assert Histogram("e").percentile(0.5) == 0.0


def test_prometheus_exposition() -> None:
    registry = MetricsRegistry()
    registry.counter("app:my-app:num_predictions").increment(2)
    registry.counter("app:other:num_predictions").increment(5)
    registry.histogram("model:m:1:batch_size", unit="queries").insert(4)
    registry.ratio("internal:prediction_cache_hit_ratio")
    registry.gauge("model:m:1:queue_depth", lambda: 7)
    text = registry.report_prometheus().decode()
    lines = text.splitlines()
    assert lines.count("# TYPE clipper_app_num_predictions counter") == 1
    assert 'clipper_app_num_predictions{app="my-app"} 2' in lines
    assert 'clipper_app_num_predictions{app="other"} 5' in lines
    assert 'clipper_model_batch_size{model="m",version="1",quantile="0.5"} 4.0' in lines
    assert 'clipper_model_batch_size_count{model="m",version="1"} 1' in lines
    assert 'clipper_model_queue_depth{model="m",version="1"} 7' in lines
    assert "clipper_prediction_cache_hit_ratio nan" in lines
    assert text.endswith("\n")
    for line in lines:
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2
    assert math.isnan(registry.ratio("internal:prediction_cache_hit_ratio").ratio)


def test_histogram_buckets_fit_the_slo() -> None:
    bounds = slo_bounds(100_000)
    assert 100_000 in bounds
    assert bounds[0] == 5_000 and bounds[-1] == 400_000
    registry = MetricsRegistry()
    latency = registry.histogram("app:a:prediction_latency", bounds=bounds)
    for value in (1_000, 60_000, 100_000, 150_000, 900_000):
        latency.insert(value)
    lines = registry.report_prometheus().decode().splitlines()
    assert "# TYPE clipper_app_prediction_latency_hist histogram" in lines
    assert 'clipper_app_prediction_latency_hist_bucket{app="a",le="5000"} 1' in lines
    assert 'clipper_app_prediction_latency_hist_bucket{app="a",le="100000"} 3' in lines
    assert 'clipper_app_prediction_latency_hist_bucket{app="a",le="150000"} 4' in lines
    assert 'clipper_app_prediction_latency_hist_bucket{app="a",le="+Inf"} 5' in lines
    assert 'clipper_app_prediction_latency_hist_count{app="a"} 5' in lines
    assert 'clipper_app_prediction_latency{app="a",quantile="0.5"} 100000.0' in lines


def test_retain_forgets_deleted_apps_and_versions() -> None:
    registry = MetricsRegistry()
    for name in ("app:keep:num_predictions", "app:gone:num_predictions",
                 "model:m:1:num_errors", "model:m:2:num_errors", "model:m:3:num_errors",
                 "internal:aggregate_num_predictions"):
        registry.counter(name).increment()
    queued = registry.get("model:m:3:num_errors")
    registry.retain(["keep"], [("m", "1")], queued=[("m", "3")])
    report = registry.report_json().decode()
    assert "app:keep:" in report and "model:m:1:" in report and "internal:" in report
    assert "app:gone:" not in report and "model:m:2:" not in report
    assert "model:m:3:" not in report  # deleted; its queue still holds the counter
    assert registry.get("app:gone:num_predictions") is None
    registry.retain(["keep"], [("m", "1"), ("m", "3")], queued=[("m", "3")])
    assert registry.get("model:m:3:num_errors") is queued
    assert 'clipper_model_num_errors{model="m",version="3"} 1' in (
        registry.report_prometheus().decode().splitlines())


def test_the_grafana_dashboard_uses_only_exposed_metrics() -> None:
    registry = MetricsRegistry()
    for name in ("app:a:num_predictions", "app:a:num_defaults", "model:m:1:num_predictions",
                 "model:m:1:num_errors"):
        registry.counter(name)
    registry.histogram("app:a:prediction_latency", bounds=slo_bounds(1000)).insert(5)
    registry.histogram("model:m:1:prediction_latency", bounds=LATENCY_BOUNDS_MICROS)
    registry.histogram("model:m:1:batch_size", bounds=BATCH_SIZE_BOUNDS)
    registry.gauge("model:m:1:queue_depth", lambda: 0)
    registry.gauge("model:m:1:num_replicas", lambda: 0)
    registry.ratio("model:m:1:cache_hit_ratio")
    registry.ratio("internal:prediction_cache_hit_ratio")
    exposed = set(re.findall(r"^(clipper_\w+)", registry.report_prometheus().decode(), re.M))
    dashboard = json.loads((Path(__file__).parents[3] / "docs/grafana-dashboard.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"clipper_\w+", target["expr"])}
    assert used and used <= exposed, used - exposed
