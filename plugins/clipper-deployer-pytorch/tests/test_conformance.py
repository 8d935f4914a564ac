"""The deployer conformance suite, end to end included, plus more REST scenarios."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from clipper_deployer_pytorch import PyTorchDeployer, create_endpoint, deploy_pytorch_model

from clipper_core.testing import DeployerEndToEnd, LocalCluster, assert_outputs_match, rest_input


class TestPyTorchConformance(DeployerEndToEnd):
    deployer_class = PyTorchDeployer
    input_type = "doubles"
    model_argument = "pytorch_model"
    expected_model_hint = "torch.nn.Module"

    @pytest.fixture
    def model(self, trained_net: torch.nn.Module) -> torch.nn.Module:
        return trained_net

    @pytest.fixture
    def func(self, probabilities_as_json: Callable[..., Any]) -> Callable[..., Any]:
        return probabilities_as_json

    @pytest.fixture
    def inputs(self, sample_inputs: list[list[float]]) -> list[list[float]]:
        return sample_inputs

    @pytest.fixture
    def expected_outputs(self, direct_probabilities: list[list[float]]) -> list[Any]:
        return direct_probabilities

    @pytest.fixture
    def deploy_function(self) -> Callable[..., None]:
        return deploy_pytorch_model

    def test_create_endpoint_torchscript_floats(
            self, cluster: LocalCluster, trained_net: torch.nn.Module,
            sample_inputs: list[list[float]], direct_probabilities: list[list[float]]) -> None:
        """The seeds' create_endpoint with a TorchScript module and ``floats`` inputs."""
        scripted = torch.jit.script(trained_net)

        def top_class(model: Any, inputs: Any) -> list[int]:
            batch = torch.as_tensor(np.stack(list(inputs)).astype(np.float32))
            return model(batch).argmax(dim=-1).tolist()

        create_endpoint(cluster.conn, "pytorch-script", "floats", top_class, scripted,
                        slo_micros=10_000_000)
        expected = np.asarray(direct_probabilities).argmax(-1).tolist()
        singles = [rest_input("floats", x) for x in sample_inputs]
        first = cluster.wait_for_model("pytorch-script", {"input": singles[0]}, 180)
        answers = [first] + [cluster.predict("pytorch-script", {"input": x})
                             for x in singles[1:]]
        batch = cluster.predict("pytorch-script", {"input_batch": singles})["batch_predictions"]
        assert not any(a["default"] for a in [*answers, *batch])
        assert_outputs_match([a["output"] for a in answers], expected)
        assert_outputs_match([a["output"] for a in batch], expected)

    def test_seeds_import_path(self) -> None:
        from clipper_admin.deployers import pytorch

        assert pytorch.deploy_pytorch_model is deploy_pytorch_model
        assert pytorch.create_endpoint is create_endpoint
