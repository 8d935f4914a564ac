"""The query frontend: Clipper's REST prediction API (spec §1) on the fast path.

``POST /<app>/predict`` decodes the input by the application's input type straight into the
bytes the model container receives, looks the answer up in the prediction cache, queues the
query on its model version's deadline-ordered queue (:mod:`clipper_core.batching.scheduler`)
and answers when the model does or when the application's SLO runs out (default output).
Responses are built as bytes. Applications, links and versions come from the state store and
are reloaded whenever the store reports a change.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import sys
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pluggy

from clipper_core import plugins
from clipper_core.batching.scheduler import NO_MODELS, Scheduler, VersionQueue
from clipper_core.cache.api import PredictionCache
from clipper_core.config import ClusterConfig
from clipper_core.exceptions import ClipperError, PluginError, ValidationError
from clipper_core.frontend.http import HttpServer, Request, Responder, error_body
from clipper_core.metrics import MetricsRegistry
from clipper_core.rpc.router import RpcRouter, Session
from clipper_core.selection.api import SelectionPolicy
from clipper_core.store.api import Change, StateStore, Subscription
from clipper_core.types import Application, InputType, ModelVersion

log = logging.getLogger(__name__)

if sys.byteorder != "little" or array("i").itemsize != 4:  # pragma: no cover
    raise ImportError("the query frontend needs a little-endian platform with 32-bit C ints")

#: Spec §1.6: the schema text appended to every JSON error of ``/predict``.
PREDICT_SCHEMA = '\n  {\n   "input" := [double] | [int] | [string] | [byte] | [float],\n  }\n'
#: Spec §1.7: the schema text of ``/update`` errors.
UPDATE_SCHEMA = ('\n  {\n   "uid" := string,\n   "input" := [double] | [int] | [string] | '
                 '[byte] | [float],\n   "label" := double\n  }\n')
#: Spec §1.5: the explanation of a query the model did not answer in time.
SLO_EXPLANATION = "Failed to retrieve a prediction response within the specified latency SLO"
#: Names the original stored for the default policy.
_POLICY_ALIASES = {"DefaultOutputSelectionPolicy": "default"}

_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT_ONLY = frozenset((float,))
_INT_ONLY = frozenset((int,))
_TEXT = b"text/plain; charset=utf-8"
_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
_HEALTHY = b'{"status":"ok"}'
#: The event loop's timers may fire up to a millisecond early.
#: Requests for unknown apps held until the next reload; beyond that they get 404 at once.
_MAX_AWAITING_RELOAD = 1024
_TIMER_SLACK_S = 0.001

# -------------------------------------------------------------------------------------------
# Input decoding: JSON value -> the bytes a replica receives (spec §1.2, §4.3)
# -------------------------------------------------------------------------------------------


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


def _mismatch(key: str, expected: str, value: object) -> JsonSemanticError:
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
                raise _mismatch("input", "Array", value)
            return encode(value)

        def batch(values: Any) -> list[bytes]:
            if type(values) is not list:
                raise _mismatch("input_batch", "Array", values)
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
            raise _mismatch("input", "String", value)
        return encode(value)

    def batch_str(values: Any) -> list[bytes]:
        if type(values) is not list:
            raise _mismatch("input_batch", "Array", values)
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


# -------------------------------------------------------------------------------------------
# Applications and pending requests
# -------------------------------------------------------------------------------------------


class AppRoute:
    """Everything the hot path needs about one application, rebuilt on every reload."""

    __slots__ = ("app", "decode_batch", "decode_single", "default_fragment", "default_ratio",
                 "defaults", "expiring", "input_type", "latency", "linked", "loop",
                 "num_predictions", "policy", "policy_error", "slo_s", "target", "throughput",
                 "timer", "type_code")

    def __init__(self, app: Application, linked: list[str], policy: SelectionPolicy | None,
                 policy_error: str | None, metrics: MetricsRegistry,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        #: Unanswered requests in arrival order. All share the app's SLO, so this is also
        #: deadline order and one timer (for the head) serves them all.
        self.expiring: deque[Pending] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.input_type = app.input_type
        self.type_code = int(app.input_type)
        self.decode_single, self.decode_batch = decoder_for(app.input_type)
        self.default_fragment = render_output(app.default_output.encode())
        self.slo_s = app.latency_slo_micros / 1e6
        self.linked = linked
        self.policy = policy
        self.policy_error = policy_error
        self.target: VersionQueue | None = None
        prefix = f"app:{app.name}:"
        self.latency = metrics.histogram(prefix + "prediction_latency")
        self.throughput = metrics.meter(prefix + "prediction_throughput")
        self.num_predictions = metrics.counter(prefix + "num_predictions")
        self.default_ratio = metrics.ratio(prefix + "default_prediction_ratio")
        self.defaults = metrics.counter(prefix + "num_defaults")

    def watch(self, pending: Pending) -> None:
        """Answer ``pending`` with default outputs if it is not done by its deadline."""
        expiring = self.expiring
        while expiring and expiring[0].parts is None:
            expiring.popleft()
        expiring.append(pending)
        if self.timer is None:
            self.timer = self.loop.call_at(pending.deadline, self._expire_due)

    def _expire_due(self) -> None:
        self.timer = None
        expiring = self.expiring
        horizon = self.loop.time() + _TIMER_SLACK_S
        while expiring:
            head = expiring[0]
            if head.parts is not None:
                if head.deadline > horizon:
                    self.timer = self.loop.call_at(head.deadline, self._expire_due)
                    return
                head.expire()
            expiring.popleft()

    def default_part(self, query_id: int, explanation: str) -> bytes:
        return b'{"query_id":%d,"output":%b,"default":true,"default_explanation":%b}' % (
            query_id, self.default_fragment, orjson.dumps(explanation))


class Pending:
    """One ``/predict`` request waiting for its predictions (or its deadline)."""

    __slots__ = ("deadline", "defaults", "parts", "qid0", "remaining", "responder", "route",
                 "start")

    def __init__(self, route: AppRoute, responder: Responder, n: int, qid0: int,
                 start: float) -> None:
        self.route = route
        self.responder = responder
        #: The rendered predictions; None once the response is sent.
        self.parts: list[bytes | None] | None = [None] * n
        self.remaining = n
        self.qid0 = qid0
        self.start = start
        self.deadline = start + route.slo_s
        self.defaults = 0

    def resolve(self, index: int, fragment: bytes | None, explanation: str | None) -> None:
        parts = self.parts
        if parts is None or parts[index] is not None:
            return
        if fragment is not None:
            parts[index] = b'{"query_id":%d,"output":%b,"default":false}' % (
                self.qid0 + index, fragment)
        else:
            parts[index] = self.route.default_part(self.qid0 + index, explanation or NO_MODELS)
            self.defaults += 1
        self.remaining -= 1
        if self.remaining == 0:
            self.finish(parts)  # type: ignore[arg-type]

    def expire(self) -> None:
        parts = self.parts
        if parts is not None:
            for index, part in enumerate(parts):
                if part is None:
                    self.resolve(index, None, SLO_EXPLANATION)

    def finish(self, parts: list[bytes]) -> None:
        self.parts = None
        n = len(parts)
        body = parts[0] if n == 1 else b'{"batch_predictions":[' + b",".join(parts) + b"]}"
        self.responder.send(200, body)
        self.responder = None  # type: ignore[assignment]  # may stay in the route's deque
        route = self.route
        route.latency.insert(int((route.loop.time() - self.start) * 1e6))
        route.throughput.mark(n)
        route.num_predictions.count += n
        route.default_ratio.increment(self.defaults, n)
        route.defaults.count += self.defaults


# -------------------------------------------------------------------------------------------
# The frontend
# -------------------------------------------------------------------------------------------


class QueryFrontend:
    """Serves ``/<app>/predict``, ``/<app>/update``, ``/metrics`` and ``/healthz``, and the RPC."""

    def __init__(self, config: ClusterConfig, store: StateStore,
                 pm: pluggy.PluginManager | None = None) -> None:
        self.config = config
        self.store = store
        self.pm = pm
        self.metrics = MetricsRegistry()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query-store")
        self._routes: dict[bytes, tuple[AppRoute, bool]] = {}
        self._apps: dict[str, AppRoute] = {}
        self._versions: dict[str, set[str]] = {}
        self._current: dict[str, str | None] = {}
        self._order: dict[str, list[str]] = {}
        self._next_query_id = 0
        self._policies: plugins.Registry[SelectionPolicy] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: HttpServer | None = None
        self._router: RpcRouter | None = None
        self._scheduler: Scheduler | None = None
        self._cache: PredictionCache | None = None
        self._subscription: Subscription | None = None
        self._reloading = False
        self._reload_again = False
        #: Requests for an unknown app, answered again once the running reload is applied.
        self._awaiting_reload: list[tuple[Request, Responder]] = []
        self._stopped = False
        self._ticker: asyncio.Task[None] | None = None
        self._cache_lookups = self.metrics.counter("internal:prediction_cache_lookups")
        self._cache_hits = self.metrics.ratio("internal:prediction_cache_hit_ratio")

    @property
    def port(self) -> int:
        assert self._http is not None, "call start() first"
        return self._http.port

    @property
    def rpc_port(self) -> int:
        assert self._router is not None, "call start() first"
        return self._router.port

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        config = self.config
        self._cache = plugins.caches(self.pm).get(config.cache)(config.cache_size)
        self._policies = plugins.selection_policies(self.pm)
        self._router = RpcRouter(
            config.bind_host, config.rpc_port, self.store, config.frontend_id, self,
            self._executor, replica_timeout_s=config.replica_timeout_s,
            legacy_replica_timeout_s=config.legacy_replica_timeout_s)
        self._scheduler = Scheduler(
            loop, self._router.send_predict, self._cache, render_output, self.metrics,
            max_queue_depth=config.max_queue_depth, batch_wait_micros=config.batch_wait_micros,
            on_routing_change=self._reroute)
        try:
            await loop.run_in_executor(self._executor, self.store.clear_replicas,
                                       config.frontend_id)
            self._apply(await loop.run_in_executor(self._executor, self._snapshot))
            self._subscription = self.store.subscribe(self._on_change)
            self._router.start()
            self._http = HttpServer(self._handle, max_body_bytes=config.max_body_bytes,
                                    request_timeout_s=config.request_timeout_s,
                                    log_exception=log.exception)
            await self._http.start(config.bind_host, config.query_port)
        except BaseException:
            await self.stop()
            raise
        self._ticker = loop.create_task(self._tick())
        log.info("query frontend on port %d, RPC on port %d", self.port, self.rpc_port)

    async def stop(self) -> None:
        """Stop serving; safe to call twice, and after a failed :meth:`start`."""
        if self._stopped:
            return
        self._stopped = True
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._ticker is not None:
            self._ticker.cancel()
        if self._http is not None:
            await self._http.stop()
        if self._router is not None:
            await self._router.stop()
            if self._loop is not None:
                await self._loop.run_in_executor(self._executor, self.store.clear_replicas,
                                                 self.config.frontend_id)
        self._executor.shutdown(wait=False)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            self.metrics.tick()

    # -- configuration ----------------------------------------------------------------------
    def _on_change(self, change: Change) -> None:
        """Store callback, from the store's thread: hop onto the loop."""
        if change.kind == "replica" or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._request_reload)
        except RuntimeError:  # the loop is closed: the frontend stopped
            pass

    def _request_reload(self) -> None:
        if self._reloading:
            self._reload_again = True
            return
        self._reloading = True
        assert self._loop is not None
        self._loop.create_task(self._reload())

    async def _reload(self) -> None:
        assert self._loop is not None
        try:
            while True:
                self._reload_again = False
                try:
                    snapshot = await self._loop.run_in_executor(self._executor, self._snapshot)
                    self._apply(snapshot)
                except Exception:
                    log.exception("reloading applications from the store failed")
                if not self._reload_again:
                    break
        finally:
            self._reloading = False
            waiting, self._awaiting_reload = self._awaiting_reload, []
            for request, responder in waiting:
                self._handle(request, responder, after_reload=True)

    def _snapshot(self) -> tuple[list[Application], dict[str, list[str]], list[ModelVersion],
                                 dict[str, str | None], dict[str, list[str]]]:
        store = self.store
        apps = store.list_applications()
        links = {app.name: store.get_links(app.name) for app in apps}
        versions = store.list_model_versions()
        names = {v.name for v in versions}
        current = {name: store.get_current_version(name) for name in names}
        order = {name: store.activation_order(name) for name in names}
        return apps, links, versions, current, order

    def _apply(self, snapshot: tuple[Any, ...]) -> None:
        apps, links, versions, current, order = snapshot
        assert self._scheduler is not None and self._policies is not None
        routes: dict[bytes, tuple[AppRoute, bool]] = {}
        by_name: dict[str, AppRoute] = {}
        for app in apps:
            policy, policy_error = None, None
            try:
                policy_cls = self._policies.get(_POLICY_ALIASES.get(app.policy, app.policy))
                policy = policy_cls(app)
            except PluginError:
                policy_error = f"{app.policy} is an invalid selection_policy."
            route = AppRoute(app, list(links.get(app.name, ())), policy, policy_error,
                             self.metrics, self._loop)
            by_name[app.name] = route
            base = b"/" + app.name.encode()
            for suffix, is_predict in ((b"/predict", True), (b"/update", False)):
                routes[base + suffix] = routes[base + suffix + b"/"] = (route, is_predict)
        self._versions = {}
        for mv in versions:
            self._versions.setdefault(mv.name, set()).add(mv.version)
        self._current = current
        self._order = order
        self._scheduler.set_batch_sizes({(mv.name, mv.version): mv.batch_size
                                         for mv in versions})
        self._apps = by_name
        self._routes = routes
        self._reroute()

    def _reroute(self) -> None:
        """Point every application at the version that should serve it now (rollout)."""
        assert self._scheduler is not None
        queues = self._scheduler.queues
        for route in self._apps.values():
            candidates: list[VersionQueue] = []
            for model in route.linked:
                current = self._current.get(model)
                order = ([current] if current else []) + self._order.get(model, [])
                for version in order:
                    queue = queues.get((model, version))
                    if queue is not None and queue.replicas:
                        candidates.append(queue)
                        break
            selected: Sequence[VersionQueue] = (
                route.policy.select(candidates) if route.policy is not None else ())
            route.target = selected[0] if selected else None

    # -- RPC listener -----------------------------------------------------------------------
    def replica_connected(self, session: Session) -> None:
        assert self._scheduler is not None and session.replica is not None
        session.slot = self._scheduler.add_replica(session, session.replica)

    def replica_lost(self, session: Session) -> None:
        if session.slot is not None:
            assert self._scheduler is not None
            self._scheduler.remove_replica(session.slot)

    def response(self, session: Session, msg_id: int, outputs: Sequence[bytes]) -> None:
        self._scheduler.on_response(session.slot, msg_id, outputs)  # type: ignore[union-attr]

    def error(self, session: Session, msg_id: int, message: str) -> None:
        self._scheduler.on_error(session.slot, msg_id, message)  # type: ignore[union-attr]

    # -- HTTP -------------------------------------------------------------------------------
    def _handle(self, request: Request, responder: Responder, after_reload: bool = False) -> None:
        entry = self._routes.get(request.path)
        if entry is not None:
            route, is_predict = entry
            if request.method != b"POST":
                responder.send(405, error_body(
                    "Method not allowed", f"{request.path.decode()} accepts POST only"),
                    extra_headers=((b"Allow", b"POST"),))
            elif is_predict:
                self._predict(route, request.body, responder)
            else:
                self._update(route, request.body, responder)
            return
        path = request.path
        if path == b"/metrics" and request.method == b"GET":
            accept = request.headers.get(b"accept", b"")
            if b"text/plain" in accept or b"openmetrics" in accept:
                responder.send(200, self.metrics.report_prometheus(), _PROMETHEUS)
            else:
                responder.send(200, self.metrics.report_json())
        elif path == b"/healthz" and request.method == b"GET":
            responder.send(200, _HEALTHY)
        else:
            parts = path.decode("utf-8", "replace").strip("/").split("/")
            if len(parts) == 2 and parts[1] in ("predict", "update"):
                if not after_reload and len(self._awaiting_reload) < _MAX_AWAITING_RELOAD:
                    # The app may have been registered a moment ago and its change not be
                    # applied yet: read the store once more before saying it does not exist.
                    self._awaiting_reload.append((request, responder))
                    self._request_reload()
                    return
                cause = (f"No application named {parts[0]!r} is registered. Register it with "
                         "ClipperConnection.register_application, or check the URL")
                responder.send(404, error_body("Application not found", cause))
            else:
                responder.send(404, error_body(
                    "Not found", f"No route {path.decode('utf-8', 'replace')}; use "
                                 "POST /<app>/predict, POST /<app>/update or GET /metrics"))

    def _predict(self, route: AppRoute, body: bytes, responder: Responder) -> None:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            responder.send(400, predict_error(parse_error_message(body, exc)))
            return
        try:
            if type(request) is not dict:
                raise JsonSemanticError("Can only get key-value pair from an object")
            if "input" in request:
                inputs = [route.decode_single(request["input"])]
            elif "input_batch" in request:
                inputs = route.decode_batch(request["input_batch"])
            else:
                raise JsonSemanticError(
                    "JSON object does not have required keys input or input_batch")
            queue = self._version_target(route, request) if "version" in request \
                else route.target
        except JsonSemanticError as exc:
            responder.send(400, predict_error(exc.msg))
            return
        except ClipperError as exc:
            responder.send(400, error_body("Query processing error", exc.msg))
            return
        if route.policy_error is not None:
            responder.send(400, error_body("Query processing error", route.policy_error))
            return
        n = len(inputs)
        qid0 = self._next_query_id
        self._next_query_id = qid0 + n
        if n == 0:
            responder.send(200, b'{"batch_predictions":[]}')
            return
        loop = self._loop
        assert loop is not None
        now = loop.time()
        pending = Pending(route, responder, n, qid0, now)
        if queue is None:
            for index in range(n):
                pending.resolve(index, None, NO_MODELS)
            return
        scheduler = self._scheduler
        assert scheduler is not None
        if not scheduler.has_room(queue, n):
            responder.send(503, error_body(
                "Service unavailable",
                f"The queue of model {queue.model}:{queue.version} is full "
                f"({scheduler.max_queue_depth} queries waiting); retry later or add replicas"),
                extra_headers=((b"Retry-After", b"1"),))
            return
        deadline = pending.deadline
        model, version, type_code = queue.model, queue.version, route.type_code
        cache_get = self._cache.get  # type: ignore[union-attr]
        hits = 0
        for index, data in enumerate(inputs):
            key = (model, version, type_code, data)
            fragment = cache_get(key)
            if fragment is not None:
                hits += 1
                pending.resolve(index, fragment, None)
            else:
                scheduler.submit(queue, key, data, deadline, now, pending, index)
        scheduler.flush()
        self._cache_lookups.count += n
        self._cache_hits.increment(hits, n)
        queue.cache_ratio.increment(hits, n)
        if pending.remaining:
            route.watch(pending)

    def _version_target(self, route: AppRoute, request: dict[str, Any]) -> VersionQueue | None:
        version = request["version"]
        if type(version) is not str:
            raise _mismatch("version", "String", version)
        app_name = route.app.name
        if len(route.linked) > 1:
            raise ValidationError(f"Too many models linked to application {app_name}")
        if not route.linked:
            raise ValidationError(
                f"No model is linked to application {app_name}; link one before asking for "
                f"version {version}")
        model = route.linked[0]
        if version not in self._versions.get(model, ()):
            raise ValidationError(
                f"Requested version: {version} does not exist for model: {model}")
        queue = self._scheduler.queues.get((model, version))  # type: ignore[union-attr]
        return queue if queue is not None and queue.replicas else None

    def _update(self, route: AppRoute, body: bytes, responder: Responder) -> None:
        def fail(cause: str) -> None:
            responder.send(400, f"Error parsing JSON: {cause}. Expected JSON schema: "
                                f"{UPDATE_SCHEMA}".encode(), _TEXT)

        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            fail(parse_error_message(body, exc))
            return
        try:
            if type(request) is not dict:
                raise JsonSemanticError("Can only get key-value pair from an object")
            for key in ("uid", "input", "label"):
                if key not in request:
                    raise JsonSemanticError(f"JSON object does not have required key: {key}")
            if type(request["uid"]) is not int:
                raise _mismatch("uid", "Number", request["uid"])
            route.decode_single(request["input"])
            if type(request["label"]) is not float:
                raise _mismatch("label", "Double", request["label"])
        except JsonSemanticError as exc:
            fail(exc.msg)
            return
        self._next_query_id += 1
        responder.send(200, b"Feedback received? 1", _TEXT)
