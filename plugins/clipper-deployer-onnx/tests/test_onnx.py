"""ONNX-specific behaviour: model paths, PyTorch export, failures at deploy time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from clipper_deployer_onnx import OnnxDeployer, deploy_onnx_model, deploy_pytorch_model
from clipper_deployer_onnx.deployer import export_pytorch_model
from onnx import TensorProto, helper

from clipper_core.deployers.api import Bundle, write_bundle
from clipper_core.exceptions import DeployError
from clipper_core.testing import assert_outputs_match, replica_batch


def load(bundle_dir: Path) -> Callable[[Any], Any]:
    return OnnxDeployer().load(Bundle.read(bundle_dir))


def test_model_given_as_a_path(tmp_path: Path, onnx_model: onnx.ModelProto,
                               session_probabilities: Callable[..., Any],
                               sample_inputs: list[list[float]],
                               direct_probabilities: list[list[float]]) -> None:
    path = tmp_path / "logistic.onnx"
    onnx.save_model(onnx_model, str(path))
    bundle = write_bundle(OnnxDeployer(), tmp_path / "bundle", "doubles",
                          session_probabilities, str(path))
    assert bundle.extra["inputs"] == ["x"]
    assert bundle.extra["outputs"] == ["probs"]
    assert bundle.extra["opset"] == 17
    outputs = load(tmp_path / "bundle")(replica_batch("doubles", sample_inputs))
    assert_outputs_match(outputs, direct_probabilities)


def test_exported_pytorch_model_matches_pytorch(tmp_path: Path, torch_mlp: torch.nn.Module,
                                                session_probabilities: Callable[..., Any],
                                                sample_inputs: list[list[float]]) -> None:
    proto = export_pytorch_model(torch_mlp, np.zeros((2, 4), dtype=np.float32))
    write_bundle(OnnxDeployer(), tmp_path / "bundle", "doubles", session_probabilities, proto)
    with torch.no_grad():
        expected = torch_mlp(torch.tensor(sample_inputs, dtype=torch.float32)).tolist()
    # a batch size other than the example's: the batch dimension is dynamic
    outputs = load(tmp_path / "bundle")(replica_batch("doubles", sample_inputs))
    assert_outputs_match(outputs, expected)


def test_caffe2_backend_is_explained(torch_mlp: torch.nn.Module,
                                     session_probabilities: Callable[..., Any]) -> None:
    with pytest.raises(DeployError, match=r"Caffe2.*no longer exists.*onnxruntime"):
        deploy_pytorch_model(None, "m", "1", "doubles", torch.zeros(1, 4),
                             session_probabilities, torch_mlp, onnx_backend="caffe2")


def test_pytorch_export_needs_a_module(session_probabilities: Callable[..., Any]) -> None:
    with pytest.raises(DeployError, match=r"torch\.nn\.Module, got builtins\.dict"):
        deploy_pytorch_model(None, "m", "1", "doubles", torch.zeros(1, 4),
                             session_probabilities, {"weights": [1, 2]})


def test_pytorch_export_checks_the_function_first(torch_mlp: torch.nn.Module) -> None:
    with pytest.raises(DeployError, match=r"func\(session, inputs\)"):
        deploy_pytorch_model(None, "m", "1", "doubles", torch.zeros(1, 4),
                             lambda inputs: inputs, torch_mlp)


def test_example_inputs_that_do_not_fit_the_model(torch_mlp: torch.nn.Module,
                                                  session_probabilities: Callable[..., Any]
                                                  ) -> None:
    with pytest.raises(DeployError, match="Could not export Sequential to ONNX"):
        deploy_pytorch_model(None, "m", "1", "doubles", torch.zeros(1, 7),
                             session_probabilities, torch_mlp)


def test_not_an_onnx_file(tmp_path: Path, session_probabilities: Callable[..., Any]) -> None:
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"\x00not a protobuf\xff" * 10)
    with pytest.raises(DeployError, match="is not an ONNX model"):
        deploy_onnx_model(None, "m", "1", "floats", session_probabilities, garbage)
    with pytest.raises(DeployError, match="is not a file"):
        deploy_onnx_model(None, "m", "1", "floats", session_probabilities, tmp_path / "none")


def test_model_onnx_runtime_cannot_run_fails_at_deploy_time(
        tmp_path: Path, session_probabilities: Callable[..., Any]) -> None:
    graph = helper.make_graph(
        [helper.make_node("NoSuchOperator", ["x"], ["y"], domain="example.unknown")],
        "unknown-op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("example.unknown", 1)])
    with pytest.raises(DeployError, match="cannot be served by ONNX Runtime"):
        write_bundle(OnnxDeployer(), tmp_path / "bundle", "floats", session_probabilities,
                     model)
    assert not (tmp_path / "bundle" / "model.onnx").exists()
