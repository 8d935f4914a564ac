"""Queries of an application whose policy chooses per query (bandits, ensembles).

:class:`Selector` asks the policy which arms to query for each input, submits the inputs to
those arms' version queues, and :class:`Gather` combines the arms' answers into one answer
per input, as soon as every chosen arm answered or, at the SLO, from those that did
(straggler mitigation). :meth:`Selector.feedback` evaluates the feedback arms on a
``/update``'s input and lets the policy learn. Applications with the default policy never come
here.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from time import monotonic
from typing import TYPE_CHECKING, NamedTuple

import orjson

from clipper_core.batching.scheduler import NO_MODELS, Scheduler, VersionQueue
from clipper_core.metrics import Counter, MetricsRegistry, RatioCounter
from clipper_core.selection.api import SelectionPolicy, State
from clipper_core.selection.states import PolicyStates

if TYPE_CHECKING:
    from clipper_core.frontend.query import Pending

class Selector:
    """One application's policy, its learned states and the per-query work it asks for."""

    def __init__(self, policy: SelectionPolicy, states: PolicyStates, scheduler: Scheduler,
                 loop: asyncio.AbstractEventLoop, metrics: MetricsRegistry, *, per_user: bool,
                 seed: int | None) -> None:
        self.metrics = metrics
        self._arm_metrics: dict[str, ArmMetrics] = {}
        self.policy = policy
        self.states = states
        self.scheduler = scheduler
        self.loop = loop
        self.per_user = per_user
        self.rng = random.Random(seed)

    def arm_metrics(self, arm: str) -> ArmMetrics:
        """``app:<app>:arm:<model>:<version>:`` num_queries, num_feedback, mean_reward."""
        found = self._arm_metrics.get(arm)
        if found is None:
            prefix = f"app:{self.states.app_name}:arm:{arm}:"
            found = self._arm_metrics[arm] = ArmMetrics(
                self.metrics.counter(prefix + "num_queries"),
                self.metrics.counter(prefix + "num_feedback"),
                self.metrics.ratio(prefix + "mean_reward"))
        return found

    def key(self, uid: int) -> str:
        return str(uid) if self.per_user else ""

    def predict(self, arms: dict[str, VersionQueue], inputs: Sequence[bytes], uid: int,
                pending: Pending, now: float) -> None:
        """Choose arms for each input, submit them, and let a :class:`Gather` answer."""
        n = len(inputs)
        if not arms:
            for index in range(n):
                pending.resolve(index, None, NO_MODELS)
            return
        policy, rng = self.policy, self.rng
        state = self.states.get(self.key(uid))
        names = list(arms)
        chosen = [policy.select(state, names, rng) for _ in range(n)]
        gather = pending.gather = Gather(pending, policy, state, chosen)
        by_arm: dict[str, list[int]] = {}
        for index, selected in enumerate(chosen):
            for arm in selected:
                by_arm.setdefault(arm, []).append(index)
        scheduler = self.scheduler
        for arm, indices in by_arm.items():
            queue = arms[arm]
            self.arm_metrics(arm).queries.count += len(indices)
            waiter = ArmWaiter(gather, arm, indices)
            chosen = [inputs[i] for i in indices]
            if not scheduler.has_room(queue, chosen):
                for i in range(len(indices)):
                    waiter.resolve(i, None, f"The queue of model {arm} is full")
                continue
            scheduler.submit_request(queue, chosen, pending.deadline, now, waiter)

    def feedback(self, arms: dict[str, VersionQueue], uid: int, data: bytes, label: float,
                 slo_s: float) -> None:
        """Evaluate the feedback arms on ``data`` and let the policy learn from ``label``."""
        if not self.policy.learns or not arms:
            return
        key = self.key(uid)
        state = self.states.get(key)
        wanted = [arm for arm in self.policy.feedback_arms(state, list(arms)) if arm in arms]
        if not wanted:
            return
        learn = Learn(self, key, wanted, label)
        now = monotonic()
        learn.timer = self.loop.call_at(now + slo_s, learn.finish)
        for index, arm in enumerate(wanted):
            queue = arms[arm]
            if self.scheduler.has_room(queue, [data]):
                self.scheduler.submit_request(queue, [data], now + slo_s, now,
                                              _Slot(learn, index))
            else:
                learn.resolve(index, None, "queue full")


