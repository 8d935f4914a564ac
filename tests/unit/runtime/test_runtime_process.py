"""The runtime as a real subprocess against a real ROUTER socket speaking the RPC protocol."""

from __future__ import annotations

import json
import signal
import sys
import time

import numpy as np
import pytest

from clipper_core.deployers.api import write_bundle
from clipper_core.deployers.python import PythonDeployer
from clipper_core.rpc import protocol as rpc
from clipper_core.types import InputType


def describing_model():
    """A model that reports what it was given: dtype, shape, and each item."""

    def describe(inputs):
        items = [x.tolist() if hasattr(x, "tolist") else x for x in inputs]
        return [f"{type(inputs).__name__}|{inputs.dtype}|{inputs.shape}|{type(x).__name__}|{item!r}"
                for x, item in zip(inputs, items, strict=True)]

    return describe


def test_registers_with_version_4_and_writes_ready_file(frontend, start_replica, tmp_path):
    replica = start_replica(describing_model(), "floats", frontend.port, CLIPPER_MODEL_NAME="my-model",
                            CLIPPER_MODEL_VERSION="7")
    reg = frontend.wait_registration()
    assert (reg.name, reg.version, reg.input_type, reg.rpc_version) == ("my-model", "7", 2, 4)
    assert (tmp_path / "ready.check").read_text() == "READY"
    log = replica.log
    for needle in ("my-model", "version 7", "floats", "bundle-0", "deployer python"):
        assert needle in log


def _pack(dtype, rows):
    return [np.asarray(r, dtype=dtype).tobytes() for r in rows]


PREDICTION_CASES = [
    ("doubles", _pack("f8", [[1.5, 2.0], [3.0, -4.0]]),
     ["ndarray|float64|(2, 2)|ndarray|[1.5, 2.0]", "ndarray|float64|(2, 2)|ndarray|[3.0, -4.0]"]),
    ("doubles", _pack("f8", [[1.0], [2.0, 3.0]]),
     ["ndarray|object|(2,)|ndarray|[1.0]", "ndarray|object|(2,)|ndarray|[2.0, 3.0]"]),
    ("floats", _pack("f4", [[0.5, 0.25, 1.0]]),
     ["ndarray|float32|(1, 3)|ndarray|[0.5, 0.25, 1.0]"]),
    ("floats", _pack("f4", [[0.5], [], [1.0, 2.0]]),
     ["ndarray|object|(3,)|ndarray|[0.5]", "ndarray|object|(3,)|ndarray|[]",
      "ndarray|object|(3,)|ndarray|[1.0, 2.0]"]),
    ("ints", _pack("i4", [[1, -2], [2**31 - 1, 0]]),
     ["ndarray|int32|(2, 2)|ndarray|[1, -2]", "ndarray|int32|(2, 2)|ndarray|[2147483647, 0]"]),
    ("integers", _pack("i4", [[7], [8, 9, 10]]),
     ["ndarray|object|(2,)|ndarray|[7]", "ndarray|object|(2,)|ndarray|[8, 9, 10]"]),
    ("bytes", [b"\x01\xff", b"\x02\x80"],
     ["ndarray|int8|(2, 2)|ndarray|[1, -1]", "ndarray|int8|(2, 2)|ndarray|[2, -128]"]),
    ("bytes", [b"\x05", b"abc"],
     ["ndarray|object|(2,)|ndarray|[5]", "ndarray|object|(2,)|ndarray|[97, 98, 99]"]),
    ("strings", ["héllo".encode(), b"", b"x y"],
     ["ndarray|object|(3,)|bytes|b'h\\xc3\\xa9llo'", "ndarray|object|(3,)|bytes|b''",
      "ndarray|object|(3,)|bytes|b'x y'"]),
    ("doubles", [b"", b""],  # empty inputs ("input": [])
     ["ndarray|float64|(2, 0)|ndarray|[]", "ndarray|float64|(2, 0)|ndarray|[]"]),
]


def test_predictions_for_every_input_type(frontend, start_replica):
    """One replica per input type, each answering its cases (equal, unequal, empty lengths)."""
    by_type: dict[str, list] = {}
    for type_name, inputs, expected in PREDICTION_CASES:
        by_type.setdefault(type_name, []).append((inputs, expected))
    replicas = {name: start_replica(describing_model(), name, frontend.port,
                                    CLIPPER_MODEL_NAME=f"m-{name}") for name in by_type}
    identities = {}
    while len(identities) < len(replicas):
        reg = frontend.wait_registration()
        identities[reg.name.removeprefix("m-")] = reg
    for name, cases in by_type.items():
        reg = identities[name]
        assert reg.input_type == InputType.parse(name)
        for inputs, expected in cases:
            assert frontend.predict(reg.identity, reg.input_type, inputs) == ("ok", expected), name
    assert all(r.proc.poll() is None for r in replicas.values())


