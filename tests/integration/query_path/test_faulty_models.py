"""Models that hang or kill their replica on one input, on real replica processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from clipper_core.deployers.api import write_bundle
from clipper_core.deployers.python import PythonDeployer
from clipper_core.runtime.server import RETIRED_EXIT_CODE

from .conftest import Cluster, wait_for

PR_SET_PDEATHSIG = 1


def hang_on_13(xs: Any) -> list[str]:
    import time

    if any(float(x[0]) == 13.0 for x in xs):
        time.sleep(3600)  # stuck: its heartbeats keep flowing
    return [str(float(x.sum())) for x in xs]


def exit_on_66(xs: Any) -> list[str]:
    import os

    if any(float(x[0]) == 66.0 for x in xs):
        os._exit(1)
    return [str(float(x.sum())) for x in xs]


def _term_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@pytest.fixture
def supervise() -> Iterator[Callable[..., Path]]:
    """Run a replica under the local backend's real supervisor; returns its exit file."""
    supervisors: list[subprocess.Popen[bytes]] = []

    def start(cluster: Cluster, name: str, func: Callable[..., Any]) -> Path:
        bundle = cluster.tmp / f"supervised-{name}"
        cloudpickle.register_pickle_by_value(sys.modules[func.__module__])
        write_bundle(PythonDeployer(), bundle, "doubles", func)
        spec = {"python": sys.executable, "log": str(cluster.tmp / f"{name}.log"),
                "exit_file": str(cluster.tmp / f"{name}.exited"),
                "env": {"CLIPPER_MODEL_NAME": name, "CLIPPER_MODEL_VERSION": "1",
                        "CLIPPER_IP": "127.0.0.1", "CLIPPER_PORT": str(cluster.frontend.rpc_port),
                        "CLIPPER_INPUT_TYPE": "doubles", "CLIPPER_MODEL_PATH": str(bundle),
                        "CLIPPER_READY_FILE": str(cluster.tmp / f"{name}.ready")}}
        spec_path = cluster.tmp / f"{name}.json"
        spec_path.write_text(json.dumps(spec))
        supervisors.append(subprocess.Popen(
            [sys.executable, "-m", "clipper_core.backends.local", "supervise", str(spec_path)],
            env=dict(os.environ), preexec_fn=_term_with_parent))
        return Path(spec["exit_file"])

    yield start
    for process in supervisors:
        process.terminate()  # the supervisor stops its replica
        process.wait(30)


def test_a_hung_replica_is_retired_and_replaced(make_cluster: Callable[..., Cluster],
                                                supervise: Callable[..., Path]) -> None:
    cluster = make_cluster(batch_timeout_s=1.0)
    cluster.add_model("hang", "1")
    cluster.add_app("hang", model="hang", slo_micros=500_000, default="none")
    exit_file = supervise(cluster, "hang", hang_on_13)
    cluster.wait_replicas("hang", "1", 1)
    assert cluster.predict("hang", {"input": [1.0, 2.0]})["output"] == 3.0

    started = time.monotonic()
    stuck = cluster.predict("hang", {"input": [13.0]})
    assert stuck["default"] is True and stuck["output"] == "none"
    assert time.monotonic() - started < 5.0  # the SLO's default, not a wait for the model
    # Its heartbeats flow, yet the replica is found hung, told so, and exits...
    wait_for(lambda: exit_file.exists() and exit_file.read_text().strip(), timeout=20,
             what="the hung replica to exit")
    assert exit_file.read_text().strip() == str(RETIRED_EXIT_CODE)
    # ...and its supervisor starts a new one, which serves the next queries.
    wait_for(lambda: not cluster.predict("hang", {"input": [2.0, 2.0]})["default"], timeout=30,
             what="a new replica to answer")


def test_an_input_that_kills_replicas_takes_down_at_most_two(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(replica_timeout_s=2.0)
    cluster.add_model("kill", "1")
    cluster.add_app("kill", model="kill", slo_micros=15_000_000, default="none")
    replicas = [cluster.start_replica("kill", "1", exit_on_66) for _ in range(3)]
    started = time.monotonic()
    poisoned = cluster.predict("kill", {"input": [66.0]})
    assert poisoned["default"] is True
    assert poisoned["default_explanation"].startswith("Model error: 2 replicas were lost")
    assert time.monotonic() - started < 15.0  # answered before its SLO ran out
    assert sorted(p.poll() is None for p in replicas) == [False, False, True]
    cluster.wait_replicas("kill", "1", 1)
    assert cluster.predict("kill", {"input": [1.0, 1.0]}) == {
        "query_id": poisoned["query_id"] + 1, "output": 2.0, "default": False}
    again = cluster.predict("kill", {"input": [66.0]})  # a client retrying it
    assert again["default_explanation"] == poisoned["default_explanation"]
    assert cluster.predict("kill", {"input": [2.0]})["output"] == 2.0  # the last one lives
