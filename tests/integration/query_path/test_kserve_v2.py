"""The Open Inference Protocol (KServe v2) on the query port, driven by the real tritonclient:
the same numbers as ``/predict``, JSON and binary tensors, and clear errors for bad requests."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.query_path.conftest import Cluster, wait_for


def answer(xs: Any) -> list[str]:
    """The model of every application: sums numbers, shows bytes in hex, reverses strings."""
    return [x.decode()[::-1] if isinstance(x, bytes) else x.tobytes().hex()
            if x.dtype == np.int8 else str(sum(x.tolist())) for x in xs]


@pytest.fixture(scope="module")
def cluster(make_module_cluster: Callable[..., Cluster]) -> Cluster:
    cluster = make_module_cluster()
    input_types = ("doubles", "floats", "integers", "strings", "bytes")
    for input_type in input_types:
        model = f"{input_type}-model"
        cluster.add_model(model, "1", input_type)
        cluster.add_app(input_type, input_type, model=model)
        cluster.start_replica(model, "1", answer, input_type, wait=False)
    for input_type in input_types:
        cluster.wait_replicas(f"{input_type}-model", "1", 1)
    cluster.add_app("unlinked", "doubles", default="-1.0")
    return cluster


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> httpclient.InferenceServerClient:
    client = httpclient.InferenceServerClient(cluster.url.removeprefix("http://"))
    yield client
    client.close()


def infer(client: httpclient.InferenceServerClient, model: str, array: np.ndarray,
          datatype: str, binary_in: bool, binary_out: bool | None,
          version: str = "") -> httpclient.InferResult:
    tensor = httpclient.InferInput("input", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary_in)
    outputs = None if binary_out is None else [
        httpclient.InferRequestedOutput("output", binary_data=binary_out),
        httpclient.InferRequestedOutput("default", binary_data=binary_out)]
    return client.infer(model, [tensor], model_version=version, outputs=outputs)


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def outputs_of(answers: list[dict[str, Any]]) -> list[str]:
    """``/predict``'s outputs as the v2 ``output`` tensor holds them: JSON values as JSON text."""
    return [a["output"] if isinstance(a["output"], str) else orjson.dumps(a["output"]).decode()
            for a in answers]


def test_health_and_server_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "clipper"
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize(("app", "datatype", "shape"), [
    ("doubles", "FP64", [-1, -1]), ("floats", "FP32", [-1, -1]),
    ("integers", "INT32", [-1, -1]), ("strings", "BYTES", [-1]), ("bytes", "BYTES", [-1])])
def test_model_metadata_follows_the_input_type(client: httpclient.InferenceServerClient,
                                               app: str, datatype: str,
                                               shape: list[int]) -> None:
    for version in ("", "1"):
        metadata = client.get_model_metadata(app, version)
        assert metadata == {
            "name": app, "versions": ["1"], "platform": "clipper",
            "inputs": [{"name": "input", "datatype": datatype, "shape": shape}],
            "outputs": [{"name": "output", "datatype": "BYTES", "shape": [-1]},
                        {"name": "default", "datatype": "BOOL", "shape": [-1]}]}
        assert client.is_model_ready(app, version)


