"""Replicas on the frontend's Unix socket (the local backend's transport,
clipper_core.rpc.stream): the same messages as over ZeroMQ, and a closed connection drops the
replica at once."""

from __future__ import annotations

import base64
import logging
import os
import signal
import socket
import stat
import struct
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pytest

from clipper_core.rpc import protocol as p
from clipper_core.rpc import stream
from tests.integration.query_path.conftest import Cluster, wait_for


def total(xs: list[Any]) -> list[str]:
    return [str(float(sum(x))) for x in xs]


def length(xs: list[bytes]) -> list[str]:
    return [str(len(x)) for x in xs]


def socket_cluster(make_cluster: Callable[..., Cluster], **config: Any) -> tuple[Cluster, str]:
    address = f"@clipper-test-{os.getpid()}-{time.monotonic_ns()}"
    return make_cluster(rpc_socket=address, **config), address


def test_a_replica_on_the_socket_answers_small_and_large_inputs(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster, address = socket_cluster(make_cluster)
    cluster.add_model("sum", "1")
    cluster.add_app("sum", model="sum")
    cluster.add_model("len", "1", input_type="bytes")
    cluster.add_app("len", input_type="bytes", model="len")
    cluster.start_replica("sum", "1", total, rpc_socket=address)
    cluster.start_replica("len", "1", length, input_type="bytes", rpc_socket=address)
    assert cluster.predict("sum", {"input": [1.0, 2.5]})["output"] == 3.5
    batch = cluster.predict("sum", {"input_batch": [[float(i)] for i in range(500)]})
    assert [b["output"] for b in batch["batch_predictions"]] == [float(i) for i in range(500)]
    big = os.urandom(600_000)  # several reads of the socket on both sides
    answer = cluster.predict("len", {"input": base64.b64encode(big).decode()})
    assert answer["output"] == 600_000 and answer["default"] is False
    log = (cluster.tmp / next(p.name for p in cluster.tmp.glob("bundle-sum-*.log"))).read_text()
    assert f"Connected to the query frontend at {address}" in log


def test_a_socket_on_the_filesystem_replaces_a_stale_one_and_is_private(
        make_cluster: Callable[..., Cluster]) -> None:
    path = os.path.join(tempfile.mkdtemp(prefix="cs-"), "rpc.sock")  # AF_UNIX: <= 107 bytes
    with open(path, "w") as stale:  # left by a cluster that did not stop cleanly
        stale.write("stale")
    cluster = make_cluster(rpc_socket=path)
    cluster.add_model("sum", "1")
    cluster.add_app("sum", model="sum")
    cluster.start_replica("sum", "1", total, rpc_socket=path)
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert cluster.predict("sum", {"input": [1.0, 2.0]})["output"] == 3.0


def test_a_killed_replica_is_dropped_at_once(make_cluster: Callable[..., Cluster],
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "clipper_core.rpc.router")
    cluster, address = socket_cluster(make_cluster, replica_timeout_s=60.0)
    cluster.add_model("sum", "1")
    cluster.add_app("sum", model="sum")
    victim = cluster.start_replica("sum", "1", total, rpc_socket=address)
    cluster.start_replica("sum", "1", total, rpc_socket=address)
    started = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    cluster.wait_replicas("sum", "1", 1, timeout=5)
    assert time.monotonic() - started < 5  # not the 60 s replica timeout
    assert "replica sum:1#0 dropped: closed its connection" in caplog.text
    assert cluster.predict("sum", {"input": [42.0]})["output"] == 42.0


def test_garbage_on_the_socket_closes_that_connection_only(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster, address = socket_cluster(make_cluster)
    cluster.add_model("sum", "1")
    cluster.add_app("sum", model="sum")
    cluster.start_replica("sum", "1", total, rpc_socket=address)
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.connect(stream.socket_address(address))
    peer.sendall(struct.pack("<I", stream.MAX_MESSAGE_BYTES + 1))
    peer.settimeout(5)
    assert peer.recv(1) == b""  # closed by the frontend
    peer.close()
    bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # well framed, not RPC
    bad.connect(stream.socket_address(address))
    bad.sendall(stream.encode([b"", b"\xff"]) + stream.encode(p.HEARTBEAT_MESSAGE))
    bad.settimeout(5)
    reply = stream.Decoder().feed(bad.recv(4096))  # the heartbeat is still answered
    assert p.read_u32(reply[0][3]) == p.HEARTBEAT_REQUEST_METADATA
    bad.close()
    assert cluster.predict("sum", {"input": [2.0]})["output"] == 2.0


def test_a_replica_waits_for_the_socket_to_appear(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.add_model("sum", "1")
    cluster.add_app("sum", model="sum")
    address = f"@clipper-test-absent-{os.getpid()}-{time.monotonic_ns()}"
    process = cluster.start_replica("sum", "1", total, wait=False, rpc_socket=address)
    log = next(cluster.tmp.glob("bundle-sum-*.log"))
    wait_for(lambda: "Waiting for the query frontend's socket" in log.read_text(),
             what="the replica to wait for the socket")
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
