"""Registers the ONNX deployer under the ``clipper`` entry-point group."""

from __future__ import annotations

from clipper_core.deployers.api import Deployer
from clipper_core.hookspecs import hookimpl
from clipper_deployer_onnx.deployer import OnnxDeployer


@hookimpl
def clipper_register_deployers() -> list[type[Deployer]]:
    return [OnnxDeployer]
