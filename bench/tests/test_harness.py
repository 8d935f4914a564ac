"""The benchmark harness's own parts: schedule, bodies, response parsing, wrk output, targets,
and the open-loop generator against a real (deliberately stalling) server."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import pytest

from bench.loadgen import ResponseParser, body_maker, run_open_loop, schedule
from bench.report import peers_table, targets, tracing_table
from bench.workloads import N_DIGITS, scenarios
from bench.wrk import lua_script, parse_wrk_output
from clipper_core.exceptions import ValidationError

OK = b'{"query_id":1,"output":6.6,"default":false}'
DEFAULT = b'{"query_id":2,"output":-1.0,"default":true,"default_explanation":"x"}'


def response(status: int, body: bytes) -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status, len(body), body)


def test_schedule_is_evenly_spaced_at_the_rate():
    times = schedule(400.0, 0.5, start=10.0)
    assert len(times) == 200
    assert times[0] == 10.0
    assert times[1] - times[0] == pytest.approx(0.0025)
    assert times[-1] == pytest.approx(10.0 + 199 * 0.0025)


def test_schedule_rejects_a_zero_rate():
    with pytest.raises(ValidationError, match="rate and duration must be positive"):
        schedule(0, 1.0)


def test_bodies_are_distinct_or_fixed():
    distinct = body_maker('{"input":[{n}.5]}', distinct=True, base=100)
    assert distinct(0) == b'{"input":[100.5]}'
    assert distinct(7) == b'{"input":[107.5]}'
    fixed = body_maker('{"input":[{n}.5]}', distinct=False, base=3)
    assert fixed(0) == fixed(9) == b'{"input":[3.5]}'
    with pytest.raises(ValidationError, match="must contain"):
        body_maker('{"input":[1.5]}', distinct=True)


def test_parser_joins_split_responses_and_flags_defaults():
    parser = ResponseParser()
    stream = response(200, OK) + response(200, DEFAULT) + response(503, b'{"error":"e"}')
    assert parser.feed(stream[:10]) == []
    assert parser.feed(stream[10:60]) == []
    assert parser.feed(stream[60:]) == [(200, False), (200, True), (503, False)]


def test_parser_reads_chunked_responses_and_refuses_unframed_ones():
    chunked = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
               b"5\r\n{\"def\r\n11\r\nault\":true,\"x\":1}\r\n0\r\n\r\n")
    parser = ResponseParser()
    assert parser.feed(chunked[:50]) == []
    assert parser.feed(chunked[50:] + response(200, OK)) == [(200, True), (200, False)]
    with pytest.raises(ValidationError, match="Content-Length"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")


def test_wrk_output_is_read_from_the_scripts_line():
    text = ("Running 2s test @ http://127.0.0.1:1\n  1 threads and 64 connections\n"
            'BENCH_JSON {"requests":2000,"duration_us":2000000,"p50_us":450,"p99_us":2100,'
            '"max_us":9000,"connect_errors":1,"read_errors":0,"write_errors":0,"timeouts":2,'
            '"non200":3,"defaults":97}\nRequests/sec: 1000.00\n')
    result = parse_wrk_output(text)
    assert result.qps == pytest.approx((2000 - 3 - 97) / 2.0)
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (0.45, 2.1, 9.0)
    assert (result.errors, result.defaults, result.requests) == (6, 97, 2000)
    with pytest.raises(ValidationError, match="BENCH_JSON"):
        parse_wrk_output("Requests/sec: 1000.00\n")


def test_lua_script_embeds_path_and_body_parts():
    script = lua_script("/sum/predict", '{"input":[{n}.5,0.1]}', distinct=True, base=42)
    assert '"/sum/predict"' in script and '"{\\"input\\":["' in script
    assert "local path, head, tail, distinct, base" in script and ", 42\n" in script


def test_targets_are_judged_from_the_records():
    recs = [
        {"scenario": "sum/saturation", "ratio_qps": 0.45},
        {"scenario": "sum-cached/saturation", "ratio_qps": 0.50},
        {"scenario": "sum/c1", "ratio_p50": 2.5},
        {"scenario": "batchable/open-50", "p99_ms": 12.0, "defaults": 5, "answered": 1000},
        {"scenario": "bytes-150k/saturation", "ratio_qps": 0.4},
        {"scenario": "selection/exp4-of-3-c1-ratio", "value": 1.8},
    ]
    assert [t.met for t in targets(recs)] == [True, False, True, None, True, False, True, None]


def _stalling_server(stall: float) -> tuple[socket.socket, threading.Thread]:
    """Answers every request at once, except that it waits ``stall`` s before the first."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        buf, first = b"", True
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    head, rest = buf.split(b"\r\n\r\n", 1)
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(rest) < length:
                        break
                    buf = rest[length:]
                    if first:
                        time.sleep(stall)
                        first = False
                    conn.sendall(response(200, OK))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_open_loop_charges_a_stall_to_every_request_scheduled_during_it():
    listener, thread = _stalling_server(stall=0.4)
    try:
        result = run_open_loop("127.0.0.1", listener.getsockname()[1], "/a/predict", rate=100,
                               duration=1.0, make_body=body_maker('{"n":{n}}', True),
                               connections=1, grace=2.0)
    finally:
        listener.close()
    thread.join(5)
    assert (result.sent, result.completed, result.errors) == (100, 100, 0)
    # ~40 requests were scheduled during the stall: a closed-loop client would have sent them
    # late and reported one slow request; from the schedule, >= 1 % of them are >= 300 ms late.
    assert result.queued >= 35
    assert result.p99_ms >= 300
    assert result.p50_ms < 300


