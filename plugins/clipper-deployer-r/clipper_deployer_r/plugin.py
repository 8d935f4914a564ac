"""Registers the R deployer under the ``clipper`` entry-point group."""

from __future__ import annotations

from clipper_core.deployers.api import Deployer
from clipper_core.hookspecs import hookimpl
from clipper_deployer_r.deployer import RDeployer


@hookimpl
def clipper_register_deployers() -> list[type[Deployer]]:
    return [RDeployer]
