"""Clipper deployer plugin for MXNet: ``deploy_mxnet_model`` and ``create_endpoint``."""

from __future__ import annotations

from clipper_deployer_mxnet.deployer import MXNetDeployer, create_endpoint, deploy_mxnet_model

__all__ = ["MXNetDeployer", "create_endpoint", "deploy_mxnet_model"]
