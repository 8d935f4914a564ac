"""The selection policy interface: which linked models answer a query, and how their answers
combine (Crankshaw et al., *Clipper*, NSDI'17, §5).

An application's *arms* are the models linked to it, each at the version that serves it now
(``"<model>:<version>"``, in link order, rollout fallback applied). A policy is a stateless
object; what it learns lives in a JSON-serializable ``state`` dict that the frontend keeps per
application (and per user with ``per_user``), persists in the state store and hands back to
every call:

* :meth:`SelectionPolicy.init_state` makes a fresh state;
* :meth:`SelectionPolicy.select` chooses, per query, the arms to query;
* :meth:`SelectionPolicy.combine` turns the answers that arrived (all of them, or those in
  time for the SLO) into one output and a confidence;
* :meth:`SelectionPolicy.feedback_arms` and :meth:`SelectionPolicy.observe` learn from a
  ``/update`` (the frontend asks the feedback arms for their output on the feedback's input,
  usually a cache hit, and passes them with the label).

Outputs are JSON fragments (the rendered model output: ``b"1"``, ``b'"cat"'``); a policy
returns one as its answer. A policy whose :attr:`~SelectionPolicy.routes_per_query` is False
(the default policy) is asked once per routing change, with ``state`` None, and costs the
query path nothing. See ``docs/selection.md``.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson

from clipper_core.exceptions import ValidationError

State = dict[str, Any]

#: Parameters every learning policy accepts (see :meth:`SelectionPolicy.reward`).
REWARD_PARAMETERS: Mapping[str, Any] = {"task": "classification", "scale": 1.0}
_TASKS = ("classification", "regression")


def as_number(fragment: bytes) -> float | None:
    """The number a rendered output stands for (``b"1"``, ``b'"0.5"'``), or None."""
    try:
        number = float(orjson.loads(fragment))
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class SelectionPolicy(ABC):
    """One instance per application; its ``params`` are fixed, its state is passed in."""

    #: The name an application's policy is selected by (``set_selection_policy``).
    name: ClassVar[str]
    #: The parameters this policy accepts and their defaults.
    parameters: ClassVar[Mapping[str, Any]] = REWARD_PARAMETERS
    #: False: :meth:`select` runs only when the routing changes, with ``state`` None, and the
    #: query goes to the first arm it returns (the default policy: nothing per query).
    routes_per_query: ClassVar[bool] = True
    #: False: ``/update`` is acknowledged without evaluating arms or calling :meth:`observe`.
    learns: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            accepted = ", ".join(sorted(self.parameters)) or "none"
            msg = (f"Selection policy {self.name!r} has no parameter {', '.join(unknown)}; "
                   f"it accepts: {accepted}")
            raise ValidationError(msg)
        self.params: dict[str, Any] = {**self.parameters, **params}
        task = self.params.get("task", "classification")
        if task not in _TASKS:
            msg = (f"Selection policy {self.name!r}: task must be one of {', '.join(_TASKS)}, "
                   f"not {task!r}")
            raise ValidationError(msg)
        self.validate()

    def validate(self) -> None:  # noqa: B027  (optional for policies without parameters)
        """Check :attr:`params`; raise :class:`ValidationError` naming a wrong one."""

    def _positive(self, *names: str, at_most_one: bool = False) -> None:
        for name in names:
            value = self.params[name]
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            if not ok or (at_most_one and value > 1):
                bound = "in (0, 1]" if at_most_one else "a positive number"
                msg = f"Selection policy {self.name!r}: {name} must be {bound}, not {value!r}"
                raise ValidationError(msg)

    # -- the interface ----------------------------------------------------------------------
    def init_state(self) -> State:
        """A fresh state (JSON-serializable); arms are added to it as they appear."""
        return {}

    @abstractmethod
    def select(self, state: State | None, arms: Sequence[str],
               rng: random.Random) -> Sequence[str]:
        """The arms to query for one query (a non-empty subset of ``arms``, which is never
        empty); ``state`` is None for a policy that does not learn."""

    def combine(self, state: State, selected: Sequence[str],
                outputs: Mapping[str, bytes]) -> tuple[bytes, float]:
        """One answer and its confidence in [0, 1] from the ``outputs`` (by arm) of the
        ``selected`` arms that answered (at least one; fewer when some missed the SLO).

        The default takes the answer of the single arm selected.
        """
        return next(iter(outputs.values())), 1.0

    def feedback_arms(self, state: State, arms: Sequence[str]) -> Sequence[str]:
        """The arms whose output on a feedback's input :meth:`observe` needs (all by default)."""
        return arms

    def observe(self, state: State, outputs: Mapping[str, bytes], label: float,  # noqa: B027
                rng: random.Random) -> None:
        """Learn from one feedback: update ``state`` in place (``outputs`` by arm)."""

    # -- helpers for policies ---------------------------------------------------------------
    def reward(self, output: bytes, label: float) -> float:
        """How good ``output`` was for ``label``, in [0, 1].

        ``task="classification"``: 1 when the output is the label's number (or its text),
        else 0. ``task="regression"``: ``max(0, 1 - |output - label| / scale)``.
        """
        number = as_number(output)
        if self.params.get("task", "classification") == "classification":
            return 1.0 if number == label else 0.0
        if number is None:
            return 0.0
        return max(0.0, 1.0 - abs(number - label) / float(self.params["scale"]))

    @staticmethod
    def arm_stats(state: State, arm: str, fresh: Mapping[str, float]) -> dict[str, float]:
        """The statistics ``state`` keeps for ``arm`` (created from ``fresh`` on first use)."""
        arms = state.setdefault("arms", {})
        stats = arms.get(arm)
        if stats is None:
            stats = arms[arm] = dict(fresh)
        return stats


#: Parameters of every application's policy that the frontend, not the policy, acts on:
#: per-user state, versions in the answer body, a seed for the policy's random choices.
FRONTEND_PARAMETERS: dict[str, Any] = {"per_user": False, "versions_in_body": False,
                                       "seed": None}


def split_parameters(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(frontend parameters, policy parameters)`` of ``set_selection_policy``."""
    frontend = {**FRONTEND_PARAMETERS}
    policy = {}
    for key, value in params.items():
        if key in FRONTEND_PARAMETERS:
            frontend[key] = value
        else:
            policy[key] = value
    for key in ("per_user", "versions_in_body"):
        if type(frontend[key]) is not bool:
            raise ValidationError(f"Selection parameter {key} must be true or false, "
                                  f"not {frontend[key]!r}")
    if frontend["seed"] is not None and type(frontend["seed"]) is not int:
        raise ValidationError(f"Selection parameter seed must be an integer, "
                              f"not {frontend['seed']!r}")
    return frontend, policy
