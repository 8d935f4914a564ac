"""Built-in single-model bandit policies: each query goes to one arm, chosen to learn which
arm is best while exploiting it (Exp3, epsilon-greedy, UCB1, Thompson sampling).

Every policy here learns from every arm's output on a feedback's input (Clipper evaluates the
linked models on the feedback input, so feedback is full-information), except Exp3, which
keeps the adversarial bandit's importance-weighted update. See ``docs/selection.md``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from clipper_core.hookspecs import hookimpl
from clipper_core.selection.api import REWARD_PARAMETERS, SelectionPolicy, State

_FRESH_COUNTS = {"n": 0.0, "reward": 0.0}


class Exp3Policy(SelectionPolicy):
    """Exp3 (Auer et al. 2002): sample an arm from exponential weights mixed with uniform
    exploration ``gamma``; the feedback updates one arm, drawn as a query would draw it, by its
    importance-weighted reward."""

    name = "exp3"
    parameters = {**REWARD_PARAMETERS, "gamma": 0.1}

    def validate(self) -> None:
        self._positive("gamma", at_most_one=True)

    def probabilities(self, state: State, arms: Sequence[str]) -> list[float]:
        gamma = self.params["gamma"]
        logs = [self.arm_stats(state, arm, {"log_weight": 0.0})["log_weight"] for arm in arms]
        top = max(logs)
        weights = [math.exp(w - top) for w in logs]
        total = sum(weights)
        k = len(arms)
        return [(1 - gamma) * w / total + gamma / k for w in weights]

    def select(self, state: State | None, arms: Sequence[str],
               rng: random.Random) -> Sequence[str]:
        assert state is not None
        return rng.choices(arms, self.probabilities(state, arms))

    def observe(self, state: State, outputs: Mapping[str, bytes], label: float,
                rng: random.Random) -> None:
        arms = list(outputs)
        probs = self.probabilities(state, arms)
        index = rng.choices(range(len(arms)), probs)[0]
        arm = arms[index]
        estimate = self.reward(outputs[arm], label) / probs[index]
        self.arm_stats(state, arm, {})["log_weight"] += self.params["gamma"] * estimate / len(arms)


class EpsilonGreedyPolicy(SelectionPolicy):
    """With probability ``epsilon`` a uniformly random arm, else the arm with the best mean
    reward so far."""

    name = "epsilon_greedy"
    parameters = {**REWARD_PARAMETERS, "epsilon": 0.1}

    def validate(self) -> None:
        self._positive("epsilon", at_most_one=True)

    def select(self, state: State | None, arms: Sequence[str],
               rng: random.Random) -> Sequence[str]:
        assert state is not None
        if rng.random() < self.params["epsilon"]:
            return [rng.choice(arms)]
        return [max(arms, key=lambda arm: _mean(self.arm_stats(state, arm, _FRESH_COUNTS)))]

    def observe(self, state: State, outputs: Mapping[str, bytes], label: float,
                rng: random.Random) -> None:
        _count(self, state, outputs, label)


class UCB1Policy(SelectionPolicy):
    """UCB1 (Auer et al. 2002): the arm with the highest mean reward plus
    ``c * sqrt(2 ln N / n)``; arms never rewarded are tried first."""

    name = "ucb1"
    parameters = {**REWARD_PARAMETERS, "c": 1.0}

    def validate(self) -> None:
        self._positive("c")

    def select(self, state: State | None, arms: Sequence[str],
               rng: random.Random) -> Sequence[str]:
        assert state is not None
        stats = [self.arm_stats(state, arm, _FRESH_COUNTS) for arm in arms]
        untried = [arm for arm, s in zip(arms, stats, strict=True) if s["n"] == 0]
        if untried:
            return [rng.choice(untried)]
        log_total = math.log(sum(s["n"] for s in stats))
        c = self.params["c"]
        scores = [_mean(s) + c * math.sqrt(2 * log_total / s["n"]) for s in stats]
        return [arms[scores.index(max(scores))]]

    def observe(self, state: State, outputs: Mapping[str, bytes], label: float,
                rng: random.Random) -> None:
        _count(self, state, outputs, label)


class ThompsonSamplingPolicy(SelectionPolicy):
    """Thompson sampling: a Beta(``prior_alpha`` + reward, ``prior_beta`` + 1 - reward)
    posterior per arm; each query goes to the arm whose posterior sample is highest."""

    name = "thompson"
    parameters = {**REWARD_PARAMETERS, "prior_alpha": 1.0, "prior_beta": 1.0}

    def validate(self) -> None:
        self._positive("prior_alpha", "prior_beta")

    def select(self, state: State | None, arms: Sequence[str],
               rng: random.Random) -> Sequence[str]:
        assert state is not None
        alpha, beta = self.params["prior_alpha"], self.params["prior_beta"]
        samples = []
        for arm in arms:
            stats = self.arm_stats(state, arm, _FRESH_COUNTS)
            samples.append(rng.betavariate(alpha + stats["reward"],
                                           beta + stats["n"] - stats["reward"]))
        return [arms[samples.index(max(samples))]]

    def observe(self, state: State, outputs: Mapping[str, bytes], label: float,
                rng: random.Random) -> None:
        _count(self, state, outputs, label)


def _mean(stats: Mapping[str, float]) -> float:
    return stats["reward"] / stats["n"] if stats["n"] else 0.0


def _count(policy: SelectionPolicy, state: State, outputs: Mapping[str, bytes],
           label: float) -> None:
    for arm, output in outputs.items():
        stats = policy.arm_stats(state, arm, _FRESH_COUNTS)
        stats["n"] += 1
        stats["reward"] += policy.reward(output, label)


@hookimpl
def clipper_register_selection_policies() -> list[type[SelectionPolicy]]:
    return [Exp3Policy, EpsilonGreedyPolicy, UCB1Policy, ThompsonSamplingPolicy]
