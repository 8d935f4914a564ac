"""The deployer conformance suite: the tests every deployer plugin passes.

A plugin subclasses :class:`DeployerConformance` in a test module (the class name must start
with ``Test``), sets a few class attributes and provides a few fixtures; it inherits the tests::

    class TestXGBoostConformance(DeployerConformance):
        deployer_class = XGBoostDeployer
        input_type = "doubles"
        model_argument = "xgb_model"            # the deploy function's model parameter
        expected_model_hint = "xgboost.Booster"  # what the error for a wrong object names

        @pytest.fixture
        def model(self): ...                     # a small real model
        @pytest.fixture
        def func(self): ...                      # func(model, inputs) -> list of outputs
        @pytest.fixture
        def inputs(self): ...                    # a few inputs, as a client sends them
        @pytest.fixture
        def expected_outputs(self, model, inputs): ...  # computed by calling the model directly
        @pytest.fixture
        def deploy_function(self): return deploy_xgboost_model

:class:`DeployerEndToEnd` adds a test that starts a real cluster on the embedded default
(local processes, free ports, a temporary cluster directory), deploys through the plugin's
deploy function and queries over REST. Subclass it instead of :class:`DeployerConformance` to
run both.

Inputs are given as a client sends them: a list of numbers for ``integers``/``floats``/
``doubles``, ``str`` for ``strings``, ``bytes`` for ``bytes``. The suite turns them into what a
replica receives (spec §4.5) with the runtime's own decoder. Outputs are compared after the
runtime's ``str()`` conversion and the query frontend's JSON-or-string rule, numbers with a
relative tolerance of :attr:`DeployerConformance.rel_tol`.
"""

from __future__ import annotations

import base64
import inspect
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import requests
from packaging.requirements import InvalidRequirement, Requirement

from clipper_core.deployers.api import Bundle, Deployer, write_bundle
from clipper_core.exceptions import DeployError, PluginError
from clipper_core.plugins import deployers, get_plugin_manager, list_plugins
from clipper_core.runtime.codec import decode_inputs, encode_outputs
from clipper_core.testing.servers import free_port
from clipper_core.types import InputType

__all__ = [
    "DeployerConformance",
    "DeployerEndToEnd",
    "LocalCluster",
    "assert_outputs_match",
    "load_counting",
    "parse_output",
    "replica_batch",
    "rest_input",
]

#: What a replica does with a bundle, run in a fresh interpreter by the conformance suite.
_FRESH_PROCESS_SCRIPT = """
import json, pickle, sys
from clipper_core.runtime import encode_outputs, load_predictor

_, predict = load_predictor(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    batch = pickle.load(f)
outputs = encode_outputs(predict(batch), len(batch))
with open(sys.argv[3], "w") as f:
    json.dump([o.decode() for o in outputs], f)
"""


# -------------------------------------------------------------------------------------------
# Helpers (also useful in a plugin's own tests)
# -------------------------------------------------------------------------------------------


def _input_bytes(itype: InputType, value: Any) -> bytes:
    if itype is InputType.STRINGS:
        return value.encode() if isinstance(value, str) else bytes(value)
    if itype is InputType.BYTES:
        return bytes(value)
    return np.asarray(value, dtype=itype.numpy_dtype).tobytes()


def replica_batch(input_type: str | InputType, inputs: Sequence[Any]) -> np.ndarray:
    """The batch a replica's predict function receives for ``inputs`` (spec §4.5)."""
    itype = InputType.parse(input_type)
    raw = [_input_bytes(itype, value) for value in inputs]
    return decode_inputs(itype, [len(r) for r in raw], b"".join(raw))


def rest_input(input_type: str | InputType, value: Any) -> Any:
    """``value`` as the JSON a client posts: floats written as floats, bytes in base64."""
    itype = InputType.parse(input_type)
    if itype is InputType.BYTES:
        return base64.b64encode(bytes(value)).decode()
    if itype is InputType.STRINGS:
        return value
    if itype is InputType.INTEGERS:
        return [int(v) for v in value]
    return [float(v) for v in value]