def test_readiness_of_models(client: httpclient.InferenceServerClient) -> None:
    assert not client.is_model_ready("unlinked")
    assert not client.is_model_ready("no-such-app")
    assert not client.is_model_ready("doubles", "7")
    # A model's name reaches the one application that links it alone.
    assert client.is_model_ready("doubles-model")
    assert client.get_model_metadata("doubles-model")["inputs"][0]["datatype"] == "FP64"


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True, None])
@pytest.mark.parametrize(("app", "array", "datatype"), [
    ("doubles", np.array([[1.5, 2.25], [0.1, 0.2], [7.0, -1.0]]), "FP64"),
    ("floats", np.array([[1.5, 2.25, 0.1], [3.0, 4.0, 5.0]], dtype=np.float32), "FP32"),
    ("integers", np.array([[1, 2, 3], [2**31 - 1, 0, -2**31 + 1]], dtype=np.int32), "INT32"),
])
def test_numbers_are_those_of_predict(cluster: Cluster, client: httpclient.InferenceServerClient,
                                      app: str, array: np.ndarray, datatype: str,
                                      binary_in: bool, binary_out: bool | None) -> None:
    expected = cluster.predict(app, {"input_batch": array.tolist()})["batch_predictions"]
    result = infer(client, app, array, datatype, binary_in, binary_out)
    outputs = [float(as_text(o)) for o in result.as_numpy("output")]
    assert outputs == [p["output"] for p in expected]
    assert result.as_numpy("default").tolist() == [False] * len(array)
    assert result.get_response()["model_name"] == app
    assert result.get_response()["model_version"] == "1"


@pytest.mark.parametrize("binary", [False, True])
def test_strings_and_bytes_are_those_of_predict(cluster: Cluster,
                                                client: httpclient.InferenceServerClient,
                                                binary: bool) -> None:
    texts = ["héllo", "", "wörld"]
    expected = cluster.predict("strings", {"input_batch": texts})["batch_predictions"]
    result = infer(client, "strings", np.array(texts, dtype=np.object_), "BYTES", binary, binary)
    assert [as_text(o) for o in result.as_numpy("output")] == outputs_of(expected)

    blobs = [b"\x00\x01\xff", b"abc"] if binary else [b"abc", b"xyz"]
    expected = cluster.predict("bytes", {"input_batch": [base64.b64encode(b).decode()
                                                         for b in blobs]})["batch_predictions"]
    result = infer(client, "bytes", np.array(blobs, dtype=np.object_), "BYTES", binary, binary)
    assert [as_text(o) for o in result.as_numpy("output")] == outputs_of(expected)
    # Rows of a UINT8 tensor are byte strings too.
    result = infer(client, "bytes", np.frombuffer(b"abcxyz", np.uint8).reshape(2, 3), "UINT8",
                   binary, binary)
    assert [as_text(o) for o in result.as_numpy("output")] == ["616263", "78797a"]


def test_version_pinning_and_model_name(cluster: Cluster,
                                        client: httpclient.InferenceServerClient) -> None:
    array = np.array([[1.0, 2.0]])
    for model, version in (("doubles", "1"), ("doubles-model", ""), ("doubles-model", "1")):
        result = infer(client, model, array, "FP64", True, True, version)
        assert float(as_text(result.as_numpy("output")[0])) == 3.0
        assert result.get_response()["model_name"] == model
    with pytest.raises(InferenceServerException) as info:
        infer(client, "doubles", array, "FP64", True, True, "9")
    assert info.value.status() == "404"
    assert "Requested version: 9 does not exist for model: doubles-model" in info.value.message()


def test_default_output_without_a_model(client: httpclient.InferenceServerClient) -> None:
    result = infer(client, "unlinked", np.array([[1.0], [2.0]]), "FP64", False, False)
    assert result.as_numpy("output").tolist() == ["-1.0", "-1.0"]
    assert result.as_numpy("default").tolist() == [True, True]
    assert "default_explanation" in result.get_response()["parameters"]


@pytest.mark.parametrize(("model", "array", "datatype", "status", "message"), [
    ("doubles", np.array([[1, 2]], dtype=np.int32), "INT32", "400",
     "Input \"input\" has datatype 'INT32', but application doubles has input type doubles, "
     "which takes FP64"),
    ("strings", np.array([[1.0]]), "FP64", "400", "which takes BYTES"),
    ("no-such-app", np.array([[1.0]]), "FP64", "404", "No application named 'no-such-app'"),
    ("strings", np.array([["a", "b"]], dtype=np.object_), "BYTES", "400",
     "a row must be one element (shape [n] or [n, 1]), the string of one query"),
])
def test_bad_tensors_get_clear_errors(client: httpclient.InferenceServerClient, model: str,
                                      array: np.ndarray, datatype: str, status: str,
                                      message: str) -> None:
    for binary in (False, True):
        with pytest.raises(InferenceServerException) as info:
            infer(client, model, array, datatype, binary, binary)
        assert info.value.status() == status
        assert message in info.value.message()


