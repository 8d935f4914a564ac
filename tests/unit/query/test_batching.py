"""Adaptive batch sizing and the deadline-ordered scheduler (driven on a real event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from time import monotonic

from clipper_core.batching.adaptive import BatchSizer
from clipper_core.batching.scheduler import NO_MODELS, SWEEP_INTERVAL_S, Scheduler
from clipper_core.cache.lru import LRUCache
from clipper_core.metrics import MetricsRegistry
from clipper_core.types import InputType, Replica


def test_fixed_batch_size_is_exact() -> None:
    sizer = BatchSizer(fixed=9)
    assert sizer.size(30.0, 450) == 9
    assert sizer.size(0.001, 450) == 9
    assert sizer.size(30.0, 4) == 4
    sizer.observe(9, 5.0, 1.0)  # even a slow batch does not change a fixed size
    assert sizer.size(30.0, 450) == 9


def test_increase_while_batches_are_full_and_fast() -> None:
    sizer = BatchSizer()
    sizes = []
    for _ in range(6):
        n = sizer.size(10.0, 1000)
        sizes.append(n)
        sizer.observe(n, 0.001 * n, 1.0)
    assert sizes == [1, 3, 6, 12, 24, 48]  # slow start: doubling far below the budget
    sizer.observe(96, 0.5, 1.0)  # half the budget: additive increase only
    assert sizer.limit == 98
    # A batch that is not full says nothing about larger batches: no growth.
    limit = sizer.limit
    sizer.observe(1, 0.001, 1.0)
    assert sizer.limit == limit


def test_multiplicative_decrease_when_over_budget() -> None:
    sizer = BatchSizer()
    sizer.limit = 100
    sizer.observe(100, 0.5, 0.1)
    assert sizer.limit == 75
    sizer.observe(75, 0.5, 0.1)
    assert sizer.limit == 56
    small = BatchSizer()
    small.limit = 2
    small.observe(2, 1.0, 0.1)
    assert small.limit == 1


def test_latency_model_keeps_batches_inside_the_earliest_deadline() -> None:
    sizer = BatchSizer()
    sizer.limit = 1000
    for n in (10, 20, 40, 80):  # latency = 5 ms + 1 ms per query
        sizer.observe(n, 0.005 + 0.001 * n, 10.0)
    assert abs(sizer.a - 0.005) < 1e-6 and abs(sizer.b - 0.001) < 1e-6
    n = sizer.size(0.1, 1000)  # 100 ms left: 0.9 * 100 ms - 5 ms = 85 queries
    assert n == 85
    assert sizer.predict(n) <= 0.1
    assert sizer.size(0.0001, 1000) == 1  # always make progress


class Waiter:
    def __init__(self) -> None:
        self.results: dict[int, tuple[bytes | None, str | None]] = {}

    def resolve(self, index: int, fragment: bytes | None, explanation: str | None) -> None:
        self.results[index] = (fragment, explanation)


class Harness:
    """A scheduler whose RPC is a list of sent batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop, **kwargs: int) -> None:
        self.sent: list[tuple[object, int, list[bytes]]] = []
        self.routing_changes = 0
        self.cache = LRUCache(10_000)
        self.scheduler = Scheduler(loop, self.send, self.cache, lambda out: b"<" + out + b">",
                                   MetricsRegistry(), on_routing_change=self.changed,
                                   max_queue_depth=kwargs.get("max_queue_depth", 100),
                                   max_queue_bytes=kwargs.get("max_queue_bytes", 10_000),
                                   batch_wait_micros=kwargs.get("batch_wait_micros", 0),
                                   batch_timeout_s=kwargs.get("batch_timeout_s", 30.0))
        self.loop = loop

    def send(self, session: object, input_type: int, inputs: Sequence[bytes]) -> int:
        self.sent.append((session, input_type, list(inputs)))
        return len(self.sent) - 1

    def changed(self) -> None:
        self.routing_changes += 1

    def replica(self, session: str, batch_size: int = -1):
        self.scheduler.batch_sizes[("m", "1")] = batch_size
        return self.scheduler.add_replica(session, Replica("m", "1", 0, InputType.BYTES))

    def submit(self, data: bytes, waiter: Waiter, index: int = 0, slo: float = 10.0) -> None:
        now = monotonic()
        queue = self.scheduler.queues[("m", "1")]
        self.scheduler.submit(queue, ("m", "1", 0, data), data, now + slo, now, waiter, index)


def run(coro) -> None:
    asyncio.run(coro)


