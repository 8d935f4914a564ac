"""Hook implementations of clipper-deployer-mxnet (entry point ``deployer-mxnet``)."""

from __future__ import annotations

from clipper_core.deployers.api import Deployer
from clipper_core.hookspecs import hookimpl
from clipper_deployer_mxnet.deployer import MXNetDeployer


@hookimpl
def clipper_register_deployers() -> list[type[Deployer]]:
    return [MXNetDeployer]
