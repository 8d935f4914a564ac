"""The clipper_admin facade: seeds' import paths, plugin stand-ins that name the package."""

from __future__ import annotations

import importlib
import json

import pytest

import clipper_admin
from clipper_core.admin.facade import backend_class, plugin_functions
from clipper_core.backends.local import LocalContainerManager
from clipper_core.exceptions import ClipperException


def test_seed_imports():
    for name in ("ClipperConnection", "DockerContainerManager", "KubernetesContainerManager",
                 "LocalContainerManager", "ClipperException", "UnconnectedException",
                 "__version__"):
        assert hasattr(clipper_admin, name)
    assert issubclass(clipper_admin.UnconnectedException, clipper_admin.ClipperException)


@pytest.mark.parametrize(("module", "names"), [
    ("pytorch", ["deploy_pytorch_model", "create_endpoint"]),
    ("tensorflow", ["deploy_tensorflow_model", "create_endpoint"]),
    ("mxnet", ["deploy_mxnet_model", "create_endpoint"]),
    ("pyspark", ["deploy_pyspark_model", "create_endpoint"]),
    ("onnx", ["deploy_onnx_model", "deploy_pytorch_model", "create_pytorch_endpoint",
              "create_endpoint"]),
])
def test_framework_deployer_modules_export_the_seed_names(module, names):
    facade = importlib.import_module(f"clipper_admin.deployers.{module}")
    assert facade.__all__ == names
    assert all(callable(getattr(facade, name)) for name in names)


def test_missing_plugin_gives_stand_ins_naming_the_package():
    namespace: dict = {}
    plugin_functions(namespace, "clipper_deployer_nothere", "clipper-deployer-nothere",
                     ["deploy_nothere_model"])
    with pytest.raises(ClipperException, match="pip install clipper-deployer-nothere"):
        namespace["deploy_nothere_model"](None, "m", 1, "doubles", print)
    assert namespace["deploy_nothere_model"].__name__ == "deploy_nothere_model"


def test_plugin_that_fails_to_import_says_why(tmp_path, monkeypatch):
    (tmp_path / "clipper_deployer_broken.py").write_text("import torchx_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {}
    plugin_functions(namespace, "clipper_deployer_broken", "clipper-deployer-broken", ["f"])
    with pytest.raises(ClipperException, match=r"failed to import.*torchx_not_installed"):
        namespace["f"]()


def test_installed_plugin_functions_are_re_exported():
    namespace: dict = {}
    plugin_functions(namespace, "json", "python", ["dumps"])
    assert namespace["dumps"] is json.dumps


def test_backend_class_builds_the_registered_backend(tmp_path):
    local = backend_class("Local", "local")(cluster_name="x", cluster_dir=tmp_path)
    assert isinstance(local, LocalContainerManager)
    with pytest.raises(ClipperException, match="No backend named 'nothere' is installed"):
        backend_class("Nothere", "nothere")()
