"""Measure (not assert) what the runtime adds to a batch's round trip over a bare ZeroMQ echo.

The echo is a minimal container in a subprocess: it registers and answers every predict
request with a fixed reply, without decoding, threads or a model. The difference between the
two medians is the runtime's per-batch overhead: decoding into numpy, the handoff to the worker
thread and back, calling the model and encoding its outputs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import numpy as np

ECHO_CONTAINER = """
import sys, zmq
from clipper_core.rpc import protocol as rpc
sock = zmq.Context().socket(zmq.DEALER)
sock.connect(f"tcp://127.0.0.1:{sys.argv[1]}")
sock.send_multipart(rpc.HEARTBEAT_MESSAGE)
while True:
    frames = sock.recv_multipart()
    version, kind, rest = rpc.parse_frontend_message(frames)
    if kind == rpc.MSG_HEARTBEAT and rpc.read_u32(rest[0]) == 1:
        sock.send_multipart(rpc.new_container_message("echo", "1", 3, rpc.RPC_VERSION))
    elif kind == rpc.MSG_CONTAINER_CONTENT:
        sock.send_multipart(rpc.response_message(rest[0], [b"0"], rpc.RPC_VERSION))
"""

WARMUP, ROUNDS = 300, 3000


def _timed(frontend, identity: bytes, payload: list[bytes]) -> float:
    start = time.perf_counter()
    status, _ = frontend.predict(identity, 3, payload)
    took = time.perf_counter() - start
    assert status == "ok"
    return took


def _summary(times: list[float]) -> str:
    ordered = sorted(times)
    return (f"median {statistics.median(ordered) * 1e6:7.1f} us, "
            f"p90 {ordered[int(len(ordered) * 0.9)] * 1e6:7.1f} us, "
            f"p99 {ordered[int(len(ordered) * 0.99)] * 1e6:7.1f} us")


def test_measure_per_batch_overhead(make_frontend, start_replica, capsys):
    """Requests alternate between the runtime and the echo, so both see the same machine load."""

    def constant(inputs):
        return [0] * len(inputs)

    payload = [np.arange(10, dtype="f8").tobytes()]
    runtime_fe, echo_fe = make_frontend(), make_frontend()
    start_replica(constant, "doubles", runtime_fe.port)
    echo = subprocess.Popen([sys.executable, "-c", ECHO_CONTAINER, str(echo_fe.port)])
    try:
        targets = [(runtime_fe, runtime_fe.wait_registration().identity),
                   (echo_fe, echo_fe.wait_registration().identity)]
        for _ in range(WARMUP):
            for fe, identity in targets:
                _timed(fe, identity, payload)
        runtime, bare = [], []
        for _ in range(ROUNDS):
            runtime.append(_timed(*targets[0], payload))
            bare.append(_timed(*targets[1], payload))
    finally:
        echo.kill()
        echo.wait(10)

    overhead = statistics.median(r - b for r, b in zip(runtime, bare, strict=True))
    with capsys.disabled():
        print(f"\nruntime round trip:   {_summary(runtime)}")
        print(f"bare echo round trip: {_summary(bare)}")
        print(f"runtime overhead per batch (median of paired differences): {overhead * 1e6:.1f} us")
    assert len(runtime) == len(bare) == ROUNDS
