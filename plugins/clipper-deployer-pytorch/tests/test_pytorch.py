"""PyTorch-specific behaviour: what is saved, where the weights come from, what is refused."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from clipper_deployer_pytorch import PyTorchDeployer, deploy_pytorch_model
from clipper_deployer_pytorch.deployer import WEIGHTS_FILE

from clipper_core.deployers.api import Bundle, write_bundle
from clipper_core.exceptions import DeployError
from clipper_core.testing import assert_outputs_match, replica_batch


def load_and_predict(bundle_dir: Path, inputs: list[list[float]]) -> list[Any]:
    predict = PyTorchDeployer().load(Bundle.read(bundle_dir))
    return list(predict(replica_batch("doubles", inputs)))


def test_torchscript_module(tmp_path: Path, trained_net: torch.nn.Module,
                            probabilities_as_json: Callable[..., Any],
                            sample_inputs: list[list[float]],
                            direct_probabilities: list[list[float]]) -> None:
    scripted = torch.jit.script(trained_net)
    bundle = write_bundle(PyTorchDeployer(), tmp_path, "doubles", probabilities_as_json,
                          scripted)
    assert bundle.extra == {"format": "torchscript"}
    assert (tmp_path / "pytorch_model.ts").is_file()
    assert_outputs_match(load_and_predict(tmp_path, sample_inputs), direct_probabilities)


def test_weights_are_those_of_deploy_time(tmp_path: Path, trained_net: torch.nn.Module,
                                          probabilities_as_json: Callable[..., Any],
                                          sample_inputs: list[list[float]],
                                          direct_probabilities: list[list[float]]) -> None:
    model = copy.deepcopy(trained_net)
    bundle = write_bundle(PyTorchDeployer(), tmp_path, "doubles", probabilities_as_json, model)
    assert bundle.extra["format"] == "module"
    assert bundle.extra["model_class"].endswith("TinyNet")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    assert_outputs_match(load_and_predict(tmp_path, sample_inputs), direct_probabilities)


def test_weights_come_from_the_state_dict_file(tmp_path: Path, trained_net: torch.nn.Module,
                                               probabilities_as_json: Callable[..., Any],
                                               sample_inputs: list[list[float]]) -> None:
    write_bundle(PyTorchDeployer(), tmp_path, "doubles", probabilities_as_json, trained_net)
    weights = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    assert weights.keys() == trained_net.state_dict().keys()
    torch.save({k: torch.zeros_like(v) for k, v in weights.items()}, tmp_path / WEIGHTS_FILE)
    # all-zero weights: every class equally likely
    assert_outputs_match(load_and_predict(tmp_path, sample_inputs), [[0.5, 0.5]] * 5)


class HoldsALock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.lock = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_unserializable_module_fails_at_deploy_time(
        probabilities_as_json: Callable[..., Any]) -> None:
    with pytest.raises(DeployError, match="Error saving torch model: HoldsALock could not be"):
        deploy_pytorch_model(None, "m", "1", "doubles", probabilities_as_json, HoldsALock())


def test_a_state_dict_is_not_a_model(trained_net: torch.nn.Module,
                                     probabilities_as_json: Callable[..., Any]) -> None:
    with pytest.raises(DeployError, match=r"torch\.nn\.Module .*got collections\.OrderedDict"):
        deploy_pytorch_model(None, "m", "1", "doubles", probabilities_as_json,
                             trained_net.state_dict())


def test_exported_program(tmp_path: Path, trained_net: torch.nn.Module,
                          probabilities_as_json: Callable[..., Any],
                          sample_inputs: list[list[float]],
                          direct_probabilities: list[list[float]]) -> None:
    batch = torch.export.Dim("batch")
    program = torch.export.export(trained_net, (torch.zeros(2, 4),),
                                  dynamic_shapes=({0: batch},))
    bundle = write_bundle(PyTorchDeployer(), tmp_path, "doubles", probabilities_as_json, program)
    assert bundle.extra == {"format": "exported_program"}
    assert_outputs_match(load_and_predict(tmp_path, sample_inputs), direct_probabilities)
