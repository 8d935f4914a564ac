"""Clipper deployer plugin for PySpark: ``deploy_pyspark_model`` and ``create_endpoint``."""

from __future__ import annotations

from clipper_deployer_pyspark.deployer import (
    PySparkDeployer,
    create_endpoint,
    deploy_pyspark_model,
)

__all__ = ["PySparkDeployer", "create_endpoint", "deploy_pyspark_model"]