def test_queries_arriving_together_are_batched_and_answers_fill_the_cache() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        slot = h.replica("r1", batch_size=3)
        waiter = Waiter()
        for i, data in enumerate((b"a", b"b", b"c", b"d")):
            h.submit(data, waiter, i)
        await asyncio.sleep(0)
        assert [s[2] for s in h.sent] == [[b"a", b"b", b"c"]]  # one in flight per replica
        h.scheduler.on_response(slot, 0, [b"1", b"2", b"3"])
        assert waiter.results == {0: (b"<1>", None), 1: (b"<2>", None), 2: (b"<3>", None)}
        await asyncio.sleep(0)
        assert h.sent[1][2] == [b"d"]  # the replica pulled the rest once it answered
        assert h.cache.get(("m", "1", 0, b"b")) == b"<2>"
    run(main())


def test_identical_inflight_queries_are_coalesced() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        slot = h.replica("r1")
        first, second = Waiter(), Waiter()
        h.submit(b"same", first)
        h.submit(b"same", second, 5)
        await asyncio.sleep(0)
        assert [s[2] for s in h.sent] == [[b"same"]]
        h.scheduler.on_response(slot, 0, [b"x"])
        assert first.results == {0: (b"<x>", None)}
        assert second.results == {5: (b"<x>", None)}
        assert h.scheduler.pending == {}
    run(main())


def test_earliest_deadline_first_and_expired_queries_dropped() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        slot = h.replica("r1", batch_size=10)
        h.submit(b"busy", Waiter())
        await asyncio.sleep(0)  # the replica is now busy with "busy"
        waiter = Waiter()
        h.submit(b"late", waiter, 0, slo=5.0)
        h.submit(b"soon", waiter, 1, slo=1.0)
        h.submit(b"expired", waiter, 2, slo=0.001)
        await asyncio.sleep(0.01)
        h.scheduler.on_response(slot, 0, [b"ok"])
        await asyncio.sleep(0)
        assert h.sent[1][2] == [b"soon", b"late"]
        assert ("m", "1", 0, b"expired") not in h.scheduler.pending
    run(main())


def test_queries_that_cannot_finish_in_time_are_not_sent() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        slot = h.replica("r1", batch_size=1)
        for _ in range(5):  # the replica has shown it needs 50 ms per query
            slot.sizer.observe(1, 0.05, 1.0)
        h.submit(b"busy", Waiter())
        await asyncio.sleep(0)
        waiter = Waiter()
        h.submit(b"hopeless", waiter, 0, slo=0.02)
        h.submit(b"feasible", waiter, 1, slo=5.0)
        h.scheduler.on_response(slot, 0, [b"ok"])
        await asyncio.sleep(0)
        assert h.sent[1][2] == [b"feasible"]
        assert ("m", "1", 0, b"hopeless") not in h.scheduler.pending
    run(main())


def test_a_slow_cold_start_does_not_starve_the_replica() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        slot = h.replica("r1", batch_size=1)
        slot.sizer.observe(1, 2.0, 1.0)  # the first batch took 2 s (loading, JIT...)
        waiter = Waiter()
        h.submit(b"lone", waiter, 0, slo=0.1)  # "hopeless" by that estimate, but alone
        await asyncio.sleep(0)
        assert [s[2] for s in h.sent] == [[b"lone"]]
    run(main())


def test_a_requests_queries_leave_as_one_batch_at_once() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        h.replica("r1", batch_size=2)
        h.cache.put(("m", "1", int(InputType.BYTES), b"hit"), b"<cached>")
        waiter = Waiter()
        now = monotonic()
        queue = h.scheduler.queues[("m", "1")]
        h.scheduler.submit_request(queue, [b"a", b"hit", b"b"], now + 10.0, now, waiter)
        assert waiter.results == {1: (b"<cached>", None)}  # answered from the cache
        assert [s[2] for s in h.sent] == [[b"a", b"b"]]  # without waiting for the loop
        await asyncio.sleep(0)
        assert len(h.sent) == 1
        ratio = h.scheduler.cache_hits
        assert (ratio.numerator, ratio.denominator) == (1, 3)
    run(main())


def test_model_error_answers_with_explanation_and_is_not_cached() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        slot = h.replica("r1")
        waiter = Waiter()
        h.submit(b"boom", waiter)
        await asyncio.sleep(0)
        h.scheduler.on_error(slot, 0, "ZeroDivisionError: division by zero")
        assert waiter.results == {0: (None, "Model error: ZeroDivisionError: division by zero")}
        assert h.cache.get(("m", "1", 0, b"boom")) is None
        again = Waiter()
        h.submit(b"boom", again)
        await asyncio.sleep(0)
        assert len(h.sent) == 2 and h.sent[1][0] == "r1"  # same replica serves the next one
    run(main())


