"""Measures every scenario and its reference, and turns the measurements into records."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs

from bench import BenchError
from bench.loadgen import OpenLoopResult
from bench.reference import BODY_PREFIX
from bench.workloads import N_DIGITS, Scenario
from bench.wrk import WrkResult, run_wrk

log = logging.getLogger("bench")

#: Environment variables that cap the threads of BLAS libraries and torch, in every process.
THREAD_LIMITS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@attrs.frozen
class Settings:
    """How long and how hard each measurement runs, and on which cores."""

    duration: float
    warmup: float
    #: Closed-loop connection counts tried for saturation (the best is kept); the largest is
    #: also the open-loop generator's connection pool.
    connections: tuple[int, ...]
    fractions: tuple[float, ...]
    c1_duration: float = 0.0  # 0: same as duration
    repeats: int = 1
    sut_cpu: int = 0
    load_cpu: int = 1
    nice: int = 0

    def layout(self) -> str:
        return (f"SUT (server, replicas, nginx) on cpu{self.sut_cpu}; load generator on "
                f"cpu{self.load_cpu}; BLAS/OMP/torch threads = 1; nice {self.nice}")


QUICK = Settings(duration=2.0, warmup=1.0, connections=(16, 64), fractions=(0.5,),
                 c1_duration=1.0)
FULL = Settings(duration=5.0, warmup=2.0, connections=(16, 64),
                fractions=(0.1, 0.25, 0.5, 0.75, 0.9), repeats=2)


def pin_and_limit_threads(settings: Settings) -> None:
    """Pin this process (and so every child: server, replicas, nginx) to the SUT core, with
    the chosen nice value (inherited by every child, the load generators included)."""
    for name in THREAD_LIMITS:
        os.environ[name] = "1"
    available = os.sched_getaffinity(0)
    if {settings.sut_cpu, settings.load_cpu} - available:
        raise BenchError(f"cores {settings.sut_cpu} and {settings.load_cpu} are needed (SUT and "
                         f"load generator), this process may use {sorted(available)}; choose "
                         "others with --sut-cpu/--load-cpu")
    os.sched_setaffinity(0, {settings.sut_cpu})
    if settings.nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, settings.nice)
        except PermissionError as exc:
            raise BenchError(f"cannot set nice {settings.nice} ({exc}); negative values need "
                             "root, or run without --nice") from exc


@attrs.frozen
class Measured:
    """The measurements of one target (a scenario or nginx)."""

    c1: WrkResult
    saturation: WrkResult
    open: dict[float, OpenLoopResult]  # offered rate -> result


@attrs.frozen
class Target:
    """Where one side of a measurement sends its requests."""

    port: int
    path: str


class Runner:
    """Runs wrk and the open-loop generator; every run gets fresh input values."""

    #: Input values of run k start at ``10**(N_DIGITS - 1) + k * RUN_SPACING``: every run's
    #: values differ from every other's and all have :data:`N_DIGITS` digits.
    RUN_SPACING = 10**9

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runs = 0

    def _next_base(self) -> int:
        self._runs += 1
        base = 10 ** (N_DIGITS - 1) + self._runs * self.RUN_SPACING
        if base >= 10**N_DIGITS - self.RUN_SPACING:
            raise BenchError(f"more than {self._runs - 1} runs in one benchmark: input values "
                             f"no longer fit in {N_DIGITS} digits")
        return base

    def closed(self, target: Target, body: str, distinct: bool, connections: int,
               duration: float | None = None) -> WrkResult:
        return run_wrk(target.port, target.path, body, distinct=distinct,
                       base=self._next_base(), connections=connections,
                       duration=duration or self.settings.duration, cpu=self.settings.load_cpu)

    def open(self, target: Target, body: str, distinct: bool, rate: float) -> OpenLoopResult:
        with tempfile.NamedTemporaryFile("w", prefix="bench-body-", suffix=".txt") as file:
            file.write(body)
            file.flush()
            cmd = ["taskset", "-c", str(self.settings.load_cpu), sys.executable, "-m",
                   "bench.loadgen", "--port", str(target.port), "--path", target.path,
                   "--rate", f"{rate:.3f}", "--duration", str(self.settings.duration),
                   "--body-file", file.name, "--base", str(self._next_base()),
                   "--connections", str(max(self.settings.connections))]
            if not distinct:
                cmd.append("--fixed")
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=self.settings.duration + 60)
        if proc.returncode != 0:
            raise BenchError(f"the open-loop generator failed: {proc.stderr.strip()[-2000:]}")
        return OpenLoopResult(**json.loads(proc.stdout))

    def best_closed(self, targets: list[Target], body: str, distinct: bool,
                     connections: tuple[int, ...]) -> list[WrkResult]:
        """Alternate the targets ``repeats`` times at each connection count; keep each one's
        best run.

        On a shared machine interference only ever slows a run down, so the best of several
        alternating runs is the fairest estimate for every target alike: the lowest p50 at
        concurrency 1, the most predictions per second at saturation (where more connections
        can mean fewer predictions, when queries wait past their SLO and get the default).
        """
        runs: list[list[WrkResult]] = [[] for _ in targets]
        duration = self.settings.c1_duration if connections == (1,) else None
        for _ in range(self.settings.repeats):
            for conns in connections:
                for i, target in enumerate(targets):
                    runs[i].append(self.closed(target, body, distinct, conns, duration))
        if connections == (1,):
            return [min(r, key=lambda w: w.p50_ms) for r in runs]
        return [max(r, key=lambda w: w.qps) for r in runs]

    def measure(self, port: int, scenario: Scenario, ref_port: int | None = None
                ) -> tuple[Measured, Measured | None]:
        """c1, saturation and the open-loop sweep of one scenario.

        With ``ref_port`` (nginx, or the untraced cluster of a traced scenario), every
        measurement of the scenario is interleaved with the same measurement of the reference
        (same bodies; under :data:`BODY_PREFIX` when the reference is ``nginx-body``), at the
        same offered rates for the open loop.
        """
        path = scenario.path
        targets = [Target(port, path)]
        if ref_port is not None:
            prefix = BODY_PREFIX if scenario.reference == "nginx-body" else ""
            targets.append(Target(ref_port, prefix + path))
        body = scenario.body
        ref = scenario.reference.removesuffix("-body")  # what the log calls the reference
        self.closed(targets[0], body, scenario.distinct, max(self.settings.connections),
                    self.settings.warmup)
        c1 = self.best_closed(targets, body, scenario.distinct, (1,))
        log.info("%s c1: p50 %.3f ms p99 %.3f ms%s", scenario.name, c1[0].p50_ms, c1[0].p99_ms,
                 f" ({ref} p50 {c1[1].p50_ms:.3f} ms)" if ref_port else "")
        sat = self.best_closed(targets, body, scenario.distinct, self.settings.connections)
        # the concurrency-1 run is a closed-loop run too: with a tight SLO it can give the most
        # predictions per second (every other query waits past its deadline)
        sat = [max(s, c, key=lambda w: w.qps) for s, c in zip(sat, c1, strict=True)]
        log.info("%s saturation: %.0f qps with %d connections (errors %d, defaults %d)%s",
                 scenario.name, sat[0].qps, sat[0].connections, sat[0].errors, sat[0].defaults,
                 f" ({ref} {sat[1].qps:.0f} qps)" if ref_port else "")
        points: list[dict[float, OpenLoopResult]] = [{} for _ in targets]
        for fraction in self.settings.fractions:
            # at least 1 qps: a scenario that answered nothing at saturation is still measured
            rate = max(1.0, fraction * sat[0].qps)
            for i, target in enumerate(targets):
                points[i][rate] = self.open(target, body, scenario.distinct, rate)
            mine = points[0][rate]
            log.info("%s open %.0f qps: p50 %.3f ms p99 %.3f ms (defaults %d, errors %d)%s",
                     scenario.name, rate, mine.p50_ms, mine.p99_ms, mine.defaults, mine.errors,
                     f" ({ref} p50 {points[1][rate].p50_ms:.3f} ms)" if ref_port else "")
        measured = [Measured(c, s, o) for c, s, o in zip(c1, sat, points, strict=True)]
        return measured[0], (measured[1] if ref_port else None)


def _ratio(ours: float, ref: float) -> float | None:
    return ours / ref if ref else None


def _record(scenario: Scenario, kind: str, ours: WrkResult | OpenLoopResult,
            ref: WrkResult | OpenLoopResult, layout: str) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "scenario": f"{scenario.name}/{kind}", "qps": ours.qps, "p50_ms": ours.p50_ms,
        "p99_ms": ours.p99_ms, "errors": ours.errors, "defaults": ours.defaults,
        "reference_qps": ref.qps, "reference_p50_ms": ref.p50_ms,
        "ratio_qps": _ratio(ours.qps, ref.qps), "ratio_p50": _ratio(ours.p50_ms, ref.p50_ms),
        "answered": ours.requests if isinstance(ours, WrkResult) else ours.completed,
        "reference": scenario.reference, "reference_p99_ms": ref.p99_ms, "layout": layout,
        "body_bytes": scenario.body_bytes,
    }
    if scenario.reference == "nginx-body":  # large inputs: request bodies read per second
        rec["mb_s"] = ours.qps * scenario.body_bytes / 1e6
        rec["reference_mb_s"] = ref.qps * scenario.body_bytes / 1e6
    if isinstance(ours, WrkResult):
        rec["connections"] = ours.connections
        rec["reference_connections"] = ref.connections
    if isinstance(ours, OpenLoopResult):
        rec["offered_qps"] = ours.offered_qps
        rec["reference_offered_qps"] = ref.offered_qps
        rec["send_lag_p99_ms"] = ours.send_lag_p99_ms
        rec["reference_send_lag_p99_ms"] = ref.send_lag_p99_ms
    return rec


def records(scenario: Scenario, ours: Measured, ref: Measured, fractions: tuple[float, ...],
            layout: str) -> list[dict[str, Any]]:
    """The records of one scenario against its reference.

    Open-loop points are matched by position in the sweep: against nginx, the reference ran at
    the same offered rates; against another scenario, at the same fractions of its own
    saturation.
    """
    out = [_record(scenario, "saturation", ours.saturation, ref.saturation, layout),
           _record(scenario, "c1", ours.c1, ref.c1, layout)]
    for fraction, mine, theirs in zip(fractions, ours.open.values(), ref.open.values(),
                                      strict=True):
        out.append(_record(scenario, f"open-{round(fraction * 100)}", mine, theirs, layout))
    return out
