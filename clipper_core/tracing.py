"""OpenTelemetry tracing of the query path, exported over OTLP/HTTP (off by default).

Imported only when :attr:`ClusterConfig.tracing_endpoint` is set: the query frontend then
builds a :class:`Tracing` at start, which wraps its ``_handle``, its ``_predict`` and the Open
Inference Protocol's ``_infer``, and gives it a :class:`TracedScheduler` in place of the plain
one. With tracing off neither this module nor OpenTelemetry's tracing SDK is imported and the
query path runs unchanged.

Every ``/predict`` and ``/v2/.../infer`` request is one trace (a part of the caller's with a
``traceparent``)::

    clipper.receive                 the request, from its handler to the response written
      clipper.decode                body parsed, inputs decoded, version queue chosen
      clipper.cache                 cache lookups on one version queue (hits, lookups)
      clipper.queue_wait            until the request's last uncached query left in a batch
      clipper.batch                 one batch, from sent to every waiter answered
        clipper.replica             the RPC round trip to the replica
      clipper.encode                the response rendered and written

A batch serves queries of several requests: its span is a child of the first request's
``clipper.receive`` and links to the others'. Attributes: ``clipper.app``,
``clipper.model``, ``clipper.version``, ``clipper.batch_size`` and a few more (docs/tracing.md).
``tracing_sample_ratio`` (1 by default) is the share of requests traced; a request left out
costs one random number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from random import random
from time import time_ns
from typing import Any
from urllib.parse import urlsplit

from clipper_core.batching.scheduler import (
    VERSIONS_HEADER,
    Batch,
    ReplicaSlot,
    Scheduler,
    Task,
    VersionQueue,
    Waiter,
)
from clipper_core.config import ClusterConfig
from clipper_core.exceptions import ClipperError, PluginError

try:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise PluginError(
        "tracing_endpoint is set but OpenTelemetry is not installed: "
        "pip install 'clipper-core[tracing]'") from exc

#: What an endpoint without a path (``http://collector:4318``) exports to.
TRACES_PATH = "/v1/traces"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of ``endpoint`` (``/v1/traces`` added when it has no path)."""
    return endpoint.rstrip("/") + TRACES_PATH if urlsplit(endpoint).path in ("", "/") \
        else endpoint


class Tracing:
    """The tracer provider of one query frontend and the request being handled now."""

    def __init__(self, config: ClusterConfig) -> None:
        # Requests without a traceparent are sampled here, before any span exists (cheaper
        # than the SDK's samplers); the SDK follows the caller's flag for the others.
        self.sample_ratio = config.tracing_sample_ratio
        self.provider = TracerProvider(sampler=ParentBased(ALWAYS_ON), resource=Resource.create({
            "service.name": "clipper", "service.instance.id": config.frontend_id,
            "clipper.cluster": config.cluster_name}))
        self.provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=traces_url(config.tracing_endpoint or ""))))
        self.tracer = self.provider.get_tracer("clipper_core")
        #: The request whose ``_predict`` runs now (the query path is synchronous until the
        #: queries are queued), else None.
        self.current: RequestTrace | None = None
        #: The headers of the request being handled (its W3C ``traceparent``, if any).
        self.headers: dict[bytes, bytes] = {}
        self.propagator = TraceContextTextMapPropagator()

    def scheduler(self, *args: Any, **kwargs: Any) -> TracedScheduler:
        return TracedScheduler(self, *args, **kwargs)

    def instrument(self, frontend: Any) -> None:
        """Wrap the query frontend's handler and its two inference paths (``/predict`` and
        the Open Inference Protocol's ``/infer``)."""
        frontend._handle = self.trace_handle(frontend._handle)
        frontend._predict = self.trace_predict(frontend._predict)
        frontend._v2._infer = self.trace_predict(frontend._v2._infer)

    def trace_handle(self, handle: Callable[..., None]) -> Callable[..., None]:
        """``handle(request, responder, ...)`` that keeps the request's headers for
        :meth:`trace_predict`."""

        def traced(request: Any, responder: Any, *args: Any, **kwargs: Any) -> None:
            self.headers = request.headers
            handle(request, responder, *args, **kwargs)

        return traced

    def trace_predict(self, predict: Callable[..., None]) -> Callable[..., None]:
        """``predict(route, ..., responder)``, each call a ``clipper.receive`` span (the child
        of the caller's span when the request has a valid ``traceparent`` header)."""
        tracer = self.tracer
        ratio = self.sample_ratio

        def traced(route: Any, *args: Any) -> None:
            start = time_ns()
            headers = self.headers
            parent = headers.get(b"traceparent")
            if parent is None:
                if ratio < 1.0 and random() >= ratio:
                    predict(route, *args)
                    return
                context = None
            else:
                context = self.propagator.extract({
                    "traceparent": parent.decode("latin-1"),
                    "tracestate": headers.get(b"tracestate", b"").decode("latin-1")})
            span = tracer.start_span("clipper.receive", context, SpanKind.SERVER,
                                     start_time=start,
                                     attributes={"clipper.app": route.app.name})
            # The caller's traceparent says not sampled: no spans for this request.
            request = RequestTrace(self, span, start) if span.is_recording() else None
            # outer: None, unless a response sent just now let another request in
            outer, self.current = self.current, request
            *rest, responder = args
            try:
                predict(route, *rest,
                        responder if request is None else TracedResponder(responder, request))
            except ClipperError as exc:  # the caller answers it (the /infer route's errors)
                if request is not None:
                    request.finish(exc.status, (), time_ns())
                raise
            finally:
                self.current = outer
                if request is not None:
                    request.decoded()

        return traced

    def shutdown(self) -> None:
        """Export the spans still buffered and stop (blocks: call it off the event loop)."""
        self.provider.shutdown()