BINARY_HEADER = (b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 2], '
                 b'"parameters": {"binary_data_size": 16}}]}')


@pytest.mark.parametrize(("body", "headers", "message"), [
    (b'{"inputs": [', {}, "The inference request is not valid JSON"),
    (b"[]", {}, "must be a JSON object, not Array"),
    (b'{"inputs": []}', {}, '"inputs" must be a list of one tensor object named "input"'),
    (b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [1.0]}]}', {},
     "Unknown input tensor 'x'"),
    (b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 2], "data": [1, 2, 3]}]}',
     {}, "has shape [2, 2], which holds 4 elements, but its \"data\" has 3"),
    (b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 2], "data": [1, "2"]}]}',
     {}, "element 1 of its data is String"),
    (b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": -1, "data": [1]}]}', {},
     "expected a list of non-negative integers"),
    (BINARY_HEADER + b"\x00\x00", {"Inference-Header-Content-Length": str(len(BINARY_HEADER))},
     "has binary_data_size 16, but 2 bytes of binary data follow"),
    (BINARY_HEADER + b"\x00" * 16, {}, "The inference request is not valid JSON"),
    (b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 1], "data": [1]}], '
     b'"outputs": [{"name": "probabilities"}]}', {}, "Unknown output 'probabilities'"),
    (b"{}", {"Inference-Header-Content-Length": "9"}, "Inference-Header-Content-Length '9'"),
])
def test_malformed_requests_get_400(cluster: Cluster, body: bytes, headers: dict[str, str],
                                    message: str) -> None:
    response = cluster.post("/v2/models/doubles/infer", data=body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_curl_style_json_and_routes(cluster: Cluster) -> None:
    body = {"id": "q1", "inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 2],
                                    "data": [[1, 2], [3, 4.5]]}]}
    response = cluster.post("/v2/models/doubles/versions/1/infer", body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model_name": "doubles", "model_version": "1", "id": "q1",
        "outputs": [{"name": "output", "datatype": "BYTES", "shape": [2], "data": ["3.0", "7.5"]},
                    {"name": "default", "datatype": "BOOL", "shape": [2],
                     "data": [False, False]}]}
    assert response.headers["Clipper-Model-Versions"] == "doubles-model:1"
    get = cluster.session.get
    assert get(cluster.url + "/v2/models/doubles/infer", timeout=10).status_code == 405
    missing = get(cluster.url + "/v2/models/doubles/config", timeout=10)
    assert missing.status_code == 404
    assert "POST /infer" in orjson.loads(missing.content)["error"]
    # Clipper's own API is untouched beside it.
    answer = cluster.predict("doubles", {"input": [1.0, 2.0]})
    assert answer == {"query_id": answer["query_id"], "output": 3.0, "default": False}


def test_a_version_without_replicas_is_not_ready(cluster: Cluster,
                                                 client: httpclient.InferenceServerClient) -> None:
    # Last in the module: it adds version 2 of doubles-model, which the metadata then lists.
    cluster.add_model("doubles-model", "2", "doubles")
    wait_for(lambda: client.get_model_metadata("doubles")["versions"] == ["1", "2"],
             what="version 2 in the metadata")
    assert not client.is_model_ready("doubles", "2")
    assert client.is_model_ready("doubles", "1") and client.is_model_ready("doubles")
    response = cluster.session.get(cluster.url + "/v2/models/doubles/versions/2/ready",
                                   timeout=10)
    assert response.status_code == 400
    assert response.json() == {
        "error": "Version 2 of model doubles-model is not ready: no replica of it is connected"}
