"""The query frontend: Clipper's REST prediction API (spec §1) over HTTP.

A ``/predict`` request's life is one chain of calls: the path names an application
(:class:`~clipper_core.frontend.routing.RoutingTable`), :mod:`~clipper_core.frontend.codec`
decodes the body into the bytes the model container receives, the scheduler answers from its
prediction cache or queues the queries on the model version's deadline-ordered queue
(:mod:`clipper_core.batching.scheduler`), and a :class:`Pending` gathers the answers into one
response when the model answers or when the application's SLO runs out (default output).
Responses are built as bytes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from time import monotonic
from typing import TYPE_CHECKING, Any

import orjson
import pluggy

from clipper_core import plugins
from clipper_core.batching.scheduler import NO_MODELS, VERSIONS_HEADER, Scheduler, VersionQueue
from clipper_core.config import ClusterConfig
from clipper_core.exceptions import ClipperError, OverloadedError, PayloadTooLargeError
from clipper_core.frontend import codec
from clipper_core.frontend.codec import JsonSemanticError
from clipper_core.frontend.http import HttpServer, Request, Responder, error_body
from clipper_core.frontend.routing import AppRoute, RoutingTable
from clipper_core.frontend.selecting import Gather, versions_json
from clipper_core.metrics import MetricsRegistry
from clipper_core.rpc.router import RpcRouter
from clipper_core.store.api import StateStore

if TYPE_CHECKING:
    from clipper_core.frontend.v2 import OpenInference

log = logging.getLogger(__name__)

#: Spec §1.5: the explanation of a query the model did not answer in time.
SLO_EXPLANATION = "Failed to retrieve a prediction response within the specified latency SLO"

_TEXT = b"text/plain; charset=utf-8"
_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
#: Metrics are public and read-only: any page (the management frontend's dashboard) may read them.
_METRICS_HEADERS = ((b"Access-Control-Allow-Origin", b"*"),)
_HEALTHY = b'{"status":"ok"}'
#: How long a request for an application the frontend does not know waits for the store to
#: say whether it exists (it may have been registered a moment ago) before it is answered 503.
LOOKUP_TIMEOUT_S = 5.0
#: The header of a 503 answered because a queue is full or the store is slow.
RETRY_AFTER = ((b"Retry-After", b"1"),)


class Pending:
    """One ``/predict`` request waiting for its predictions (or its deadline)."""

    __slots__ = ("arms", "deadline", "defaults", "gather", "parts", "qid0", "queue",
                 "remaining", "responder", "route", "start")

    def __init__(self, route: AppRoute, responder: Responder, n: int, qid0: int,
                 start: float, queue: VersionQueue | None = None) -> None:
        self.route = route
        self.responder = responder
        #: The rendered predictions; None once the response is sent.
        self.parts: list[bytes | None] | None = [None] * n
        self.remaining = n
        self.qid0 = qid0
        self.start = start
        self.deadline = start + route.slo_s
        self.defaults = 0
        #: The one version queue that answers (the default policy), else None.
        self.queue = queue
        #: With a per-query policy: its :class:`~clipper_core.frontend.selecting.Gather`,
        #: and the arms whose answers went into the response.
        self.gather: Gather | None = None
        self.arms: set[str] = set()

    def resolve(self, index: int, fragment: bytes | None, explanation: str | None) -> None:
        parts = self.parts
        if parts is None or parts[index] is not None:
            return
        if fragment is None:
            parts[index] = self.route.default_part(self.qid0 + index, explanation or NO_MODELS)
            self.defaults += 1
        elif self.route.versions_in_body:
            parts[index] = b'{"query_id":%d,"output":%b,"default":false,"model_versions":%b}' % (
                self.qid0 + index, fragment, versions_json([self.queue.arm]))  # type: ignore[union-attr]
        else:
            parts[index] = b'{"query_id":%d,"output":%b,"default":false}' % (
                self.qid0 + index, fragment)
        self.remaining -= 1
        if self.remaining == 0:
            self.finish(parts)  # type: ignore[arg-type]

    def resolve_selected(self, index: int, fragment: bytes, confidence: float,
                         arms: list[str]) -> None:
        """Answer input ``index`` with a policy's combination of ``arms``' answers."""
        parts = self.parts
        if parts is None or parts[index] is not None:
            return
        versions = b',"model_versions":%b' % versions_json(arms) if self.route.versions_in_body \
            else b""
        parts[index] = b'{"query_id":%d,"output":%b,"default":false,"confidence":%b%b}' % (
            self.qid0 + index, fragment, orjson.dumps(round(confidence, 6)), versions)
        self.arms.update(arms)
        self.remaining -= 1
        if self.remaining == 0:
            self.finish(parts)  # type: ignore[arg-type]

    def expire(self) -> None:
        parts = self.parts
        if parts is not None:
            gather = self.gather
            for index, part in enumerate(parts):
                if part is None and (gather is None or not gather.combine(index)):
                    self.resolve(index, None, SLO_EXPLANATION)

    def finish(self, parts: list[bytes]) -> None:
        self.parts = None
        n = len(parts)
        if self.queue is not None:
            headers = self.queue.versions_header if self.defaults < n else ()
        else:
            headers = ((VERSIONS_HEADER, ",".join(sorted(self.arms)).encode()),) \
                if self.arms else ()
        self.respond(parts, headers)
        self.responder = None  # type: ignore[assignment]  # may stay in the route's deque
        self.gather = None
        route = self.route
        route.latency.insert(int((monotonic() - self.start) * 1e6))
        route.throughput.mark(n)
        route.num_predictions.count += n
        route.default_ratio.increment(self.defaults, n)
        route.defaults.count += self.defaults

    def respond(self, parts: list[bytes], headers: tuple[tuple[bytes, bytes], ...]) -> None:
        """Send the answers: ``parts`` are the predictions as ``/predict`` renders them."""
        body = parts[0] if len(parts) == 1 else \
            b'{"batch_predictions":[' + b",".join(parts) + b"]}"
        self.responder.send(200, body, extra_headers=headers)


class QueryFrontend:
    """Serves ``/<app>/predict``, ``/<app>/update``, ``/metrics``, ``/healthz`` and the Open
    Inference Protocol's ``/v2`` routes (:mod:`~clipper_core.frontend.v2`), and the RPC."""

    def __init__(self, config: ClusterConfig, store: StateStore,
                 pm: pluggy.PluginManager | None = None) -> None:
        self.config = config
        self.store = store
        self.pm = pm
        self.metrics = MetricsRegistry()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query-store")
        self._next_query_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: HttpServer | None = None
        self._router: RpcRouter | None = None
        self._scheduler: Scheduler | None = None
        self._routing: RoutingTable | None = None
        self._v2: OpenInference | None = None
        self._stopped = False
        self._ticker: asyncio.Task[None] | None = None
        self._tracing: Any = None

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
        cache = plugins.caches(self.pm).get(config.cache)(config.cache_size)
        router = self._router = RpcRouter(
            config.bind_host, config.rpc_port, self.store, config.frontend_id, self._executor,
            replica_timeout_s=config.replica_timeout_s,
            legacy_replica_timeout_s=config.legacy_replica_timeout_s,
            replica_secret=config.replica_secret,
            admit_legacy_replicas=config.admit_legacy_replicas, stream_address=config.rpc_socket)
        scheduler_class: Any = Scheduler
        if config.tracing_endpoint:
            # Chosen once: with tracing off the query path is not touched at all.
            from clipper_core.tracing import Tracing

            self._tracing = Tracing(config)
            scheduler_class = self._tracing.scheduler
        scheduler = self._scheduler = scheduler_class(
            loop, router.send_predict, cache, codec.render_output, self.metrics,
            max_queue_depth=config.max_queue_depth, max_queue_bytes=config.max_queue_bytes,
            batch_wait_micros=config.batch_wait_micros, batch_timeout_s=config.batch_timeout_s,
            max_retries=config.max_retries, retire=router.retire)
        routing = self._routing = RoutingTable(
            self.store, self._executor, scheduler, plugins.selection_policies(self.pm),
            self.metrics, loop)
        scheduler.on_routing_change = routing.reroute
        # Imported here: the Open Inference Protocol builds on this module's Pending.
        from clipper_core.frontend.v2 import OpenInference

        self._v2 = OpenInference(self, routing)
        if self._tracing is not None:
            self._tracing.instrument(self)
        try:
            await loop.run_in_executor(self._executor, self.store.clear_replicas,
                                       config.frontend_id)
            await routing.load()
            router.start(scheduler)
            self._http = HttpServer.for_config(config, self._handle, log.exception)
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
        if self._routing is not None:
            self._routing.close()
        if self._scheduler is not None:
            self._scheduler.close()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._http is not None:
            await self._http.stop()
        if self._router is not None:
            await self._router.stop()
            if self._loop is not None:
                await self._loop.run_in_executor(self._executor, self.store.clear_replicas,
                                                 self.config.frontend_id)
        if self._tracing is not None and self._loop is not None:
            await self._loop.run_in_executor(self._executor, self._tracing.shutdown)
        self._executor.shutdown(wait=False)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            self.metrics.tick()

    # -- HTTP -------------------------------------------------------------------------------
    def _handle(self, request: Request, responder: Responder, after_reload: bool = False) -> None:
        routing = self._routing
        assert routing is not None
        entry = routing.paths.get(request.path)
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
                responder.send(200, self.metrics.report_prometheus(), _PROMETHEUS,
                               _METRICS_HEADERS)
            else:
                responder.send(200, self.metrics.report_json(), extra_headers=_METRICS_HEADERS)
        elif path == b"/healthz" and request.method == b"GET":
            responder.send(200, _HEALTHY)
        else:
            parts = path.decode("utf-8", "replace").strip("/").split("/")
            if len(parts) == 2 and parts[1] in ("predict", "update"):
                if self.handle_after_reload(parts[0], request, responder, after_reload):
                    return
                cause = (f"No application named {parts[0]!r} is registered. Register it with "
                         "ClipperConnection.register_application, or check the URL")
                responder.send(404, error_body("Application not found", cause))
            elif parts[0] == "v2":
                self._v2.handle(request, responder, parts, after_reload)  # type: ignore[union-attr]
            else:
                responder.send(404, error_body(
                    "Not found", f"No route {path.decode('utf-8', 'replace')}; use "
                                 "POST /<app>/predict, POST /<app>/update or GET /metrics"))

    def handle_after_reload(self, app_name: str, request: Request, responder: Responder,
                            after_reload: bool) -> bool:
        """Handle a request that names an unknown application again once ``app_name`` is
        looked up in the store (it may have been registered a moment ago, its change not
        applied yet; :meth:`RoutingTable.look_up` bounds what that costs the store).

        False if this is that second time, or the lookup is refused: answer 404. A lookup the
        store has not answered within :data:`LOOKUP_TIMEOUT_S` is answered 503.
        """
        routing, http, loop = self._routing, self._http, self._loop
        assert routing is not None and http is not None and loop is not None
        if after_reload:
            return False

        def handle_again() -> None:
            timer.cancel()
            if not responder.done:  # not given up on
                http.call(functools.partial(self._handle, after_reload=True), request,
                          responder)

        def give_up() -> None:
            log.warning("looking up application %r in %r took longer than %g s",
                        app_name, self.store, LOOKUP_TIMEOUT_S)
            responder.send(503, error_body(
                "Service unavailable",
                f"Looking up application {app_name!r} in the state store took longer than "
                f"{LOOKUP_TIMEOUT_S:g} s; retry later"), extra_headers=RETRY_AFTER)

        timer = loop.call_later(LOOKUP_TIMEOUT_S, give_up)
        if routing.look_up(app_name, handle_again):
            return True
        timer.cancel()
        return False

    def _predict(self, route: AppRoute, body: bytes, responder: Responder) -> None:
        try:
            request = codec.parse_object(body)
            inputs = codec.predict_inputs(request, route.decode_single, route.decode_batch)
            version = codec.requested_version(request)
            queue = self._routing.queue_for(route, version)  # type: ignore[union-attr]
            uid = codec.user_id(request) if route.selector is not None else 0
        except JsonSemanticError as exc:
            responder.send(400, codec.predict_error(exc.msg))
            return
        except ClipperError as exc:
            responder.send(400, error_body("Query processing error", exc.msg))
            return
        if route.policy_error is not None:
            responder.send(400, error_body("Query processing error", route.policy_error))
            return
        n = len(inputs)
        if n == 0:
            responder.send(200, b'{"batch_predictions":[]}')
            return
        pending = Pending(route, responder, n, self.take_query_ids(n),
                          monotonic(), queue)  # type: ignore[union-attr]
        try:
            self.submit(pending, inputs, uid, version is not None)
        except OverloadedError as exc:
            responder.send(503, error_body("Service unavailable", exc.msg),
                           extra_headers=RETRY_AFTER)
        except PayloadTooLargeError as exc:
            responder.send(413, error_body("Request too large", exc.msg))

    def take_query_ids(self, n: int) -> int:
        """Reserve ``n`` consecutive query ids; returns the first."""
        qid0 = self._next_query_id
        self._next_query_id = qid0 + n
        return qid0

    def submit(self, pending: Pending, inputs: list[bytes], uid: int, pinned: bool) -> None:
        """Send a request's decoded inputs down the query path: the application's policy or
        ``pending.queue`` (cache, queue, batch, replica), answered through ``pending`` by the
        model or by the SLO's default output. ``pinned``: the request named a version.

        Raises :class:`OverloadedError` when the version's queue has no room for them now,
        :class:`PayloadTooLargeError` when it never could.
        """
        route, now, n = pending.route, pending.start, len(inputs)
        if route.selector is not None and not pinned:
            route.selector.predict(route.arms, inputs, uid, pending, now)
            if pending.remaining:
                route.watch(pending)
            return
        queue = pending.queue
        if queue is None:
            for index in range(n):
                pending.resolve(index, None, NO_MODELS)
            return
        scheduler = self._scheduler
        assert scheduler is not None
        if not scheduler.has_room(queue, inputs):
            raise self._refusal(queue, inputs)
        waiter = pending if route.shadows is None or pinned \
            else route.shadows.mirror(pending, inputs, pending.deadline, now)
        scheduler.submit_request(queue, inputs, pending.deadline, now, waiter)
        if pending.remaining:
            route.watch(pending)

    def _refusal(self, queue: VersionQueue, inputs: list[bytes]) -> ClipperError:
        """Why a request does not fit in its model version's queue: it never could (413) or
        the queue is full now (503)."""
        scheduler = self._scheduler
        assert scheduler is not None
        bounds = (f"{scheduler.max_queue_depth} queries and {scheduler.max_queue_bytes} input "
                  "bytes (max_queue_depth, max_queue_bytes)")
        n, size = len(inputs), sum(map(len, inputs))
        if not scheduler.fits(n, size):
            return PayloadTooLargeError(
                f"The request has {n} inputs of {size} bytes in all, more than the queue of "
                f"model {queue.model}:{queue.version} can ever hold: {bounds}. Send fewer "
                "inputs per request")
        return OverloadedError(
            f"The queue of model {queue.model}:{queue.version} is full ({len(queue.heap)} "
            f"queries, {queue.bytes} input bytes waiting; bounds {bounds}); retry later or "
            "add replicas")

    def _update(self, route: AppRoute, body: bytes, responder: Responder) -> None:
        try:
            uid, data, label = codec.feedback(codec.parse_object(body), route.decode_single)
        except JsonSemanticError as exc:
            responder.send(400, codec.update_error(exc.msg), _TEXT)
            return
        self._next_query_id += 1
        if route.selector is not None:
            route.selector.feedback(route.arms, uid, data, label, route.slo_s)
        responder.send(200, b"Feedback received? 1", _TEXT)
