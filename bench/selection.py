"""Selection (issue 10): what a per-query policy costs a lone query.

An application ``exp4-3`` with the Exp4 policy over three models (each the ``sum`` model's
``feature_sum``, in its own replica) is measured at concurrency 1 against ``sum`` (the same
model alone, default policy), alternating the two (see :meth:`Runner.best_closed`). The issue's
goal: the ensemble's p50 under 2x the single model's.
"""

from __future__ import annotations

import logging
from typing import Any

from bench.cluster import Cluster
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


def measure_selection(cluster: Cluster, runner: Runner) -> list[dict[str, Any]]:
    """p50 and p99 at concurrency 1 of ``sum`` and ``exp4-3`` (both deployed and answering)."""
    targets = [Target(cluster.query_port, "/sum/predict"), Target(cluster.query_port,
                                                                  f"/{APP}/predict")]
    runner.closed(targets[1], BODY_TEMPLATE, True, 1, runner.settings.warmup)
    single, ensemble = runner.best_closed(targets, BODY_TEMPLATE, True, (1,))
    how = (f"concurrency 1, distinct inputs, best of {runner.settings.repeats} alternating "
           f"{runner.settings.c1_duration or runner.settings.duration:g} s wrk runs")
    figures = [
        _figure("one-model-c1-p50", single.p50_ms, "ms", f"sum (default policy), {how}"),
        _figure("one-model-c1-p99", single.p99_ms, "ms", f"sum (default policy), {how}"),
        _figure("exp4-of-3-c1-p50", ensemble.p50_ms, "ms",
                f"{APP}: Exp4 over three feature_sum models, {how}"),
        _figure("exp4-of-3-c1-p99", ensemble.p99_ms, "ms",
                f"{APP}: Exp4 over three feature_sum models, {how}"),
        _figure("exp4-of-3-c1-ratio", ensemble.p50_ms / single.p50_ms, "x one model",
                "p50 of the Exp4 ensemble of 3 / p50 of one model, same run"),
    ]
    for f in figures:
        log.info("selection: %s = %.3f %s", f["scenario"], f["value"], f["unit"])
    if ensemble.defaults or ensemble.errors:
        log.warning("selection: %s answered %d defaults, %d errors", APP, ensemble.defaults,
                    ensemble.errors)
    return figures
