"""Deadline-ordered queues per model version, pulled in batches by idle replicas.

* Every model version has one :class:`VersionQueue`: a heap ordered by deadline (earliest
  first) shared by all its replicas. Queues are per version, never per application.
* A replica with no batch in flight is *idle*. Submitting a query marks its queue dirty; once
  per event-loop iteration the dirty queues hand batches to their idle replicas, so requests
  that arrive together are batched together. A replica pulls its next batch as soon as it
  answers (at most one batch in flight per replica).
* Expired queries are dropped before a batch is formed (their SLO timer answers them), and
  every :data:`SWEEP_INTERVAL_S` even when no replica pulls, so their inputs are freed.
* A queue is bounded in queries (``max_queue_depth``) and in input bytes (``max_queue_bytes``):
  :meth:`Scheduler.has_room` says whether a request fits.
* The scheduler owns the prediction cache: :meth:`Scheduler.submit_request` answers what
  the cache holds and queues the rest; answers fill it even when every waiter has already been
  answered with the default output; error replies are never cached.
* Identical in-flight queries (same cache key) share one task: the model sees the input once
  and every waiter gets the answer. Each waiter keeps its own deadline: a task whose first
  waiter's SLO ran out stays queued for the later ones.
* Cache keys are ``(model, version, generation, input bytes)``; :meth:`Scheduler.forget_answers`
  starts a new generation of a model's queues when the store reports a change of the model
  (a version deleted and registered again must not get the old one's answers).
* The RPC router hands replica events straight to the scheduler (:meth:`add_replica`,
  :meth:`remove_replica`, :meth:`on_response`, :meth:`on_error`).
* A replica that disappears hands its in-flight batch back to its queue (another replica of the
  version takes it); with no replica left, the queued queries get the default output at once.
  A query is re-sent at most ``max_retries`` times, and always alone: an input that makes
  replicas exit takes at most ``max_retries + 1`` of them down, and no other query with it.
  Such an input is then remembered for :data:`POISON_MEMORY_S`: sent again (a client
  retrying it), it gets the same answer at once instead of taking more replicas down.
* Query times (request starts, deadlines, batch send times, latencies) are read from
  ``time.monotonic()``, the clock ``loop.call_at`` counts in as well; not from ``loop.time()``:
  uvloop's advances in whole milliseconds once per loop iteration, and a batch answered within
  one measured 0 µs (in the metrics and in the batch sizer's estimates).
* A batch unanswered ``batch_timeout_s`` after it was sent, and after the deadlines of all its
  queries, means the replica hangs (its heartbeats may still flow): the scheduler has it
  retired (:class:`~clipper_core.rpc.router.RpcRouter` drops it and tells it to exit, so its
  backend starts a new one).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from time import monotonic
from typing import Any, Protocol

from clipper_core.batching.adaptive import BatchSizer
from clipper_core.cache.api import PredictionCache
from clipper_core.metrics import BATCH_SIZE_BOUNDS, LATENCY_BOUNDS_MICROS, MetricsRegistry
from clipper_core.types import ADAPTIVE_BATCH_SIZE, InputType, Replica

log = logging.getLogger(__name__)

#: The response header that names the model versions that produced an answer.
VERSIONS_HEADER = b"Clipper-Model-Versions"
#: Explanation of a query whose model version has no connected replica (spec §1.5).
NO_MODELS = "No connected models found for query"
#: Seconds between two sweeps of the queues for expired queries.
SWEEP_INTERVAL_S = 0.25
#: Seconds an input that was lost with too many replicas is answered without a replica...
POISON_MEMORY_S = 300.0
#: ...and how many such inputs are remembered (the oldest are forgotten first).
MAX_POISONED = 1024


class Waiter(Protocol):
    """Whoever waits for a task's answer: :meth:`resolve` with a fragment or an explanation."""

    def resolve(self, index: int, fragment: bytes | None, explanation: str | None) -> None: ...


class Task:
    """One distinct input for one model version, and everyone waiting for its answer."""

    __slots__ = ("attempts", "data", "deadline", "enqueued", "key", "waiters")

    def __init__(self, key: Hashable, data: bytes, deadline: float, enqueued: float,
                 waiter: Waiter, index: int) -> None:
        self.key = key
        self.data = data
        self.deadline = deadline
        self.enqueued = enqueued
        #: ``(waiter, index, deadline)``: identical queries join with their own deadline.
        self.waiters: list[tuple[Waiter, int, float]] = [(waiter, index, deadline)]
        #: How many replicas were lost with this query in their batch.
        self.attempts = 0

    def resolve(self, fragment: bytes | None, explanation: str | None) -> None:
        for waiter, index, _ in self.waiters:
            waiter.resolve(index, fragment, explanation)

    def postpone(self, cutoff: float) -> bool:
        """Move the deadline to the earliest waiter's after ``cutoff``; False if none is left."""
        later = [deadline for _, _, deadline in self.waiters if deadline > cutoff]
        if not later:
            return False
        self.deadline = min(later)
        return True


