"""The shared deployer conformance suite, end to end, for a Module and for a Gluon block."""

from __future__ import annotations

from typing import Any

import mxnet as mx
import numpy as np
import pytest
from clipper_deployer_mxnet import MXNetDeployer, create_endpoint, deploy_mxnet_model

from clipper_core.testing.conformance import DeployerEndToEnd, assert_outputs_match, rest_input

HINT = "mxnet.mod.Module"


class TestModuleConformance(DeployerEndToEnd):
    deployer_class = MXNetDeployer
    input_type = "doubles"
    model_argument = "mxnet_model"
    expected_model_hint = HINT

    @pytest.fixture
    def deploy_function(self) -> Any:
        return deploy_mxnet_model

    @pytest.fixture
    def model(self, module_model: Any) -> Any:
        return module_model

    @pytest.fixture
    def deployer(self, module_data_shapes: list[Any]) -> MXNetDeployer:
        return MXNetDeployer(module_data_shapes)

    @pytest.fixture
    def deploy_kwargs(self, model: Any, module_data_shapes: list[Any]) -> dict[str, Any]:
        return {"mxnet_model": model, "mxnet_data_shapes": module_data_shapes}

    @pytest.fixture
    def func(self, module_func: Any) -> Any:
        return module_func

    @pytest.fixture
    def inputs(self, sample_inputs: list[list[float]]) -> list[list[float]]:
        return sample_inputs

    @pytest.fixture
    def expected_outputs(self, model: Any, inputs: list[list[float]],
                         module_probabilities: Any) -> list[Any]:
        return list(module_probabilities(model, inputs))

    def test_create_endpoint_with_fixed_batch_size(
            self, cluster: Any, model: Any, func: Any, module_data_shapes: list[Any],
            inputs: list[list[float]], expected_outputs: list[Any]) -> None:
        """The seeds' create_endpoint, with batch_size=1 as the seeds advise for Modules."""
        create_endpoint(cluster.conn, "mxnet-endpoint", "doubles", func, model,
                        module_data_shapes, default_output="-1.0", slo_micros=self.slo_micros,
                        batch_size=1)
        assert cluster.conn.get_linked_models("mxnet-endpoint") == ["mxnet-endpoint"]
        body = {"input": rest_input("doubles", inputs[0])}
        first = cluster.wait_for_model("mxnet-endpoint", body, self.replica_start_timeout_s)
        batch = cluster.predict("mxnet-endpoint", {
            "input_batch": [rest_input("doubles", x) for x in inputs]})["batch_predictions"]
        assert not any(b["default"] for b in batch), batch
        assert_outputs_match([first["output"]] + [b["output"] for b in batch],
                             expected_outputs[:1] + expected_outputs, self.rel_tol)


class TestGluonConformance(DeployerEndToEnd):
    deployer_class = MXNetDeployer
    input_type = "floats"
    model_argument = "mxnet_model"
    expected_model_hint = HINT

    @pytest.fixture
    def deploy_function(self) -> Any:
        return deploy_mxnet_model

    @pytest.fixture
    def model(self, gluon_model: Any) -> Any:
        return gluon_model

    @pytest.fixture
    def deploy_kwargs(self, model: Any) -> dict[str, Any]:
        return {"mxnet_model": model, "mxnet_data_shapes": None}

    @pytest.fixture
    def func(self, gluon_func: Any) -> Any:
        return gluon_func

    @pytest.fixture
    def inputs(self, sample_inputs: list[list[float]]) -> list[list[float]]:
        return sample_inputs

    @pytest.fixture
    def expected_outputs(self, model: Any, inputs: list[list[float]]) -> list[Any]:
        out = model(mx.nd.array(np.asarray(inputs, dtype=np.float32))).asnumpy()
        return [float(v) for v in out[:, 0]]


def test_deploy_function_signature_matches_the_seeds() -> None:
    import inspect

    params = inspect.signature(deploy_mxnet_model).parameters
    assert list(params) == [
        "clipper_conn", "name", "version", "input_type", "func", "mxnet_model",
        "mxnet_data_shapes", "base_image", "labels", "registry", "num_replicas", "batch_size",
        "pkgs_to_install"]
    assert params["base_image"].default == "default"
    assert params["batch_size"].default == -1
    endpoint = inspect.signature(create_endpoint).parameters
    assert list(endpoint)[:9] == [
        "clipper_conn", "name", "input_type", "func", "mxnet_model", "mxnet_data_shapes",
        "default_output", "version", "slo_micros"]
    assert (endpoint["default_output"].default, endpoint["version"].default,
            endpoint["slo_micros"].default) == ("None", 1, 3000000)