def test_wrong_number_of_outputs_is_an_error() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        slot = h.replica("r1")
        waiter = Waiter()
        h.submit(b"a", waiter)
        await asyncio.sleep(0)
        h.scheduler.on_response(slot, 0, [b"1", b"2"])
        assert waiter.results[0][0] is None
        assert "returned 2 outputs for a batch of 1" in waiter.results[0][1]
    run(main())


def test_lost_replica_batch_is_retried_on_another_replica() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        first = h.replica("r1")
        waiter = Waiter()
        h.submit(b"q", waiter)
        await asyncio.sleep(0)
        second = h.replica("r2")
        h.scheduler.remove_replica(first)
        assert h.sent[-1][0] == "r2" and h.sent[-1][2] == [b"q"]
        h.scheduler.on_response(first, 0, [b"stale"])  # a late answer of the lost one
        assert waiter.results == {}
        h.scheduler.on_response(second, len(h.sent) - 1, [b"fresh"])
        assert waiter.results == {0: (b"<fresh>", None)}
    run(main())


def test_losing_the_last_replica_answers_queued_queries_at_once() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        slot = h.replica("r1")
        waiter = Waiter()
        h.submit(b"a", waiter, 0)
        h.submit(b"b", waiter, 1)
        await asyncio.sleep(0)
        changes = h.routing_changes
        h.scheduler.remove_replica(slot)
        assert waiter.results == {0: (None, NO_MODELS), 1: (None, NO_MODELS)}
        assert h.routing_changes == changes + 1
    run(main())


def test_queue_bound_and_batch_wait() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop(), max_queue_depth=2, batch_wait_micros=300_000)
        h.replica("r1", batch_size=4)
        queue = h.scheduler.queues[("m", "1")]
        assert h.scheduler.has_room(queue, [b"a", b"b"])
        assert not h.scheduler.has_room(queue, [b"a", b"b", b"c"])
        waiter = Waiter()
        h.submit(b"a", waiter, 0)
        await asyncio.sleep(0.01)
        assert h.sent == []  # waiting for more queries to fill the batch
        h.submit(b"b", waiter, 1)
        await asyncio.sleep(0.5)
        assert [s[2] for s in h.sent] == [[b"a", b"b"]]
    run(main())


def test_expired_queries_do_not_count_against_the_queue_bound() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop(), max_queue_depth=2)
        h.replica("r1")
        h.submit(b"busy", Waiter())
        await asyncio.sleep(0)  # the only replica is busy from now on
        queue = h.scheduler.queues[("m", "1")]
        h.submit(b"a", Waiter(), slo=0.001)
        h.submit(b"b", Waiter(), slo=0.001)
        assert not h.scheduler.has_room(queue, [b"c"])
        await asyncio.sleep(0.01)
        assert h.scheduler.has_room(queue, [b"c", b"d"])
        assert queue.heap == [] and len(h.scheduler.pending) == 1  # only "busy" is left
    run(main())


def test_queue_bound_in_bytes() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop(), max_queue_bytes=100)
        h.replica("r1")
        h.submit(b"busy", Waiter())
        await asyncio.sleep(0)
        queue = h.scheduler.queues[("m", "1")]
        h.submit(b"x" * 60, Waiter())
        assert queue.bytes == 60
        assert h.scheduler.has_room(queue, [b"y" * 40])
        assert not h.scheduler.has_room(queue, [b"y" * 20, b"z" * 21])
        assert h.scheduler.fits(1, 100) and not h.scheduler.fits(1, 101)
        h.scheduler.on_response(queue.replicas[0], 0, [b"ok"])
        await asyncio.sleep(0)
        assert queue.bytes == 0 and h.sent[-1][2] == [b"x" * 60]
    run(main())


def test_expired_queries_are_freed_without_a_replica_pulling() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        h.replica("r1")
        h.submit(b"busy", Waiter())
        await asyncio.sleep(0)  # the only replica never answers
        queue = h.scheduler.queues[("m", "1")]
        for i in range(50):
            h.submit(b"%d" % i + b"x" * 100, Waiter(), slo=0.05)
        assert len(queue.heap) == 50 and queue.bytes > 5000
        await asyncio.sleep(0.05 + 2 * SWEEP_INTERVAL_S)
        assert queue.heap == [] and queue.bytes == 0
        assert list(h.scheduler.pending) == [("m", "1", 0, b"busy")]
    run(main())