class RequestTrace:
    """The spans of one request: its root span, and when its stages started."""

    __slots__ = ("context", "decode_end", "lookup", "resolving", "span", "start", "tracing")

    def __init__(self, tracing: Tracing, span: Any, start: int) -> None:
        self.tracing = tracing
        self.span = span
        self.context = trace.set_span_in_context(span)
        self.start = start
        self.decode_end = 0
        #: When the answer being passed on now arrived (the response may follow at once).
        self.resolving = 0
        #: The version queue whose cache is being looked up now, else None.
        self.lookup: TracedWaiter | None = None

    def child(self, name: str, start: int, end: int, attributes: dict[str, Any]) -> None:
        self.tracing.tracer.start_span(name, self.context, start_time=start,
                                       attributes=attributes).end(end)

    def decoded(self) -> None:
        """End the decode span now, unless it has ended."""
        if not self.decode_end:
            self.decode_end = time_ns()
            self.child("clipper.decode", self.start, self.decode_end, {})

    def finish(self, status: int, headers: Iterable[tuple[bytes, bytes]], start: int) -> None:
        end = time_ns()
        self.decoded()
        if self.lookup is not None:
            self.lookup.looked_up(start)
        self.child("clipper.encode", start, end, {})
        span = self.span
        span.set_attribute("http.response.status_code", status)
        for name, value in headers:
            if name == VERSIONS_HEADER:
                span.set_attribute("clipper.model_versions", value.decode())
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end)


class TracedResponder:
    """A :class:`~clipper_core.frontend.http.Responder` that ends the request's trace."""

    __slots__ = ("request", "responder")

    def __init__(self, responder: Any, request: RequestTrace) -> None:
        self.responder = responder
        self.request = request

    @property
    def done(self) -> bool:
        return self.responder.done

    def send(self, status: int, body: bytes, *args: Any, **kwargs: Any) -> None:
        if self.responder.done:
            return
        start = self.request.resolving or time_ns()
        self.responder.send(status, body, *args, **kwargs)
        headers = kwargs.get("extra_headers", args[1] if len(args) > 1 else ())
        self.request.finish(status, headers, start)


class TracedWaiter:
    """Stands between one request and one version queue: times its queries' wait."""

    __slots__ = ("lookups", "queue", "queued", "request", "sent", "start", "waiter")

    def __init__(self, waiter: Waiter, request: RequestTrace, queue: VersionQueue,
                 lookups: int, start: int) -> None:
        self.waiter = waiter
        self.request = request
        self.queue = queue
        self.lookups = lookups
        self.start = start
        self.queued = 0
        self.sent = 0

    def looked_up(self, end: int) -> None:
        """The cache lookups are done (a full hit answers the request before they return)."""
        if self.lookups:
            queue = self.queue
            self.request.child("clipper.cache", self.start, end, {
                "clipper.model": queue.model, "clipper.version": queue.version,
                "clipper.cache.lookups": self.lookups,
                "clipper.cache.hits": self.lookups - self.queued})
            self.lookups = 0

    def resolve(self, index: int, fragment: bytes | None, explanation: str | None) -> None:
        request = self.request
        request.resolving = time_ns()
        try:
            self.waiter.resolve(index, fragment, explanation)
        finally:
            request.resolving = 0

    def left(self, now: int) -> None:
        """One of its queries left in a batch; the last one ends the queue wait."""
        self.sent += 1
        if self.sent == self.queued:
            self.request.child("clipper.queue_wait", self.start, now, {
                "clipper.model": self.queue.model, "clipper.version": self.queue.version})