def test_answers_a_version_3_request_in_version_3(frontend, start_replica):
    """One frame per input and per output, as the original frontend sends and reads them."""
    start_replica(describing_model(), "ints", frontend.port)
    reg = frontend.wait_registration()
    inputs = _pack("i4", [[1, 2], [3]])
    message = rpc.predict_request(rpc.RPC_VERSION_LEGACY, 1, 1, inputs)
    assert len(message) == 7 + 2  # header frames, then one frame per input
    assert frontend.predict(reg.identity, 1, inputs, version=rpc.RPC_VERSION_LEGACY) == (
        "ok", ["ndarray|object|(2,)|ndarray|[1, 2]", "ndarray|object|(2,)|ndarray|[3]"])


def test_outputs_are_str_converted(frontend, start_replica):
    def model(inputs):
        n = len(inputs)
        if n == 1:
            return np.array([0.5])
        if n == 2:
            return (1, None)
        return [{"a": 1}, "é", 2.5]

    start_replica(model, "doubles", frontend.port)
    reg = frontend.wait_registration()
    one = _pack("f8", [[1.0]])
    assert frontend.predict(reg.identity, 3, one) == ("ok", ["0.5"])
    assert frontend.predict(reg.identity, 3, one * 2) == ("ok", ["1", "None"])
    assert frontend.predict(reg.identity, 3, one * 3) == ("ok", ["{'a': 1}", "é", "2.5"])


def test_model_errors_get_error_replies_and_the_replica_keeps_serving(frontend, start_replica):
    def model(inputs):
        if inputs[0][0] < 0:
            raise ValueError("negative input\nsecond line")
        if inputs[0][0] == 1:
            return []
        if inputs[0][0] == 2:
            return 42
        return [str(x[0]) for x in inputs]

    replica = start_replica(model, "doubles", frontend.port)
    reg = frontend.wait_registration()
    assert frontend.predict(reg.identity, 3, _pack("f8", [[-1.0]])) == (
        "error", "ValueError: negative input")
    assert frontend.predict(reg.identity, 3, _pack("f8", [[5.0], [6.0]])) == ("ok", ["5.0", "6.0"])
    assert frontend.predict(reg.identity, 3, _pack("f8", [[1.0], [6.0]])) == (
        "error", "PredictionError: Expected model to return 2 outputs, found 0 outputs")
    status, message = frontend.predict(reg.identity, 3, _pack("f8", [[2.0]]))
    assert status == "error"
    assert message.startswith("PredictionError: The model returned int; expected a list")
    # An input type other than the replica's is refused, not misread.
    assert frontend.predict(reg.identity, 2, _pack("f4", [[1.0]])) == (
        "error", "PredictionError: the request carries floats inputs but this replica serves doubles")
    assert frontend.predict(reg.identity, 3, _pack("f8", [[9.0]])) == ("ok", ["9.0"])
    assert "ValueError: negative input" in replica.log
    assert replica.proc.poll() is None


def test_heartbeats_keep_flowing_during_a_long_predict(frontend, start_replica):
    """Also: a batch longer than the 3 s activity timeout does not make the replica reconnect."""

    def slow(inputs):
        time.sleep(inputs[0][0])
        return ["done"] * len(inputs)

    replica = start_replica(slow, "doubles", frontend.port, CLIPPER_HEARTBEAT_INTERVAL_S="0.2")
    reg = frontend.wait_registration()
    for seconds in (2.0, 3.5):
        sent = time.monotonic()
        assert frontend.predict(reg.identity, 3, _pack("f8", [[seconds]])) == ("ok", ["done"])
        took = time.monotonic() - sent
        during = [t for t, ident in frontend.heartbeats if ident == reg.identity and t >= sent]
        assert took >= seconds
        assert len(during) >= seconds / 0.2 - 3, f"{len(during)} heartbeats in {took:.1f} s"
    assert frontend.predict(reg.identity, 3, _pack("f8", [[0.0]])) == ("ok", ["done"])
    assert "reconnecting" not in replica.log


def test_replies_read_during_a_long_predict_count_as_frontend_activity(frontend, start_replica):
    """The frontend answers heartbeats for the first 2.5 s of a 3.5 s batch, then goes quiet:
    its last reply came 1 s before the batch ended, within the 3 s activity timeout."""

    def slow(inputs):
        time.sleep(inputs[0][0])
        return ["done"] * len(inputs)

    replica = start_replica(slow, "doubles", frontend.port, CLIPPER_HEARTBEAT_INTERVAL_S="0.2")
    reg = frontend.wait_registration()
    frontend.send_predict(reg.identity, 3, _pack("f8", [[3.5]]))
    answering_until = time.monotonic() + 2.5
    while (left := answering_until - time.monotonic()) > 0:
        frontend.recv(left)
    frontend.answer_heartbeats = False
    frontend.wait_for(rpc.MSG_CONTAINER_CONTENT, 10)
    frontend.answer_heartbeats = True
    assert frontend.predict(reg.identity, 3, _pack("f8", [[0.0]]), timeout=5) == ("ok", ["done"])
    assert "reconnecting" not in replica.log


