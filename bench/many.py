"""Many models on one cluster (issue 15): 1,000 applications and 1,000 model versions.

On the benchmark's cluster, after every other scenario (the registrations stay): measure ``sum``
at saturation against nginx, register the applications and the model versions (a few of them
deployed, with replicas), and measure ``sum`` again; between the steps, the server's memory.
Then the latencies of the management calls that list everything, and the time from a
registration to the query frontend routing the new application.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench import BenchError
from bench.cluster import Cluster
from bench.runner import Runner, Target
from bench.workloads import BODY_TEMPLATE, N_DIGITS, noop

log = logging.getLogger("bench")

APPS = 1000
#: Model versions: ``MODELS`` models with ``VERSIONS`` versions each; the last version of the
#: first ``DEPLOYED`` models is deployed (the first of them with two replicas), the others are
#: only registered.
MODELS = 500
VERSIONS = 2
DEPLOYED = 3
#: Registrations timed from the call to the first answer of the new application's model.
FEED_SAMPLES = 20


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS in /proc/{pid}/status")


def _timed(call: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1e3)
    return out


def _figure(name: str, value: float, unit: str, detail: str) -> dict[str, Any]:
    return {"scenario": f"many/{name}", "value": value, "unit": unit, "detail": detail}


def _latency(name: str, samples: list[float], detail: str) -> list[dict[str, Any]]:
    return [_figure(f"{name}-p50", float(np.median(samples)), "ms", detail),
            _figure(f"{name}-max", max(samples), "ms", f"{detail}; max of {len(samples)}")]


def _sum_throughput(runner: Runner, cluster: Cluster, nginx_port: int) -> tuple[float, float]:
    """Best ``sum`` and nginx saturation qps, alternating (see :meth:`Runner.best_closed`)."""
    ours, ref = runner.best_closed([Target(cluster.query_port, "/sum/predict"),
                                    Target(nginx_port, "/sum/predict")], BODY_TEMPLATE, True,
                                   runner.settings.connections)
    return ours.qps, ref.qps


def _first_answer(port: int, app: str, timeout: float = 30.0) -> None:
    """Query ``app`` until its model answers (not the default output, not 404)."""
    url = f"http://127.0.0.1:{port}/{app}/predict"
    body = BODY_TEMPLATE.replace("{n}", "1" * N_DIGITS)
    session = requests.Session()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = session.post(url, data=body, timeout=timeout,
                            headers={"Content-Type": "application/json"})
        if resp.status_code == 200 and resp.json().get("default") is False:
            return
        time.sleep(0.001)
    raise BenchError(f"application {app} was not routed to its model within {timeout:g} s")


def measure_many(cluster: Cluster, runner: Runner, nginx_port: int) -> list[dict[str, Any]]:
    """The many-models figures; ``sum`` must be deployed on ``cluster``."""
    conn, pid = cluster.conn, cluster.server_pid()
    if pid is None:
        raise BenchError("the many-models measurement needs the server's pid")
    single, single_ref = _sum_throughput(runner, cluster, nginx_port)
    log.info("many: sum alone %.0f qps (nginx %.0f)", single, single_ref)
    figures = []

    rss = rss_bytes(pid)
    started = time.monotonic()
    for i in range(APPS):
        conn.register_application(f"many-app-{i}", "doubles", "-1.0", 100_000)
    apps_s = time.monotonic() - started
    rss_apps = rss_bytes(pid)
    log.info("many: %d applications registered in %.1f s", APPS, apps_s)

    started = time.monotonic()
    for m in range(MODELS):
        for v in range(1, VERSIONS + 1):
            if m < DEPLOYED and v == VERSIONS:
                continue
            conn.register_model(f"many-model-{m}", v, "doubles")
    models_s = time.monotonic() - started
    rss_models = rss_bytes(pid)
    registered = MODELS * VERSIONS - DEPLOYED
    from clipper_admin.deployers.python import deploy_python_closure

    for m in range(DEPLOYED):
        deploy_python_closure(conn, name=f"many-model-{m}", version=VERSIONS, input_type="doubles",
                              func=noop, num_replicas=2 if m == 0 else 1)
    for i in range(APPS):
        conn.link_model_to_app(f"many-app-{i}", f"many-model-{i % MODELS}")
    for m in range(DEPLOYED):
        _first_answer(cluster.query_port, f"many-app-{m}")
    log.info("many: %d model versions registered in %.1f s, %d deployed, apps linked",
             registered, models_s, DEPLOYED)
    figures += [
        _figure("memory-per-app", (rss_apps - rss) / APPS / 1024, "KiB",
                f"server RSS growth over {APPS} registrations / {APPS}"),
        _figure("memory-per-model", (rss_models - rss_apps) / registered / 1024, "KiB",
                f"server RSS growth over {registered} model registrations / {registered}"),
        _figure("register-app", apps_s / APPS * 1e3, "ms", f"mean of {APPS} register_application"),
        _figure("register-model", models_s / registered * 1e3, "ms",
                f"mean of {registered} register_model"),
    ]

    many, many_ref = _sum_throughput(runner, cluster, nginx_port)
    log.info("many: sum among %d apps %.0f qps (nginx %.0f)", APPS, many, many_ref)
    figures.append(_figure(
        "sum-throughput-ratio", (many / many_ref) / (single / single_ref), "x single app",
        f"sum saturation with {APPS + 1} apps / alone, each normalised by nginx in the same "
        f"minute ({many:,.0f}/{many_ref:,.0f} vs {single:,.0f}/{single_ref:,.0f} qps)"))

    figures += _latency("get_all_apps", _timed(lambda: conn.get_all_apps(verbose=True), 20),
                        f"get_all_apps(verbose=True) with {APPS + 1}+ applications")
    figures += _latency("get_all_models", _timed(lambda: conn.get_all_models(verbose=True), 20),
                        f"get_all_models(verbose=True) with {MODELS * VERSIONS}+ versions")
    feed = []
    for i in range(FEED_SAMPLES):
        app = f"many-feed-{i}"
        started = time.perf_counter()
        conn.register_application(app, "doubles", "-1.0", 100_000)
        conn.link_model_to_app(app, "sum-model")
        _first_answer(cluster.query_port, app)
        feed.append((time.perf_counter() - started) * 1e3)
    figures += _latency("registration-to-routed", feed,
                        "register_application + link_model_to_app + the first query the model "
                        "answers (a query for an application the frontend does not know yet "
                        f"looks it up in the store first), with {APPS}+ applications")
    for f in figures:
        log.info("many: %s = %.3f %s", f["scenario"], f["value"], f["unit"])
    return figures