class ArmMetrics(NamedTuple):
    """Per-arm metrics of an application with a per-query policy."""

    queries: Counter
    feedback: Counter
    reward: RatioCounter


class Gather:
    """The answers of the arms chosen for each input of one request."""

    __slots__ = ("chosen", "outputs", "pending", "policy", "state", "waiting")

    def __init__(self, pending: Pending, policy: SelectionPolicy, state: State,
                 chosen: list[Sequence[str]]) -> None:
        self.pending = pending
        self.policy = policy
        self.state = state
        self.chosen = chosen
        self.outputs: list[dict[str, bytes]] = [{} for _ in chosen]
        self.waiting = [len(selected) for selected in chosen]

    def answer(self, index: int, arm: str, fragment: bytes | None,
               explanation: str | None) -> None:
        if fragment is not None:
            self.outputs[index][arm] = fragment
        self.waiting[index] -= 1
        if self.waiting[index] == 0 and not self.combine(index):
            self.pending.resolve(index, None, explanation or NO_MODELS)

    def combine(self, index: int) -> bool:
        """Answer input ``index`` from what arrived; False if nothing did."""
        outputs = self.outputs[index]
        if not outputs:
            return False
        fragment, confidence = self.policy.combine(self.state, self.chosen[index], outputs)
        self.pending.resolve_selected(index, fragment, confidence, list(outputs))
        return True


class ArmWaiter:
    """What the scheduler resolves for one arm's share of a request."""

    __slots__ = ("arm", "gather", "indices")

    def __init__(self, gather: Gather, arm: str, indices: list[int]) -> None:
        self.gather = gather
        self.arm = arm
        self.indices = indices

    def resolve(self, index: int, fragment: bytes | None, explanation: str | None) -> None:
        self.gather.answer(self.indices[index], self.arm, fragment, explanation)


class Learn:
    """One feedback: the feedback arms' outputs on its input, then :meth:`observe`."""

    def __init__(self, selector: Selector, key: str, arms: list[str], label: float) -> None:
        self.selector = selector
        self.key = key
        self.arms = arms
        self.label = label
        self.outputs: dict[str, bytes] = {}
        self.waiting = len(arms)
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def resolve(self, index: int, fragment: bytes | None, explanation: str | None) -> None:
        if fragment is not None:
            self.outputs[self.arms[index]] = fragment
        self.waiting -= 1
        if self.waiting == 0:
            self.finish()

    def finish(self) -> None:
        """Learn from the outputs that arrived (at the latest when the SLO runs out)."""
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        if self.outputs:
            selector = self.selector
            state = selector.states.get(self.key)  # may have been refreshed from the store
            selector.policy.observe(state, self.outputs, self.label, selector.rng)
            selector.states.changed(self.key)
            for arm, output in self.outputs.items():
                metrics = selector.arm_metrics(arm)
                metrics.feedback.count += 1
                metrics.reward.increment(selector.policy.reward(output, self.label), 1)


class _Slot:
    """Routes the scheduler's answer for one feedback arm to its :class:`Learn`."""

    __slots__ = ("index", "learn")

    def __init__(self, learn: Learn, index: int) -> None:
        self.learn = learn
        self.index = index

    def resolve(self, _: int, fragment: bytes | None, explanation: str | None) -> None:
        self.learn.resolve(self.index, fragment, explanation)


def versions_json(arms: Sequence[str]) -> bytes:
    """The ``model_versions`` value of a prediction object."""
    return orjson.dumps(list(arms))
