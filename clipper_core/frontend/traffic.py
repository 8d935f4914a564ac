"""Traffic management between the versions of one model: weighted splits and shadow versions.

A model's traffic is one JSON object in the store (:meth:`StateStore.set_traffic`)::

    {"split": {"1": 90, "2": 10}, "shadows": ["3"], "previous": "1"}

``split`` sends each query to one version with probability weight / sum (a canary);
``shadows`` receive a copy of every query, their answers are compared with the answering
version's and never returned; ``previous`` is the version that was current before the traffic
was changed (what :meth:`ManagementService.rollback` returns to). The management service
validates and writes it; the routing table turns it into a :class:`Split` and
:class:`Shadows` for each application serving the model, which the query path calls only
when they exist.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from time import monotonic
from typing import Any

import orjson

from clipper_core.batching.scheduler import Scheduler, VersionQueue, Waiter
from clipper_core.exceptions import ValidationError
from clipper_core.metrics import MetricsRegistry


def parse_traffic(stored: str | None) -> dict[str, Any]:
    """A model's stored traffic as ``{"split": {...}, "shadows": [...], "previous": ...}``."""
    traffic = orjson.loads(stored) if stored else {}
    return {"split": traffic.get("split", {}), "shadows": traffic.get("shadows", []),
            "previous": traffic.get("previous")}


def check_weights(model_name: str, weights: dict[str, Any], versions: Sequence[str]) -> None:
    """ValidationError naming the first unknown version or bad weight in ``weights``."""
    for version, weight in weights.items():
        if version not in versions:
            raise ValidationError(
                f"Unknown version '{version}' of model '{model_name}' in the traffic split; "
                f"its versions are {', '.join(versions) or 'none'}")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ValidationError(
                f"The weight of version '{version}' of model '{model_name}' must be a number "
                f">= 0, found {weight!r}")
    if sum(weights.values()) <= 0:
        raise ValidationError(
            f"The weights of the traffic split of model '{model_name}' must sum to a positive "
            f"number, found {sum(weights.values())}")


class Split:
    """Picks one version queue per query with probability weight / total."""

    __slots__ = ("bounds", "counters", "queues", "random", "total")

    def __init__(self, weighted: list[tuple[VersionQueue, float]], metrics: MetricsRegistry,
                 rng: random.Random) -> None:
        self.queues = [queue for queue, _ in weighted]
        self.bounds: list[float] = []
        total = 0.0
        for _, weight in weighted:
            total += weight
            self.bounds.append(total)
        self.total = total
        self.random = rng.random
        self.counters = [metrics.counter(f"model:{q.model}:{q.version}:split_queries")
                         for q in self.queues]

    def pick(self) -> VersionQueue:
        index = bisect.bisect_right(self.bounds, self.random() * self.total)
        index = min(index, len(self.queues) - 1)
        self.counters[index].count += 1
        return self.queues[index]


class Shadows:
    """The shadow versions of an application's model: each gets a copy of every query."""

    __slots__ = ("entries", "scheduler")

    def __init__(self, queues: list[VersionQueue], scheduler: Scheduler,
                 metrics: MetricsRegistry) -> None:
        self.scheduler = scheduler
        self.entries = []
        for queue in queues:
            prefix = f"model:{queue.model}:{queue.version}:"
            self.entries.append((queue, metrics.counter(prefix + "shadow_queries"),
                                 metrics.ratio(prefix + "shadow_agreement"),
                                 metrics.histogram(prefix + "shadow_latency"),
                                 metrics.counter(prefix + "shadow_dropped")))

    def mirror(self, primary: Waiter, inputs: Sequence[bytes], deadline: float,
               now: float) -> Waiter:
        """Send ``inputs`` to every shadow; return the waiter the primary version answers."""
        mirror = Mirror(primary, len(inputs), now)
        scheduler = self.scheduler
        for queue, queries, agreement, latency, dropped in self.entries:
            if not scheduler.has_room(queue, inputs):
                dropped.count += len(inputs)
                continue
            queries.count += len(inputs)
            shadow = ShadowAnswers(mirror, agreement, latency)
            mirror.shadows.append(shadow)
            scheduler.submit_request(queue, inputs, deadline, now, shadow)
        return mirror


class Mirror:
    """Passes the primary version's answers on to the request and compares the shadows'."""

    __slots__ = ("answers", "primary", "shadows", "start")

    def __init__(self, primary: Waiter, n: int, start: float) -> None:
        self.primary = primary
        self.answers: list[bytes | None] = [None] * n
        self.shadows: list[ShadowAnswers] = []
        self.start = start

    def resolve(self, index: int, fragment: bytes | None, explanation: str | None) -> None:
        self.primary.resolve(index, fragment, explanation)
        if fragment is not None and self.answers[index] is None:
            self.answers[index] = fragment
            for shadow in self.shadows:
                shadow.compare(index)


class ShadowAnswers:
    """One shadow version's answers to one request: recorded, compared, never returned."""

    __slots__ = ("agreement", "answers", "latency", "mirror")

    def __init__(self, mirror: Mirror, agreement: Any, latency: Any) -> None:
        self.mirror = mirror
        self.answers: dict[int, bytes] = {}
        self.agreement = agreement
        self.latency = latency

    def resolve(self, index: int, fragment: bytes | None, explanation: str | None) -> None:
        if fragment is None or index in self.answers:
            return
        self.latency.insert(int((monotonic() - self.mirror.start) * 1e6))
        self.answers[index] = fragment
        self.compare(index)

    def compare(self, index: int) -> None:
        mine = self.answers.get(index)
        theirs = self.mirror.answers[index]
        if mine is not None and theirs is not None:
            self.agreement.increment(int(mine == theirs), 1)
