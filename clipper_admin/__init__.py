"""The seeds' import path: a thin facade over :mod:`clipper_core` (no logic here)."""

from clipper_core import __version__
from clipper_core.admin.connection import CLIPPER_REGISTRY as __registry__
from clipper_core.admin.connection import (
    CLIPPER_TEMP_DIR,
    DEFAULT_PREDICTION_CACHE_SIZE_BYTES,
    ClipperConnection,
)
from clipper_core.admin.facade import backend_class
from clipper_core.backends.docker import DockerContainerManager
from clipper_core.backends.local import LocalContainerManager
from clipper_core.exceptions import ClipperException, UnconnectedException

KubernetesContainerManager = backend_class("KubernetesContainerManager", "kubernetes")

__all__ = [
    "CLIPPER_TEMP_DIR",
    "DEFAULT_PREDICTION_CACHE_SIZE_BYTES",
    "ClipperConnection",
    "ClipperException",
    "DockerContainerManager",
    "KubernetesContainerManager",
    "LocalContainerManager",
    "UnconnectedException",
    "__registry__",
    "__version__",
]
