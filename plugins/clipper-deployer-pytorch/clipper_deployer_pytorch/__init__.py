"""Deploy PyTorch models to Clipper: ``deploy_pytorch_model`` and ``create_endpoint``.

Also importable as ``clipper_admin.deployers.pytorch`` (the seeds' path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clipper_core.deployers import api
from clipper_deployer_pytorch.deployer import PyTorchDeployer

if TYPE_CHECKING:
    from clipper_core.admin.connection import ClipperConnection

__all__ = ["PyTorchDeployer", "create_endpoint", "deploy_pytorch_model"]


def deploy_pytorch_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[[Any, Any], Any],
    pytorch_model: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Deploy ``func(model, inputs)`` with the PyTorch module ``pytorch_model`` (and its weights).

    The module is saved with its weights; each replica loads it once and calls ``func`` with it
    and a batch of inputs, under ``torch.no_grad()``. ``func`` returns one output per input.
    """
    api.deploy(PyTorchDeployer(), clipper_conn, name, version, input_type, func, pytorch_model,
               base_image, labels, registry, num_replicas, batch_size, pkgs_to_install)


def create_endpoint(
    clipper_conn: ClipperConnection,
    name: str,
    input_type: str,
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
) -> None:
    """Register an application, deploy the PyTorch model under the same name and link them."""
    api.create_endpoint(
        deploy_pytorch_model, clipper_conn, name, input_type, default_output, version,
        slo_micros, func=func, pytorch_model=pytorch_model, base_image=base_image,
        labels=labels, registry=registry, num_replicas=num_replicas, batch_size=batch_size,
        pkgs_to_install=pkgs_to_install,
    )
