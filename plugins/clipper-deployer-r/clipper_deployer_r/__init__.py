"""Deploy R functions to Clipper.

In R, ``Rclipper::save_model(func, sample_input, "model.rds")`` saves a prediction function
with what it needs; ``deploy_r_model`` / ``create_endpoint`` deploy that file from Python.
Also importable as ``clipper_admin.deployers.r``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipper_deployer_r.deployer import RDeployer, describe_r_model, write_r_bundle

if TYPE_CHECKING:
    from clipper_core.admin.connection import ClipperConnection

__all__ = ["RDeployer", "create_endpoint", "deploy_r_model", "describe_r_model"]


def deploy_r_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    r_model: str | os.PathLike[str],
    input_type: str | None = None,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
) -> None:
    """Deploy the R model saved at ``r_model`` (an ``.rds`` from ``Rclipper::save_model``).

    ``input_type`` defaults to the one the model was saved with (from its sample input). Its
    replicas run Rscript: local processes on the embedded default, containers of the
    ``clipper/r-closure`` image on Docker and Kubernetes.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"clipper-{name}-"))
    try:
        bundle = write_r_bundle(tmp, r_model, input_type)
        if base_image == "default":
            base_image = clipper_conn.cm.default_base_image(RDeployer.name)
        clipper_conn.build_and_deploy_model(
            name, version, bundle.input_type.canonical, str(tmp), base_image, labels, registry,
            num_replicas, batch_size)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def create_endpoint(
    clipper_conn: ClipperConnection,
    name: str,
    r_model: str | os.PathLike[str],
    input_type: str | None = None,
    default_output: str = "None",
    version: Any = 1,
    slo_micros: int = 3000000,
    **deploy_kwargs: Any,
) -> None:
    """Register an application, deploy the R model under the same name and link them."""
    itype = input_type or describe_r_model(r_model)["input_type"]
    clipper_conn.register_application(name, itype, default_output, slo_micros)
    deploy_r_model(clipper_conn, name, version, r_model, itype, **deploy_kwargs)
    clipper_conn.link_model_to_app(name, name)
