"""The benchmarked models and the scenarios that query them.

The prediction functions are deployed with ``deploy_python_closure``; :func:`deployments`
registers this module with cloudpickle *by value* so that replicas need not import ``bench``.
"""

from __future__ import annotations

import base64
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs
import cloudpickle

from bench import BenchError

#: Body templates: ``{n}`` is replaced by a number of :data:`N_DIGITS` digits that differs from
#: query to query (and from run to run), so that no query is a cache hit.
N_DIGITS = 12
#: Most scenarios POST 10 doubles, the first one distinct per query.
BODY_TEMPLATE = '{"input":[{n}.5,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]}'
_rng = random.Random(15)
#: A long feature vector: 10,000 doubles (about 90 KB of JSON).
VECTOR_10K_TEMPLATE = ('{"input":[{n}.5,'
                       + ",".join(f"{_rng.random():.6f}" for _ in range(9_999)) + "]}")
#: An image-sized payload: 150 KiB of random bytes, base64 in JSON as the REST API carries
#: bytes. The 12 digits of ``{n}`` are 9 more bytes in front (a multiple of 4 characters).
BYTES_150K_TEMPLATE = ('{"input":"{n}'
                       + base64.b64encode(_rng.randbytes(150 * 1024)).decode() + '"}')


def noop(xs: Any) -> list[str]:
    """Answers "1.0" for every input: the cost of the query path itself."""
    return ["1.0"] * len(xs)


def feature_sum(xs: Any) -> list[str]:
    """The seeds' quickstart model."""
    return [str(sum(x)) for x in xs]


def vector_sum(xs: Any) -> list[str]:
    """The sum of a long vector, vectorised."""
    return [str(float(x.sum())) for x in xs]


def byte_count(xs: Any) -> list[str]:
    """The length of each ``bytes`` input: the model does next to nothing with the payload."""
    return [str(len(x)) for x in xs]


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
    input_type: str = "doubles"


@attrs.frozen
class Scenario:
    """What one set of measurements queries: an application, with distinct or repeated inputs.

    ``reference`` is another scenario's name, or ``"nginx"`` (which answers without reading a
    body this small) or ``"nginx-body"`` (which reads the whole body before it answers, for the
    large inputs). ``body`` is the request's template (see :data:`N_DIGITS`), ``path`` where it
    is POSTed (``/<app>/predict`` unless given: a peer's own route). A scenario with ``traced``
    runs on another cluster that traces that share of its requests (:mod:`bench.tracing`).
    """

    name: str
    app: str
    distinct: bool = True
    reference: str = "nginx"
    body: str = BODY_TEMPLATE
    path: str = attrs.field(default=attrs.Factory(lambda s: f"/{s.app}/predict",
                                                  takes_self=True))
    traced: float = 0.0

    @property
    def body_bytes(self) -> int:
        """The size of one request body."""
        return len(self.body) - len("{n}") + N_DIGITS


def deployments() -> list[Deployment]:
    """The applications to deploy (the MLP only when torch is importable)."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    deps = [Deployment("noop", noop, 100_000), Deployment("sum", feature_sum, 100_000),
            Deployment("batchable-b1", batchable, 20_000, batch_size=1),
            Deployment("batchable", batchable, 20_000),
            Deployment("vector-10k", vector_sum, 100_000),
            Deployment("bytes-150k", byte_count, 100_000, input_type="bytes")]
    if torch_available():
        deps.append(Deployment("mlp", make_mlp(), 100_000))
    return deps


def scenarios(apps: list[str], only: list[str] | None = None) -> list[Scenario]:
    """Scenarios of the deployed ``apps`` in measurement order (references first).

    ``only`` keeps the named scenarios (or those of the named applications) and their references.
    """
    all_ = [Scenario("noop", "noop"), Scenario("sum", "sum"),
            Scenario("sum-cached", "sum", distinct=False),
            Scenario("sum-traced", "sum", reference="sum", traced=1.0),
            Scenario("sum-traced-1pct", "sum", reference="sum", traced=0.01),
            Scenario("batchable-b1", "batchable-b1"),
            Scenario("batchable", "batchable", reference="batchable-b1"),
            Scenario("mlp", "mlp"),
            Scenario("vector-10k", "vector-10k", reference="nginx-body",
                     body=VECTOR_10K_TEMPLATE),
            Scenario("bytes-150k", "bytes-150k", reference="nginx-body",
                     body=BYTES_150K_TEMPLATE)]
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