class TracedScheduler(Scheduler):
    """The scheduler with cache, queue-wait, batch and replica spans around its steps."""

    def __init__(self, tracing: Tracing, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracing = tracing
        #: The batch and replica spans of every batch in flight, by message id.
        self.batch_spans: dict[int, tuple[Any, Any]] = {}
        self._lookups_end = 0

    def submit_request(self, queue: VersionQueue, inputs: Sequence[bytes], deadline: float,
                       now: float, waiter: Waiter) -> None:
        request = self.tracing.current
        if request is None:  # not from a /predict request (a selection policy's feedback)
            super().submit_request(queue, inputs, deadline, now, waiter)
            return
        request.decoded()
        traced = request.lookup = TracedWaiter(waiter, request, queue, len(inputs), time_ns())
        self._lookups_end = 0
        super().submit_request(queue, inputs, deadline, now, traced)
        request.lookup = None
        traced.looked_up(self._lookups_end or time_ns())

    def submit(self, queue: VersionQueue, key: Any, data: bytes, deadline: float, now: float,
               waiter: Waiter, index: int) -> None:
        if isinstance(waiter, TracedWaiter) and key not in self.pending:
            waiter.queued += 1
        super().submit(queue, key, data, deadline, now, waiter, index)

    def _dispatch_dirty(self) -> None:
        self._lookups_end = time_ns()
        super()._dispatch_dirty()

    def _send(self, slot: ReplicaSlot, tasks: list[Task], now: float) -> None:
        start = time_ns()
        requests: dict[int, RequestTrace] = {}
        for task in tasks:
            queued_by = task.waiters[0][0]  # the others joined it in flight (coalescing)
            if isinstance(queued_by, TracedWaiter):
                queued_by.left(start)
            for entry in task.waiters:
                waiter = entry[0]
                if isinstance(waiter, TracedWaiter):
                    requests.setdefault(id(waiter.request), waiter.request)
        super()._send(slot, tasks, now)
        if not requests:
            return
        first, *others = requests.values()
        queue = slot.queue
        tracer = self.tracing.tracer
        batch = tracer.start_span(
            "clipper.batch", first.context, start_time=start,
            links=[Link(r.span.get_span_context()) for r in others],
            attributes={"clipper.model": queue.model, "clipper.version": queue.version,
                        "clipper.batch_size": len(tasks)})
        replica = tracer.start_span(
            "clipper.replica", trace.set_span_in_context(batch), kind=SpanKind.CLIENT,
            start_time=start, attributes={"clipper.replica": slot.replica.replica_id})
        self.batch_spans[slot.inflight.msg_id] = (batch, replica)  # type: ignore[union-attr]

    def on_response(self, slot: ReplicaSlot, msg_id: int, outputs: Sequence[bytes]) -> None:
        spans = self.batch_spans.pop(msg_id, None)
        if spans is None:
            super().on_response(slot, msg_id, outputs)
            return
        spans[1].end()
        super().on_response(slot, msg_id, outputs)
        spans[0].end()

    def on_error(self, slot: ReplicaSlot, msg_id: int, message: str) -> None:
        self._end_failed(self.batch_spans.pop(msg_id, None), f"Model error: {message}")
        super().on_error(slot, msg_id, message)

    def remove_replica(self, slot: ReplicaSlot, why: str = "was lost") -> None:
        batch: Batch | None = slot.inflight
        if batch is not None:
            self._end_failed(self.batch_spans.pop(batch.msg_id, None),
                             f"The replica {why}; the batch goes back to its queue")
        super().remove_replica(slot, why)

    @staticmethod
    def _end_failed(spans: tuple[Any, Any] | None, message: str) -> None:
        if spans is not None:
            for span in reversed(spans):
                span.set_status(Status(StatusCode.ERROR, message))
                span.end()
