"""The Open Inference Protocol (KServe v2) over HTTP, beside Clipper's REST API on the query port.

A v2 *model* is an application: ``/v2/models/<app>/infer`` is ``POST /<app>/predict`` in tensor
form, and ``/versions/<v>`` pins a version of the application's model as ``/predict``'s
``version`` does. A model's name works too when exactly one application links that model and
nothing else. The input tensor ``input`` is split into rows, one query each, and the rows go
down the same chain as a ``/predict`` request's ``input_batch``
(:meth:`~clipper_core.frontend.query.QueryFrontend.submit`): cache, deadline-ordered queue,
adaptive batches, replicas, the SLO and the default output. The answers come back as two
tensors: ``output`` (BYTES: each query's output as ``/predict`` renders it, JSON values as JSON
text) and ``default`` (BOOL: which rows got the default output). JSON tensors and the binary
tensor data extension are both understood. Errors are ``{"error": ...}`` with the status of the
:class:`~clipper_core.exceptions.ClipperError` raised.
"""

from __future__ import annotations

import struct
from array import array
from itertools import chain
from math import prod
from time import monotonic
from typing import TYPE_CHECKING, Any

import orjson

import clipper_core
from clipper_core.exceptions import ClipperError, NotFoundError, OverloadedError, ValidationError
from clipper_core.frontend.codec import type_name
from clipper_core.frontend.http import Request, Responder
from clipper_core.frontend.query import RETRY_AFTER, Pending
from clipper_core.types import InputType

if TYPE_CHECKING:
    from clipper_core.batching.scheduler import VersionQueue
    from clipper_core.frontend.query import QueryFrontend
    from clipper_core.frontend.routing import AppRoute, RoutingTable

#: The names of the one input tensor and of the output tensors.
INPUT = "input"
OUTPUTS = ("output", "default")
PLATFORM = "clipper"
_SERVER_METADATA = orjson.dumps({"name": "clipper", "version": clipper_core.__version__,
                                 "extensions": ["binary_tensor_data"]})
_HEADER_LENGTH = b"inference-header-content-length"
_BINARY = b"application/octet-stream"
_LENGTH = struct.Struct("<I")
_FLOAT32_MAX = 3.4028234663852886e38
_NUMBER = frozenset((int, float))
_INTEGER = frozenset((int,))
#: Fixed-size datatypes: array typecode (little-endian, native sizes) and JSON element types.
_NUMERIC = {"FP64": ("d", _NUMBER), "FP32": ("f", _NUMBER), "INT32": ("i", _INTEGER),
            "UINT8": ("B", _INTEGER), "INT8": ("b", _INTEGER)}
#: The datatypes each input type accepts; the first is the one the metadata reports.
DATATYPES = {
    InputType.DOUBLES: ("FP64",),
    InputType.FLOATS: ("FP32",),
    InputType.INTEGERS: ("INT32",),
    InputType.BYTES: ("BYTES", "UINT8", "INT8"),
    InputType.STRINGS: ("BYTES",),
}


def error_body(msg: str) -> bytes:
    """The protocol's error body."""
    return orjson.dumps({"error": msg})


