"""The PyTorch deployer: the module with its weights in the bundle, ``func(model, inputs)``.

Bundle files (besides ``func.pkl``):

- an exported program (``torch.export.export``): ``pytorch_model.pt2`` (``torch.export.save``);
  ``func`` receives ``program.module()``;
- a TorchScript module (``torch.jit.ScriptModule``): ``pytorch_model.ts`` (``torch.jit.save``);
- any other ``torch.nn.Module``: ``pytorch_model.pkl`` (the module, cloudpickled; classes from
  modules that are not installed packages, such as the user's script or notebook, travel by
  value) and ``pytorch_weights.pt`` (``torch.save`` of the ``state_dict``, loaded back into the
  module with ``weights_only=True``).

The model is served in the mode it was saved in: call ``model.eval()`` before deploying a model
with dropout or batch norm. ``func`` runs under ``torch.no_grad()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cloudpickle

from clipper_core.deployers.api import (
    Bundle,
    Deployer,
    Predictor,
    load_pickle,
    pickled_by_value,
    same_as_installed,
)
from clipper_core.exceptions import DeployError

EXPORT_FILE = "pytorch_model.pt2"
SCRIPT_FILE = "pytorch_model.ts"
MODEL_FILE = "pytorch_model.pkl"
WEIGHTS_FILE = "pytorch_weights.pt"


class PyTorchDeployer(Deployer):
    """Saves a ``torch.nn.Module`` with its weights; replicas call ``func(model, inputs)``."""

    name = "pytorch"
    func_extra_args = 1
    image_requirements = (same_as_installed("torch", ">=2.0"),)

    def describe_call(self) -> str:
        return "func(model, inputs)"

    def save(self, bundle_dir: Path, model: Any) -> dict[str, Any]:
        import torch
        if isinstance(model, torch.export.ExportedProgram):
            try:
                torch.export.save(model, bundle_dir / EXPORT_FILE)
            except Exception as exc:
                msg = f"Error saving torch model: the exported program could not be saved: {exc}"
                raise DeployError(msg) from exc
            return {"format": "exported_program"}
        if not isinstance(model, torch.nn.Module):
            msg = (f"deploy_pytorch_model expects pytorch_model to be a torch.nn.Module (a "
                   f"module such as nn.Linear, your own nn.Module subclass, or a TorchScript "
                   f"module) or a torch.export.ExportedProgram, got "
                   f"{type(model).__module__}.{type(model).__name__}")
            raise DeployError(msg)
        if isinstance(model, torch.jit.ScriptModule):
            try:
                torch.jit.save(model, str(bundle_dir / SCRIPT_FILE))
            except Exception as exc:
                msg = f"Error saving torch model: TorchScript module could not be saved: {exc}"
                raise DeployError(msg) from exc
            return {"format": "torchscript"}
        classes = [type(m) for m in model.modules()]
        try:
            with pickled_by_value(classes):
                payload = cloudpickle.dumps(model)
            torch.save(model.state_dict(), bundle_dir / WEIGHTS_FILE)
        except Exception as exc:
            msg = (f"Error saving torch model: {type(model).__name__} could not be serialized "
                   f"({type(exc).__name__}: {exc}). Keep only tensors, parameters and plain "
                   "Python values on the module (no open files, locks or sockets), or deploy "
                   "a TorchScript version of it (torch.jit.script(model))")
            raise DeployError(msg) from exc
        (bundle_dir / MODEL_FILE).write_bytes(payload)
        return {"format": "module", "model_class": f"{type(model).__module__}."
                                                   f"{type(model).__qualname__}"}

    def load(self, bundle: Bundle) -> Predictor:
        import torch
        func = bundle.load_function()
        if bundle.extra.get("format") == "exported_program":
            model = torch.export.load(bundle.path / EXPORT_FILE).module()
        elif bundle.extra.get("format") == "torchscript":
            model = torch.jit.load(str(bundle.path / SCRIPT_FILE), map_location="cpu")
        else:
            with (bundle.path / MODEL_FILE).open("rb") as f:
                model = load_pickle(f)
            weights = torch.load(bundle.path / WEIGHTS_FILE, map_location="cpu",
                                 weights_only=True)
            model.load_state_dict(weights)

        def predict(inputs: Any) -> Any:
            with torch.no_grad():
                return func(model, inputs)

        return predict