class Batch:
    __slots__ = ("budget", "msg_id", "replica", "sent", "tasks")

    def __init__(self, msg_id: int, replica: ReplicaSlot, tasks: list[Task], sent: float) -> None:
        self.msg_id = msg_id
        self.replica = replica
        self.tasks = tasks
        self.sent = sent
        self.budget = tasks[0].deadline - sent


class ReplicaSlot:
    """The scheduler's view of one connected replica."""

    __slots__ = ("inflight", "queue", "replica", "session", "sizer")

    def __init__(self, session: Any, replica: Replica, queue: VersionQueue) -> None:
        self.session = session
        self.replica = replica
        self.queue = queue
        self.sizer = BatchSizer(queue.batch_size)
        self.inflight: Batch | None = None


class VersionQueue:
    """The deadline-ordered queue of one model version, its replicas and its metrics."""

    __slots__ = (
        "arm",
        "batch_hist",
        "batch_size",
        "bytes",
        "cache_ratio",
        "errors",
        "generation",
        "heap",
        "idle",
        "input_type",
        "latency",
        "model",
        "num_predictions",
        "replicas",
        "retrying",
        "throughput",
        "version",
        "versions_header",
        "wait_handle",
        "waited",
    )

    def __init__(self, model: str, version: str, input_type: InputType, batch_size: int,
                 metrics: MetricsRegistry) -> None:
        self.model = model
        self.version = version
        self.input_type = input_type
        #: ``"<model>:<version>"``: the name selection policies and answers know it by.
        self.arm = f"{model}:{version}"
        self.versions_header = ((VERSIONS_HEADER, self.arm.encode()),)
        self.batch_size = batch_size
        #: Part of every cache key of this queue; a new one makes the cached answers unreachable.
        self.generation = 0
        self.heap: list[tuple[float, int, Task]] = []
        #: Input bytes of the queries in ``heap``.
        self.bytes = 0
        #: How many queries in ``heap`` are retries (sent alone).
        self.retrying = 0
        self.replicas: list[ReplicaSlot] = []
        self.idle: list[ReplicaSlot] = []
        self.wait_handle: asyncio.TimerHandle | None = None
        self.waited = False
        prefix = f"model:{model}:{version}:"
        self.latency = metrics.histogram(prefix + "prediction_latency",
                                         bounds=LATENCY_BOUNDS_MICROS)
        self.throughput = metrics.meter(prefix + "prediction_throughput")
        self.num_predictions = metrics.counter(prefix + "num_predictions")
        self.cache_ratio = metrics.ratio(prefix + "cache_hit_ratio")
        self.batch_hist = metrics.histogram(prefix + "batch_size", unit="queries",
                                            bounds=BATCH_SIZE_BOUNDS)
        self.errors = metrics.counter(prefix + "num_errors")
        metrics.gauge(prefix + "queue_depth", lambda: len(self.heap))
        metrics.gauge(prefix + "queue_bytes", lambda: self.bytes)
        metrics.gauge(prefix + "num_replicas", lambda: len(self.replicas))

    def set_batch_size(self, batch_size: int) -> None:
        self.batch_size = batch_size
        for slot in self.replicas:
            slot.sizer.fixed = batch_size


#: ``send(session, input_type, inputs) -> msg_id``: hands a batch to the RPC layer.
SendBatch = Callable[[Any, int, Sequence[bytes]], int]


