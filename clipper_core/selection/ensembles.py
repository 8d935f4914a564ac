"""Built-in ensemble policies: every query goes to every arm and the answers are combined
(Exp4's learned weights, or a plain average / majority vote). With ``task="classification"``
the answer is the output with the most weight behind it (confidence: that weight's share);
with ``task="regression"`` it is the weighted mean (confidence: the answering weight's share,
reduced by the answers' spread relative to ``scale``). Arms that miss the SLO are left out:
the answer is made of what arrived in time. See ``docs/selection.md``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import orjson

from clipper_core.hookspecs import hookimpl
from clipper_core.selection.api import REWARD_PARAMETERS, SelectionPolicy, State, as_number


class EnsemblePolicy(SelectionPolicy):
    """Query every arm; average (regression) or majority vote (classification), equal weights."""

    name = "ensemble"
    learns = False

    def select(self, state: State | None, arms: Sequence[str],
               rng: random.Random) -> Sequence[str]:
        return arms

    def weights(self, state: State, arms: Sequence[str]) -> list[float]:
        return [1.0] * len(arms)

    def combine(self, state: State, selected: Sequence[str],
                outputs: Mapping[str, bytes]) -> tuple[bytes, float]:
        weights = self.weights(state, list(outputs))
        everyone = sum(self.weights(state, selected)) or 1.0
        if self.params["task"] == "regression":
            return _weighted_mean(outputs, weights, everyone, float(self.params["scale"]))
        return _weighted_vote(outputs, weights, everyone)


class Exp4Policy(EnsemblePolicy):
    """Exp4 (Auer et al. 2002) over the arms as experts: weights ``exp(-eta * loss)``, where
    an arm's loss (1 - reward) is summed over feedback with a ``discount`` per step, so weights
    follow a model that changes and stay balanced enough for independent errors to cancel."""

    name = "exp4"
    learns = True
    parameters = {**REWARD_PARAMETERS, "eta": 0.02, "discount": 0.99}

    def validate(self) -> None:
        self._positive("eta")
        self._positive("discount", at_most_one=True)

    def weights(self, state: State, arms: Sequence[str]) -> list[float]:
        eta = self.params["eta"]
        losses = [self.arm_stats(state, arm, {"loss": 0.0})["loss"] for arm in arms]
        low = min(losses, default=0.0)
        return [math.exp(-eta * (loss - low)) for loss in losses]

    def observe(self, state: State, outputs: Mapping[str, bytes], label: float,
                rng: random.Random) -> None:
        discount = self.params["discount"]
        for arm, output in outputs.items():
            stats = self.arm_stats(state, arm, {"loss": 0.0})
            stats["loss"] = discount * stats["loss"] + 1.0 - self.reward(output, label)


def _weighted_vote(outputs: Mapping[str, bytes], weights: list[float],
                   everyone: float) -> tuple[bytes, float]:
    tally: dict[object, float] = {}
    first: dict[object, bytes] = {}
    for (_, output), weight in zip(outputs.items(), weights, strict=True):
        number = as_number(output)
        key = output if number is None else number
        tally[key] = tally.get(key, 0.0) + weight
        first.setdefault(key, output)
    winner = max(tally, key=tally.__getitem__)  # ties: the first arm's answer (dicts keep order)
    return first[winner], min(1.0, tally[winner] / everyone)


def _weighted_mean(outputs: Mapping[str, bytes], weights: list[float], everyone: float,
                   scale: float) -> tuple[bytes, float]:
    pairs = [(number, weight) for output, weight in zip(outputs.values(), weights, strict=True)
             if (number := as_number(output)) is not None]
    if not pairs:
        return next(iter(outputs.values())), 0.0
    total = sum(weight for _, weight in pairs) or 1.0
    mean = sum(number * weight for number, weight in pairs) / total
    spread = math.sqrt(sum(weight * (number - mean) ** 2 for number, weight in pairs) / total)
    confidence = min(1.0, total / everyone) * max(0.0, 1.0 - spread / scale)
    return orjson.dumps(mean), confidence


@hookimpl
def clipper_register_selection_policies() -> list[type[SelectionPolicy]]:
    return [EnsemblePolicy, Exp4Policy]
