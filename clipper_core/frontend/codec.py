"""Decoding of query requests and rendering of model outputs (spec §1.2-1.7).

The frontend-side counterpart of :mod:`clipper_core.runtime.codec`: a request's JSON becomes
the bytes a replica receives (one contiguous buffer per input, numbers typed strictly as the
application's input type says), and a replica's output becomes the JSON fragment of the
answer. Error texts follow the original's wording.
"""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from collections.abc import Callable
from typing import Any

import orjson

from clipper_core.exceptions import ValidationError
from clipper_core.frontend.http import error_body
from clipper_core.types import InputType

if sys.byteorder != "little" or array("i").itemsize != 4:  # pragma: no cover
    raise ImportError("the query frontend needs a little-endian platform with 32-bit C ints")

#: Spec §1.6: the schema text appended to every JSON error of ``/predict``.
PREDICT_SCHEMA = '\n  {\n   "input" := [double] | [int] | [string] | [byte] | [float],\n  }\n'
#: Spec §1.7: the schema text of ``/update`` errors.
UPDATE_SCHEMA = ('\n  {\n   "uid" := string,\n   "input" := [double] | [int] | [string] | '
                 '[byte] | [float],\n   "label" := double\n  }\n')

_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT_ONLY = frozenset((float,))
_INT_ONLY = frozenset((int,))



class JsonSemanticError(ValidationError):
    """Valid JSON that does not have the shape the application expects."""


def type_name(value: object) -> str:
    """RapidJSON's type names, used by the original messages."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def mismatch(key: str, expected: str, value: object) -> JsonSemanticError:
    return JsonSemanticError(
        f"Type mismatch! JSON key {key} expected type {expected}but found type {type_name(value)}")


def _element_error(value: object, expected: str) -> JsonSemanticError:
    return JsonSemanticError(f"Array input of type {type_name(value)} is not of type {expected}")


def _first_bad(values: list[Any], good: type, expected: str) -> JsonSemanticError:
    return _element_error(next(v for v in values if type(v) is not good), expected)


def encode_doubles(values: list[Any]) -> bytes:
    if not _FLOAT_ONLY.issuperset(map(type, values)):
        raise _first_bad(values, float, "double")
    return array("d", values).tobytes()


def encode_floats(values: list[Any]) -> bytes:
    if not _FLOAT_ONLY.issuperset(map(type, values)):
        raise _first_bad(values, float, "float")
    if values and (max(values) > _FLOAT32_MAX or min(values) < -_FLOAT32_MAX):
        raise _element_error(next(v for v in values if abs(v) > _FLOAT32_MAX), "float")
    return array("f", values).tobytes()


def encode_integers(values: list[Any]) -> bytes:
    if not _INT_ONLY.issuperset(map(type, values)):
        raise _first_bad(values, int, "int")
    try:
        return array("i", values).tobytes()
    except OverflowError:
        raise _element_error(0, "int") from None


def encode_string(value: str) -> bytes:
    try:
        return value.encode()
    except UnicodeEncodeError as exc:
        raise JsonSemanticError(f"String input is not valid UTF-8: {exc.reason}") from None


def encode_base64(value: str) -> bytes:
    """Lenient as the original: stop at the first ``=``, ignore characters outside base64."""
    data = value.partition("=")[0]
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JsonSemanticError(f"Input is not valid base64: {exc}") from None


_ARRAY_ENCODERS = {
    InputType.DOUBLES: encode_doubles,
    InputType.FLOATS: encode_floats,
    InputType.INTEGERS: encode_integers,
}
_STRING_ENCODERS = {InputType.STRINGS: encode_string, InputType.BYTES: encode_base64}


def decoder_for(input_type: InputType) -> tuple[Callable[[Any], bytes],
                                                  Callable[[Any], list[bytes]]]:
    """``(single, batch)``: decode ``input`` / ``input_batch`` values for ``input_type``."""
    if input_type in _ARRAY_ENCODERS:
        encode = _ARRAY_ENCODERS[input_type]

        def single(value: Any) -> bytes:
            if type(value) is not list:
                raise mismatch("input", "Array", value)
            return encode(value)

        def batch(values: Any) -> list[bytes]:
            if type(values) is not list:
                raise mismatch("input_batch", "Array", values)
            for value in values:
                if type(value) is not list:
                    raise _element_error(value, "array")
            return list(map(encode, values))

        return single, batch

    encode = _STRING_ENCODERS[input_type]
    element_error = (
        (lambda v: _element_error(v, "string")) if input_type is InputType.STRINGS
        else (lambda v: JsonSemanticError(
            f"PredictionData of type {type_name(v)} is not of type base64-encoded string")))

    def single_str(value: Any) -> bytes:
        if type(value) is not str:
            raise mismatch("input", "String", value)
        return encode(value)

    def batch_str(values: Any) -> list[bytes]:
        if type(values) is not list:
            raise mismatch("input_batch", "Array", values)
        for value in values:
            if type(value) is not str:
                raise element_error(value)
        return list(map(encode, values))

    return single_str, batch_str


_PARSE_MESSAGES = (
    ("empty document", "The document is empty."),
    ("after document", "The document root must not be followed by other values."),
    ("expected ',' or ']'", "Missing a comma or ']' after an array element."),
    ("expected ',' or '}'", "Missing a comma or '}' after an object member."),
    ("expected ':'", "Missing a colon after a name of object member."),
    ("string key", "Missing a name for object member."),
)


def parse_error_message(body: bytes, exc: orjson.JSONDecodeError) -> str:
    """The original's wording of a JSON syntax error (RapidJSON messages, §1.6)."""
    if not body.strip():
        text, pos = "The document is empty.", len(body)
    else:
        text = next((msg for hint, msg in _PARSE_MESSAGES if hint in exc.msg), "Invalid value.")
        pos = exc.pos
    return f"JSON parse error: {text} (offset {pos})\n"


