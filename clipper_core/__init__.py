"""Clipper: a low-latency prediction serving system, rebuilt in Python as a plugin-based framework."""

from clipper_core.exceptions import ClipperError, ClipperException, UnconnectedException
from clipper_core.hookspecs import hookimpl
from clipper_core.types import Application, InputType, ModelVersion, Replica

__version__ = "0.5.0"

__all__ = [
    "Application",
    "ClipperError",
    "ClipperException",
    "InputType",
    "ModelVersion",
    "Replica",
    "UnconnectedException",
    "__version__",
    "hookimpl",
]
