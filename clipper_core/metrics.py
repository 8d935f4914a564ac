"""The metric registry behind ``GET /metrics``: Clipper's JSON (spec §9.1) and Prometheus text.

Metrics are created once (when an application, model version or replica appears) and the hot
path keeps a direct reference to the object, so recording a value is an attribute update: no
name lookup and no label set per query. Names follow spec §9.2 (``app:<app>:...``,
``model:<name>:<version>:...``, ``internal:...``); the Prometheus exposition turns the name's
prefix into labels (``clipper_app_num_predictions{app="a"}``).
"""

from __future__ import annotations

import json
import math
import random
import time
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator
from typing import ClassVar

_TICK_S = 5.0
_EWMA_ALPHAS = tuple(1.0 - math.exp(-_TICK_S / 60.0 / m) for m in (1, 5, 15))


def scope_of(name: str) -> tuple[str, ...]:
    """What a metric belongs to: ``("app", a)``, ``("model", name, version)`` or ``()``."""
    parts = name.split(":")
    if parts[0] == "app" and len(parts) >= 3:
        return ("app", parts[1])
    if parts[0] == "model" and len(parts) >= 4:
        return ("model", parts[1], parts[2])
    return ()


def _prometheus_name(name: str) -> tuple[str, str]:
    """``app:a:num_predictions`` -> (``clipper_app_num_predictions``, ``{app="a"}``)."""
    parts = name.split(":")
    if parts[0] == "app" and len(parts) >= 3:
        base, labels = "app_" + "_".join(parts[2:]), {"app": parts[1]}
    elif parts[0] == "model" and len(parts) >= 4:
        base, labels = "model_" + "_".join(parts[3:]), {"model": parts[1], "version": parts[2]}
    elif parts[0] == "internal":
        base, labels = "_".join(parts[1:]), {}
    else:
        base, labels = "_".join(parts), {}
    base = "clipper_" + "".join(c if c.isalnum() or c == "_" else "_" for c in base)
    rendered = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items())
    return base, "{" + rendered + "}" if rendered else ""


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    return repr(float(value))


class Metric:
    """Base of every metric: a name and its Prometheus form, computed once."""

    kind: ClassVar[str]
    __slots__ = ("labels", "name", "prom_name", "scope")

    def __init__(self, name: str) -> None:
        self.name = name
        self.prom_name, self.labels = _prometheus_name(name)
        self.scope = scope_of(name)


class Counter(Metric):
    kind = "counters"
    __slots__ = ("count",)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.count = 0

    def increment(self, n: int = 1) -> None:
        self.count += n

    def report(self) -> dict[str, str]:
        return {"count": str(self.count)}

    def prometheus(self) -> list[str]:
        return [f"# TYPE {self.prom_name} counter",
                f"{self.prom_name}{self.labels} {self.count}"]


class RatioCounter(Metric):
    """numerator / denominator; ``nan`` while the denominator is 0."""

    kind = "ratio_counters"
    __slots__ = ("denominator", "numerator")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.numerator = 0
        self.denominator = 0

    def increment(self, numerator: int, denominator: int) -> None:
        self.numerator += numerator
        self.denominator += denominator

    @property
    def ratio(self) -> float:
        return self.numerator / self.denominator if self.denominator else math.nan

    def report(self) -> dict[str, str]:
        return {"ratio": _num(self.ratio)}

    def prometheus(self) -> list[str]:
        return [f"# TYPE {self.prom_name} gauge",
                f"{self.prom_name}{self.labels} {_num(self.ratio)}"]