def predict_error(cause: str) -> bytes:
    return error_body("Json error", f"Error parsing JSON: {cause}. Expected JSON schema: "
                                    f"{PREDICT_SCHEMA}")


def render_output(output: bytes) -> bytes:
    """Spec §1.4: embed the output as JSON if it parses as JSON, else as a JSON string.

    The fragment may live long in the prediction cache, so it is copied out of orjson's
    buffer, which keeps a 4 KiB allocation behind even a three-byte result.
    """
    try:
        rendered = orjson.dumps(orjson.loads(output))
    except orjson.JSONDecodeError:
        rendered = orjson.dumps(output.decode("utf-8", "replace"))
    return memoryview(rendered).tobytes()


def parse_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; :class:`JsonSemanticError` says what is wrong."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise JsonSemanticError(parse_error_message(body, exc)) from None
    if type(request) is not dict:
        raise JsonSemanticError("Can only get key-value pair from an object")
    return request


def predict_inputs(request: dict[str, Any], single: Callable[[Any], bytes],
                   batch: Callable[[Any], list[bytes]]) -> list[bytes]:
    """The inputs of a ``/predict`` request (``input`` or ``input_batch``) in wire form."""
    if "input" in request:
        return [single(request["input"])]
    if "input_batch" in request:
        return batch(request["input_batch"])
    raise JsonSemanticError("JSON object does not have required keys input or input_batch")


def requested_version(request: dict[str, Any]) -> str | None:
    """The ``version`` a ``/predict`` request pins, if any."""
    if "version" not in request:
        return None
    version = request["version"]
    if type(version) is not str:
        raise mismatch("version", "String", version)
    return version


def user_id(request: dict[str, Any]) -> int:
    """The optional ``uid`` of a ``/predict`` request (0 without one): whose state a
    personalized policy uses."""
    uid = request.get("uid", 0)
    if type(uid) is not int:
        raise mismatch("uid", "Number", uid)
    return uid


def feedback(request: dict[str, Any], single: Callable[[Any], bytes]) -> tuple[int, bytes, float]:
    """``(uid, input bytes, label)`` of an ``/update`` request (spec §1.7)."""
    for key in ("uid", "input", "label"):
        if key not in request:
            raise JsonSemanticError(f"JSON object does not have required key: {key}")
    uid, label = request["uid"], request["label"]
    if type(uid) is not int:
        raise mismatch("uid", "Number", uid)
    data = single(request["input"])
    if type(label) is not float:
        raise mismatch("label", "Double", label)
    return uid, data, label


def update_error(cause: str) -> bytes:
    """The plain-text body of a rejected ``/update`` (spec §1.7)."""
    return f"Error parsing JSON: {cause}. Expected JSON schema: {UPDATE_SCHEMA}".encode()
