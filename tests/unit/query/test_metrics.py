"""The metric registry: Clipper's JSON format (spec §9.1) and the Prometheus exposition."""

from __future__ import annotations

import json
import math

from clipper_core.metrics import Histogram, MetricsRegistry


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