class Meter(Metric):
    """Events per second: overall rate and 1/5/15-minute EWMAs ticked every 5 s."""

    kind = "meters"
    __slots__ = ("_uncounted", "count", "created", "rates")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.count = 0
        self._uncounted = 0
        self.created = time.monotonic()
        self.rates = [-1.0, -1.0, -1.0]

    def mark(self, n: int = 1) -> None:
        self.count += n
        self._uncounted += n

    def tick(self) -> None:
        """Fold the events of the last tick into the EWMAs (called every 5 s)."""
        instant = self._uncounted / _TICK_S
        self._uncounted = 0
        for i, alpha in enumerate(_EWMA_ALPHAS):
            old = self.rates[i]
            self.rates[i] = instant if old < 0 else old + alpha * (instant - old)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.created
        return self.count / elapsed if elapsed > 0 else 0.0

    def report(self) -> dict[str, str]:
        return {"unit": "events per second", "rate": _num(self.rate),
                "rate_1min": _num(self.rates[0]), "rate_5min": _num(self.rates[1]),
                "rate_15min": _num(self.rates[2])}

    def prometheus(self) -> list[str]:
        return [f"# TYPE {self.prom_name}_total counter",
                f"{self.prom_name}_total{self.labels} {self.count}",
                f"# TYPE {self.prom_name}_rate_1min gauge",
                f"{self.prom_name}_rate_1min{self.labels} {_num(max(self.rates[0], 0.0))}"]


class Histogram(Metric):
    """A reservoir sample (algorithm R) of integer values, plus the exact count and sum.

    With ``bounds`` (ascending upper bounds) it also counts values per bucket, exposed to
    Prometheus as the histogram ``<name>_hist`` (``_bucket{le=...}``, ``_sum``, ``_count``)
    beside the summary's quantiles.
    """

    kind = "histograms"
    __slots__ = ("bounds", "buckets", "count", "reservoir", "sample_size", "total", "unit")

    def __init__(self, name: str, unit: str = "microseconds", sample_size: int = 4096,
                 bounds: tuple[int, ...] = ()) -> None:
        super().__init__(name)
        self.unit = unit
        self.sample_size = sample_size
        self.reservoir: list[int] = []
        self.count = 0
        self.total = 0
        self.bounds = bounds
        #: Values per bucket (not cumulative); the last one counts values above every bound.
        self.buckets = [0] * (len(bounds) + 1)

    def insert(self, value: int) -> None:
        self.count += 1
        self.total += value
        self.buckets[bisect_left(self.bounds, value)] += 1
        if len(self.reservoir) < self.sample_size:
            self.reservoir.append(value)
        else:
            slot = int(random.random() * self.count)  # randrange: ~20x slower
            if slot < self.sample_size:
                self.reservoir[slot] = value

    def percentile(self, p: float) -> float:
        """Spec §9.1's rule: rank ``x = p * (n + 1)``, linear interpolation between neighbours."""
        values = sorted(self.reservoir)
        n = len(values)
        if n == 0:
            return 0.0
        x = p * (n + 1)
        if x <= 1:
            return float(values[0])
        if x >= n:
            return float(values[-1])
        lower = int(x)
        return values[lower - 1] + (x - lower) * (values[lower] - values[lower - 1])

    def report(self) -> dict[str, str]:
        values = self.reservoir
        n = len(values)
        mean = sum(values) / n if n else 0.0
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / n) if n else 0.0
        return {"unit": self.unit, "size": str(n), "min": str(min(values, default=0)),
                "max": str(max(values, default=0)), "mean": _num(mean), "std_dev": _num(std),
                "p50": _num(self.percentile(0.5)), "p95": _num(self.percentile(0.95)),
                "p99": _num(self.percentile(0.99))}

    def prometheus(self) -> list[str]:
        lines = [f"# TYPE {self.prom_name} summary"]
        sep = "," if self.labels else ""
        inner = self.labels[1:-1]
        for q in (0.5, 0.95, 0.99):
            lines.append(f'{self.prom_name}{{{inner}{sep}quantile="{q}"}} '
                         f"{_num(self.percentile(q))}")
        lines.append(f"{self.prom_name}_sum{self.labels} {self.total}")
        lines.append(f"{self.prom_name}_count{self.labels} {self.count}")
        if self.bounds:
            family = f"{self.prom_name}_hist"
            lines.append(f"# TYPE {family} histogram")
            cumulative = 0
            for bound, n in zip((*self.bounds, "+Inf"), self.buckets, strict=True):
                cumulative += n
                lines.append(f'{family}_bucket{{{inner}{sep}le="{bound}"}} {cumulative}')
            lines.append(f"{family}_sum{self.labels} {self.total}")
            lines.append(f"{family}_count{self.labels} {self.count}")
        return lines


