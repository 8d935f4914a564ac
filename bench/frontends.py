"""``python -m bench.frontends``: throughput with 1 and with 2 query frontends, against nginx.

For each frontend count it starts a cluster (Docker by default, or the local Kubernetes of
``scripts/kube-local.sh`` with ``--backend kubernetes``) with a no-op model (one replica per
frontend), then alternates closed-loop wrk runs against the cluster and against nginx (one
worker) and keeps each target's best run. Docker: the connections are split over the frontends'
ports, one wrk per frontend; Kubernetes: one wrk against the query Service's NodePort, which
kube-proxy spreads over the frontends per connection. Every figure is a ratio to nginx measured
in the same run. Prints a JSON report (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench import BenchError
from bench.reference import Nginx
from bench.workloads import BODY_TEMPLATE, noop
from bench.wrk import run_wrk

log = logging.getLogger("bench.frontends")
APP = "frontends-bench"


@contextmanager
def cluster(backend: str, frontends: int, kubeconfig: str | None) -> Any:
    """A started cluster with ``APP`` linked to a no-op model; stopped afterwards."""
    from clipper_admin import ClipperConnection
    from clipper_admin.deployers import python as python_deployer
    from clipper_core.testing.docker import (
        base_image,
        new_manager,
        prepare_docker,
        remove_model_images,
    )

    prepare_docker()
    with base_image():
        if backend == "docker":
            manager = new_manager("bench-fe")
        else:
            from clipper_admin import KubernetesContainerManager

            manager = KubernetesContainerManager(
                cluster_name=f"bench-fe-{uuid.uuid4().hex[:6]}", kubeconfig=kubeconfig,
                node_address="127.0.0.1")
        conn = ClipperConnection(manager)
        try:
            conn.start_clipper(num_frontend_replicas=frontends)
            conn.register_application(APP, "doubles", "-1.0", 1_000_000)
            python_deployer.deploy_python_closure(conn, "noop", 1, "doubles", noop)
            conn.link_model_to_app(APP, "noop")
            for addr in manager.get_query_addrs():
                _wait_for_prediction(addr)
            yield manager
        finally:
            conn.stop_all(graceful=False)
            remove_model_images(manager.cluster_name)


def _wait_for_prediction(addr: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = requests.post(f"http://{addr}/{APP}/predict", json={"input": [1.0]},
                                   timeout=5).json()
            if answer.get("default") is False:
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.5)
    raise BenchError(f"{addr} gave no prediction within {timeout:g} s")


def closed_loop(ports: list[int], connections: int, duration: float, base: int) -> float:
    """Predictions per second of wrk runs against ``ports`` at once (connections split)."""
    share = max(1, connections // len(ports))
    with ThreadPoolExecutor(len(ports)) as pool:
        results = list(pool.map(
            lambda i: run_wrk(ports[i], f"/{APP}/predict", BODY_TEMPLATE, distinct=True,
                              base=base + i * 10**9, connections=share, duration=duration,
                              cpu=None),
            range(len(ports))))
    return sum(r.qps for r in results)


def measure(backend: str, counts: list[int], connections: int, duration: float, repeats: int,
            kubeconfig: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {"backend": backend, "connections": connections,
                              "duration_s": duration, "repeats": repeats, "runs": []}
    base = 0
    with tempfile.TemporaryDirectory(prefix="bench-fe-") as tmp, Nginx(Path(tmp)) as nginx:
        for count in counts:
            with cluster(backend, count, kubeconfig) as manager:
                ports = [int(a.rsplit(":", 1)[1]) for a in manager.get_query_addrs()]
                best_ours = best_ref = 0.0
                closed_loop(ports, connections, 2.0, base)  # warm-up
                for _ in range(repeats):
                    base += 10**11
                    best_ref = max(best_ref, closed_loop([nginx.port], connections, duration,
                                                         base))
                    best_ours = max(best_ours, closed_loop(ports, connections, duration, base))
                log.info("%d frontend(s): %.0f qps, nginx %.0f qps", count, best_ours, best_ref)
                report["runs"].append({"frontends": count, "qps": round(best_ours, 1),
                                       "nginx_qps": round(best_ref, 1),
                                       "ratio_to_nginx": round(best_ours / best_ref, 4)})
    by_count = {r["frontends"]: r for r in report["runs"]}
    if 1 in by_count and 2 in by_count:
        report["two_over_one"] = round(by_count[2]["ratio_to_nginx"]
                                       / by_count[1]["ratio_to_nginx"], 3)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.frontends", description=__doc__)
    parser.add_argument("--backend", choices=("docker", "kubernetes"), default="docker")
    parser.add_argument("--kubeconfig", help="for --backend kubernetes (default $KUBECONFIG)")
    parser.add_argument("--frontends", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = measure(args.backend, args.frontends, args.connections, args.duration,
                     args.repeats, args.kubeconfig)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
