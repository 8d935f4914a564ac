"""Deploy ONNX models to Clipper, served by ONNX Runtime.

``deploy_onnx_model`` / ``create_endpoint`` take an ONNX model (a path or an
``onnx.ModelProto``); ``deploy_pytorch_model`` / ``create_pytorch_endpoint`` are the original
Clipper's functions that export a PyTorch model to ONNX first. Also importable as
``clipper_admin.deployers.onnx`` (the seeds' path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clipper_core.deployers import api
from clipper_core.exceptions import DeployError
from clipper_deployer_onnx.deployer import OnnxDeployer, export_pytorch_model

if TYPE_CHECKING:
    from clipper_core.admin.connection import ClipperConnection

__all__ = [
    "OnnxDeployer",
    "create_endpoint",
    "create_pytorch_endpoint",
    "deploy_onnx_model",
    "deploy_pytorch_model",
    "export_pytorch_model",
]

SUPPORTED_BACKEND = "onnxruntime"


def deploy_onnx_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[[Any, Any], Any],
    onnx_model: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Deploy ``func(session, inputs)`` with an ONNX model (a ``.onnx`` path or a ModelProto).

    Each replica creates one ``onnxruntime.InferenceSession`` and calls ``func`` with it and a
    batch of inputs; ``func`` typically returns ``session.run(None, {name: array})[0]`` as one
    output per input.
    """
    api.deploy(OnnxDeployer(), clipper_conn, name, version, input_type, func, onnx_model,
               base_image, labels, registry, num_replicas, batch_size, pkgs_to_install)


def create_endpoint(
    clipper_conn: ClipperConnection,
    name: str,
    input_type: str,
    func: Callable[[Any, Any], Any],
    onnx_model: Any,
    default_output: str = "None",
    version: Any = 1,
    slo_micros: int = 3000000,
    labels: list[str] | None = None,
    registry: str | None = None,
    base_image: str = "default",
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Register an application, deploy the ONNX model under the same name and link them."""
    api.create_endpoint(
        deploy_onnx_model, clipper_conn, name, input_type, default_output, version, slo_micros,
        func=func, onnx_model=onnx_model, base_image=base_image, labels=labels,
        registry=registry, num_replicas=num_replicas, batch_size=batch_size,
        pkgs_to_install=pkgs_to_install,
    )


def _check_backend(onnx_backend: str) -> None:
    if onnx_backend != SUPPORTED_BACKEND:
        msg = (f"onnx_backend={onnx_backend!r} is not supported. The original Clipper served "
               "ONNX models with Caffe2, which no longer exists (it was merged into PyTorch and "
               f"then removed); models are served by ONNX Runtime: use "
               f"onnx_backend={SUPPORTED_BACKEND!r} (the default)")
        raise DeployError(msg)


def deploy_pytorch_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    inputs: Any,
    func: Callable[[Any, Any], Any],
    pytorch_model: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
    onnx_backend: str = SUPPORTED_BACKEND,
) -> None:
    """Export ``pytorch_model`` to ONNX by tracing it on ``inputs``, then deploy it.

    ``inputs`` is an example input (tensor, numpy array or tuple of them, batch dimension
    first). Replicas serve the exported model with ONNX Runtime: ``func(session, inputs)``.
    """
    _check_backend(onnx_backend)
    OnnxDeployer().check_function(func)  # before the (slow) export
    proto = export_pytorch_model(pytorch_model, inputs)
    deploy_onnx_model(clipper_conn, name, version, input_type, func, proto, base_image, labels,
                      registry, num_replicas, batch_size, pkgs_to_install)


def create_pytorch_endpoint(
    clipper_conn: ClipperConnection,
    name: str,
    input_type: str,
    inputs: Any,
    func: Callable[[Any, Any], Any],
    pytorch_model: Any,
    default_output: str = "None",
    version: Any = 1,
    slo_micros: int = 3000000,
    labels: list[str] | None = None,
    registry: str | None = None,
    base_image: str = "default",
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
    onnx_backend: str = SUPPORTED_BACKEND,
) -> None:
    """Register an application, deploy the exported PyTorch model under the same name, link."""
    _check_backend(onnx_backend)
    api.create_endpoint(
        deploy_pytorch_model, clipper_conn, name, input_type, default_output, version,
        slo_micros, inputs=inputs, func=func, pytorch_model=pytorch_model,
        base_image=base_image, labels=labels, registry=registry, num_replicas=num_replicas,
        batch_size=batch_size, pkgs_to_install=pkgs_to_install, onnx_backend=onnx_backend,
    )