class V2Pending(Pending):
    """One inference request waiting for its rows' answers; renders them as output tensors."""

    __slots__ = ("name", "outputs", "request_id", "version")

    def __init__(self, route: AppRoute, responder: Responder, n: int, qid0: int, start: float,
                 queue: VersionQueue | None, name: str, version: str | None,
                 request_id: str | None, outputs: list[tuple[str, bool]]) -> None:
        super().__init__(route, responder, n, qid0, start, queue)
        self.name = name
        self.version = version
        self.request_id = request_id
        #: The requested output tensors, ``(name, binary)``, in order.
        self.outputs = outputs

    def respond(self, parts: list[bytes], headers: tuple[tuple[bytes, bytes], ...]) -> None:
        answers = orjson.loads(b"[" + b",".join(parts) + b"]")
        body: dict[str, Any] = {"model_name": self.name}
        version = self.version or (self.queue.version if self.queue is not None else None)
        if version is not None:
            body["model_version"] = version
        if self.request_id is not None:
            body["id"] = self.request_id
        explanation = next((a["default_explanation"] for a in answers if a["default"]), None)
        if explanation is not None:
            body["parameters"] = {"default_explanation": explanation}
        tensors, chunks = [], []
        for name, binary in self.outputs:
            tensor: dict[str, Any]
            if name == "output":
                values = [o if type(o) is str else orjson.dumps(o).decode()
                          for o in (a["output"] for a in answers)]
                tensor = {"name": name, "datatype": "BYTES", "shape": [len(values)]}
                chunk = b"".join(_LENGTH.pack(len(e)) + e for e in map(str.encode, values)) \
                    if binary else None
            else:
                values = [a["default"] for a in answers]
                tensor = {"name": name, "datatype": "BOOL", "shape": [len(values)]}
                chunk = bytes(values) if binary else None
            if chunk is None:
                tensor["data"] = values
            else:
                tensor["parameters"] = {"binary_data_size": len(chunk)}
                chunks.append(chunk)
            tensors.append(tensor)
        body["outputs"] = tensors
        header = orjson.dumps(body)
        if chunks:
            self.responder.send(200, header + b"".join(chunks), _BINARY, (
                *headers, (b"Inference-Header-Content-Length", str(len(header)).encode())))
        else:
            self.responder.send(200, header, extra_headers=headers)


class OpenInference:
    """The ``/v2`` routes of the query frontend."""

    def __init__(self, frontend: QueryFrontend, routing: RoutingTable) -> None:
        self.frontend = frontend
        self.routing = routing

    def handle(self, request: Request, responder: Responder, parts: list[str],
               after_reload: bool) -> None:
        """Answer a request whose path is ``/v2/...`` (``parts``: the path's segments)."""
        try:
            self._dispatch(request, responder, parts, after_reload)
        except ClipperError as exc:
            extra = RETRY_AFTER if isinstance(exc, OverloadedError) else ()
            responder.send(exc.status, error_body(exc.msg), extra_headers=extra)

    def _dispatch(self, request: Request, responder: Responder, parts: list[str],
                  after_reload: bool) -> None:
        n = len(parts)
        if n == 1:
            if _method(request, responder, b"GET"):
                responder.send(200, _SERVER_METADATA)
            return
        if n == 3 and parts[1] == "health" and parts[2] in ("live", "ready"):
            if _method(request, responder, b"GET"):
                responder.send(200, b'{"%b":true}' % parts[2].encode())
            return
        version, rest = None, parts[3:]
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        if n < 3 or parts[1] != "models" or rest not in ([], ["ready"], ["infer"]):
            raise NotFoundError(
                f"No route {request.path.decode('utf-8', 'replace')}. The Open Inference "
                "Protocol routes are GET /v2, GET /v2/health/live, GET /v2/health/ready, and "
                "under /v2/models/<application>[/versions/<version>]: GET (metadata), "
                "GET /ready and POST /infer")
        action = rest[0] if rest else "metadata"
        if not _method(request, responder, b"POST" if action == "infer" else b"GET"):
            return
        route = self._find(parts[2], request, responder, after_reload)
        if route is None:
            return
        if action == "metadata":
            responder.send(200, self._metadata(route, parts[2], version))
        elif action == "ready":
            self._ready(route, version, responder)
        else:
            self._infer(route, parts[2], version, request, responder)

    def _find(self, name: str, request: Request, responder: Responder,
              after_reload: bool) -> AppRoute | None:
        """The application a v2 model name means; None if the request waits for a reload."""
        apps = self.routing.apps
        route = apps.get(name)
        if route is not None:
            return route
        alone = [r for r in apps.values() if r.linked == [name]]
        if len(alone) == 1:
            return alone[0]
        if self.frontend.handle_after_reload(name, request, responder, after_reload):
            return None
        if alone:
            raise NotFoundError(
                f"Model {name!r} is the only model of several applications "
                f"({', '.join(sorted(r.app.name for r in alone))}); use one of their names")
        raise NotFoundError(
            f"No application named {name!r} (nor a model linked alone to exactly one "
            "application) exists; the v2 model name is the application's name")

    def _metadata(self, route: AppRoute, name: str, version: str | None) -> bytes:
        if version is not None:
            self.routing.version_target(route, version)
        input_type = route.app.input_type
        linked = route.linked
        return orjson.dumps({
            "name": name,
            "versions": self.routing.model_versions(linked[0]) if len(linked) == 1 else [],
            "platform": PLATFORM,
            "inputs": [{"name": INPUT, "datatype": DATATYPES[input_type][0],
                        "shape": [-1, -1] if input_type.is_numeric_array else [-1]}],
            "outputs": [{"name": "output", "datatype": "BYTES", "shape": [-1]},
                        {"name": "default", "datatype": "BOOL", "shape": [-1]}],
        })

    def _ready(self, route: AppRoute, version: str | None, responder: Responder) -> None:
        if version is not None:
            ready = self.routing.version_target(route, version) is not None
        else:
            ready = route.policy_error is None and (
                route.target is not None or (route.selector is not None and bool(route.arms)))
        if ready:
            responder.send(200, b'{"ready":true}')
        elif version is not None:
            responder.send(400, error_body(
                f"Version {version} of model {route.linked[0]} is not ready: no replica of it "
                "is connected"))
        else:
            responder.send(400, error_body(
                f"Application {route.app.name} is not ready: no linked model version has a "
                "connected replica, so its queries get the default output"))

    def _infer(self, route: AppRoute, name: str, version: str | None, request: Request,
               responder: Responder) -> None:
        encoding = request.headers.get(b"content-encoding", b"identity")
        if encoding != b"identity":
            raise ValidationError(f"Content-Encoding {encoding.decode('latin-1')!r} is not "
                                  "supported; send the request uncompressed")
        infer, binary = parse_request(request.body, request.headers.get(_HEADER_LENGTH))
        inputs = decode_input(infer, binary, route.app.input_type, route.app.name)
        outputs = requested_outputs(infer)
        request_id = infer.get("id")
        if request_id is not None and type(request_id) is not str:
            raise ValidationError(f'"id" must be a string, not {type_name(request_id)}')
        queue = self.routing.queue_for(route, version)
        if route.policy_error is not None:
            raise ValidationError(route.policy_error)
        frontend = self.frontend
        n = len(inputs)
        pending = V2Pending(route, responder, n, frontend.take_query_ids(n),
                            monotonic(), queue, name, version, request_id, outputs)
        if n == 0:
            pending.respond([], ())
            return
        frontend.submit(pending, inputs, 0, version is not None)


