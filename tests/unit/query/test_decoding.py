"""Input decoding, strict number typing, error texts and output rendering of the query API."""

from __future__ import annotations

import struct

import orjson
import pytest

from clipper_core.frontend.codec import (
    PREDICT_SCHEMA,
    JsonSemanticError,
    decoder_for,
    parse_error_message,
    predict_error,
    render_output,
    type_name,
)
from clipper_core.types import InputType


def single(input_type: InputType, value: object) -> bytes:
    return decoder_for(input_type)[0](value)


def batch(input_type: InputType, value: object) -> list[bytes]:
    return decoder_for(input_type)[1](value)


def error_of(fn, *args) -> str:
    with pytest.raises(JsonSemanticError) as info:
        fn(*args)
    return info.value.msg


def test_doubles_are_float64_little_endian() -> None:
    assert single(InputType.DOUBLES, [1.5, -2.0]) == struct.pack("<2d", 1.5, -2.0)
    assert single(InputType.DOUBLES, []) == b""


def test_floats_are_float32() -> None:
    assert single(InputType.FLOATS, [1.5, 3.0e38]) == struct.pack("<2f", 1.5, 3.0e38)


def test_integers_are_int32() -> None:
    values = [0, -(2**31), 2**31 - 1]
    assert single(InputType.INTEGERS, values) == struct.pack("<3i", *values)


def test_strings_and_bytes() -> None:
    assert single(InputType.STRINGS, "héllo") == "héllo".encode()
    assert single(InputType.BYTES, "aGVsbG8=") == b"hello"
    # Lenient like the original: stops at the first '=' and needs no padding.
    assert single(InputType.BYTES, "aGVsbG8") == b"hello"
    assert single(InputType.BYTES, "aGk=garbage") == b"hi"


@pytest.mark.parametrize(("input_type", "value", "message"), [
    (InputType.DOUBLES, [1.0, 2], "Array input of type Number is not of type double"),
    (InputType.DOUBLES, [True], "Array input of type True is not of type double"),
    (InputType.DOUBLES, ["1.0"], "Array input of type String is not of type double"),
    (InputType.FLOATS, [1], "Array input of type Number is not of type float"),
    (InputType.FLOATS, [1e39], "Array input of type Number is not of type float"),
    (InputType.FLOATS, [-1e39], "Array input of type Number is not of type float"),
    (InputType.INTEGERS, [1.0], "Array input of type Number is not of type int"),
    (InputType.INTEGERS, [False], "Array input of type False is not of type int"),
    (InputType.INTEGERS, [2**31], "Array input of type Number is not of type int"),
    (InputType.INTEGERS, [None], "Array input of type Null is not of type int"),
    (InputType.DOUBLES, "abc",
     "Type mismatch! JSON key input expected type Arraybut found type String"),
    (InputType.INTEGERS, {"a": 1},
     "Type mismatch! JSON key input expected type Arraybut found type Object"),
    (InputType.STRINGS, ["a"],
     "Type mismatch! JSON key input expected type Stringbut found type Array"),
    (InputType.BYTES, 5, "Type mismatch! JSON key input expected type Stringbut found type Number"),
])
def test_single_input_typing_errors(input_type: InputType, value: object, message: str) -> None:
    assert error_of(single, input_type, value) == message


@pytest.mark.parametrize(("input_type", "value", "message"), [
    (InputType.DOUBLES, [[1.0], 3.0], "Array input of type Number is not of type array"),
    (InputType.DOUBLES, [[1.0], [1]], "Array input of type Number is not of type double"),
    (InputType.STRINGS, ["a", 1], "Array input of type Number is not of type string"),
    (InputType.BYTES, ["aGk=", []],
     "PredictionData of type Array is not of type base64-encoded string"),
    (InputType.INTEGERS, {"x": 1},
     "Type mismatch! JSON key input_batch expected type Arraybut found type Object"),
])
def test_batch_typing_errors(input_type: InputType, value: object, message: str) -> None:
    assert error_of(batch, input_type, value) == message


def test_batches_decode_each_element() -> None:
    assert batch(InputType.INTEGERS, [[1], [2, 3], []]) == [
        struct.pack("<i", 1), struct.pack("<2i", 2, 3), b""]
    assert batch(InputType.STRINGS, ["a", "bc"]) == [b"a", b"bc"]


def test_type_names_follow_rapidjson() -> None:
    assert [type_name(v) for v in (None, True, False, {}, [], "", 1, 1.5)] == [
        "Null", "True", "False", "Object", "Array", "String", "Number", "Number"]


@pytest.mark.parametrize(("body", "text"), [
    (b"", "The document is empty."),
    (b"   ", "The document is empty."),
    (b"{} x", "The document root must not be followed by other values."),
    (b"[1 2]", "Missing a comma or ']' after an array element."),
    (b'{"a":1 "b":2}', "Missing a comma or '}' after an object member."),
    (b'{"a" 1}', "Missing a colon after a name of object member."),
    (b"{1:2}", "Missing a name for object member."),
    (b"nope", "Invalid value."),
])
def test_parse_error_messages(body: bytes, text: str) -> None:
    with pytest.raises(orjson.JSONDecodeError) as info:
        orjson.loads(body)
    message = parse_error_message(body, info.value)
    assert message.startswith(f"JSON parse error: {text} (offset ")
    assert message.endswith(")\n")


def test_predict_error_body_has_the_schema() -> None:
    body = orjson.loads(predict_error("JSON object does not have required keys input or input_batch"))
    assert body == {
        "error": "Json error",
        "cause": "Error parsing JSON: JSON object does not have required keys input or "
                 "input_batch. Expected JSON schema: " + PREDICT_SCHEMA,
    }
    assert PREDICT_SCHEMA == ('\n  {\n   "input" := [double] | [int] | [string] | [byte] | '
                              '[float],\n  }\n')


@pytest.mark.parametrize(("output", "rendered"), [
    (b"1", b"1"),
    (b"6.6000000000000005", b"6.6000000000000005"),
    (b"DEFAULT", b'"DEFAULT"'),
    (b"nan", b'"nan"'),
    (b"None", b'"None"'),
    (b"True", b'"True"'),
    (b"true", b"true"),
    (b'{"prob": "0.9", "prediction": 1.0}', b'{"prob":"0.9","prediction":1.0}'),
    (b'"quoted"', b'"quoted"'),
    (b"1 2", b'"1 2"'),
    (b"", b'""'),
])
def test_output_is_json_or_string(output: bytes, rendered: bytes) -> None:
    assert render_output(output) == rendered
