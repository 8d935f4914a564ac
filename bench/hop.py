"""One replica hop alone: what a round trip to a local replica costs, with warm and cold caches.

``python -m bench.hop`` forks a :class:`~clipper_core.runtime.ModelRuntime` serving the
``sum`` workload's ``feature_sum`` on a Unix socket and plays the frontend itself: it sends one
predict request at a time, as the server does at concurrency 1, with both processes on one
core. Between two requests it can overwrite a buffer (``--evict``, bytes), as a neighbour with
a large working set does (the server, or the other replicas of an ensemble), so that the
replica starts each request with its data out of the core's caches. Printed per request: the
round trip, and the CPU time the replica process spent (``/proc``), which is what an arm of an
ensemble adds on a shared core (docs/performance.md, *Selection cost*).
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from pathlib import Path

from bench import BenchError
from bench.cluster import cpu_seconds
from bench.workloads import feature_sum
from clipper_core.rpc import protocol as rpc
from clipper_core.rpc import stream
from clipper_core.runtime import ModelRuntime, RuntimeConfig
from clipper_core.types import InputType

#: The request's one input: three doubles, as the ``sum`` workload sends.
INPUTS = [struct.pack("<3d", 1.0, 2.0, 3.0)]
#: ``feature_sum``'s answer to them.
EXPECTED = b"6.0"


def _serve(address: str, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    config = RuntimeConfig("hop", "1", "127.0.0.1", 7000, InputType.DOUBLES, Path("/nonexistent"),
                           ready_file=None, rpc_socket=address)
    ModelRuntime(config, feature_sum, InputType.DOUBLES).serve()


def measure(requests: int, evict_bytes: int, cpu: int = 0) -> dict[str, float]:
    """``round_trip_us`` and ``replica_cpu_us`` per request, over ``requests`` requests."""
    address = f"@clipper-bench-hop-{os.getpid()}"
    listener = stream.unix_socket()
    listener.bind(stream.socket_address(address))
    listener.listen(1)
    pid = os.fork()
    if pid == 0:
        try:
            _serve(address, cpu)
        finally:
            os._exit(0)
    try:
        os.sched_setaffinity(0, {cpu})
        conn, _ = listener.accept()
        decoder = stream.Decoder()
        buffer, neighbour = bytearray(evict_bytes), bytes(evict_bytes)

        def round_trip(msg_id: int) -> list[bytes]:
            conn.sendall(stream.encode(rpc.predict_request(rpc.RPC_VERSION, msg_id,
                                                           InputType.DOUBLES, INPUTS)))
            while True:
                data = conn.recv(65536)
                if not data:
                    raise BenchError("the replica closed the connection (see its log above)")
                for frames in decoder.feed(data):
                    kind, rest = rpc.parse_container_message(frames)
                    if kind == rpc.MSG_CONTAINER_CONTENT:
                        return rpc.parse_response(rest, rpc.RPC_VERSION)[1]

        answer = round_trip(0)
        if answer != [EXPECTED]:
            raise BenchError(f"the replica answered {answer}, expected [{EXPECTED!r}]")
        for msg_id in range(min(requests, 2000)):  # warm-up
            round_trip(msg_id)
        cpu_before, start = cpu_seconds(pid), time.perf_counter()
        for msg_id in range(requests):
            round_trip(msg_id)
            buffer[:] = neighbour
        elapsed = time.perf_counter() - start
        return {"round_trip_us": elapsed / requests * 1e6,
                "replica_cpu_us": (cpu_seconds(pid) - cpu_before) / requests * 1e6}
    finally:
        os.kill(pid, 15)
        os.waitpid(pid, 0)
        listener.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hop", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--evict", type=int, action="append",
                        help="bytes overwritten between two requests (repeatable; default 0, "
                             "1 MiB and 4 MiB)")
    parser.add_argument("--cpu", type=int, default=0, help="the core both processes run on")
    args = parser.parse_args()
    for evict in args.evict or (0, 1 << 20, 4 << 20):
        hop = measure(args.requests, evict, args.cpu)
        print(f"evict {evict:>9,} B: round trip {hop['round_trip_us']:6.1f} µs, "
              f"replica CPU {hop['replica_cpu_us']:5.1f} µs per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
