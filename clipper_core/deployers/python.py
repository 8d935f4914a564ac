"""The built-in deployer of plain Python functions (closures pickled with cloudpickle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipper_core.deployers.api import Bundle, Deployer, Predictor
from clipper_core.hookspecs import hookimpl


class PythonDeployer(Deployer):
    """``func(inputs)``: everything the function needs travels in its closure."""

    name = "python"

    def save(self, bundle_dir: Path, model: Any) -> dict[str, Any]:
        return {}

    def load(self, bundle: Bundle) -> Predictor:
        return bundle.load_function()


@hookimpl
def clipper_register_deployers() -> list[type[Deployer]]:
    return [PythonDeployer]
