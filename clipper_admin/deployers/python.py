"""Deploy Python closures (the built-in ``python`` deployer), with the seeds' signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clipper_core.admin.connection import ClipperConnection
from clipper_core.deployers import api
from clipper_core.deployers.python import PythonDeployer


def deploy_python_closure(clipper_conn: ClipperConnection, name: str, version: Any,
                          input_type: str, func: Callable[[Any], Any],
                          base_image: str = "default", labels: list[str] | None = None,
                          registry: str | None = None, num_replicas: int = 1,
                          batch_size: int = -1, pkgs_to_install: list[str] | None = None) -> None:
    """Deploy ``func(inputs) -> list`` as model ``name:version``; its closure is cloudpickled."""
    api.deploy(PythonDeployer(), clipper_conn, name, version, input_type, func, None, base_image,
               labels, registry, num_replicas, batch_size, pkgs_to_install)


def create_endpoint(clipper_conn: ClipperConnection, name: str, input_type: str,
                    func: Callable[[Any], Any], default_output: str = "None", version: Any = 1,
                    slo_micros: int = 3000000, labels: list[str] | None = None,
                    registry: str | None = None, base_image: str = "default",
                    num_replicas: int = 1, batch_size: int = -1,
                    pkgs_to_install: list[str] | None = None) -> None:
    """Register app ``name``, deploy ``func`` as model ``name`` and link them."""
    api.create_endpoint(deploy_python_closure, clipper_conn, name, input_type, default_output,
                        version, slo_micros, func=func, base_image=base_image, labels=labels,
                        registry=registry, num_replicas=num_replicas, batch_size=batch_size,
                        pkgs_to_install=pkgs_to_install)
