"""The seeds' import path: a thin facade over :mod:`clipper_core` (no logic here)."""

from clipper_core import __version__
from clipper_core.admin.connection import ClipperConnection
from clipper_core.admin.facade import backend_class
from clipper_core.backends.docker import DockerContainerManager
from clipper_core.backends.local import LocalContainerManager
from clipper_core.exceptions import ClipperException, UnconnectedException

KubernetesContainerManager = backend_class("KubernetesContainerManager", "kubernetes")

__all__ = [
    "ClipperConnection",
    "ClipperException",
    "DockerContainerManager",
    "KubernetesContainerManager",
    "LocalContainerManager",
    "UnconnectedException",
    "__version__",
]
