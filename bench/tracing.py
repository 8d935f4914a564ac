"""The cost of tracing: the ``sum`` load on clusters that trace every request, or 1 in 100.

``sum-traced`` and ``sum-traced-1pct`` each run on a cluster started with ``tracing_endpoint``
set to an :class:`OtlpSink` (an OTLP/HTTP endpoint in the benchmark process, on the load
generator's core like wrk, that decodes what it receives and counts the spans) and
``tracing_sample_ratio`` 1 or 0.01, while the untraced cluster keeps running: every measurement
alternates between the traced cluster and ``sum`` on the untraced one (as the other scenarios
alternate with nginx), so ``ratio_qps`` is the share of throughput left with tracing on.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import BenchError
from bench.cluster import Cluster, cpu_seconds
from bench.runner import Runner, Target, records
from bench.workloads import Deployment, Scenario

log = logging.getLogger("bench")


class OtlpSink:
    """``with OtlpSink() as sink``: an OTLP/HTTP traces endpoint counting spans and bytes."""

    def __init__(self) -> None:
        try:
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                ExportTraceServiceRequest,
            )
        except ImportError as exc:
            raise BenchError("sum-traced needs OpenTelemetry: "
                             "pip install 'clipper-core[tracing]' opentelemetry-proto") from exc
        self.spans = 0
        self.posts = 0
        self.bytes = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                n = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with sink.lock:
                    sink.spans += n
                    sink.posts += 1
                    sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def measure_traced(runner: Runner, workdir: Path, chosen: list[Scenario],
                   deps: list[Deployment], untraced: Cluster
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Measure each traced scenario on its own traced cluster, interleaved with its reference
    on the ``untraced`` one; their records and, per scenario, the spans the sink received."""
    settings = runner.settings
    recs: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for scenario in chosen:
        [dep] = [d for d in deps if d.app == scenario.app]
        folder = workdir / scenario.name
        with OtlpSink() as sink:
            env = {"CLIPPER_TRACING_ENDPOINT": sink.url,
                   "CLIPPER_TRACING_SAMPLE_RATIO": str(scenario.traced)}
            with Cluster(folder, env=env) as cluster:
                cluster.deploy(dep)
                cluster.wait_ready(scenario.app, scenario.body)
                ours, ref = runner.measure(cluster.query_port, scenario, untraced.query_port)
                cpu = [server_cpu_per_query(runner, c, scenario) for c in (cluster, untraced)]
            assert ref is not None
            mine = records(scenario, ours, ref, settings.fractions, settings.layout())
            mine.append({"scenario": f"{scenario.name}/server-cpu-per-query", "value": cpu[0],
                         "unit": "µs", "detail": f"the server's CPU time per query under "
                         f"saturation; {cpu[1]:.1f} µs with tracing off, measured after it"})
        if not sink.spans:
            raise BenchError(f"the traced cluster exported no spans to {sink.url}; see the "
                             f"server log in {folder / 'logs'}")
        log.info("%s: %d spans in %d OTLP requests (%.1f MB)", scenario.name, sink.spans,
                 sink.posts, sink.bytes / 1e6)
        meta[scenario.name] = {"sampled": scenario.traced, "spans": sink.spans,
                               "otlp_requests": sink.posts, "otlp_bytes": sink.bytes,
                               "server_cpu_us_per_query": cpu[0],
                               "untraced_server_cpu_us_per_query": cpu[1]}
        recs += mine
    return recs, meta


def server_cpu_per_query(runner: Runner, cluster: Cluster, scenario: Scenario) -> float:
    """The CPU time (µs, all threads) the cluster's server process spends per query under a
    closed-loop load: what the query path costs, whatever else the machine runs."""
    pid = cluster.server_pid()
    if pid is None:
        raise BenchError("the cluster's server process is not running")
    before = cpu_seconds(pid)
    load = runner.closed(Target(cluster.query_port, scenario.path), scenario.body,
                         scenario.distinct, max(runner.settings.connections))
    return (cpu_seconds(pid) - before) * 1e6 / max(load.requests, 1)