class Gauge(Metric):
    """A value read when metrics are reported (queue depth, connected replicas)."""

    kind = "gauges"
    __slots__ = ("read",)

    def __init__(self, name: str, read: Callable[[], float]) -> None:
        super().__init__(name)
        self.read = read

    def report(self) -> dict[str, str]:
        return {"value": _num(self.read())}

    def prometheus(self) -> list[str]:
        return [f"# TYPE {self.prom_name} gauge",
                f"{self.prom_name}{self.labels} {_num(self.read())}"]


#: Bucket bounds of an application's latency, as fractions of its SLO.
SLO_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 4.0)
#: Bucket bounds of a model version's latency in µs (its SLO is its applications'): 100 µs-10 s.
LATENCY_BOUNDS_MICROS = (*(m * 10**e for e in range(2, 7) for m in (1, 2, 5)), 10**7)
#: Bucket bounds of batch sizes.
BATCH_SIZE_BOUNDS = tuple(2**i for i in range(11))


def slo_bounds(slo_micros: int) -> tuple[int, ...]:
    """Latency bucket bounds (µs) around an SLO: the SLO itself is a bound."""
    return tuple(sorted({max(1, round(slo_micros * f)) for f in SLO_FRACTIONS}))


_KINDS = ("counters", "ratio_counters", "meters", "histograms", "gauges")


class MetricsRegistry:
    """Creates metrics once by name (asking twice returns the same object) and reports them."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        #: Scopes left out of reports (see :meth:`retain`).
        self._hidden: set[tuple[str, ...]] = set()

    def _get(self, name: str, factory: Callable[[], Metric]) -> Metric:
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = factory()
        return metric

    def counter(self, name: str) -> Counter:
        return self._get(name, lambda: Counter(name))  # type: ignore[return-value]

    def ratio(self, name: str) -> RatioCounter:
        return self._get(name, lambda: RatioCounter(name))  # type: ignore[return-value]

    def meter(self, name: str) -> Meter:
        return self._get(name, lambda: Meter(name))  # type: ignore[return-value]

    def histogram(self, name: str, unit: str = "microseconds", sample_size: int = 4096,
                  bounds: tuple[int, ...] = ()) -> Histogram:
        return self._get(  # type: ignore[return-value]
            name, lambda: Histogram(name, unit, sample_size, bounds))

    def gauge(self, name: str, read: Callable[[], float]) -> Gauge:
        gauge = self._get(name, lambda: Gauge(name, read))
        gauge.read = read  # type: ignore[attr-defined]
        return gauge  # type: ignore[return-value]

    def retain(self, apps: Collection[str], versions: Collection[tuple[str, str]],
               queued: Collection[tuple[str, str]] = ()) -> None:
        """Forget the metrics of applications and model versions the cluster no longer has.

        Called on every configuration reload. A deleted version that still has a queue
        (``queued``: its objects hold the metrics) keeps them, left out of reports until it
        is registered again.
        """
        live = {("app", a) for a in apps} | {("model", *v) for v in versions}
        hidden = {("model", *v) for v in queued} - live
        for name, metric in list(self._metrics.items()):
            if metric.scope and metric.scope not in live and metric.scope not in hidden:
                del self._metrics[name]
        self._hidden = hidden

    def get(self, name: str) -> Metric | None:
        return self._metrics.get(name)

    def _reported(self) -> Iterator[Metric]:
        hidden = self._hidden
        return (m for m in self._metrics.values() if not m.scope or m.scope not in hidden)

    def tick(self) -> None:
        for metric in self._metrics.values():
            if isinstance(metric, Meter):
                metric.tick()

    def report_json(self) -> bytes:
        """Spec §9.1: categories of single-key objects, every leaf a string, 4-space indent."""
        out: dict[str, list[dict[str, dict[str, str]]]] = {}
        for metric in self._reported():
            out.setdefault(metric.kind, []).append({metric.name: metric.report()})
        ordered = {kind: out[kind] for kind in _KINDS if kind in out}
        return json.dumps(ordered, indent=4).encode()

    def report_prometheus(self) -> bytes:
        """Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        seen: set[str] = set()
        for metric in sorted(self._reported(), key=lambda m: m.prom_name):
            for line in metric.prometheus():
                if line.startswith("# TYPE"):
                    if line in seen:
                        continue
                    seen.add(line)
                lines.append(line)
        return ("\n".join(lines) + "\n").encode()
