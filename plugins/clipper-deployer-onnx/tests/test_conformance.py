"""The deployer conformance suite for deploy_onnx_model, plus deploy_pytorch_model over REST."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import onnx
import pytest
import torch
from clipper_deployer_onnx import (
    OnnxDeployer,
    create_endpoint,
    create_pytorch_endpoint,
    deploy_onnx_model,
    deploy_pytorch_model,
)

from clipper_core.testing import DeployerEndToEnd, LocalCluster, assert_outputs_match, rest_input


class TestOnnxConformance(DeployerEndToEnd):
    deployer_class = OnnxDeployer
    input_type = "floats"
    model_argument = "onnx_model"
    expected_model_hint = "onnx.ModelProto"

    @pytest.fixture
    def model(self, onnx_model: onnx.ModelProto) -> onnx.ModelProto:
        return onnx_model

    @pytest.fixture
    def func(self, session_probabilities: Callable[..., Any]) -> Callable[..., Any]:
        return session_probabilities

    @pytest.fixture
    def inputs(self, sample_inputs: list[list[float]]) -> list[list[float]]:
        return sample_inputs

    @pytest.fixture
    def expected_outputs(self, direct_probabilities: list[list[float]]) -> list[Any]:
        return direct_probabilities

    @pytest.fixture
    def deploy_function(self) -> Callable[..., None]:
        return deploy_onnx_model

    def test_pytorch_model_exported_and_served_over_rest(
            self, cluster: LocalCluster, torch_mlp: torch.nn.Module,
            sample_inputs: list[list[float]], session_probabilities: Callable[..., Any]) -> None:
        """The original's onnx.create_pytorch_endpoint: export, deploy, query (doubles)."""
        example = torch.zeros(3, 4)
        create_pytorch_endpoint(cluster.conn, "onnx-torch", "doubles", example,
                                session_probabilities, torch_mlp, slo_micros=10_000_000)
        with torch.no_grad():
            expected = torch_mlp(torch.tensor(sample_inputs, dtype=torch.float32)).tolist()
        singles = [rest_input("doubles", x) for x in sample_inputs]
        first = cluster.wait_for_model("onnx-torch", {"input": singles[0]}, 180)
        answers = [first] + [cluster.predict("onnx-torch", {"input": x}) for x in singles[1:]]
        batch = cluster.predict("onnx-torch", {"input_batch": singles})["batch_predictions"]
        assert not any(a["default"] for a in [*answers, *batch])
        assert_outputs_match([a["output"] for a in answers], expected)
        assert_outputs_match([a["output"] for a in batch], expected)

    def test_seeds_import_path(self) -> None:
        from clipper_admin.deployers import onnx as seeds_onnx

        assert seeds_onnx.deploy_onnx_model is deploy_onnx_model
        assert seeds_onnx.deploy_pytorch_model is deploy_pytorch_model
        assert seeds_onnx.create_pytorch_endpoint is create_pytorch_endpoint
        assert seeds_onnx.create_endpoint is create_endpoint
