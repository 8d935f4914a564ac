"""``python -m bench.r_replica``: the R replica against the Python closure, at the RPC.

Both replicas serve the same model (the sum of each input's doubles) and are started the way
every backend starts them (``python -m clipper_core.runtime``; the R bundle's runtime runs
Rscript). This benchmark plays the frontend: a ZeroMQ ROUTER that registers each replica and
sends it predict requests over RPC v4, one at a time, so it measures what a replica adds:

- latency at batch 1: round trip of a one-input request (median and p99);
- throughput at batch 100: inputs answered per second with 100-input requests.

Results go to ``bench/results/r_replica.json`` and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import zmq
from clipper_deployer_r.deployer import run_r, write_r_bundle

from clipper_core.deployers.api import write_bundle
from clipper_core.deployers.python import PythonDeployer
from clipper_core.rpc import protocol as p
from clipper_core.types import InputType

RESULTS = Path(__file__).resolve().parent / "results" / "r_replica.json"
FEATURES = 8
R_MODEL = "f <- function(inputs) vapply(inputs, sum, 0)"


def python_sum(inputs: Any) -> list[float]:
    return inputs.sum(axis=1).tolist()


def _bundles(root: Path) -> dict[str, Path]:
    rds = root / "sum.rds"
    run_r(f"{R_MODEL}; Rclipper::save_model(f, as.numeric(1:{FEATURES}), commandArgs(TRUE)[1])",
          str(rds))
    write_r_bundle(root / "r", rds)
    write_bundle(PythonDeployer(), root / "python", "doubles", python_sum)
    return {"R replica": root / "r", "Python closure": root / "python"}


@contextmanager
def _replica(bundle: Path, port: int, name: str, log_path: Path):
    env = {**os.environ, "CLIPPER_MODEL_NAME": name, "CLIPPER_MODEL_VERSION": "1",
           "CLIPPER_PORT": str(port), "CLIPPER_MODEL_PATH": str(bundle),
           "CLIPPER_READY_FILE": "", "CLIPPER_INPUT_TYPE": "doubles"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "clipper_core.runtime"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


class Frontend:
    """A ROUTER that registers one replica and sends it predict requests (RPC v4)."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.identity = b""
        self.msg_id = 0

    def register(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.sock.poll(1000):
                continue
            identity, *frames = self.sock.recv_multipart()
            msg_type, _ = p.parse_container_message(frames)
            if msg_type == p.MSG_HEARTBEAT:
                reply = p.heartbeat_reply(p.RPC_VERSION, p.HEARTBEAT_REQUEST_METADATA)
                self.sock.send_multipart([identity, *reply])
            elif msg_type == p.MSG_NEW_CONTAINER:
                self.identity = identity
                return
        msg = f"no replica registered within {timeout_s:g} s"
        raise RuntimeError(msg)

    def predict(self, inputs: list[bytes]) -> list[bytes]:
        self.msg_id += 1
        self.sock.send_multipart([self.identity, *p.predict_request(
            p.RPC_VERSION, self.msg_id, int(InputType.DOUBLES), inputs)])
        while True:
            identity, *frames = self.sock.recv_multipart()
            msg_type, rest = p.parse_container_message(frames)
            if msg_type == p.MSG_CONTAINER_CONTENT:
                return p.parse_response(rest, p.RPC_VERSION)[1]
            if msg_type == p.MSG_ERROR:
                raise RuntimeError(p.parse_error(rest)[1])
            if msg_type == p.MSG_HEARTBEAT:
                self.sock.send_multipart([identity, *p.heartbeat_reply(p.RPC_VERSION, 0)])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _inputs(n: int) -> list[bytes]:
    return [struct.pack(f"<{FEATURES}d", *(float(i + j) for j in range(FEATURES)))
            for i in range(n)]


def measure(frontend: Frontend, seconds: float) -> dict[str, float]:
    one, hundred = _inputs(1), _inputs(100)
    expected = [str(float(sum(range(FEATURES)))).encode()]
    answer = frontend.predict(one)
    assert float(answer[0]) == float(expected[0]), (answer, expected)
    for _ in range(50):  # warm up
        frontend.predict(one)
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        frontend.predict(one)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    batches, started = 0, time.perf_counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert len(frontend.predict(hundred)) == 100
        batches += 1
    elapsed = time.perf_counter() - started
    return {"batch1_p50_us": statistics.median(latencies) * 1e6,
            "batch1_p99_us": latencies[int(0.99 * (len(latencies) - 1))] * 1e6,
            "batch100_inputs_per_s": 100 * batches / elapsed,
            "batch100_mean_ms": 1e3 * elapsed / batches}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.r_replica", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"features": FEATURES, "seconds": args.seconds, "replicas": {}}
    with tempfile.TemporaryDirectory(prefix="bench-r-") as tmp:
        for label, bundle in _bundles(Path(tmp)).items():
            frontend = Frontend()
            try:
                with _replica(bundle, frontend.port, "sum", Path(tmp, f"{bundle.name}.log")):
                    frontend.register()
                    results["replicas"][label] = measure(frontend, args.seconds)
            finally:
                frontend.close()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'replica':<16} {'batch 1 p50':>12} {'batch 1 p99':>12} {'batch 100':>16}")
    for label, r in results["replicas"].items():
        print(f"{label:<16} {r['batch1_p50_us']:>10.0f}us {r['batch1_p99_us']:>10.0f}us "
              f"{r['batch100_inputs_per_s']:>10.0f} in/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
