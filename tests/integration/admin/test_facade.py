"""The clipper_admin facade: seeds' import paths, plugin stand-ins that name the package."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import subprocess
import sys

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


# -- names of the original clipper_admin (ucbrise/clipper, clipper_admin/clipper_admin/) ---------

def test_original_module_level_names():
    assert clipper_admin.CLIPPER_TEMP_DIR == "/tmp/clipper"
    assert clipper_admin.DEFAULT_PREDICTION_CACHE_SIZE_BYTES == 33554432
    assert clipper_admin.__registry__ == "clipper"  # CLIPPER_REGISTRY is not set here
    assert clipper_admin.__version__ == importlib.metadata.version("clipper-core")


def test_registry_comes_from_clipper_registry(monkeypatch):
    code = "import clipper_admin; print(clipper_admin.__registry__)"
    env = {**os.environ, "CLIPPER_REGISTRY": "registry.example:5000/team"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "registry.example:5000/team"


def test_container_manager_module_has_the_original_constants():
    from clipper_admin import container_manager as cm

    assert (cm.CLIPPER_INTERNAL_QUERY_PORT, cm.CLIPPER_INTERNAL_MANAGEMENT_PORT,
            cm.CLIPPER_INTERNAL_RPC_PORT, cm.CLIPPER_INTERNAL_METRIC_PORT,
            cm.CLIPPER_INTERNAL_REDIS_PORT, cm.CLIPPER_INTERNAL_FLUENTD_PORT) == (
        1337, 1338, 7000, 1390, 6379, 24224)
    assert cm.CLIPPER_DOCKER_LABEL == "ai.clipper.container.label"
    assert cm.CLIPPER_NAME_LABEL == "ai.clipper.name"
    assert cm.CLIPPER_MODEL_CONTAINER_LABEL == "ai.clipper.model_container.label"
    assert cm.CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL == "ai.clipper.query_frontend.label"
    assert cm.CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL == "ai.clipper.management_frontend.label"
    assert cm.CONTAINERLESS_MODEL_IMAGE == "NO_CONTAINER"
    assert cm.CLIPPER_DOCKER_PORT_LABELS == {
        "redis": "ai.clipper.redis.port",
        "query_rest": "ai.clipper.query_frontend.query.port",
        "query_rpc": "ai.clipper.query_frontend.rpc.port",
        "management": "ai.clipper.management.port",
        "metric": "ai.clipper.metric.port",
        "fluentd": "ai.clipper.fluentd.port",
    }
    assert cm.CLIPPER_METRIC_CONFIG_LABEL == "ai.clipper.metric.config"
    assert cm.CLIPPER_FLUENTD_CONFIG_LABEL == "ai.clipper.fluentd.config"
    assert cm._MODEL_CONTAINER_LABEL_DELIMITER == "_"


def test_model_container_labels_as_the_original():
    from clipper_admin.container_manager import (
        create_model_container_label,
        parse_model_container_label,
    )

    assert create_model_container_label("sum-model", "v1") == "sum-model_v1"
    name, version = parse_model_container_label("sum-model_v1")
    assert (name, version) == ("sum-model", "v1")
    for bad in ("no-delimiter", "a_b_c"):
        with pytest.raises(ClipperException, match=f"Unable to parse model container label {bad}"):
            parse_model_container_label(bad)


def test_a_container_manager_written_for_the_original_still_works():
    """A subclass implementing the original's abstract methods (it had no build_model)."""
    from clipper_admin.container_manager import ClusterAdapter, ContainerManager

    methods = ("start_clipper", "connect", "deploy_model", "get_num_replicas",
               "set_num_replicas", "get_logs", "stop_models", "stop_all_model_containers",
               "stop_all", "get_admin_addr", "get_query_addr", "get_metric_addr")
    assert set(ContainerManager.__abstractmethods__) <= set(methods)

    def address(self, *args, **kwargs):
        return "127.0.0.1:1338"

    prebuilt = type("Prebuilt", (ContainerManager,),
                    {"cluster_name": "ported", **dict.fromkeys(methods, address)})
    manager = prebuilt()
    assert manager.get_admin_addr() == "127.0.0.1:1338"
    with pytest.raises(ClipperException, match="Prebuilt cannot build models: deploy a prebuilt"):
        manager.build_model("m", "1", ".", "image")
    adapter = ClusterAdapter(logging.getLogger("t"), {"cluster_name": "ported"})
    assert adapter.process("hello", {}) == ("[ported] hello", {})


def test_docker_container_manager_has_the_original_attributes():
    plain = clipper_admin.DockerContainerManager(cluster_name="h9-attrs")
    assert plain.centralize_log is False
    assert plain.logging_system_instance is None
    assert plain.log_config == {"type": "json-file"}
    central = clipper_admin.DockerContainerManager(cluster_name="h9-attrs",
                                                   use_centralized_log=True, fluentd_port=24299)
    assert central.centralize_log is True
    assert central.logging_system_instance.get_type() == "Fluentd"
    assert central.logging_system_instance.port == 24299
    assert central.log_config == {"type": "fluentd", "config": {
        "fluentd-address": "127.0.0.1:24299", "fluentd-async": "true"}}
    central.centralize_log = False
    assert central.use_centralized_log is False and central.log_config["type"] == "json-file"
