"""The original clipper_admin's requests, byte for byte as it sent them (spec §10.2), still work.

The original package cannot be installed beside ours (it owns the same import name), so each
call below is the request its ``ClipperConnection`` method made: ``json.dumps`` body, header
``Content-type: application/json``, success iff status 200, ``r.json()`` on read routes.
"""

from __future__ import annotations

import json

import requests

from clipper_core.types import InputType, Replica


class OriginalClient:
    """What ``clipper_admin.ClipperConnection`` 0.4 sent to ``/admin/<route>``."""

    def __init__(self, admin_addr: str) -> None:
        self.admin_addr = admin_addr

    def _post(self, route: str, req: dict) -> requests.Response:
        url = f"http://{self.admin_addr}/admin/{route}"
        r = requests.post(url, headers={"Content-type": "application/json"},
                          data=json.dumps(req), timeout=10)
        assert r.status_code == requests.codes.ok, (route, r.status_code, r.text)
        return r

    def register_application(self, name, input_type, default_output, slo_micros):
        self._post("add_app", {"name": name, "input_type": input_type,
                               "default_output": default_output,
                               "latency_slo_micros": slo_micros})

    def unregister_application(self, name):
        self._post("delete_app", {"name": name})

    def link_model_to_app(self, app_name, model_name):
        self._post("add_model_links", {"app_name": app_name, "model_names": [model_name]})

    def unlink_model_from_app(self, app_name, model_name):
        self._post("delete_model_links", {"app_name": app_name, "model_names": [model_name]})

    def register_model(self, name, version, input_type, image=None, labels=None,
                       batch_size=-1):
        self._post("add_model", {"model_name": name, "model_version": str(version),
                                 "labels": labels or [], "input_type": input_type,
                                 "container_name": image or "NO_CONTAINER",
                                 "model_data_path": "DEPRECATED", "batch_size": batch_size})

    def set_model_version(self, name, version):
        self._post("set_model_version", {"model_name": name, "model_version": str(version)})

    def unregister_versioned_model(self, name, version):
        self._post("delete_versioned_model", {"model_name": name, "model_version": version})

    def get_all_apps(self, verbose=False):
        return self._post("get_all_applications", {"verbose": verbose}).json()

    def get_app_info(self, name):
        info = self._post("get_application", {"name": name}).json()
        return None if len(info) == 0 else info

    def get_linked_models(self, app_name):
        return self._post("get_linked_models", {"app_name": app_name}).json()

    def get_all_models(self, verbose=False):
        return self._post("get_all_models", {"verbose": verbose}).json()

    def get_model_info(self, name, version):
        info = self._post("get_model", {"model_name": name, "model_version": str(version)}).json()
        return None if len(info) == 0 else info

    def get_all_model_replicas(self, verbose=False):
        return self._post("get_all_containers", {"verbose": verbose}).json()

    def get_model_replica_info(self, name, version, replica_id):
        info = self._post("get_container", {"model_name": name, "model_version": str(version),
                                            "replica_id": replica_id}).json()
        return None if len(info) == 0 else info

    def get_current_model_version(self, name):
        for model in self.get_all_models(verbose=True):
            if model["model_name"] == name and model["is_current_version"]:
                return model["model_version"]
        return None


def test_original_client_drives_every_route(mgmt) -> None:
    clipper = OriginalClient(f"127.0.0.1:{mgmt.frontend.port}")
    assert requests.get(f"http://127.0.0.1:{mgmt.frontend.port}/admin/ping",
                        timeout=5).status_code == 200
    clipper.register_application("hello-world", "doubles", "-1.0", 100000)
    clipper.register_model("sum-model", 1, "doubles", image="img:1", labels=["v1"])
    clipper.register_model("sum-model", 2, "doubles")
    assert clipper.get_current_model_version("sum-model") == "2"
    clipper.set_model_version("sum-model", 1)
    assert clipper.get_current_model_version("sum-model") == "1"
    clipper.link_model_to_app("hello-world", "sum-model")
    assert clipper.get_linked_models("hello-world") == ["sum-model"]
    assert clipper.get_all_apps() == ["hello-world"]
    assert clipper.get_all_apps(verbose=True)[0]["linked_models"] == ["sum-model"]
    assert clipper.get_app_info("hello-world")["latency_slo_micros"] == 100000
    assert clipper.get_app_info("nope") is None
    assert clipper.get_all_models() == ["sum-model:1", "sum-model:2"]
    assert clipper.get_model_info("sum-model", 1)["container_name"] == "img:1"
    assert clipper.get_model_info("sum-model", 3) is None
    mgmt.store.add_replica(Replica("sum-model", "1", 0, InputType.DOUBLES, "0"))
    assert clipper.get_all_model_replicas() == ["sum-model:1:0"]
    assert clipper.get_all_model_replicas(verbose=True)[0]["model_id"] == "sum-model:1"
    assert clipper.get_model_replica_info("sum-model", 1, 0)["model_replica_id"] == 0
    assert clipper.get_model_replica_info("sum-model", 1, 9) is None
    clipper.unlink_model_from_app("hello-world", "sum-model")
    assert clipper.get_linked_models("hello-world") == []
    clipper.unregister_versioned_model("sum-model", "2")
    assert clipper.get_all_models() == ["sum-model:1"]  # gone at once (test_stop_models)
    clipper.unregister_application("hello-world")
    assert clipper.get_all_apps() == []