def parse_output(text: str) -> Any:
    """The query frontend's rule: an output that parses as JSON is returned as JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def _close(actual: Any, expected: Any, rel_tol: float) -> bool:
    actual, expected = _plain(actual), _plain(expected)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual == expected
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(actual, expected, rel_tol=rel_tol, abs_tol=rel_tol)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(
            _close(a, e, rel_tol) for a, e in zip(actual, expected, strict=True))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(
            _close(actual[k], expected[k], rel_tol) for k in expected)
    return actual == expected


def assert_outputs_match(actual: Sequence[Any], expected: Sequence[Any],
                         rel_tol: float = 1e-5) -> None:
    """Each actual output (a string, or JSON from REST) equals the expected value.

    ``expected`` values may be strings (parsed with :func:`parse_output`, as the frontend
    does), numbers, lists, or numpy arrays; numbers compare with ``rel_tol``.
    """
    assert len(actual) == len(expected), (
        f"expected {len(expected)} outputs, got {len(actual)}: {actual!r}")
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        a = parse_output(a) if isinstance(a, str) else a
        e = parse_output(e) if isinstance(e, str) else e
        assert _close(a, e, rel_tol), f"output {i}: got {a!r}, expected {e!r}"


def load_counting(func: Callable[..., Any], log_path: str | Path) -> Callable[..., Any]:
    """Wrap ``func`` so each call appends ``<pid> <n>`` to ``log_path``.

    ``n`` counts the calls made with the same model object (the argument just before the
    inputs). A replica that loads its model once shows ``1, 2, 3...`` under one pid; one that
    reloads per query shows ``1`` every time.
    """
    path = str(log_path)
    by_id: dict[int, int] = {}  # for objects that take no attributes

    def counted(*args: Any) -> Any:
        target = args[-2]
        try:
            n = getattr(target, "_clipper_conformance_calls", 0) + 1
            target._clipper_conformance_calls = n
        except (AttributeError, TypeError):
            n = by_id[id(target)] = by_id.get(id(target), 0) + 1
        with open(path, "a") as log:
            log.write(f"{os.getpid()} {n}\n")
        return func(*args)

    return counted


def _function_of_arity(count: int) -> Callable[..., list[str]]:
    """A function whose signature takes exactly ``count`` positional arguments."""

    def bad(*args: Any) -> list[str]:
        return []

    bad.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(f"arg{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(count)])
    return bad


class _NoCluster:
    """A stand-in connection: deploy functions must fail validation before they touch it."""

    def __getattr__(self, name: str) -> Any:
        msg = (f"The deploy function used clipper_conn.{name} before validating its arguments; "
               "validate (write the bundle) before talking to the cluster")
        raise AssertionError(msg)


# -------------------------------------------------------------------------------------------
# The suite
# -------------------------------------------------------------------------------------------


class DeployerRegistration:
    """Inherited tests that a deployer plugin registers like the built-ins: every deployer,
    also one whose replicas are not Python (the R deployer), passes these."""

    #: The Deployer subclass under test.
    deployer_class: ClassVar[type[Deployer]]

    # -- registration -------------------------------------------------------------------
    def test_registered_through_entry_point(self) -> None:
        pm = get_plugin_manager()
        registry = deployers(pm)
        name = self.deployer_class.name
        assert registry.get(name) is self.deployer_class
        provider = registry.providers[name]
        assert provider == f"deployer-{name}", (
            f"the plugin that registers {name!r} is {provider!r}; register it under the "
            f"'clipper' entry-point group as deployer-{name}")
        rows = {row["name"]: row for row in list_plugins(pm)}
        assert f"deployer {name}" in rows[provider]["provides"]
        assert "built-in" not in rows[provider]["distribution"]
        group = {ep.name for ep in metadata.entry_points(group="clipper")}
        assert provider in group

    def test_blocked_by_clipper_disable_plugins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        name = self.deployer_class.name
        monkeypatch.setenv("CLIPPER_DISABLE_PLUGINS", f"deployer-{name}")
        with pytest.raises(PluginError, match=f"No deployer named '{name}'"):
            deployers(get_plugin_manager()).get(name)


class DeployerConformance(DeployerRegistration):
    """Inherited tests for a :class:`~clipper_core.deployers.api.Deployer` plugin."""
    #: Input type of :meth:`inputs` (``doubles``, ``strings``...).
    input_type: ClassVar[str]
    #: Name of the model parameter of the deploy function (``pytorch_model``).
    model_argument: ClassVar[str]
    #: Text the DeployError for a wrong model object must contain (the kind expected).
    expected_model_hint: ClassVar[str]
    #: Relative tolerance of numeric comparisons.
    rel_tol: ClassVar[float] = 1e-5
    #: Seconds a fresh process gets to import the framework, load and predict.
    fresh_process_timeout_s: ClassVar[float] = 180.0

    # -- what a plugin provides ---------------------------------------------------------
    @pytest.fixture
    def model(self) -> Any:
        """A small real model of the framework."""
        raise NotImplementedError("provide a 'model' fixture: a small real model")

    @pytest.fixture
    def func(self) -> Callable[..., Any]:
        """The prediction function, called as the deployer documents (``func(model, inputs)``)."""
        raise NotImplementedError("provide a 'func' fixture: the prediction function")

    @pytest.fixture
    def inputs(self) -> list[Any]:
        """At least two inputs, as a client sends them."""
        raise NotImplementedError("provide an 'inputs' fixture: a list of sample inputs")

    @pytest.fixture
    def expected_outputs(self, model: Any, inputs: list[Any]) -> list[Any]:
        """One expected output per input, computed by calling the model directly."""
        raise NotImplementedError("provide 'expected_outputs': the model called directly")

    @pytest.fixture
    def deploy_function(self) -> Callable[..., None]:
        """The seeds' deploy function of the plugin (``deploy_pytorch_model``)."""
        raise NotImplementedError("provide 'deploy_function': the plugin's deploy function")

    @pytest.fixture
    def deploy_kwargs(self, model: Any) -> dict[str, Any]:
        """Keyword arguments of the deploy function besides name, version, input type, func."""
        return {self.model_argument: model}

    @pytest.fixture
    def bad_model(self) -> Any:
        """An object of the wrong kind for this deployer."""
        return object()

    @pytest.fixture
    def deployer(self) -> Deployer:
        return self.deployer_class()

    def test_declares_its_needs(self, deployer: Deployer) -> None:
        assert deployer.func_extra_args >= 1, "a framework deployer passes the model to func"
        assert deployer.image_requirements, "list the pip requirements a Docker image needs"
        for requirement in deployer.image_requirements:
            try:
                Requirement(requirement)
            except InvalidRequirement as exc:
                pytest.fail(f"image_requirements: {requirement!r} is not a pip requirement: {exc}")

    # -- the bundle ---------------------------------------------------------------------
    def _write(self, deployer: Deployer, directory: Path, func: Any, model: Any) -> Bundle:
        return write_bundle(deployer, directory, self.input_type, func, model)

    def test_bundle_round_trip(self, tmp_path: Path, deployer: Deployer, model: Any,
                               func: Any, inputs: list[Any],
                               expected_outputs: list[Any]) -> None:
        assert len(inputs) >= 2, "give at least two inputs so batches are tested"
        assert len(expected_outputs) == len(inputs)
        self._write(deployer, tmp_path / "bundle", func, model)
        bundle = Bundle.read(tmp_path / "bundle")
        assert bundle.deployer == self.deployer_class.name
        assert bundle.input_type is InputType.parse(self.input_type)
        predict = self.deployer_class().load(bundle)
        batch = replica_batch(self.input_type, inputs)
        outputs = [o.decode() for o in encode_outputs(predict(batch), len(inputs))]
        assert_outputs_match(outputs, expected_outputs, self.rel_tol)
        single = replica_batch(self.input_type, inputs[-1:])
        last = [o.decode() for o in encode_outputs(predict(single), 1)]
        assert_outputs_match(last, expected_outputs[-1:], self.rel_tol)

    def test_loaded_model_does_not_need_the_bundle(
            self, tmp_path: Path, deployer: Deployer, model: Any, func: Any,
            inputs: list[Any], expected_outputs: list[Any]) -> None:
        """load() reads the bundle once; predicting never goes back to it."""
        self._write(deployer, tmp_path / "bundle", func, model)
        predict = self.deployer_class().load(Bundle.read(tmp_path / "bundle"))
        shutil.rmtree(tmp_path / "bundle")
        for _ in range(2):
            batch = replica_batch(self.input_type, inputs)
            outputs = [o.decode() for o in encode_outputs(predict(batch), len(inputs))]
            assert_outputs_match(outputs, expected_outputs, self.rel_tol)

    def test_bundle_loads_in_a_fresh_process(
            self, tmp_path: Path, deployer: Deployer, model: Any, func: Any,
            inputs: list[Any], expected_outputs: list[Any]) -> None:
        """A new interpreter loads the bundle the way a replica does: nothing leaks from here."""
        self._write(deployer, tmp_path / "bundle", func, model)
        batch_file, out_file = tmp_path / "batch.pkl", tmp_path / "outputs.json"
        batch_file.write_bytes(pickle.dumps(replica_batch(self.input_type, inputs)))
        proc = subprocess.run(
            [sys.executable, "-c", _FRESH_PROCESS_SCRIPT, str(tmp_path / "bundle"),
             str(batch_file), str(out_file)],
            cwd=tmp_path, capture_output=True, text=True, timeout=self.fresh_process_timeout_s,
        )
        assert proc.returncode == 0, f"loading in a fresh process failed:\n{proc.stderr}"
        assert_outputs_match(json.loads(out_file.read_text()), expected_outputs, self.rel_tol)

    # -- failing at deploy time ---------------------------------------------------------
    def _deploy_offline(self, deploy_function: Callable[..., None], func: Any,
                        kwargs: dict[str, Any]) -> None:
        deploy_function(_NoCluster(), name="conformance", version="1",
                        input_type=self.input_type, func=func, **kwargs)

    def test_wrong_model_object_fails_at_deploy_time(
            self, deploy_function: Callable[..., None], deploy_kwargs: dict[str, Any],
            func: Any, bad_model: Any) -> None:
        kwargs = {**deploy_kwargs, self.model_argument: bad_model}
        with pytest.raises(DeployError) as info:
            self._deploy_offline(deploy_function, func, kwargs)
        message = str(info.value)
        assert self.expected_model_hint in message, (
            f"the error should say what was expected ({self.expected_model_hint!r}): {message}")
        assert type(bad_model).__name__ in message, (
            f"the error should name what was given ({type(bad_model).__name__}): {message}")

    def test_wrong_function_signature_fails_at_deploy_time(
            self, deploy_function: Callable[..., None], deploy_kwargs: dict[str, Any],
            deployer: Deployer) -> None:
        expected = deployer.func_extra_args + 1
        for count in (expected - 1, expected + 1):
            bad = _function_of_arity(count)
            with pytest.raises(DeployError) as info:
                self._deploy_offline(deploy_function, bad, deploy_kwargs)
            assert deployer.describe_call() in str(info.value)
        with pytest.raises(DeployError, match="callable"):
            self._deploy_offline(deploy_function, 42, deploy_kwargs)


