"""Decoding of Open Inference Protocol requests: tensors to the bytes a replica receives, and
no request body, however malformed, raises anything but a ValidationError."""

from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipper_core.exceptions import ValidationError
from clipper_core.frontend.v2 import decode_input, parse_request, requested_outputs
from clipper_core.types import InputType


def rows(input_type: InputType, tensor: dict, binary: bytes = b"") -> list[bytes]:
    infer, data = parse_request(orjson.dumps({"inputs": [tensor]}) + binary,
                                str(len(orjson.dumps({"inputs": [tensor]}))).encode()
                                if binary else None)
    return decode_input(infer, data, input_type, "app")


def test_each_row_is_one_query_in_wire_form() -> None:
    tensor = {"name": "input", "datatype": "FP64", "shape": [2, 2], "data": [1, 2.5, 3, 4]}
    assert rows(InputType.DOUBLES, tensor) == [struct.pack("<2d", 1, 2.5),
                                               struct.pack("<2d", 3, 4)]
    nested = dict(tensor, data=[[1, 2.5], [3, 4]])
    assert rows(InputType.DOUBLES, nested) == rows(InputType.DOUBLES, tensor)
    binary = {"name": "input", "datatype": "INT32", "shape": [1, 2, 2],
              "parameters": {"binary_data_size": 16}}
    assert rows(InputType.INTEGERS, binary, struct.pack("<4i", 1, 2, 3, 4)) == [
        struct.pack("<4i", 1, 2, 3, 4)]
    strings = {"name": "input", "datatype": "BYTES", "shape": [2, 1],
               "parameters": {"binary_data_size": 11}}
    assert rows(InputType.STRINGS, strings, b"\x02\x00\x00\x00hi\x01\x00\x00\x00!") == [
        b"hi", b"!"]
    empty = {"name": "input", "datatype": "FP32", "shape": [0, 0], "data": []}
    assert rows(InputType.FLOATS, empty) == []


@pytest.mark.parametrize(("input_type", "tensor", "binary", "message"), [
    (InputType.INTEGERS, {"name": "input", "datatype": "INT32", "shape": [1], "data": [2**31]},
     b"", "out of the range of INT32"),
    (InputType.FLOATS, {"name": "input", "datatype": "FP32", "shape": [1], "data": [1e39]},
     b"", "out of the range of FP32"),
    (InputType.INTEGERS, {"name": "input", "datatype": "INT32", "shape": [1], "data": [1.5]},
     b"", "INT32, which takes integers, but element 0 of its data is Number 1.5"),
    (InputType.STRINGS, {"name": "input", "datatype": "BYTES", "shape": [1],
                         "parameters": {"binary_data_size": 5}}, b"\x01\x00\x00\x00\xff",
     "Element 0 of input \"input\" is not valid UTF-8"),
    (InputType.BYTES, {"name": "input", "datatype": "BYTES", "shape": [2],
                       "parameters": {"binary_data_size": 5}}, b"\x01\x00\x00\x00a",
     "ends inside element 1; its shape says 2 elements"),
    (InputType.DOUBLES, {"name": "input", "datatype": "FP64", "shape": [3, 0], "data": []},
     b"", "a row must hold at least one element"),
])
def test_bad_tensors(input_type: InputType, tensor: dict, binary: bytes, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        rows(input_type, tensor, binary)
    assert message in info.value.msg


def test_requested_outputs() -> None:
    assert requested_outputs({}) == [("output", False), ("default", False)]
    assert requested_outputs({"parameters": {"binary_data_output": True},
                              "outputs": [{"name": "default"},
                                          {"name": "output",
                                           "parameters": {"binary_data": False}}]}) == [
        ("default", True), ("output", False)]
    with pytest.raises(ValidationError, match="must be true or false"):
        requested_outputs({"parameters": {"binary_data_output": 1}})


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
_tensor = st.fixed_dictionaries(
    {}, optional={"name": st.sampled_from(["input", "x"]) | _json,
                  "datatype": st.sampled_from(["FP64", "FP32", "INT32", "UINT8", "INT8", "BYTES",
                                               "BOOL"]) | _json,
                  "shape": st.lists(st.integers(-1, 5), max_size=3) | _json,
                  "data": _json,
                  "parameters": st.fixed_dictionaries(
                      {}, optional={"binary_data_size": st.integers(-1, 40) | _json}) | _json})
_request = st.fixed_dictionaries(
    {}, optional={"inputs": st.lists(_tensor, max_size=2) | _json, "id": _json,
                  "outputs": st.lists(st.fixed_dictionaries(
                      {}, optional={"name": st.sampled_from(["output", "default"]) | _json,
                                    "parameters": _json}), max_size=3) | _json,
                  "parameters": _json})


@settings(max_examples=250, deadline=None, database=None)
@given(_request, st.binary(max_size=40), st.sampled_from(list(InputType)), st.booleans())
def test_any_request_decodes_or_raises_a_validation_error(request: dict, binary: bytes,
                                                          input_type: InputType,
                                                          with_header: bool) -> None:
    header = orjson.dumps(request)
    try:
        infer, data = parse_request(header + binary,
                                    str(len(header)).encode() if with_header else None)
        inputs = decode_input(infer, data, input_type, "app")
        requested_outputs(infer)
    except ValidationError:
        return
    assert all(type(item) is bytes for item in inputs)
