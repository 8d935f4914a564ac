"""The ONNX deployer: ``model.onnx`` in the bundle, served by an ONNX Runtime session.

Replicas create one ``onnxruntime.InferenceSession`` (CPU) when they load the bundle and call
``func(session, inputs)`` for every batch. The model is checked at deploy time (ONNX checker,
and an ONNX Runtime session is created once) so that a model ONNX Runtime cannot run fails
then, not inside the replica.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipper_core.deployers.api import Bundle, Deployer, Predictor
from clipper_core.exceptions import DeployError

if TYPE_CHECKING:
    import onnx
    import onnxruntime

MODEL_FILE = "model.onnx"
#: Protobuf's limit: larger models keep their weights in an external data file.
_PROTOBUF_LIMIT = 2**31 - 1


def _read_model(onnx_model: Any) -> onnx.ModelProto:
    """``onnx_model`` as a ModelProto: a path to a ``.onnx`` file or a ModelProto."""
    import onnx
    if isinstance(onnx_model, onnx.ModelProto):
        return onnx_model
    if isinstance(onnx_model, str | os.PathLike):
        path = Path(onnx_model)
        if not path.is_file():
            msg = f"onnx_model {str(path)!r} is not a file. Pass the path of a .onnx file"
            raise DeployError(msg)
        try:
            return onnx.load(str(path))
        except Exception as exc:
            msg = f"onnx_model {str(path)!r} is not an ONNX model: {exc}"
            raise DeployError(msg) from exc
    msg = (f"deploy_onnx_model expects onnx_model to be an onnx.ModelProto or the path of a "
           f".onnx file, got {type(onnx_model).__module__}.{type(onnx_model).__name__}")
    raise DeployError(msg)


def new_session(path: str | Path) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session of the model at ``path`` on the CPU."""
    import onnxruntime
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


class OnnxDeployer(Deployer):
    """Saves an ONNX model; replicas call ``func(session, inputs)`` with an InferenceSession."""

    name = "onnx"
    func_extra_args = 1
    image_requirements = ("onnxruntime>=1.16",)

    def describe_call(self) -> str:
        return "func(session, inputs)"

    def save(self, bundle_dir: Path, model: Any) -> dict[str, Any]:
        import onnx
        import onnxruntime
        proto = _read_model(model)
        target = bundle_dir / MODEL_FILE
        try:
            onnx.checker.check_model(proto)
            large = proto.ByteSize() > _PROTOBUF_LIMIT
            onnx.save_model(proto, str(target), save_as_external_data=large,
                            location=f"{MODEL_FILE}.data" if large else None)
            session = new_session(target)
        except Exception as exc:
            target.unlink(missing_ok=True)
            msg = (f"The ONNX model cannot be served by ONNX Runtime {onnxruntime.__version__}: "
                   f"{type(exc).__name__}: {exc}")
            raise DeployError(msg) from exc
        return {
            "inputs": [i.name for i in session.get_inputs()],
            "outputs": [o.name for o in session.get_outputs()],
            "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                         default=0),
        }

    def load(self, bundle: Bundle) -> Predictor:
        func = bundle.load_function()
        session = new_session(bundle.path / MODEL_FILE)

        def predict(inputs: Any) -> Any:
            return func(session, inputs)

        return predict


def export_pytorch_model(pytorch_model: Any, inputs: Any) -> onnx.ModelProto:
    """Export a ``torch.nn.Module`` to ONNX by tracing it on the example ``inputs``.

    Dimension 0 of every input and output is the batch dimension and may vary.
    """
    import onnx
    try:
        import torch
    except ImportError:
        msg = ("Exporting a PyTorch model to ONNX needs PyTorch. Install it with: "
               "pip install 'clipper-deployer-onnx[pytorch]'")
        raise DeployError(msg) from None
    if not isinstance(pytorch_model, torch.nn.Module):
        msg = (f"deploy_pytorch_model expects pytorch_model to be a torch.nn.Module, got "
               f"{type(pytorch_model).__module__}.{type(pytorch_model).__name__}")
        raise DeployError(msg)
    examples = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        args = tuple(x if isinstance(x, torch.Tensor) else torch.as_tensor(x) for x in examples)
    except Exception as exc:
        msg = (f"inputs must be an example input of the model (a tensor, a numpy array, or a "
               f"tuple of them, with the batch dimension first), got {type(inputs).__name__}: "
               f"{exc}")
        raise DeployError(msg) from exc
    names = ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
    with tempfile.TemporaryDirectory(prefix="clipper-onnx-") as tmp:
        path = Path(tmp) / MODEL_FILE
        try:
            with warnings.catch_warnings():
                # the TorchScript-based exporter needs no extra package (the dynamo one
                # needs onnxscript); its deprecation notice is not the user's business
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(
                    pytorch_model, args, str(path), dynamo=False, export_params=True,
                    input_names=names, output_names=["output"],
                    dynamic_axes={name: {0: "batch"} for name in [*names, "output"]},
                )
        except Exception as exc:
            msg = (f"Could not export {type(pytorch_model).__name__} to ONNX with the example "
                   f"inputs: {type(exc).__name__}: {exc}")
            raise DeployError(msg) from exc
        return onnx.load(str(path))