def test_reconnects_with_a_new_socket_when_the_frontend_goes_away(frontend, start_replica):
    replica = start_replica(describing_model(), "doubles", frontend.port,
                            CLIPPER_HEARTBEAT_INTERVAL_S="0.2")
    first = frontend.wait_registration()
    assert frontend.predict(first.identity, 3, _pack("f8", [[1.0]]))[0] == "ok"
    frontend.unbind()
    time.sleep(4.5)  # longer than the 3 s activity timeout: the runtime gives up on the socket
    frontend.bind()
    second = frontend.wait_registration()
    assert second.identity != first.identity
    assert (second.name, second.version, second.rpc_version) == ("m", "1", 4)
    assert frontend.predict(second.identity, 3, _pack("f8", [[2.0]])) == (
        "ok", ["ndarray|float64|(1, 1)|ndarray|[2.0]"])
    assert "reconnecting" in replica.log


def test_first_heartbeat_waits_for_a_frontend_that_starts_later(make_frontend, start_replica):
    probe = make_frontend()
    port = probe.port
    probe.close()
    start_replica(describing_model(), "doubles", port, CLIPPER_HEARTBEAT_INTERVAL_S="0.1")
    time.sleep(1.5)
    late = make_frontend(port)
    reg = late.wait_registration()
    first_contact = late.heartbeats[0][0]
    assert late.predict(reg.identity, 3, _pack("f8", [[3.0]]))[0] == "ok"
    # Before contact the runtime kept one heartbeat queued instead of one per interval (15).
    assert len([t for t, _ in late.heartbeats if t <= first_contact + 0.05]) == 1


@pytest.mark.parametrize("missing", ["CLIPPER_MODEL_NAME", "CLIPPER_MODEL_VERSION"])
def test_missing_required_variable_exits_1(start_replica, missing):
    replica = start_replica(describing_model(), "doubles", 5, **{missing: None})
    assert replica.wait() == 1
    assert f"ERROR: {missing} environment variable must be set" in replica.log


def test_invalid_input_type_exits_1(start_replica):
    replica = start_replica(describing_model(), "doubles", 5, CLIPPER_INPUT_TYPE="tensors")
    assert replica.wait() == 1
    assert "'tensors' is not a valid input type" in replica.log


def test_missing_bundle_exits_2_naming_the_path(start_replica, tmp_path):
    replica = start_replica(None, "doubles", 5, CLIPPER_MODEL_PATH=str(tmp_path / "nowhere"))
    assert replica.wait() == 2
    assert f"{tmp_path / 'nowhere'} is not a model bundle" in replica.log


def test_unknown_deployer_exits_2_naming_it(start_replica, tmp_path):
    bundle = tmp_path / "other-bundle"
    write_bundle(PythonDeployer(), bundle, "doubles", describing_model())
    meta = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**meta, "deployer": "no-such-framework"}))
    replica = start_replica(None, "doubles", 5, CLIPPER_MODEL_PATH=str(bundle))
    assert replica.wait(60) == 2
    assert (f"Could not load the model bundle {bundle} with the 'no-such-framework' deployer: "
            "PluginError: No deployer named 'no-such-framework' is installed") in replica.log


def test_import_error_while_loading_exits_3(start_replica, tmp_path, monkeypatch):
    """A function whose module uses another local module the replica cannot import.

    The function's own module travels by value; the module it imports is pickled by
    reference, so unpickling in the replica raises ModuleNotFoundError.
    """
    module_dir = tmp_path / "only_here"
    module_dir.mkdir()
    (module_dir / "vanishing_dependency.py").write_text("def f(xs):\n    return xs\n")
    (module_dir / "vanishing_module.py").write_text(
        "import vanishing_dependency\n\n"
        "def predict(xs):\n    return vanishing_dependency.f(xs)\n")
    monkeypatch.syspath_prepend(str(module_dir))
    import vanishing_module

    try:
        replica = start_replica(vanishing_module.predict, "doubles", 5)
        assert replica.wait() == 3
    finally:
        sys.modules.pop("vanishing_module", None)
        sys.modules.pop("vanishing_dependency", None)
    log = replica.log
    assert "ModuleNotFoundError" in log
    assert "bundle-0" in log
    assert "'python' deployer" in log


def test_sigterm_sends_goodbye_and_exits_0(frontend, start_replica, tmp_path):
    replica = start_replica(describing_model(), "doubles", frontend.port)
    reg = frontend.wait_registration()
    assert (tmp_path / "ready.check").exists()
    replica.proc.send_signal(signal.SIGTERM)
    goodbye = frontend.wait_for(rpc.MSG_GOODBYE, timeout=10)
    assert goodbye[0] == reg.identity
    assert replica.wait() == 0
    assert not (tmp_path / "ready.check").exists()


def test_sigint_during_a_predict_also_says_goodbye(frontend, start_replica):
    def slow(inputs):
        time.sleep(30)
        return inputs

    replica = start_replica(slow, "doubles", frontend.port)
    reg = frontend.wait_registration()
    frontend.send_predict(reg.identity, 3, _pack("f8", [[1.0]]))
    time.sleep(0.5)
    started = time.monotonic()
    replica.proc.send_signal(signal.SIGINT)
    assert frontend.wait_for(rpc.MSG_GOODBYE, timeout=10)[0] == reg.identity
    assert replica.wait() == 0
    assert time.monotonic() - started < 5
