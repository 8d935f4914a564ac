"""Tracing on the embedded default: spans reach a real OTLP/HTTP endpoint; off, nothing loads.

The endpoint is :class:`~clipper_core.testing.otlp.OtlpReceiver`, which decodes each export
with OpenTelemetry's own protobuf messages.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from clipper_admin.deployers import python as python_deployer
from clipper_core.store.sqlite import SQLiteStore
from clipper_core.testing.otlp import OtlpReceiver
from clipper_core.types import Application, InputType

pytestmark = pytest.mark.timeout(300)


def triple_sum(xs):
    return [str(3 * sum(x)) for x in xs]


def broken(xs):
    raise RuntimeError("this model always fails")


@pytest.fixture(scope="module")
def receiver():
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


def deploy(conn, helpers, apps: tuple[str, ...]) -> None:
    python_deployer.deploy_python_closure(conn, "traced-model", 1, "doubles", triple_sum)
    for app in apps:
        conn.register_application(app, "doubles", "-1", 2_000_000)
        conn.link_model_to_app(app, "traced-model")
    helpers.wait_for_prediction(conn, apps[0], {"input": [0.5]})


@pytest.fixture(scope="module")
def traced(start_cluster, receiver, helpers):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLIPPER_TRACING_ENDPOINT", receiver.url)  # no path: /v1/traces is added
        mp.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export every 100 ms, not every 5 s
        conn = start_cluster("traced")
    deploy(conn, helpers, ("warm-up", "traced-app"))
    return conn


@pytest.fixture(scope="module")
def untraced(start_cluster, helpers):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CLIPPER_TRACING_ENDPOINT", raising=False)
        mp.setenv("PYTHONPROFILEIMPORTTIME", "1")  # the server logs every module it imports
        conn = start_cluster("untraced")
    deploy(conn, helpers, ("untraced-app",))
    return conn


def by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


def test_every_stage_of_a_query_is_a_span_at_the_otlp_endpoint(traced, receiver, helpers):
    url = f"http://{traced.get_query_addr()}/traced-app/predict"
    single = requests.post(url, json={"input": [1.0, 2.0]}, timeout=30).json()
    assert single["output"] == 9.0 and not single["default"]
    batch = requests.post(url, json={"input_batch": [[1.0], [2.0], [3.0]]}, timeout=30).json()
    assert [p["output"] for p in batch["batch_predictions"]] == [3.0, 6.0, 9.0]
    cached = requests.post(url, json={"input": [1.0, 2.0]}, timeout=30).json()
    assert cached["output"] == 9.0

    traces = helpers.wait_until(
        lambda: (t := receiver.traces("traced-app")) and len(t) == 3
        and all(by_name(s, "clipper.encode") for s in t.values()) and t,
        30, "the spans of three traced-app requests")
    ordered = sorted(traces.values(), key=lambda s: by_name(s, "clipper.receive")[0]["start"])
    for spans, inputs in zip(ordered, (1, 3, 1), strict=True):
        [root] = by_name(spans, "clipper.receive")
        assert root["parent"] == ""
        assert root["attributes"]["clipper.app"] == "traced-app"
        assert root["attributes"]["http.response.status_code"] == 200
        assert root["attributes"]["clipper.model_versions"] == "traced-model:1"
        assert root["resource"]["service.name"] == "clipper"
        for name in ("clipper.decode", "clipper.cache", "clipper.encode"):
            [span] = by_name(spans, name)
            assert span["parent"] == root["id"], name
            assert root["start"] <= span["start"] <= span["end"] <= root["end"], name
        [cache] = by_name(spans, "clipper.cache")
        assert cache["attributes"]["clipper.model"] == "traced-model"
        assert cache["attributes"]["clipper.version"] == "1"
        assert cache["attributes"]["clipper.cache.lookups"] == inputs
    first, second, third = ordered

    # the uncached requests waited in the queue and went to the replica in batches
    for spans, inputs in ((first, 1), (second, 3)):
        [root] = by_name(spans, "clipper.receive")
        [wait] = by_name(spans, "clipper.queue_wait")
        assert wait["parent"] == root["id"]
        assert wait["attributes"]["clipper.model"] == "traced-model"
        batches = by_name(spans, "clipper.batch")
        assert batches and all(b["parent"] == root["id"] for b in batches)
        assert sum(b["attributes"]["clipper.batch_size"] for b in batches) == inputs
        for b in batches:
            assert b["attributes"]["clipper.model"] == "traced-model"
            assert b["attributes"]["clipper.version"] == "1"
            [replica] = [s for s in by_name(spans, "clipper.replica") if s["parent"] == b["id"]]
            assert replica["attributes"]["clipper.replica"] == 0
            # the batch ends once every waiter has its answer: after this response was sent
            assert b["start"] <= replica["start"] <= replica["end"] <= root["end"] <= b["end"]
            assert wait["end"] <= b["start"]

    # the repeated input was a cache hit: no queue, no batch
    [cache] = by_name(third, "clipper.cache")
    assert cache["attributes"]["clipper.cache.hits"] == 1
    assert not by_name(third, "clipper.queue_wait") and not by_name(third, "clipper.batch")


def test_a_bad_request_is_traced_with_its_status(traced, receiver, helpers):
    url = f"http://{traced.get_query_addr()}/warm-up/predict"
    assert requests.post(url, json={"input": ["not a number"]}, timeout=30).status_code == 400
    spans = helpers.wait_until(
        lambda: [s for s in receiver.traces("warm-up").values()
                 if by_name(s, "clipper.receive")[0]["attributes"].get(
                     "http.response.status_code") == 400],
        30, "the trace of the bad request")
    [trace] = spans
    assert {s["name"] for s in trace} == {"clipper.receive", "clipper.decode", "clipper.encode"}


def test_a_failed_batch_has_an_error_status(traced, receiver, helpers):
    python_deployer.deploy_python_closure(traced, "broken-model", 1, "doubles", broken)
    traced.register_application("broken-app", "doubles", "-1", 2_000_000)
    traced.link_model_to_app("broken-app", "broken-model")
    url = f"http://{traced.get_query_addr()}/broken-app/predict"

    def failed_batch():
        answer = requests.post(url, json={"input": [1.0]}, timeout=30).json()
        assert answer["default"]
        return [b for spans in receiver.traces("broken-app").values()
                for b in by_name(spans, "clipper.batch")]

    [batch, *_] = helpers.wait_until(failed_batch, 60, "a failed batch of broken-model")
    assert batch["status"] == 2  # STATUS_CODE_ERROR
    assert "this model always fails" in batch["message"]


def test_the_sample_ratio_chooses_which_requests_are_traced(start_cluster, receiver, helpers):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLIPPER_TRACING_ENDPOINT", receiver.url)
        mp.setenv("CLIPPER_TRACING_SAMPLE_RATIO", "0.5")
        conn = start_cluster("sampled")
    assert json.loads(conn.cm.config_path.read_text())["tracing_sample_ratio"] == 0.5
    deploy(conn, helpers, ("sampled-warm-up", "sampled-app"))
    for i in range(40):
        assert helpers.predict(conn, "sampled-app", {"input": [float(i)]})["output"] == 3 * i
    conn.stop_all()  # a stopping server exports the spans it still holds
    traces = receiver.traces("sampled-app")
    assert 0 < len(traces) < 40  # 1 in 2 requests: all or none has odds of 2 ** -39
    for spans in traces.values():  # a sampled request has all its spans
        assert {"clipper.decode", "clipper.cache", "clipper.encode"} <= {s["name"] for s in spans}


def test_with_tracing_off_the_server_never_imports_the_tracing_code(untraced, helpers):
    for i in range(20):
        assert helpers.predict(untraced, "untraced-app", {"input": [float(i)]})["output"] == 3 * i
    log = untraced.cm.server_log.read_text()
    assert "clipper_core.frontend.query" in log  # the import log is there
    # (redis-py imports OpenTelemetry's metrics API when it is installed; not its tracing)
    for module in ("clipper_core.tracing", "opentelemetry.sdk.trace", "opentelemetry.exporter"):
        assert module not in log


def test_a_request_with_a_traceparent_continues_the_callers_trace(traced, receiver, helpers):
    url = f"http://{traced.get_query_addr()}/warm-up/predict"
    trace_id, caller = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    headers = {"traceparent": f"00-{trace_id}-{caller}-01"}
    assert requests.post(url, json={"input": [7.0]}, headers=headers, timeout=30).ok
    spans = helpers.wait_until(lambda: receiver.traces("warm-up").get(trace_id), 30,
                               "the spans of the request with a traceparent")
    [root] = by_name(spans, "clipper.receive")
    assert root["parent"] == caller
    # a malformed header is ignored: the request is answered and starts its own trace
    before = set(receiver.traces("warm-up"))
    bad = {"traceparent": "00-not-a-trace-01"}
    assert requests.post(url, json={"input": [8.0]}, headers=bad, timeout=30).ok
    helpers.wait_until(lambda: set(receiver.traces("warm-up")) - before, 30,
                       "the trace of the request with a malformed traceparent")


def test_open_inference_protocol_requests_are_traced_too(traced, receiver, helpers):
    url = f"http://{traced.get_query_addr()}/v2/models/v2-app/infer"
    traced.register_application("v2-app", "doubles", "-1", 2_000_000)
    traced.link_model_to_app("v2-app", "traced-model")
    body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 2],
                        "data": [[10.0, 1.0], [20.0, 2.0]]}]}

    def prediction():
        r = requests.post(url, json=body, timeout=30)
        outputs = {o["name"]: o["data"] for o in r.json()["outputs"]} if r.ok else {}
        return outputs if outputs and not any(outputs["default"]) else None

    # The link reaches the frontend through the change feed: until then, default outputs.
    answer = helpers.wait_until(prediction, 30, "a prediction (not the default) from v2-app")
    assert answer["output"] == ["33.0", "66.0"]
    bad = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 1], "data": ["x"]}]}
    assert requests.post(url, json=bad, timeout=30).status_code == 400

    def statuses():
        roots = [by_name(s, "clipper.receive")[0] for s in receiver.traces("v2-app").values()]
        return {r["attributes"].get("http.response.status_code") for r in roots} >= {200, 400} \
            and receiver.traces("v2-app")

    traces = helpers.wait_until(statuses, 30, "the traces of a good and a bad /infer request")
    answered = [s for s in traces.values()
                if by_name(s, "clipper.receive")[0]["attributes"].get(
                    "http.response.status_code") == 200 and by_name(s, "clipper.batch")]
    assert answered
    names = {s["name"] for s in answered[0]}
    assert {"clipper.decode", "clipper.cache", "clipper.queue_wait", "clipper.batch",
            "clipper.replica", "clipper.encode"} <= names


def test_a_request_for_an_app_registered_a_moment_ago_is_answered(traced):
    """The server's change feed polls another process's writes every 50 ms: a request sent
    right after such a write finds the app through the frontend's store lookup, which then
    handles the request again (through the tracing wrapper of the handler)."""
    addr = traced.get_query_addr()
    infer = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 1], "data": [1.0]}]}
    elsewhere = SQLiteStore(traced.cm.cluster_dir / "state.db")  # as another process writes
    try:
        for i in range(5):
            name = f"fresh-{i}"
            elsewhere.add_application(Application(name, InputType.DOUBLES, "-1", 2_000_000))
            v2 = requests.post(f"http://{addr}/v2/models/{name}/infer", json=infer, timeout=10)
            assert v2.status_code == 200, v2.text
            elsewhere.add_application(Application(f"{name}-p", InputType.DOUBLES, "-1",
                                                  2_000_000))
            answer = requests.post(f"http://{addr}/{name}-p/predict", json={"input": [1.0]},
                                   timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.json()["default"]  # no model linked
    finally:
        elsewhere.close()
