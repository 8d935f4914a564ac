"""The latency floor (issue 15): where a lone ``sum`` query's time goes, stage by stage.

Under a concurrency-1 load (wrk ``-c1``, one query at a time), py-spy samples the server and the
``sum`` replica at once (on the load generator's core, so the sampler does not take the SUT's
CPU), recording only samples where a thread is running. Each sample is put in a stage by the
innermost frame of its stack that a stage claims (:data:`SERVER_STAGES`,
:data:`REPLICA_STAGES`); a stage's time per query is its share of the samples times the run's
duration over the number of queries. At concurrency 1 the stages follow one another, so what
is left of the latency once both processes' busy time is taken away (``in transit``) is time
when neither runs Python: the kernel, ZeroMQ's I/O threads, wake-ups, and the client.
Sampling costs the profiled processes some time, so the run's p50 is a little above the
unprofiled one; the shares are what to read.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import BenchError
from bench.cluster import Cluster, replica_pids
from bench.runner import Runner, Target
from bench.workloads import BODY_TEMPLATE

log = logging.getLogger("bench")

#: ``(stage, (file or function fragments...))``: a frame ``function (file:line)`` belongs to the
#: first stage with a fragment in it, looked for from the innermost frame outwards.
SERVER_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("write", ("Responder.send", "render_response", "transport.write")),
    ("encode", ("Pending.resolve", "Pending.finish", "render_output", "default_part")),
    ("cache", ("cache/",)),
    ("RPC send", ("send_predict", "predict_request", "RpcRouter._send", "encode (")),
    ("RPC receive", ("RpcRouter._drain", "RpcRouter._handle", "parse_response",
                     "parse_container_message", "_StreamPeer", "Decoder.feed", "_frames (")),
    ("queue", ("batching/",)),
    ("decode", ("frontend/codec.py",)),
    ("route", ("QueryFrontend._predict", "QueryFrontend._handle", "routing.py")),
    ("HTTP parse", ("frontend/http.py",)),
    ("metrics", ("metrics.py",)),
    ("store (other threads)", ("store/", "threading.py")),
    ("event loop (C: epoll, httptools, socket I/O)", ("Runner.run", "uvloop", "asyncio")),
)
REPLICA_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", ("feature_sum", "deployers/")),
    ("reply", ("encode_outputs", "response_message", "send (")),
    ("decode", ("decode_inputs", "parse_predict_request", "codec.py")),
    ("receive", ("recv", "has_message", "_on_message", "parse_frontend_message", "poll (")),
    ("loop", ("_loop (", "serve (", "<module>", "runpy")),
)


def classify(stack: str, stages: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    """The stage of one collapsed stack (``outer;...;inner``), ``other`` if none claims it."""
    for frame in reversed(stack.split(";")):
        for stage, fragments in stages:
            if any(f in frame for f in fragments):
                return stage
    return "other"


def stage_counts(collapsed: str, stages: tuple[tuple[str, tuple[str, ...]], ...]
                 ) -> dict[str, int]:
    """Samples per stage in py-spy's raw (collapsed) output."""
    counts: dict[str, int] = {}
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stage = classify(stack, stages)
            counts[stage] = counts.get(stage, 0) + int(count)
    return counts


def py_spy() -> str | None:
    """py-spy's executable: on PATH, or beside this interpreter (an unactivated venv)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def profile_floor(cluster: Cluster, runner: Runner, out: Path, rate: int = 1000
                  ) -> dict[str, Any]:
    """Profile ``sum`` at concurrency 1; return the breakdown per query (µs) and the p50."""
    server, spy_exe = cluster.server_pid(), py_spy()
    if spy_exe is None or server is None:
        raise BenchError("the latency profile needs py-spy (pip install py-spy) and a server")
    replica = replica_pids("sum-model")[0]
    out.mkdir(parents=True, exist_ok=True)
    duration = max(2, int(runner.settings.duration))
    spies = {}
    for name, pid in (("server", server), ("replica", replica)):
        target = out / f"floor-{name}.txt"
        spies[name] = (target, subprocess.Popen(
            ["taskset", "-c", str(runner.settings.load_cpu), spy_exe, "record", "--pid",
             str(pid), "--rate", str(rate), "--duration", str(duration + 1), "--gil", "--format", "raw",
             "--nonblocking", "-o", str(target)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    time.sleep(1.0)
    load = runner.closed(Target(cluster.query_port, "/sum/predict"), BODY_TEMPLATE, True, 1,
                         duration)
    stages: dict[str, dict[str, float]] = {}
    busy_us = 0.0
    for name, (target, spy) in spies.items():
        output, _ = spy.communicate(timeout=120)
        if spy.returncode != 0 or not target.is_file():
            raise BenchError(f"py-spy on the {name} failed: {output.strip()[-1000:]}")
        counts = stage_counts(target.read_text(),
                              SERVER_STAGES if name == "server" else REPLICA_STAGES)
        # a sample stands for 1/rate s of running; spread over the queries of the run
        per_query = {stage: n / rate / max(load.requests, 1) * 1e6
                     for stage, n in sorted(counts.items(), key=lambda kv: -kv[1])}
        stages[name] = {k: round(v, 1) for k, v in per_query.items()}
        busy_us += sum(per_query.values())
    mean_us = 1e6 / load.qps if load.qps else float("nan")
    result = {"p50_ms": load.p50_ms, "mean_us": round(mean_us, 1), "queries": load.requests,
              "server_us": stages["server"], "replica_us": stages["replica"],
              "in_transit_us": round(mean_us - busy_us, 1), "rate_hz": rate}
    log.info("floor: mean %.0f µs per query; server %s; replica %s; in transit %.0f µs",
             mean_us, stages["server"], stages["replica"], result["in_transit_us"])
    return result