def test_identical_queries_keep_their_own_deadlines() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        slot = h.replica("r1")
        h.submit(b"busy", Waiter())
        await asyncio.sleep(0)  # the replica is busy
        first, later = Waiter(), Waiter()
        h.submit(b"same", first, slo=0.02)
        h.submit(b"same", later, 3, slo=10.0)  # joins, with ten seconds of SLO left
        await asyncio.sleep(0.05 + 2 * SWEEP_INTERVAL_S)  # the first one's SLO ran out
        queue = h.scheduler.queues[("m", "1")]
        assert len(queue.heap) == 1 and queue.bytes == 4
        h.scheduler.on_response(slot, 0, [b"ok"])
        await asyncio.sleep(0)
        assert h.sent[-1][2] == [b"same"]
        h.scheduler.on_response(slot, 1, [b"answer"])
        assert later.results == {3: (b"<answer>", None)}
    run(main())


def test_forgetting_a_models_answers() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        slot = h.replica("r1")
        waiter = Waiter()
        h.scheduler.submit_request(h.scheduler.queues[("m", "1")], [b"x"], monotonic() + 5,
                                   monotonic(), waiter)
        h.scheduler.on_response(slot, 0, [b"old"])
        h.scheduler.forget_answers("other")
        again = Waiter()
        queue = h.scheduler.queues[("m", "1")]
        h.scheduler.submit_request(queue, [b"x"], monotonic() + 5, monotonic(), again)
        assert again.results == {0: (b"<old>", None)}  # another model's change: still cached
        h.scheduler.forget_answers("m")
        fresh = Waiter()
        h.scheduler.submit_request(queue, [b"x"], monotonic() + 5, monotonic(), fresh)
        assert fresh.results == {} and h.sent[-1][2] == [b"x"]  # asked of the model again
    run(main())


def test_a_query_lost_with_replicas_is_retried_once_and_alone() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop())
        first, second, third = h.replica("r1"), h.replica("r2"), h.replica("r3")
        for slot in (first, second, third):
            slot.sizer.limit = 10
        waiter = Waiter()
        queue = h.scheduler.queues[("m", "1")]
        now = monotonic()
        h.scheduler.submit_request(queue, [b"poison", b"fine"], now + 10, now, waiter)
        assert [s[2] for s in h.sent] == [[b"poison", b"fine"]]
        h.scheduler.remove_replica(h.scheduler.inflight[0].replica, "said goodbye")
        # Each retried query goes alone, to the two other replicas.
        assert sorted(s[2] for s in h.sent[1:]) == [[b"fine"], [b"poison"]]
        poisoned = next(m for m, b in h.scheduler.inflight.items() if b.tasks[0].data == b"poison")
        fine = next(m for m in h.scheduler.inflight if m != poisoned)
        h.scheduler.on_response(h.scheduler.inflight[fine].replica, fine, [b"ok"])
        assert waiter.results == {1: (b"<ok>", None)}
        h.scheduler.remove_replica(h.scheduler.inflight[poisoned].replica, "was silent")
        assert len(h.sent) == 3  # not sent a third time: the last replica lives
        fragment, explanation = waiter.results[0]
        assert fragment is None and explanation.startswith("Model error: 2 replicas were lost")
        assert "was silent" in explanation
        assert queue.heap == [] and queue.retrying == 0 and queue.bytes == 0
        again = Waiter()  # a client sends it again: answered at once, no replica lost
        now = monotonic()
        h.scheduler.submit_request(queue, [b"poison", b"new"], now + 10, now, again)
        assert again.results == {0: (None, explanation)}
        assert h.sent[-1][2] == [b"new"]
    run(main())


def test_a_hung_replica_is_retired_after_the_batch_timeout() -> None:
    async def main() -> None:
        h = Harness(asyncio.get_running_loop(), batch_timeout_s=0.2)
        hung = h.replica("r1")
        waiter = Waiter()
        h.submit(b"stuck", waiter, slo=0.05)
        await asyncio.sleep(0)
        healthy = h.replica("r2")
        h.submit(b"other", Waiter())
        await asyncio.sleep(0)
        h.scheduler.on_response(healthy, 1, [b"ok"])
        await asyncio.sleep(0.1)
        assert hung in h.scheduler.queues[("m", "1")].replicas  # not yet overdue
        await asyncio.sleep(0.2 + 2 * SWEEP_INTERVAL_S)
        assert h.scheduler.queues[("m", "1")].replicas == [healthy]
        assert h.scheduler.inflight == {}
        h.submit(b"later", Waiter())
        await asyncio.sleep(0)
        assert h.sent[-1][0] == "r2"
    run(main())