def test_large_bodies_have_the_announced_size_and_decode():
    vector, blob = (next(s for s in scenarios(["vector-10k", "bytes-150k"]) if s.app == app)
                    for app in ("vector-10k", "bytes-150k"))
    body = body_maker(vector.body, distinct=True, base=10 ** (N_DIGITS - 1))(7)
    assert len(body) == vector.body_bytes
    assert len(json.loads(body)["input"]) == 10_000
    body = body_maker(blob.body, distinct=True, base=10 ** (N_DIGITS - 1))(7)
    assert len(body) == blob.body_bytes
    assert len(base64.b64decode(json.loads(body)["input"], validate=True)) == 150 * 1024 + 9


def test_peers_table_states_ratios_and_why_a_peer_did_not_run():
    def rec(name, kind, qps, p50, **extra):
        return {"scenario": f"{name}/{kind}", "qps": qps, "p50_ms": p50, "ratio_qps": qps / 1000,
                "ratio_p50": p50 / 0.1, "connections": 64, "errors": 0, **extra}

    recs = [rec("clipper", "saturation", 400, 1.0), rec("clipper", "c1", 50, 0.2),
            rec("peer-x", "saturation", 200, 2.0, clipper_ratio_qps=2.0),
            rec("peer-x", "c1", 25, 0.8, clipper_ratio_p50=0.25),
            {"scenario": "peer-y", "error": "y exited with 1; its log ends:\nBoom"}]
    table = peers_table(recs, {"x": "9.9"}).splitlines()
    assert table[2].startswith("| clipper | 400 | 0.40 | - | 0.200 | 2.00 | - |")
    assert table[3].startswith("| x (9.9) | 200 | 0.20 | 2.00 | 0.800 | 8.00 | 4.00 |")
    assert table[4] == ("| peer-y | - | - | - | - | - | - | cannot run here: y exited with 1; "
                        "its log ends: ... Boom |")


def test_the_otlp_sink_counts_the_spans_a_real_exporter_sends():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from bench.tracing import OtlpSink

    with OtlpSink() as sink:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{sink.url}/v1/traces")))
        tracer = provider.get_tracer("bench-test")
        for _ in range(3):
            tracer.start_span("clipper.receive").end()
        provider.shutdown()
    assert (sink.spans, sink.posts) == (3, 3)
    assert sink.bytes > 0


def test_the_tracing_table_compares_each_traced_scenario_with_sum():
    recs = [{"scenario": "sum-traced/saturation", "qps": 2000.0, "ratio_qps": 0.2},
            {"scenario": "sum-traced/c1", "p50_ms": 0.7, "ratio_p50": 1.75}]
    table = tracing_table(recs, {"sum-traced": {
        "sampled": 1.0, "spans": 57853, "server_cpu_us_per_query": 480.25,
        "untraced_server_cpu_us_per_query": 95.5}})
    assert "| sum-traced | 100% | 2,000 | 0.20 | 0.700 | 1.75 | 480.2 | 95.5 | 57,853 |" in table


def test_soak_errors_count_only_broken_contracts():
    from collections import Counter

    from bench.soak import errors

    counts = Counter({"valid 200": 10, "valid default": 3, "valid 503": 2, "valid dropped": 1,
                      "invalid 400": 7, "invalid 500": 1, "invalid dropped": 2,
                      "slowloris 408": 4, "unread 200": 64, "unread 500": 1})
    assert errors(counts) == 1 + 1 + 2 + 1


def test_soak_memory_levels_off_only_when_the_last_quarter_is_flat():
    from collections import Counter

    from bench.soak import summary

    def samples(rss):
        return [{"t_s": i, "rss_mb": r, "answered": i} for i, r in enumerate(rss)]

    filling_then_flat = [50 + min(i, 20) for i in range(40)]
    assert summary(samples(filling_then_flat), Counter({"valid 200": 1}))["levels_off"]
    leaking = [50 + i * 0.5 for i in range(40)]
    assert not summary(samples(leaking), Counter())["levels_off"]


def test_the_hop_driver_gets_the_models_answers_from_a_real_replica():
    from bench.hop import measure

    hop = measure(200, evict_bytes=1 << 16)
    assert hop["round_trip_us"] > 0 and hop["replica_cpu_us"] >= 0
