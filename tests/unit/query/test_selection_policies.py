"""The built-in selection policies on simulated streams with delayed feedback (issue 10)."""

from __future__ import annotations

import random
from collections import deque

import pytest

from clipper_core import plugins
from clipper_core.exceptions import ValidationError
from clipper_core.selection.api import SelectionPolicy, split_parameters
from clipper_core.selection.bandits import (
    EpsilonGreedyPolicy,
    Exp3Policy,
    ThompsonSamplingPolicy,
    UCB1Policy,
)
from clipper_core.selection.default import DefaultPolicy
from clipper_core.selection.ensembles import EnsemblePolicy, Exp4Policy
from clipper_core.testing.selection import SelectionPolicyConformance, simulate

ARMS = ["m60:1", "m75:1", "m90:1"]
ACCURACY = {"m60:1": 0.6, "m75:1": 0.75, "m90:1": 0.9}


@pytest.mark.parametrize("policy", [Exp3Policy(), ThompsonSamplingPolicy()])
def test_bandits_send_the_last_1000_queries_to_the_best_model(policy: SelectionPolicy) -> None:
    result = simulate(policy, ACCURACY, queries=6000, delay=50, seed=7)
    last = result.chosen[-1000:]
    assert last.count("m90:1") > 800, f"{policy.name}: {last.count('m90:1')} of 1000"


def test_exp4_beats_the_best_single_model_with_independent_errors() -> None:
    result = simulate(Exp4Policy(), ACCURACY, queries=6000, delay=50, seed=11, classes=10)
    ensemble = sum(result.correct[-4000:]) / 4000
    best = sum(result.arm_correct["m90:1"][-4000:]) / 4000
    assert ensemble > best + 0.015, (ensemble, best)


def test_plain_ensemble_majority_vote_and_average() -> None:
    vote = EnsemblePolicy()
    assert vote.select({}, ARMS, random.Random()) == ARMS
    answer, confidence = vote.combine({}, ARMS, {"m60:1": b"1", "m75:1": b"1.0",
                                                 "m90:1": b'"cat"'})
    assert answer == b"1" and confidence == pytest.approx(2 / 3)
    mean = EnsemblePolicy(task="regression", scale=10.0)
    answer, confidence = mean.combine({}, ARMS, {"m60:1": b"2", "m75:1": b"4"})
    assert answer == b"3.0"
    assert confidence == pytest.approx(2 / 3 * (1 - 1 / 10))  # one arm missed the SLO


def test_unknown_and_bad_parameters_are_refused_with_what_is_accepted() -> None:
    with pytest.raises(ValidationError, match=r"has no parameter alpha; it accepts: .*gamma"):
        Exp3Policy(alpha=1)
    with pytest.raises(ValidationError, match=r"gamma must be in \(0, 1\]"):
        Exp3Policy(gamma=2)
    with pytest.raises(ValidationError, match="task must be one of"):
        Exp4Policy(task="ranking")
    with pytest.raises(ValidationError, match="per_user must be true or false"):
        split_parameters({"per_user": "yes"})


def test_every_builtin_is_registered_through_the_hook() -> None:
    registry = plugins.selection_policies(plugins.get_plugin_manager(load_entrypoints=False))
    assert {"default", "exp3", "exp4", "epsilon_greedy", "ucb1", "thompson",
            "ensemble"} <= set(registry.names())


class TestExp3(SelectionPolicyConformance):
    policy_class = Exp3Policy


class TestExp4(SelectionPolicyConformance):
    policy_class = Exp4Policy


class TestThompson(SelectionPolicyConformance):
    policy_class = ThompsonSamplingPolicy


class TestEpsilonGreedy(SelectionPolicyConformance):
    policy_class = EpsilonGreedyPolicy


class TestUCB1(SelectionPolicyConformance):
    policy_class = UCB1Policy


class TestEnsemble(SelectionPolicyConformance):
    policy_class = EnsemblePolicy


class TestDefault(SelectionPolicyConformance):
    policy_class = DefaultPolicy


def test_feedback_arrives_late_in_the_simulation() -> None:
    """The simulation really delays feedback: nothing is learned before ``delay`` queries."""
    seen: deque[int] = deque()

    class Recording(ThompsonSamplingPolicy):
        def observe(self, state, outputs, label, rng):  # type: ignore[no-untyped-def]
            seen.append(len(seen))
            super().observe(state, outputs, label, rng)

    result = simulate(Recording(), ACCURACY, queries=100, delay=30, seed=1)
    assert len(seen) == 70 and len(result.chosen) == 100
