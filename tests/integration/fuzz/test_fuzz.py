"""Bounded Hypothesis fuzzing of a real cluster (one server process, one replica): raw HTTP
bytes, JSON inputs of every input type, the management routes, and RPC frames a replica can
send. No process may crash or answer 5xx, and a valid query is still answered afterwards.

Every run is derandomized (the same examples each time) and bounded in examples, so the module
takes a few tens of seconds even on a loaded machine."""

from __future__ import annotations

import json
import re
import socket
import struct

import pytest
import requests
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.local import SERVER_MARKER, process_alive
from clipper_core.frontend.management import ROUTES

INPUT_TYPES = ("integers", "floats", "doubles", "bytes", "strings")


def bounded(max_examples: int):
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


@pytest.fixture(scope="module")
def cluster(start_cluster):
    conn = start_cluster("fuzz-test")
    python_deployer.create_endpoint(conn, "fuzz-doubles", "doubles", feature_sum)
    for input_type in INPUT_TYPES:
        if input_type != "doubles":
            conn.register_application(f"fuzz-{input_type}", input_type, "DEFAULT", 100000)
    return conn


def still_serving(conn) -> None:
    """The server runs and a valid query gets a prediction from the real replica."""
    assert process_alive(conn.cm.server_pid(), SERVER_MARKER)
    r = requests.post(f"http://{conn.get_query_addr()}/fuzz-doubles/predict",
                      json={"input": [1.0, 2.5]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["output"] == 3.5, r.json()


def statuses(reply: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", reply)]


# -- raw HTTP ---------------------------------------------------------------------------------
TOKEN = st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"G\x00T", b""])
PATHS = st.sampled_from([b"/fuzz-doubles/predict", b"/fuzz-strings/predict", b"/metrics",
                         b"/fuzz-bytes/update", b"/nope/predict", b"/", b"*", b"/%zz",
                         b"/fuzz-doubles/predict?x=1#f", b"//../..", b"\xff\xfe"])
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b""])
HEADER_NAMES = st.sampled_from([b"Content-Length", b"Transfer-Encoding", b"Expect", b"Host",
                                b"Connection", b"Content-Type", b"Upgrade", b"X-A"])
HEADER_VALUES = st.one_of(
    st.sampled_from([b"chunked", b"100-continue", b"close", b"keep-alive", b"-1", b"0",
                     b"99999999999999999999", b"application/json", b"websocket"]),
    st.integers(0, 300).map(lambda n: str(n).encode()),
    st.binary(max_size=40))
BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b'{"input": [1.0]}', b'{"input": "a"}', b"0\r\n\r\n",
                     b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", b'{"input_batch": [[1], [2]]}']))
REQUESTS = st.builds(
    lambda m, p, v, hs, b: m + b" " + p + b" " + v + b"\r\n"
    + b"".join(n + b": " + x + b"\r\n" for n, x in hs) + b"\r\n" + b,
    TOKEN, PATHS, VERSIONS, st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=5),
    BODIES)


WELL_FORMED = st.builds(
    lambda p, hs, b: b"POST " + p + b" HTTP/1.1\r\nContent-Length: " + str(len(b)).encode()
    + b"\r\n" + b"".join(n + b": " + x + b"\r\n" for n, x in hs) + b"\r\n" + b,
    PATHS, st.lists(st.tuples(st.sampled_from([b"Connection", b"Content-Type", b"X-A"]),
                              HEADER_VALUES), max_size=2),
    st.one_of(BODIES, st.lists(st.floats(-1e6, 1e6), max_size=4).map(
        lambda xs: json.dumps({"input": xs}).encode())))


@bounded(300)
@given(data=st.one_of(st.binary(max_size=500), REQUESTS, WELL_FORMED,
                      st.lists(st.one_of(REQUESTS, WELL_FORMED), min_size=2, max_size=4).map(
                          b"".join)))
def test_raw_http_bytes(cluster, data: bytes) -> None:
    host, port = cluster.get_query_addr().split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert all(code < 500 for code in statuses(reply)), reply[:500]


# -- JSON inputs by input type ----------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=12)
BODY = st.one_of(
    st.builds(lambda v: {"input": v}, JSON),
    st.builds(lambda v: {"input_batch": v}, JSON),
    st.builds(lambda v, w: {"input": v, "version": w}, JSON, JSON),
    JSON)


@bounded(300)
@given(input_type=st.sampled_from(INPUT_TYPES), body=BODY)
def test_json_inputs_of_every_type(cluster, input_type: str, body: object) -> None:
    r = requests.post(f"http://{cluster.get_query_addr()}/fuzz-{input_type}/predict",
                      data=json.dumps(body), timeout=30)
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
    assert isinstance(r.json(), dict)


def test_still_serving_after_query_fuzz(cluster) -> None:
    still_serving(cluster)


# -- management routes ------------------------------------------------------------------------
NAMES = st.sampled_from(["fz", "fz2", "fuzz-strings", "", "..", "a b", "1"])
VALUES = st.one_of(NAMES, JSON, st.sampled_from(INPUT_TYPES), st.integers(-5, 5),
                   st.lists(NAMES, max_size=3))
SAFE_ROUTES = sorted(path.decode() for path in ROUTES)


@bounded(200)
@given(route=st.sampled_from(SAFE_ROUTES), body=st.one_of(
    st.dictionaries(st.sampled_from(["name", "app_name", "model_name", "model_version",
                                     "model_names", "input_type", "default_output",
                                     "latency_slo_micros", "num_replicas", "container_name",
                                     "labels", "batch_size", "verbose", "uid", "policy",
                                     "params", "weights", "versions"]), VALUES, max_size=8),
    JSON))
def test_management_routes(cluster, route: str, body: object) -> None:
    r = requests.post(f"http://{cluster.cm.get_admin_addr()}{route}", data=json.dumps(body),
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code < 500, r.text


# -- RPC frames from a replica ----------------------------------------------------------------
U32 = st.integers(0, 2**32 - 1).map(lambda n: struct.pack("<I", n))
SMALL = st.integers(0, 5).map(lambda n: struct.pack("<I", n))
FRAME = st.one_of(st.binary(max_size=64), U32, SMALL, st.sampled_from(
    [b"", b"fz", b"1", b"3", struct.pack("<Q", 16), struct.pack("<Q", 2**63)]))
MESSAGES = st.one_of(
    st.lists(FRAME, max_size=8),
    st.builds(lambda rest: [b"", *rest], st.lists(FRAME, max_size=8)),
    st.builds(lambda t, rest: [b"", struct.pack("<I", t), *rest], st.integers(0, 3),
              st.lists(FRAME, max_size=7)),
    # a registration as some model, then anything
    st.builds(lambda name, itype, v, rest: [b"", struct.pack("<I", 0), name, b"1", itype, v,
                                            *rest],
              st.sampled_from([b"fz", b"\xff", b""]), st.sampled_from([b"0", b"3", b"9", b"x"]),
              SMALL, st.lists(FRAME, max_size=4)))


@bounded(200)
@given(messages=st.lists(MESSAGES, min_size=1, max_size=4))
def test_rpc_frames_from_a_replica(cluster, messages: list[list[bytes]]) -> None:
    with zmq.Context.instance().socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(f"tcp://127.0.0.1:{cluster.cm.clipper_rpc_port}")
        for frames in messages:
            if frames:
                sock.send_multipart(frames)


def test_still_serving_after_all_fuzz(cluster) -> None:
    still_serving(cluster)
    # Malformed input is refused in one log line; a traceback would be a bug the fuzz found.
    log = (cluster.cm.logs_dir / "server.log").read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 300:][:3000]
