"""Selection (issue 10): what a per-query policy costs a lone query.

An application ``exp4-3`` with the Exp4 policy over three models (each the ``sum`` model's
``feature_sum``, in its own replica) is measured at concurrency 1 against ``sum`` (the same
model alone, default policy), alternating the two (see :meth:`Runner.best_closed`), in two
layouts:

- the benchmark's: the server and every replica on the SUT's one core, where the ensemble's
  three replicas can only take turns;
- the replicas allowed on both cores (the server stays on its own; the load generator shares
  the second), so that they can compute while the server works: on two cores, three replicas
  still share one core between them.

The issue's goal, the ensemble's p50 under 2x the single model's, is judged in the first; the
second shows what the arms gain from a core beside the server's (its ratio is taken over the
single model's best p50 in either layout).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bench.cluster import Cluster, replica_pids
from bench.runner import Runner, Target
from bench.workloads import BODY_TEMPLATE, feature_sum

log = logging.getLogger("bench")

APP = "exp4-3"
ARMS = 3


def deploy_ensemble(cluster: Cluster) -> None:
    """Register ``exp4-3`` with Exp4 and link three ``feature_sum`` models to it."""
    from clipper_admin.deployers.python import deploy_python_closure

    conn = cluster.conn
    conn.register_application(APP, "doubles", "-1.0", 100_000, selection_policy="exp4")
    for i in range(ARMS):
        model = f"{APP}-model-{i}"
        deploy_python_closure(conn, name=model, version=1, input_type="doubles",
                              func=feature_sum)
        conn.link_model_to_app(APP, model)


def _figure(name: str, value: float, unit: str, detail: str) -> dict[str, Any]:
    return {"scenario": f"selection/{name}", "value": value, "unit": unit, "detail": detail}


@contextmanager
def replicas_on(cpus: set[int], models: list[str]) -> Iterator[None]:
    """Let every thread of ``models``' replicas run on ``cpus``; restore their cores after."""
    tids = [int(task.name) for model in models for pid in replica_pids(model)
            for task in Path(f"/proc/{pid}/task").iterdir()]
    before = {tid: os.sched_getaffinity(tid) for tid in tids}
    for tid in tids:
        os.sched_setaffinity(tid, cpus)
    try:
        yield
    finally:
        for tid, old in before.items():
            with suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, old)


def measure_selection(cluster: Cluster, runner: Runner) -> list[dict[str, Any]]:
    """p50 and p99 at concurrency 1 of ``sum`` and ``exp4-3`` (both deployed and answering),
    with the replicas on the SUT's core, then on both cores."""
    settings = runner.settings
    targets = [Target(cluster.query_port, "/sum/predict"), Target(cluster.query_port,
                                                                  f"/{APP}/predict")]
    runner.closed(targets[1], BODY_TEMPLATE, True, 1, settings.warmup)
    single, ensemble = runner.best_closed(targets, BODY_TEMPLATE, True, (1,))
    models = ["sum-model", *(f"{APP}-model-{i}" for i in range(ARMS))]
    with replicas_on({settings.sut_cpu, settings.load_cpu}, models):
        single2, ensemble2 = runner.best_closed(targets, BODY_TEMPLATE, True, (1,))
    how = (f"concurrency 1, distinct inputs, best of {settings.repeats} alternating "
           f"{settings.c1_duration or settings.duration:g} s wrk runs")
    one, two = f"server and replicas on cpu{settings.sut_cpu}", (
        f"server on cpu{settings.sut_cpu}, replicas on cpu{settings.sut_cpu} and "
        f"cpu{settings.load_cpu}")
    best_single = min(single.p50_ms, single2.p50_ms)
    ensemble_of = f"{APP}: Exp4 over three feature_sum models"
    figures = [
        _figure("one-model-c1-p50", single.p50_ms, "ms", f"sum (default policy), {one}, {how}"),
        _figure("one-model-c1-p99", single.p99_ms, "ms", f"sum (default policy), {one}, {how}"),
        _figure("exp4-of-3-c1-p50", ensemble.p50_ms, "ms", f"{ensemble_of}, {one}, {how}"),
        _figure("exp4-of-3-c1-p99", ensemble.p99_ms, "ms", f"{ensemble_of}, {one}, {how}"),
        _figure("exp4-of-3-c1-ratio", ensemble.p50_ms / single.p50_ms, "x one model",
                f"p50 of the Exp4 ensemble of 3 / p50 of one model, {one}"),
        _figure("one-model-c1-p50-2-cores", single2.p50_ms, "ms",
                f"sum (default policy), {two}, {how}"),
        _figure("exp4-of-3-c1-p50-2-cores", ensemble2.p50_ms, "ms",
                f"{ensemble_of}, {two}, {how}"),
        _figure("exp4-of-3-c1-ratio-2-cores", ensemble2.p50_ms / best_single, "x one model",
                f"p50 of the Exp4 ensemble of 3 ({two}) / the best p50 of one model in "
                "either layout"),
    ]
    for f in figures:
        log.info("selection: %s = %.3f %s", f["scenario"], f["value"], f["unit"])
    for result in (ensemble, ensemble2):
        if result.defaults or result.errors:
            log.warning("selection: %s answered %d defaults, %d errors", APP, result.defaults,
                        result.errors)
    return figures
