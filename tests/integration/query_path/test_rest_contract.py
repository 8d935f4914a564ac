"""The REST contract of spec §1 against a real frontend and real replica processes."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipper_core.frontend.codec import PREDICT_SCHEMA, UPDATE_SCHEMA

Cluster = Any  # conftest.Cluster


def total(xs: Any) -> list[str]:
    return [str(sum(x.tolist())) for x in xs]


def text_info(xs: Any) -> list[str]:
    return [f"{type(x).__name__}:{x.decode()[::-1]}" for x in xs]


def byte_info(xs: Any) -> list[str]:
    return [f"{x.dtype}:{bytes(x.tobytes()).decode()}" for x in xs]


def json_output(xs: Any) -> list[str]:
    table = ['{"prob": "0.9", "prediction": 1.0}', "nan", "None", "6.6000000000000005",
             "DEFAULT", "1"]
    return [table[int(x[0]) - 1] for x in xs]


@pytest.fixture(scope="module")
def cluster(make_module_cluster: Callable[..., Cluster]) -> Cluster:
    cluster = make_module_cluster(max_body_bytes=64 * 1024)
    for input_type, func in (("doubles", total), ("floats", total), ("integers", total),
                                 ("strings", text_info), ("bytes", byte_info)):
        cluster.add_model(input_type, "1", input_type)
        cluster.add_app(input_type, input_type, model=input_type)
        cluster.start_replica(input_type, "1", func, input_type, wait=False)
    cluster.add_model("json", "1", "integers")
    cluster.add_app("json", "integers", model="json")
    cluster.start_replica("json", "1", json_output, "integers", wait=False)
    for name in ("doubles", "floats", "integers", "strings", "bytes", "json"):
        cluster.wait_replicas(name, "1", 1)
    cluster.add_app("unlinked", "doubles", default='{"a": 1}')
    return cluster


def error(cause: str) -> dict[str, str]:
    return {"error": "Json error",
            "cause": f"Error parsing JSON: {cause}. Expected JSON schema: {PREDICT_SCHEMA}"}


@pytest.mark.parametrize(("app", "value", "output"), [
    ("doubles", [1.5, 2.25], 3.75),
    ("floats", [0.5, 0.25], 0.75),
    ("integers", [1, 2, 2**31 - 1], 2**31 + 2),
    ("strings", "héllo", "bytes:olléh"),
    ("bytes", base64.b64encode(b"raw!").decode(), "int8:raw!"),
])
def test_each_input_type(cluster: Cluster, app: str, value: Any, output: Any) -> None:
    result = cluster.predict(app, {"input": value})
    assert set(result) == {"query_id", "output", "default"}
    assert result["output"] == output and result["default"] is False
    assert isinstance(result["query_id"], int)


def test_response_bytes_are_compact_and_ordered(cluster: Cluster) -> None:
    response = cluster.post("/doubles/predict", {"input": [1.0]})
    assert response.headers["Content-Type"] == "application/json"
    text = response.text
    assert text.startswith('{"query_id":') and text.endswith(',"output":1.0,"default":false}')


def test_output_json_or_string_rule(cluster: Cluster) -> None:
    result = cluster.predict("json", {"input_batch": [[1], [2], [3], [4], [5], [6]]})
    outputs = [p["output"] for p in result["batch_predictions"]]
    assert outputs == [{"prob": "0.9", "prediction": 1.0}, "nan", "None", 6.6000000000000005,
                       "DEFAULT", 1]


@pytest.mark.parametrize(("app", "body", "cause"), [
    ("doubles", {"input": [1.0, 2]}, "Array input of type Number is not of type double"),
    ("doubles", {"input": [True]}, "Array input of type True is not of type double"),
    ("floats", {"input": [1e39]}, "Array input of type Number is not of type float"),
    ("integers", {"input": [1.0]}, "Array input of type Number is not of type int"),
    ("integers", {"input": [2**31]}, "Array input of type Number is not of type int"),
    ("integers", {"input": "1"},
     "Type mismatch! JSON key input expected type Arraybut found type String"),
    ("strings", {"input": ["a"]},
     "Type mismatch! JSON key input expected type Stringbut found type Array"),
    ("bytes", {"input_batch": ["aGk=", 3]},
     "PredictionData of type Number is not of type base64-encoded string"),
    ("doubles", {"input_batch": [[1.0], 2.0]}, "Array input of type Number is not of type array"),
    ("doubles", {"inputs": [1.0]}, "JSON object does not have required keys input or input_batch"),
    ("doubles", [1.0], "Can only get key-value pair from an object"),
    ("doubles", {"input": [1.0], "version": 1},
     "Type mismatch! JSON key version expected type Stringbut found type Number"),
])
def test_typing_errors_are_400_with_exact_causes(cluster: Cluster, app: str, body: Any,
                                                  cause: str) -> None:
    response = cluster.post(f"/{app}/predict", body)
    assert response.status_code == 400
    assert response.json() == error(cause)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "The document is empty. (offset 0)"),
    (b'{"input": [1.0', "Invalid value. (offset 14)"),
    (b'{"input": [1.0 2.0]}', "Missing a comma or ']' after an array element. (offset 15)"),
    (b"{} {}", "The document root must not be followed by other values. (offset 3)"),
])
def test_bad_json(cluster: Cluster, data: bytes, message: str) -> None:
    response = cluster.post("/doubles/predict", data=data)
    assert response.status_code == 400
    assert response.json() == error(f"JSON parse error: {message}\n")


def test_versions(cluster: Cluster) -> None:
    response = cluster.post("/doubles/predict", {"input": [1.0], "version": "7"})
    assert response.status_code == 400
    assert response.json() == {"error": "Query processing error",
                               "cause": "Requested version: 7 does not exist for model: doubles"}
    assert cluster.predict("doubles", {"input": [2.0], "version": "1"})["output"] == 2.0


def test_unknown_app_is_404_json(cluster: Cluster) -> None:
    response = cluster.post("/nope/predict", {"input": [1.0]})
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "Application not found" and "'nope'" in body["cause"]
    assert cluster.session.get(cluster.url + "/nothing/here").status_code == 404
    assert cluster.session.get(cluster.url + "/doubles/predict").status_code == 405


def test_batches_of_zero_one_and_many(cluster: Cluster) -> None:
    assert cluster.predict("doubles", {"input_batch": []}) == {"batch_predictions": []}
    one = cluster.predict("doubles", {"input_batch": [[4.0]]})
    assert one["output"] == 4.0 and "batch_predictions" not in one
    many = cluster.predict("doubles", {"input_batch": [[1.0], [2.0, 3.0], [], [1e300]]})
    predictions = many["batch_predictions"]
    assert [p["output"] for p in predictions] == [1.0, 5.0, 0, 1e300]
    ids = [p["query_id"] for p in predictions]
    assert ids == list(range(ids[0], ids[0] + 4))
    assert cluster.predict("doubles", {"input": [1.0]})["query_id"] == ids[-1] + 1


def test_input_wins_over_input_batch_and_trailing_slash(cluster: Cluster) -> None:
    response = cluster.post("/doubles/predict/", {"input": [5.0], "input_batch": [[1.0], [2.0]]})
    assert response.status_code == 200 and response.json()["output"] == 5.0
    assert cluster.post("/doubles/predict/?x=1", {"input": [1.0]}).status_code == 200


def test_body_too_large_is_413(cluster: Cluster) -> None:
    response = cluster.post("/doubles/predict", data=b'{"input": [' + b"1.0," * 30000 + b"1.0]}")
    assert response.status_code == 413
    assert "larger than the limit" in response.json()["cause"]
    assert cluster.predict("doubles", {"input": [1.0]})["output"] == 1.0


def test_unlinked_app_answers_default_at_once(cluster: Cluster) -> None:
    result = cluster.predict("unlinked", {"input": [1.0]})
    assert result["output"] == {"a": 1} and result["default"] is True
    assert result["default_explanation"] == "No connected models found for query"


def test_update(cluster: Cluster) -> None:
    response = cluster.post("/doubles/update/", {"uid": 1, "input": [1.0], "label": 2.0})
    assert response.status_code == 200 and response.text == "Feedback received? 1"
    bad = cluster.post("/doubles/update", {"uid": 1, "input": [1.0]})
    assert bad.status_code == 400
    assert bad.text == ("Error parsing JSON: JSON object does not have required key: label. "
                        f"Expected JSON schema: {UPDATE_SCHEMA}")


def test_cache_hits(cluster: Cluster) -> None:
    before = cluster.metric("model:integers:1:cache_hit_ratio")
    first = cluster.predict("integers", {"input": [40, 2]})
    second = cluster.predict("integers", {"input": [40, 2]})
    assert first["output"] == second["output"] == 42 and second["default"] is False
    after = cluster.metric("model:integers:1:cache_hit_ratio")
    assert float(after["ratio"]) > float(before["ratio"]) if before["ratio"] != "nan" \
        else float(after["ratio"]) > 0


def test_metrics_json_and_prometheus(cluster: Cluster) -> None:
    cluster.predict("doubles", {"input": [3.0]})
    report = cluster.session.get(cluster.url + "/metrics").json()
    names = {name for items in report.values() for item in items for name in item}
    for name in ("app:doubles:prediction_latency", "app:doubles:num_predictions",
                 "app:doubles:default_prediction_ratio", "model:doubles:1:batch_size",
                 "model:doubles:1:prediction_latency", "internal:aggregate_num_predictions",
                 "internal:prediction_cache_hit_ratio", "model:doubles:1:queue_depth"):
        assert name in names
    assert int(cluster.metric("app:doubles:num_predictions")["count"]) >= 1
    prom = cluster.session.get(cluster.url + "/metrics",
                               headers={"Accept": "text/plain;version=0.0.4"})
    assert prom.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'clipper_app_num_predictions{app="doubles"}' in prom.text
    assert 'clipper_model_num_replicas{model="doubles",version="1"} 1' in prom.text
    health = cluster.session.get(cluster.url + "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_inputs_reach_the_model_in_wire_format(cluster: Cluster) -> None:
    # integers arrive as int32: -1 must not come back as 4294967295
    assert cluster.predict("integers", {"input": [-1, -2]})["output"] == -3
    packed = struct.pack("<d", 0.1)
    assert struct.unpack("<d", packed)[0] == cluster.predict("doubles", {"input": [0.1]})["output"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(app=st.sampled_from(["doubles", "floats", "integers", "strings", "bytes"]),
       key=st.sampled_from(["input", "input_batch", "version", "other"]),
       value=json_values)
def test_any_json_gets_a_prediction_or_a_400(cluster: Cluster, app: str, key: str,
                                             value: Any) -> None:
    response = cluster.post(f"/{app}/predict", {key: value})
    assert response.status_code in (200, 400), response.text
    body = response.json()
    if response.status_code == 400:
        assert set(body) == {"error", "cause"}


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=64))
def test_any_bytes_get_a_prediction_or_a_400(cluster: Cluster, data: bytes) -> None:
    response = cluster.post("/strings/predict", data=data)
    assert response.status_code in (200, 400), response.text
