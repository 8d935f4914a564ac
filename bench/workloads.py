"""The benchmarked models and the scenarios that query them.

The prediction functions are deployed with ``deploy_python_closure``; :func:`deployments`
registers this module with cloudpickle *by value* so that replicas need not import ``bench``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import attrs
import cloudpickle

from bench import BenchError

#: Every scenario POSTs 10 doubles; ``{n}`` makes the first one distinct per query.
BODY_TEMPLATE = '{"input":[{n}.5,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]}'


def noop(xs: Any) -> list[str]:
    """Answers "1.0" for every input: the cost of the query path itself."""
    return ["1.0"] * len(xs)


def feature_sum(xs: Any) -> list[str]:
    """The seeds' quickstart model."""
    return [str(sum(x)) for x in xs]


def batchable(xs: Any) -> list[str]:
    """The shape of a vectorised model: a fixed 2 ms per call plus 20 µs per input."""
    time.sleep(0.002 + 0.00002 * len(xs))
    return ["1.0"] * len(xs)


def make_mlp() -> Callable[[Any], list[str]]:
    """A small PyTorch MLP (10-64-64-1, fixed seed) on one thread."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 1)).eval()

    def mlp(xs: Any) -> list[str]:
        torch.set_num_threads(1)
        with torch.no_grad():
            out = model(torch.from_numpy(np.stack(xs)).float())
        return [str(v) for v in out[:, 0].tolist()]

    return mlp


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@attrs.frozen
class Deployment:
    """One application with its linked model, as the benchmark registers it."""

    app: str
    func: Callable[[Any], list[str]]
    slo_micros: int
    batch_size: int = -1


@attrs.frozen
class Scenario:
    """What one set of measurements queries: an application, with distinct or repeated inputs.

    ``reference`` is another scenario's name, or ``"nginx"``.
    """

    name: str
    app: str
    distinct: bool = True
    reference: str = "nginx"


def deployments() -> list[Deployment]:
    """The applications to deploy (the MLP only when torch is importable)."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    deps = [Deployment("noop", noop, 100_000), Deployment("sum", feature_sum, 100_000),
            Deployment("batchable-b1", batchable, 20_000, batch_size=1),
            Deployment("batchable", batchable, 20_000)]
    if torch_available():
        deps.append(Deployment("mlp", make_mlp(), 100_000))
    return deps


def scenarios(apps: list[str], only: list[str] | None = None) -> list[Scenario]:
    """Scenarios of the deployed ``apps`` in measurement order (references first).

    ``only`` keeps the named scenarios (or those of the named applications) and their references.
    """
    all_ = [Scenario("noop", "noop"), Scenario("sum", "sum"),
            Scenario("sum-cached", "sum", distinct=False),
            Scenario("batchable-b1", "batchable-b1"),
            Scenario("batchable", "batchable", reference="batchable-b1"),
            Scenario("mlp", "mlp")]
    all_ = [s for s in all_ if s.app in apps]
    if not only:
        return all_
    unknown = set(only) - {s.name for s in all_} - {s.app for s in all_}
    if unknown:
        raise BenchError(f"unknown scenario(s) {sorted(unknown)}; choose among "
                         f"{[s.name for s in all_]} (mlp needs torch)")
    keep = {s.name for s in all_ if s.name in only or s.app in only}
    keep |= {s.reference for s in all_ if s.name in keep}
    return [s for s in all_ if s.name in keep]