def _method(request: Request, responder: Responder, method: bytes) -> bool:
    """True if the request uses ``method``; else answer 405."""
    if request.method == method:
        return True
    responder.send(405, error_body(
        f"{request.path.decode('utf-8', 'replace')} accepts {method.decode()} only"),
        extra_headers=((b"Allow", method),))
    return False


def parse_request(body: bytes, header_length: bytes | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON inference request and the binary data after it (binary tensor extension)."""
    binary = memoryview(b"")
    if header_length is not None:
        if not header_length.isdigit() or len(header_length) > 19 \
                or int(header_length) > len(body):
            raise ValidationError(
                f"Inference-Header-Content-Length {header_length.decode('latin-1')!r} must be "
                f"the length of the JSON header in bytes, at most the body's {len(body)}")
        length = int(header_length)
        binary = memoryview(body)[length:]
        body = body[:length]
    try:
        infer = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"The inference request is not valid JSON: {exc}") from None
    if type(infer) is not dict:
        raise ValidationError(
            f"The inference request must be a JSON object, not {type_name(infer)}")
    return infer, binary


def decode_input(infer: dict[str, Any], binary: memoryview, input_type: InputType,
                 app: str) -> list[bytes]:
    """The queries of the request's input tensor, one per row, as a replica receives them."""
    tensors = infer.get("inputs")
    if type(tensors) is not list or len(tensors) != 1 or type(tensors[0]) is not dict:
        count = len(tensors) if type(tensors) is list else type_name(tensors)
        raise ValidationError(f'"inputs" must be a list of one tensor object named "{INPUT}"; '
                              f"the request has {count}")
    tensor = tensors[0]
    if tensor.get("name") != INPUT:
        raise ValidationError(f"Unknown input tensor {tensor.get('name')!r}; the model's one "
                              f'input is named "{INPUT}"')
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    accepted = DATATYPES[input_type]
    if datatype not in accepted:
        raise ValidationError(
            f'Input "{INPUT}" has datatype {datatype!r}, but application {app} has input type '
            f"{input_type.canonical}, which takes {' or '.join(accepted)}")
    if type(shape) is not list or not shape or any(type(d) is not int or d < 0 for d in shape):
        raise ValidationError(
            f'Input "{INPUT}" has shape {shape!r}; expected a list of non-negative integers, '
            "the first the number of rows (one query each)")
    rows, per_row = shape[0], prod(shape[1:])
    if rows and not per_row:
        raise ValidationError(f'Input "{INPUT}" has shape {shape}: a row must hold at least '
                              "one element")
    raw = _binary_part(tensor, binary)
    if datatype == "BYTES":
        if per_row != 1:
            raise ValidationError(
                f'Input "{INPUT}" is BYTES with shape {shape}: a row must be one element (shape '
                f"[n] or [n, 1]), the {input_type.canonical[:-1]} of one query")
        items = _split_bytes(raw, rows) if raw is not None else \
            _json_bytes(_flatten(tensor, len(shape)), rows)
        if input_type is InputType.STRINGS and raw is not None:
            for index, item in enumerate(items):
                try:
                    item.decode()
                except UnicodeDecodeError as exc:
                    raise ValidationError(f'Element {index} of input "{INPUT}" is not valid '
                                          f"UTF-8 ({exc.reason}); strings must be") from None
        return items
    if not rows:
        return []
    typecode, element_types = _NUMERIC[datatype]
    row_bytes = per_row * array(typecode).itemsize
    if raw is not None:
        if len(raw) != rows * row_bytes:
            raise ValidationError(
                f'Input "{INPUT}" of shape {shape} and datatype {datatype} takes '
                f"{rows * row_bytes} bytes, but its binary_data_size is {len(raw)}")
        data = raw.tobytes()
    else:
        data = _json_numbers(_flatten(tensor, len(shape)), rows * per_row, typecode,
                             element_types, datatype, shape)
    return [data[i:i + row_bytes] for i in range(0, rows * row_bytes, row_bytes)]


def _binary_part(tensor: dict[str, Any], binary: memoryview) -> memoryview | None:
    """The tensor's binary data (all that follows the JSON header), or None if it has none."""
    parameters = tensor.get("parameters") or {}
    if type(parameters) is not dict:
        raise ValidationError(f'The "parameters" of input "{INPUT}" must be an object')
    size = parameters.get("binary_data_size")
    if size is None:
        if binary:
            raise ValidationError(
                f"{len(binary)} bytes of binary data follow the JSON header, but input "
                f'"{INPUT}" has no binary_data_size parameter')
        return None
    if type(size) is not int or size != len(binary):
        raise ValidationError(
            f'Input "{INPUT}" has binary_data_size {size!r}, but {len(binary)} bytes of binary '
            "data follow the JSON header (Inference-Header-Content-Length)")
    if "data" in tensor:
        raise ValidationError(f'Input "{INPUT}" has both "data" and binary data; send one')
    return binary


def _flatten(tensor: dict[str, Any], depth: int) -> list[Any]:
    """The tensor's JSON ``data``, flat (it may also be nested, row-major, up to ``depth``)."""
    if "data" not in tensor:
        raise ValidationError(f'Input "{INPUT}" has neither "data" nor a binary_data_size '
                              "parameter")
    values = tensor["data"]
    if type(values) is not list:
        raise ValidationError(f'The "data" of input "{INPUT}" must be an array, not '
                              f"{type_name(values)}")
    for _ in range(depth - 1):
        if not values or type(values[0]) is not list:
            break
        if any(type(v) is not list for v in values):
            raise ValidationError(f'The "data" of input "{INPUT}" mixes arrays and scalars')
        values = list(chain.from_iterable(values))
    return values


def _json_numbers(values: list[Any], count: int, typecode: str, element_types: frozenset[type],
                  datatype: str, shape: list[int]) -> bytes:
    if len(values) != count:
        raise ValidationError(f'Input "{INPUT}" has shape {shape}, which holds {count} '
                              f'elements, but its "data" has {len(values)}')
    if not element_types.issuperset(map(type, values)):
        index, bad = next((i, v) for i, v in enumerate(values) if type(v) not in element_types)
        expected = "integers" if element_types is _INTEGER else "numbers"
        raise ValidationError(f'Input "{INPUT}" is {datatype}, which takes {expected}, but '
                              f"element {index} of its data is {type_name(bad)} "
                              f"{orjson.dumps(bad).decode()[:40]}")
    try:
        if typecode == "f" and values and (max(values) > _FLOAT32_MAX
                                           or min(values) < -_FLOAT32_MAX):
            raise OverflowError
        return array(typecode, values).tobytes()
    except OverflowError:
        raise ValidationError(f'Input "{INPUT}" has a value out of the range of {datatype}') \
            from None


def _json_bytes(values: list[Any], rows: int) -> list[bytes]:
    if len(values) != rows:
        raise ValidationError(f'Input "{INPUT}" has {rows} rows, but its "data" has '
                              f"{len(values)} elements")
    try:
        return [v.encode() if type(v) is str else _not_a_string(i, v)
                for i, v in enumerate(values)]
    except UnicodeEncodeError as exc:
        raise ValidationError(f'Input "{INPUT}" has a string that is not valid UTF-8: '
                              f"{exc.reason}") from None


def _not_a_string(index: int, value: object) -> bytes:
    raise ValidationError(f'Input "{INPUT}" is BYTES, which takes strings in JSON, but '
                          f"element {index} of its data is {type_name(value)}")


def _split_bytes(raw: memoryview, rows: int) -> list[bytes]:
    """Binary BYTES elements: each a 4-byte little-endian length, then that many bytes."""
    items: list[bytes] = []
    offset, end = 0, len(raw)
    while len(items) < rows:
        if offset + 4 > end or offset + 4 + _LENGTH.unpack_from(raw, offset)[0] > end:
            raise ValidationError(f'The binary data of input "{INPUT}" ends inside element '
                                  f"{len(items)}; its shape says {rows} elements")
        length = _LENGTH.unpack_from(raw, offset)[0]
        items.append(raw[offset + 4:offset + 4 + length].tobytes())
        offset += 4 + length
    if offset != end:
        raise ValidationError(f'The binary data of input "{INPUT}" has {end - offset} bytes '
                              f"after its {rows} elements")
    return items


def requested_outputs(infer: dict[str, Any]) -> list[tuple[str, bool]]:
    """``(name, binary)`` of each output tensor to send (all of them unless ``outputs``)."""
    parameters = infer.get("parameters") or {}
    if type(parameters) is not dict:
        raise ValidationError('The request\'s "parameters" must be an object')
    binary_all = _flag(parameters, "binary_data_output", False)
    requested = infer.get("outputs")
    if requested is None:
        return [(name, binary_all) for name in OUTPUTS]
    if type(requested) is not list or any(type(o) is not dict for o in requested):
        raise ValidationError('"outputs" must be a list of objects with a "name"')
    outputs = []
    for output in requested:
        name = output.get("name")
        if name not in OUTPUTS:
            raise ValidationError(f'Unknown output {name!r}; the outputs are "output" and '
                                  '"default"')
        params = output.get("parameters") or {}
        if type(params) is not dict:
            raise ValidationError(f'The "parameters" of output {name!r} must be an object')
        if "classification" in params:
            raise ValidationError("The classification extension is not supported")
        outputs.append((name, _flag(params, "binary_data", binary_all)))
    return outputs


def _flag(parameters: dict[str, Any], key: str, default: bool) -> bool:
    value = parameters.get(key, default)
    if type(value) is not bool:
        raise ValidationError(f'The parameter "{key}" must be true or false, not '
                              f"{orjson.dumps(value).decode()[:40]}")
    return value
