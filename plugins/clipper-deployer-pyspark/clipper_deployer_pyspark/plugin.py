"""Hook implementations of clipper-deployer-pyspark (entry point ``deployer-pyspark``)."""

from __future__ import annotations

from clipper_core.deployers.api import Deployer
from clipper_core.hookspecs import hookimpl
from clipper_deployer_pyspark.deployer import PySparkDeployer


@hookimpl
def clipper_register_deployers() -> list[type[Deployer]]:
    return [PySparkDeployer]
