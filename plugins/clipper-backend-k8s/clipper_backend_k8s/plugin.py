"""Registers the Kubernetes backend under the ``clipper`` entry-point group."""

from __future__ import annotations

from clipper_backend_k8s.backend import KubernetesContainerManager
from clipper_core.backends.api import ContainerManager
from clipper_core.hookspecs import hookimpl


@hookimpl
def clipper_register_backends() -> list[type[ContainerManager]]:
    return [KubernetesContainerManager]