# -------------------------------------------------------------------------------------------
# End to end on the embedded default
# -------------------------------------------------------------------------------------------


class LocalCluster:
    """A cluster on the embedded default, on free ports, in a temporary directory."""

    def __init__(self, cluster_dir: Path, name: str) -> None:
        from clipper_admin import ClipperConnection, LocalContainerManager

        self.manager = LocalContainerManager(
            cluster_name=name, clipper_query_port=free_port(),
            clipper_management_port=free_port(), clipper_rpc_port=free_port(),
            cluster_dir=cluster_dir,
        )
        self.conn = ClipperConnection(self.manager)
        self.session = requests.Session()

    def start(self) -> None:
        self.conn.start_clipper(cache_size=0)

    def stop(self) -> None:
        self.session.close()
        self.conn.stop_all()

    def logs(self) -> str:
        logs = sorted((self.manager.cluster_dir / "logs").glob("*.log"))
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)

    def predict(self, app: str, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        url = f"http://{self.conn.cm.get_query_addr()}/{app}/predict"
        response = self.session.post(url, json=body, timeout=timeout)
        assert response.status_code == 200, f"{response.status_code}: {response.text}"
        return response.json()

    def wait_for_model(self, app: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Query until the answer is a prediction, not the default output."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.predict(app, body)
            if not answer.get("default"):
                return answer
            if time.monotonic() > deadline:
                msg = (f"{app} answered only with the default output for {timeout:g} s "
                       f"(last: {answer}). Logs:\n{self.logs()}")
                raise AssertionError(msg)
            time.sleep(0.5)


class DeployerEndToEnd(DeployerConformance):
    """:class:`DeployerConformance` plus a deployment queried over REST on the embedded default."""

    #: Seconds a replica gets to start (import the framework, load the model, connect).
    replica_start_timeout_s: ClassVar[float] = 180.0
    #: Latency objective of the test application (microseconds): generous, CI machines are slow.
    slo_micros: ClassVar[int] = 10_000_000

    @pytest.fixture(scope="class")
    @classmethod
    def cluster(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
        """A running cluster shared by the end-to-end tests of the class."""
        name = f"conformance-{cls.deployer_class.name}"
        cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), name)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()

    def test_deploy_and_query_over_rest(
            self, cluster: LocalCluster, tmp_path: Path, deploy_function: Callable[..., None],
            deploy_kwargs: dict[str, Any], func: Any, inputs: list[Any],
            expected_outputs: list[Any]) -> None:
        app = f"{self.deployer_class.name}-conformance"
        calls = tmp_path / "calls.log"
        cluster.conn.register_application(app, self.input_type, "default-output",
                                          self.slo_micros)
        deploy_function(cluster.conn, name=app, version="1", input_type=self.input_type,
                        func=load_counting(func, calls), **deploy_kwargs)
        cluster.conn.link_model_to_app(app, app)

        singles = [rest_input(self.input_type, x) for x in inputs]
        first = cluster.wait_for_model(app, {"input": singles[0]}, self.replica_start_timeout_s)
        answers = [first] + [cluster.predict(app, {"input": x}) for x in singles[1:]]
        assert not any(a["default"] for a in answers), answers
        assert_outputs_match([a["output"] for a in answers], expected_outputs, self.rel_tol)

        batch = cluster.predict(app, {"input_batch": singles})["batch_predictions"]
        assert not any(a["default"] for a in batch), batch
        assert_outputs_match([a["output"] for a in batch], expected_outputs, self.rel_tol)

        # one replica, one model load: the per-object call count only grows
        rows = [line.split() for line in calls.read_text().splitlines()]
        pids = {pid for pid, _ in rows}
        counts = [int(n) for _, n in rows]
        assert len(pids) == 1, f"one replica expected, calls came from processes {pids}"
        assert counts == list(range(1, len(counts) + 1)), (
            f"the model object changed between calls (counts {counts}): the replica must "
            "load the model once, not per query")
        assert len(counts) >= len(inputs) + 1