class Scheduler:
    """Owns every version queue, the in-flight batches and the coalescing table."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: SendBatch,
                 cache: PredictionCache, render: Callable[[bytes], bytes],
                 metrics: MetricsRegistry, *, max_queue_depth: int, max_queue_bytes: int,
                 batch_wait_micros: int = 0, batch_timeout_s: float = 30.0,
                 max_retries: int = 1, retire: Callable[[Any, str], None] | None = None,
                 on_routing_change: Callable[[], None] = lambda: None) -> None:
        self.loop = loop
        self.send = send
        self.cache = cache
        self.render = render
        self.metrics = metrics
        self.max_queue_depth = max_queue_depth
        self.max_queue_bytes = max_queue_bytes
        self.batch_wait_s = batch_wait_micros / 1e6
        self.batch_timeout_s = batch_timeout_s
        self.max_retries = max_retries
        #: ``retire(session, why)`` drops a hung replica (None: just forget it here).
        self.retire = retire
        self.on_routing_change = on_routing_change
        self.queues: dict[tuple[str, str], VersionQueue] = {}
        self.batch_sizes: dict[tuple[str, str], int] = {}
        self.pending: dict[Hashable, Task] = {}
        #: Keys of inputs lost with too many replicas: ``(explanation, forgotten at)``.
        self.poisoned: OrderedDict[Hashable, tuple[str, float]] = OrderedDict()
        self.inflight: dict[int, Batch] = {}
        self._dirty: set[VersionQueue] = set()
        self._seq = itertools.count()
        self.num_predictions = metrics.counter("internal:aggregate_num_predictions")
        self.throughput = metrics.meter("internal:aggregate_model_throughput")
        self.queueing_delay = metrics.histogram("internal:rpc_request_queueing_delay",
                                                sample_size=2056)
        self.cache_lookups = metrics.counter("internal:prediction_cache_lookups")
        self.cache_hits = metrics.ratio("internal:prediction_cache_hit_ratio")
        metrics.gauge("internal:num_replicas",
                      lambda: sum(len(q.replicas) for q in self.queues.values()))
        self._sweeper = loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def close(self) -> None:
        self._sweeper.cancel()

    def _sweep(self) -> None:
        """Free the expired queries of every queue (replicas may not pull for a long time),
        and retire the replicas whose batch is overdue."""
        now = monotonic()
        for queue in self.queues.values():
            if queue.heap and queue.heap[0][0] <= now:
                self._drop_expired(queue, now)
        timeout = self.batch_timeout_s
        hung = [batch for batch in self.inflight.values() if now - batch.sent > timeout
                and all(task.deadline < now for task in batch.tasks)]
        for batch in hung:
            if self.inflight.get(batch.msg_id) is batch:
                why = f"hung: no answer to a batch for {now - batch.sent:.1f} s"
                slot = batch.replica
                log.warning("replica %s %s; retiring it", slot.replica, why)
                if self.retire is None:
                    self.remove_replica(slot, why)
                else:
                    self.retire(slot.session, why)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    # -- queries ----------------------------------------------------------------------------
    def fits(self, n: int, size: int) -> bool:
        """Whether ``n`` queries of ``size`` input bytes in all are within a queue's bounds."""
        return n <= self.max_queue_depth and size <= self.max_queue_bytes

    def has_room(self, queue: VersionQueue, inputs: Sequence[bytes]) -> bool:
        """Whether ``inputs`` fit in ``queue`` now (expired queries make room)."""
        n = len(inputs)
        size = len(inputs[0]) if n == 1 else sum(map(len, inputs))
        if self.fits(len(queue.heap) + n, queue.bytes + size):
            return True
        self._drop_expired(queue, monotonic())
        return self.fits(len(queue.heap) + n, queue.bytes + size)

    def _drop_expired(self, queue: VersionQueue, now: float,
                      keep_one_after: float = 0.0) -> None:
        """Drop the queries whose deadline has passed, and, all but one, those due by
        ``keep_one_after``."""
        pending = self.pending
        heap = queue.heap
        cutoff = max(now, keep_one_after)
        while heap and (heap[0][0] <= now or (heap[0][0] <= keep_one_after and len(heap) > 1)):
            expired = heapq.heappop(heap)[2]
            if len(expired.waiters) > 1 and expired.postpone(cutoff):
                heapq.heappush(heap, (expired.deadline, next(self._seq), expired))
                continue
            queue.bytes -= len(expired.data)
            if expired.attempts:
                queue.retrying -= 1
            if pending.get(expired.key) is expired:
                del pending[expired.key]

    def submit_request(self, queue: VersionQueue, inputs: Sequence[bytes], deadline: float,
                       now: float, waiter: Waiter) -> None:
        """Answer a request's queries from the cache, queue the others, send what idle
        replicas can take now (so a request's queries leave as one batch, at once)."""
        model, version, generation = queue.model, queue.version, queue.generation
        cache_get = self.cache.get
        hits = 0
        for index, data in enumerate(inputs):
            key = (model, version, generation, data)
            fragment = cache_get(key)
            if fragment is not None:
                hits += 1
                waiter.resolve(index, fragment, None)
            else:
                self.submit(queue, key, data, deadline, now, waiter, index)
        if self._dirty:
            self._dispatch_dirty()
        n = len(inputs)
        self.cache_lookups.count += n
        self.cache_hits.increment(hits, n)
        queue.cache_ratio.increment(hits, n)

    def submit(self, queue: VersionQueue, key: Hashable, data: bytes, deadline: float,
               now: float, waiter: Waiter, index: int) -> None:
        """Queue one query (or join the identical one already in flight)."""
        task = self.pending.get(key)
        if task is not None:
            task.waiters.append((waiter, index, deadline))
            return
        if self.poisoned and self._poisoned(key, waiter, index, now):
            return
        task = Task(key, data, deadline, now, waiter, index)
        self.pending[key] = task
        heapq.heappush(queue.heap, (deadline, next(self._seq), task))
        queue.bytes += len(data)
        if queue.idle:
            if not self._dirty:
                self.loop.call_soon(self._dispatch_dirty)
            self._dirty.add(queue)

    def _poisoned(self, key: Hashable, waiter: Waiter, index: int, now: float) -> bool:
        """Answer a query whose input took replicas down lately with the same explanation."""
        entry = self.poisoned.get(key)
        if entry is None:
            return False
        if entry[1] <= now:
            del self.poisoned[key]
            return False
        waiter.resolve(index, None, entry[0])
        return True

    def _dispatch_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for queue in dirty:
            self._dispatch(queue)

    def _dispatch(self, queue: VersionQueue) -> None:
        heap = queue.heap
        idle = queue.idle
        now = monotonic()
        while idle and heap:
            slot = idle[-1]
            # A query that cannot be answered before its deadline even alone would only
            # delay the others: it gets the SLO default without costing the replica. The
            # last one is still sent, so that a replica whose first batches were slow (a cold
            # start) keeps measuring and the estimate recovers.
            self._drop_expired(queue, now, keep_one_after=now + slot.sizer.predict(1))
            if not heap:
                return
            size = slot.sizer.size(heap[0][0] - now, len(heap))
            wanted = slot.sizer.fixed if slot.sizer.fixed > 0 else slot.sizer.limit
            if self.batch_wait_s and len(heap) < wanted and not queue.waited:
                if queue.wait_handle is None:
                    queue.wait_handle = self.loop.call_later(
                        self.batch_wait_s, self._end_wait, queue)
                return
            idle.pop()
            if queue.retrying:
                tasks = self._take_isolating(queue, size)
            else:
                tasks = [heapq.heappop(heap)[2] for _ in range(size)]
            queue.bytes -= sum([len(task.data) for task in tasks])
            self._send(slot, tasks, now)

    @staticmethod
    def _take_isolating(queue: VersionQueue, size: int) -> list[Task]:
        """Up to ``size`` queries for a batch, a retried one alone: if it is what made a
        replica exit or hang, it takes no other query with it."""
        heap = queue.heap
        first = heapq.heappop(heap)[2]
        if first.attempts:
            queue.retrying -= 1
            return [first]
        tasks = [first]
        while len(tasks) < size and heap and not heap[0][2].attempts:
            tasks.append(heapq.heappop(heap)[2])
        return tasks

    def _end_wait(self, queue: VersionQueue) -> None:
        queue.wait_handle = None
        queue.waited = True
        self._dispatch(queue)
        queue.waited = False

    def _send(self, slot: ReplicaSlot, tasks: list[Task], now: float) -> None:
        queue = slot.queue
        msg_id = self.send(slot.session, queue.input_type, [t.data for t in tasks])
        batch = Batch(msg_id, slot, tasks, now)
        slot.inflight = batch
        self.inflight[msg_id] = batch
        n = len(tasks)
        queue.batch_hist.insert(n)
        self.num_predictions.count += n
        self.queueing_delay.insert(int((now - tasks[0].enqueued) * 1e6))

    # -- replies ----------------------------------------------------------------------------
    def _finish(self, slot: ReplicaSlot, msg_id: int) -> Batch | None:
        batch = self.inflight.get(msg_id)
        if batch is None or batch.replica is not slot:
            return None
        del self.inflight[msg_id]
        slot.inflight = None
        queue = slot.queue
        if slot in queue.replicas:
            queue.idle.append(slot)
            if queue.heap:
                if not self._dirty:
                    self.loop.call_soon(self._dispatch_dirty)
                self._dirty.add(queue)
        return batch

    def on_response(self, slot: ReplicaSlot, msg_id: int, outputs: Sequence[bytes]) -> None:
        batch = self._finish(slot, msg_id)
        if batch is None:
            return
        tasks = batch.tasks
        if len(outputs) != len(tasks):
            self._fail_batch(slot, tasks, f"Model error: the model returned {len(outputs)} "
                                          f"outputs for a batch of {len(tasks)} inputs")
            return
        now = monotonic()
        latency = now - batch.sent
        n = len(tasks)
        slot.sizer.observe(n, latency, batch.budget)
        queue = slot.queue
        queue.throughput.mark(n)
        queue.num_predictions.count += n
        self.throughput.mark(n)
        micros = int(latency * 1e6)
        hist = queue.latency
        render = self.render
        cache_put = self.cache.put
        pending = self.pending
        for task, output in zip(tasks, outputs, strict=True):
            fragment = render(output)
            cache_put(task.key, fragment)
            if pending.get(task.key) is task:
                del pending[task.key]
            task.resolve(fragment, None)
            hist.insert(micros)

    def on_error(self, slot: ReplicaSlot, msg_id: int, message: str) -> None:
        batch = self._finish(slot, msg_id)
        if batch is not None:
            self._fail_batch(slot, batch.tasks, f"Model error: {message}")

    def _fail_batch(self, slot: ReplicaSlot, tasks: list[Task], explanation: str) -> None:
        slot.queue.errors.count += 1
        for task in tasks:
            self._fail(task, explanation)

    def _fail(self, task: Task, explanation: str) -> None:
        if self.pending.get(task.key) is task:
            del self.pending[task.key]
        task.resolve(None, explanation)

    # -- replicas ---------------------------------------------------------------------------
    def queue_for(self, model: str, version: str, input_type: InputType) -> VersionQueue:
        key = (model, version)
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = VersionQueue(
                model, version, input_type, self.batch_sizes.get(key, ADAPTIVE_BATCH_SIZE),
                self.metrics)
        return queue

    def forget_answers(self, model: str | None) -> None:
        """Make the cached answers of ``model`` (None: of every model) unreachable."""
        for queue in self.queues.values():
            if model is None or queue.model == model:
                queue.generation += 1

    def set_batch_sizes(self, sizes: dict[tuple[str, str], int]) -> None:
        """Record every model version's configured batch size (from the store)."""
        self.batch_sizes = sizes
        for key, queue in self.queues.items():
            size = sizes.get(key, ADAPTIVE_BATCH_SIZE)
            if size != queue.batch_size:
                queue.set_batch_size(size)

    def add_replica(self, session: Any, replica: Replica) -> ReplicaSlot:
        queue = self.queue_for(replica.model_name, replica.model_version, replica.input_type)
        slot = ReplicaSlot(session, replica, queue)
        queue.replicas.append(slot)
        queue.idle.append(slot)
        if queue.heap:
            self._dispatch(queue)
        self.on_routing_change()
        return slot

    def remove_replica(self, slot: ReplicaSlot, why: str = "was lost") -> None:
        """Forget a replica (``why``: what happened to it); its in-flight batch goes back to
        the queue (or gets defaults)."""
        queue = slot.queue
        if slot not in queue.replicas:
            return
        queue.replicas.remove(slot)
        if slot in queue.idle:
            queue.idle.remove(slot)
        batch = slot.inflight
        slot.inflight = None
        if batch is not None:
            self.inflight.pop(batch.msg_id, None)
            self._retry(queue, batch.tasks, why)
        if queue.replicas:
            self._dispatch(queue)
        else:
            heap, queue.heap = queue.heap, []
            queue.bytes = queue.retrying = 0
            for _, _, task in heap:
                self._fail(task, NO_MODELS)
        self.on_routing_change()

    def _retry(self, queue: VersionQueue, tasks: list[Task], why: str) -> None:
        """Queue again the queries of a lost replica's batch, unless they were lost too often."""
        for task in tasks:
            task.attempts += 1
            if task.attempts > self.max_retries:
                explanation = (f"Model error: {task.attempts} replicas were lost while "
                               f"answering this query (the last one {why}); it is not sent "
                               "again")
                self.poisoned[task.key] = (explanation, monotonic() + POISON_MEMORY_S)
                if len(self.poisoned) > MAX_POISONED:
                    self.poisoned.popitem(last=False)
                self._fail(task, explanation)
                continue
            heapq.heappush(queue.heap, (task.deadline, next(self._seq), task))
            queue.bytes += len(task.data)
            queue.retrying += 1
