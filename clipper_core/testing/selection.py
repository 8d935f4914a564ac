"""For authors of selection policies: a conformance suite and a stream simulator.

Subclass :class:`SelectionPolicyConformance` in your plugin's tests::

    from clipper_core.testing.selection import SelectionPolicyConformance

    class TestMyPolicy(SelectionPolicyConformance):
        policy_class = MyPolicy
        params = {"temperature": 0.5}      # optional: parameters to construct it with

and measure it on a simulated stream with :func:`simulate` (models with known accuracies,
labels that arrive ``delay`` queries late), the way the built-ins are tested.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import orjson
import pytest

from clipper_core import plugins
from clipper_core.exceptions import ValidationError
from clipper_core.selection.api import SelectionPolicy, as_number


@attrs.frozen
class Simulation:
    """What :func:`simulate` saw, one entry per query."""

    #: The first arm the policy chose.
    chosen: list[str]
    #: Whether the policy's (combined) answer was right.
    correct: list[bool]
    #: Whether each arm's own answer was right.
    arm_correct: dict[str, list[bool]]
    #: Cumulative regret: the best arm's accuracy minus the answer's correctness, summed.
    regret: list[float]


def simulate(policy: SelectionPolicy, accuracy: Mapping[str, float], *, queries: int,
             delay: int, seed: int, classes: int = 2) -> Simulation:
    """Run ``policy`` on a stream where arm ``a`` is right with probability ``accuracy[a]``
    (independently; a wrong answer is another of ``classes`` classes, uniformly) and each
    query's label comes back as feedback ``delay`` queries later."""
    rng = random.Random(seed)
    arms = list(accuracy)
    state = policy.init_state()
    backlog: deque[tuple[dict[str, bytes], float]] = deque()
    chosen: list[str] = []
    correct: list[bool] = []
    arm_correct: dict[str, list[bool]] = {arm: [] for arm in arms}
    regret: list[float] = []
    best, total = max(accuracy.values()), 0.0
    for _ in range(queries):
        label = rng.randrange(classes)
        outputs = {}
        for arm in arms:
            right = rng.random() < accuracy[arm]
            answer = label if right else rng.choice([c for c in range(classes) if c != label])
            outputs[arm] = b"%d" % answer
            arm_correct[arm].append(right)
        selected = list(policy.select(state, arms, rng))
        fragment, _ = policy.combine(state, selected, {a: outputs[a] for a in selected})
        chosen.append(selected[0])
        right = as_number(fragment) == label
        correct.append(right)
        total += best - right
        regret.append(total)
        wanted = policy.feedback_arms(state, arms)
        backlog.append(({a: outputs[a] for a in wanted}, float(label)))
        if len(backlog) > delay:
            seen, seen_label = backlog.popleft()
            policy.observe(state, seen, seen_label, rng)
    return Simulation(chosen, correct, arm_correct, regret)


class SelectionPolicyConformance:
    """What every selection policy must do; set :attr:`policy_class` (and :attr:`params`)."""

    policy_class: ClassVar[type[SelectionPolicy]]
    params: ClassVar[dict[str, Any]] = {}

    def make(self) -> SelectionPolicy:
        return self.policy_class(**self.params)

    def test_name_and_parameters(self) -> None:
        assert isinstance(self.policy_class.name, str) and self.policy_class.name
        for key in self.params:
            assert key in self.policy_class.parameters, f"{key} is not declared in parameters"
        self.policy_class()  # every parameter has a default

    def test_unknown_parameter_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="no parameter"):
            self.policy_class(no_such_parameter=1)

    def test_registered_through_the_hook(self) -> None:
        registry = plugins.selection_policies()
        assert registry.get(self.policy_class.name) is self.policy_class

    def test_select_returns_linked_arms(self) -> None:
        policy = self.make()
        rng = random.Random(0)
        state = policy.init_state() if policy.routes_per_query else None
        for arms in (["a:1"], ["a:1", "b:1"], ["a:1", "b:1", "c:2"]):
            for _ in range(20):
                selected = list(policy.select(state, arms, rng))
                assert selected, f"{policy.name} selected no arm of {arms}"
                assert set(selected) <= set(arms)
                assert len(selected) == len(set(selected)), "an arm selected twice"

    def test_state_round_trips_through_json(self) -> None:
        policy = self.make()
        if not policy.routes_per_query:
            return
        rng = random.Random(0)
        arms = ["a:1", "b:1", "c:1"]
        state = policy.init_state()
        for step in range(50):
            policy.select(state, arms, rng)
            policy.observe(state, {arm: b"%d" % ((step + i) % 2) for i, arm in enumerate(arms)},
                           float(step % 2), rng)
            state = orjson.loads(orjson.dumps(state))  # what the store gives back
        again = orjson.loads(orjson.dumps(state))
        assert again == state

    def test_combine_answers_from_the_arms_that_arrived(self) -> None:
        policy = self.make()
        if not policy.routes_per_query:
            return
        state = policy.init_state()
        arms = ["a:1", "b:1", "c:1"]
        selected = list(policy.select(state, arms, random.Random(0)))
        for arrived in ({selected[0]: b"1"}, {arm: b"0" for arm in selected}):
            fragment, confidence = policy.combine(state, selected, arrived)
            assert isinstance(fragment, bytes)
            orjson.loads(fragment)  # a JSON fragment
            assert 0.0 <= confidence <= 1.0
