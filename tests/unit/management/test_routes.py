"""Every management route and rule (spec §2.1-§2.3), driven over HTTP against a real frontend."""

from __future__ import annotations

import pytest

from clipper_core.types import InputType, Replica


def add_app(mgmt, name="app", input_type="doubles", slo=100_000, default="none"):
    return mgmt.ok("add_app", {"name": name, "input_type": input_type,
                               "default_output": default, "latency_slo_micros": slo})


def add_model(mgmt, name="m", version="1", input_type="doubles", **extra):
    body = {"model_name": name, "model_version": version, "labels": ["l1", "l2"],
            "input_type": input_type, "container_name": "img:1",
            "model_data_path": "DEPRECATED", "batch_size": -1, **extra}
    return mgmt.ok("add_model", body)


def link(mgmt, app="app", models=("m",)):
    return mgmt.post("add_model_links", {"app_name": app, "model_names": list(models)})


# -- applications -------------------------------------------------------------------------
def test_add_get_delete_app(mgmt) -> None:
    assert add_app(mgmt, default="3.0") == "Successfully added application with name 'app'"
    assert mgmt.ok("get_application", {"name": "app"}) == {
        "input_type": "doubles", "default_output": "3.0", "latency_slo_micros": 100_000,
        "name": "app", "linked_models": []}
    raw = mgmt.post("get_application", {"name": "app"}).text
    assert raw.index('"input_type"') < raw.index('"default_output"') \
        < raw.index('"latency_slo_micros"') < raw.index('"name"') < raw.index('"linked_models"')
    assert mgmt.ok("get_application", {"name": "nope"}) == {}
    assert mgmt.ok("delete_app", {"name": "app"}) == \
        "Successfully deleted application with name 'app'"
    assert mgmt.ok("get_application", {"name": "app"}) == {}
    assert mgmt.error("delete_app", {"name": "app"}) == "Application 'app' does not exist"


def test_add_app_duplicate_and_aliases(mgmt) -> None:
    add_app(mgmt, "a", input_type="ints")
    add_app(mgmt, "b", input_type="S")
    assert mgmt.ok("get_application", {"name": "a"})["input_type"] == "integers"
    assert mgmt.ok("get_application", {"name": "b"})["input_type"] == "strings"
    assert mgmt.error("add_app", {"name": "a", "input_type": "bytes", "default_output": "",
                                  "latency_slo_micros": 5}) == "application 'a' already exists"
    assert mgmt.ok("get_application", {"name": "a"})["input_type"] == "integers"


@pytest.mark.parametrize("name", ["a,b", "a:b", "a/b", "", "  ", " lead", "trail "])
def test_add_app_rejects_bad_names(mgmt, name) -> None:
    msg = mgmt.error("add_app", {"name": name, "input_type": "doubles", "default_output": "",
                                 "latency_slo_micros": 5})
    assert msg.startswith("Invalid application name supplied:")
    assert mgmt.ok("get_all_applications", {"verbose": False}) == []


def test_add_app_unknown_input_type_is_a_400(mgmt) -> None:
    msg = mgmt.error("add_app", {"name": "a", "input_type": "tensor", "default_output": "",
                                 "latency_slo_micros": 5})
    assert msg == ("'tensor' is not a valid input type. Expected one of: integers, floats, "
                   "doubles, bytes, strings")


@pytest.mark.parametrize("slo", [0, -5])
def test_add_app_rejects_non_positive_slo(mgmt, slo) -> None:
    msg = mgmt.error("add_app", {"name": "a", "input_type": "doubles", "default_output": "",
                                 "latency_slo_micros": slo})
    assert f"Invalid latency_slo_micros {slo}" in msg
    assert "positive" in msg


def test_deleting_an_app_removes_its_links(mgmt) -> None:
    add_app(mgmt)
    add_model(mgmt)
    assert link(mgmt).status_code == 200
    mgmt.ok("delete_app", {"name": "app"})
    add_app(mgmt)
    assert mgmt.ok("get_linked_models", {"app_name": "app"}) == []
    assert mgmt.ok("get_application", {"name": "app"})["linked_models"] == []


def test_get_all_applications(mgmt) -> None:
    assert mgmt.ok("get_all_applications", {"verbose": False}) == []
    assert mgmt.ok("get_all_applications", {"verbose": True}) == []
    add_app(mgmt, "b")
    add_app(mgmt, "a", input_type="strings", slo=7, default="d")
    add_model(mgmt, input_type="strings")
    link(mgmt, "a")
    assert mgmt.ok("get_all_applications", {"verbose": False}) == ["b", "a"]
    assert mgmt.ok("get_all_applications", {"verbose": True}) == [
        {"input_type": "doubles", "default_output": "none", "latency_slo_micros": 100_000,
         "name": "b", "linked_models": []},
        {"input_type": "strings", "default_output": "d", "latency_slo_micros": 7,
         "name": "a", "linked_models": ["m"]},
    ]
    assert mgmt.ok("get_all_applications", {}) == ["b", "a"]  # verbose defaults to false


# -- links --------------------------------------------------------------------------------
def test_link_rules_in_order(mgmt) -> None:
    assert mgmt.error("add_model_links", {"app_name": "app", "model_names": ["m"]}) == \
        "No app with name 'app' exists."
    add_app(mgmt)
    assert mgmt.error("add_model_links", {"app_name": "app", "model_names": ["m"]}) == \
        "No model with name 'm' exists."
    add_model(mgmt, "s", input_type="strings")
    assert mgmt.error("add_model_links", {"app_name": "app", "model_names": ["s"]}) == (
        "Model with name 's' has incompatible input_type 'strings'. Requested app to link "
        "to has input_type 'doubles'.")
    assert mgmt.error("add_model_links", {"app_name": "app", "model_names": []}) == (
        "Please provide the name of the model that you want to link to the application 'app'")
    add_model(mgmt, "m")
    add_model(mgmt, "n")
    assert mgmt.error("add_model_links", {"app_name": "app", "model_names": ["m", "n"]}) == (
        "Applications must be linked with at most one model. Attempted to add links to 2 "
        "models.")
    assert link(mgmt).text == "Successfully linked model with name 'm' to application 'app'"
    assert mgmt.error("add_model_links", {"app_name": "app", "model_names": ["m"]}) == \
        "The model with name 'm' is already linked to 'app'"
    assert mgmt.error("add_model_links", {"app_name": "app", "model_names": ["n"]}) == \
        "A model with name m is already linked to 'app'."
    assert mgmt.ok("get_linked_models", {"app_name": "app"}) == ["m"]


def test_link_to_model_without_current_version(mgmt) -> None:
    add_app(mgmt)
    add_model(mgmt)
    mgmt.ok("delete_versioned_model", {"model_name": "m", "model_version": "1"})
    assert mgmt.error("add_model_links", {"app_name": "app", "model_names": ["m"]}) == \
        "No model with name 'm' exists."
    add_model(mgmt, version="2")
    add_model(mgmt, version="3")
    mgmt.ok("delete_versioned_model", {"model_name": "m", "model_version": "3"})
    msg = mgmt.error("add_model_links", {"app_name": "app", "model_names": ["m"]})
    assert msg.startswith("Model with name 'm' has no current version.")
    assert "set_model_version" in msg


def test_delete_model_links(mgmt) -> None:
    assert mgmt.error("delete_model_links", {"app_name": "app", "model_names": ["m"]}) == \
        "No app with name app exists."
    add_app(mgmt)
    add_model(mgmt)
    assert mgmt.error("delete_model_links", {"app_name": "app", "model_names": ["m"]}) == \
        "Cannot remove nonexistent link between app app and model m"
    link(mgmt)
    assert mgmt.error("delete_model_links", {"app_name": "app", "model_names": ["m", "x"]}) == \
        "Cannot remove nonexistent link between app app and model x"
    assert mgmt.ok("get_linked_models", {"app_name": "app"}) == ["m"]  # nothing half-done
    assert mgmt.ok("delete_model_links", {"app_name": "app", "model_names": ["m"]}) == "Success!"
    assert mgmt.ok("get_linked_models", {"app_name": "app"}) == []
    assert link(mgmt).status_code == 200  # relinking works after unlinking


def test_get_linked_models_of_unknown_app(mgmt) -> None:
    assert mgmt.error("get_linked_models", {"app_name": "x"}) == \
        "No application with name 'x' exists."


# -- models -------------------------------------------------------------------------------
def test_add_and_get_model(mgmt) -> None:
    assert add_model(mgmt, input_type="f") == \
        "Successfully added model with name 'm' and input type 'floats'"
    expected = {"model_name": "m", "model_version": "1", "input_type": "floats",
                "labels": ["l1", "l2"], "container_name": "img:1",
                "model_data_path": "DEPRECATED", "is_current_version": True}
    assert mgmt.ok("get_model", {"model_name": "m", "model_version": "1"}) == expected
    raw = mgmt.post("get_model", {"model_name": "m", "model_version": "1"}).text
    keys = list(expected)
    assert [raw.index(f'"{k}"') for k in keys] == sorted(raw.index(f'"{k}"') for k in keys)
    assert mgmt.ok("get_model", {"model_name": "m", "model_version": "2"}) == {}
    stored = mgmt.store.get_model_version("m", "1")
    assert (stored.batch_size, stored.image, stored.labels) == (-1, "img:1", ("l1", "l2"))


def test_add_model_optional_fields_and_empty_labels(mgmt) -> None:
    mgmt.ok("add_model", {"model_name": "m", "model_version": "1", "input_type": "bytes"})
    got = mgmt.ok("get_model", {"model_name": "m", "model_version": "1"})
    assert got["labels"] == []  # the original answered [""]
    assert got["container_name"] == "NO_CONTAINER"
    assert mgmt.store.get_model_version("m", "1").batch_size == -1
    add_model(mgmt, "n", labels=[])
    assert mgmt.ok("get_model", {"model_name": "n", "model_version": "1"})["labels"] == []


@pytest.mark.parametrize("batch_size", [0, -2, -100])
def test_add_model_batch_size_rule(mgmt, batch_size) -> None:
    body = {"model_name": "m", "model_version": "1", "input_type": "bytes",
            "batch_size": batch_size}
    assert mgmt.error("add_model", body) == \
        "The batch size must be positive or DEFAULT_BATCH_SIZE, which is -1"


def test_add_model_positive_batch_size(mgmt) -> None:
    add_model(mgmt, batch_size=16)
    assert mgmt.store.get_model_version("m", "1").batch_size == 16


@pytest.mark.parametrize(("field", "value", "what"), [
    ("model_name", "a:b", "model name"), ("model_name", "a,b", "model name"),
    ("model_version", "1:2", "model version"), ("model_version", "", "model version"),
    ("labels", ["ok", "x,y"], "label"), ("labels", [""], "label"),
])
def test_add_model_rejects_bad_names(mgmt, field, value, what) -> None:
    body = {"model_name": "m", "model_version": "1", "input_type": "bytes", field: value}
    assert mgmt.error("add_model", body).startswith(f"Invalid {what} supplied:")
    assert mgmt.ok("get_all_models", {"verbose": False}) == []


def test_add_model_duplicate_and_bad_type(mgmt) -> None:
    add_model(mgmt)
    assert mgmt.error("add_model", {"model_name": "m", "model_version": "1",
                                    "input_type": "doubles"}) == \
        "model with name 'm' and version '1' already exists"
    assert "is not a valid input type" in mgmt.error(
        "add_model", {"model_name": "m", "model_version": "2", "input_type": "matrix"})
    assert "Invalid container_name ''" in mgmt.error(
        "add_model", {"model_name": "m", "model_version": "2", "input_type": "doubles",
                      "container_name": ""})


def test_new_version_must_match_linked_apps(mgmt) -> None:
    add_app(mgmt)
    add_model(mgmt)
    link(mgmt)
    body = {"model_name": "m", "model_version": "2", "input_type": "ints"}
    assert mgmt.error("add_model", body) == (
        "Model with name 'm' is already linked to app 'app' using input type 'doubles'. The "
        "input type you provided for a new version of the model, 'integers', is not "
        "compatible.")
    assert mgmt.ok("get_model", {"model_name": "m", "model_version": "2"}) == {}


def test_every_new_version_becomes_current_and_set_model_version(mgmt) -> None:
    add_model(mgmt, version="1")
    add_model(mgmt, version="2")
    current = [(m["model_version"], m["is_current_version"])
               for m in mgmt.ok("get_all_models", {"verbose": True})]
    assert current == [("1", False), ("2", True)]
    assert mgmt.ok("set_model_version", {"model_name": "m", "model_version": "1"}) == \
        "Successfully set model with name 'm' to version '1'"
    assert mgmt.ok("get_model", {"model_name": "m", "model_version": "1"})[
        "is_current_version"] is True
    assert mgmt.store.get_current_version("m") == "1"
    assert mgmt.error("set_model_version", {"model_name": "x", "model_version": "1"}) == \
        "Cannot set version for nonexistent model 'x'"
    assert mgmt.error("set_model_version", {"model_name": "m", "model_version": "9"}) == \
        "Cannot set non-existent version '9' for model with name 'm'"


def test_set_model_version_must_match_linked_apps(mgmt) -> None:
    add_model(mgmt, version="s", input_type="strings")
    add_model(mgmt, version="d", input_type="doubles")
    add_app(mgmt)
    link(mgmt)
    assert mgmt.error("set_model_version", {"model_name": "m", "model_version": "s"}) == (
        "Model with name 'm' is already linked to app 'app' using input type 'doubles'. The "
        "input type of version 's', 'strings', is not compatible.")
    assert mgmt.store.get_current_version("m") == "d"


def test_delete_versioned_model_is_synchronous(mgmt) -> None:
    add_model(mgmt, version="1")
    add_model(mgmt, version="2")
    assert mgmt.ok("delete_versioned_model", {"model_name": "m", "model_version": "2"}) == \
        "Successfully deleted model with name 'm' and version '2'"
    assert mgmt.ok("get_all_models", {"verbose": False}) == ["m:1"]
    assert mgmt.ok("get_model", {"model_name": "m", "model_version": "2"}) == {}
    assert mgmt.store.get_current_version("m") is None  # it was current: none is now
    assert mgmt.error("delete_versioned_model", {"model_name": "m", "model_version": "2"}) == \
        "model with name 'm' and version '2' does not exist"


def test_get_all_models(mgmt) -> None:
    assert mgmt.ok("get_all_models", {"verbose": True}) == []
    add_model(mgmt, "b", "1")
    add_model(mgmt, "a", "x")
    add_model(mgmt, "b", "2")
    assert mgmt.ok("get_all_models", {"verbose": False}) == ["b:1", "a:x", "b:2"]
    verbose = mgmt.ok("get_all_models", {"verbose": True})
    assert [(m["model_name"], m["model_version"], m["is_current_version"]) for m in verbose] \
        == [("b", "1", False), ("a", "x", True), ("b", "2", True)]


# -- containers ---------------------------------------------------------------------------
def test_containers_come_from_the_store(mgmt) -> None:
    assert mgmt.ok("get_all_containers", {"verbose": True}) == []
    mgmt.store.add_replica(Replica("m", "1", 0, InputType.DOUBLES, "fe"))
    mgmt.store.add_replica(Replica("m", "1", 1, InputType.DOUBLES, "fe"))
    mgmt.store.add_replica(Replica("n", "v2", 0, InputType.BYTES, "fe"))
    assert mgmt.ok("get_all_containers", {"verbose": False}) == ["m:1:0", "m:1:1", "n:v2:0"]
    first = {"model_id": "m:1", "model_name": "m", "model_version": "1",
             "model_replica_id": 0, "input_type": "doubles"}
    assert mgmt.ok("get_all_containers", {"verbose": True})[0] == first
    raw = mgmt.post("get_container", {"model_name": "m", "model_version": "1",
                                      "replica_id": 0}).text
    assert raw == ('{"model_id":"m:1","model_name":"m","model_version":"1",'
                   '"model_replica_id":0,"input_type":"doubles"}')
    assert mgmt.ok("get_container", {"model_name": "n", "model_version": "v2",
                                     "replica_id": 0})["input_type"] == "bytes"
    assert mgmt.ok("get_container", {"model_name": "m", "model_version": "1",
                                     "replica_id": 7}) == {}


# -- state and status ---------------------------------------------------------------------
def test_get_state(mgmt) -> None:
    add_app(mgmt, default='{"y": 1}')
    resp = mgmt.post("get_state", {"app_name": "app", "uid": 0})
    assert (resp.status_code, resp.text) == (200, '{"y": 1}')  # raw, not JSON-encoded
    assert mgmt.ok("get_state", {"app_name": "app", "uid": 12}) == '{"y": 1}'
    assert mgmt.ok("get_state", {"app_name": "nope", "uid": 0}) == ""


def test_get_status(mgmt) -> None:
    assert mgmt.ok("get_status") == {"applications": 0, "links": 0, "models": 0,
                                     "model_versions": 0, "replicas": 0}
    add_app(mgmt)
    add_app(mgmt, "other")
    add_model(mgmt, version="1")
    add_model(mgmt, version="2")
    add_model(mgmt, "n")
    link(mgmt)
    mgmt.store.add_replica(Replica("m", "2", 0, InputType.DOUBLES, "fe"))
    assert mgmt.ok("get_status", {}) == {"applications": 2, "links": 1, "models": 2,
                                         "model_versions": 3, "replicas": 1}


def test_selection_policy_routes_and_several_links(mgmt) -> None:
    add_app(mgmt)
    add_model(mgmt, "m")
    add_model(mgmt, "n")
    assert mgmt.error("set_selection_policy", {"app_name": "app", "policy": "nope"}).startswith(
        "No selection policy named 'nope' is installed")
    assert "has no parameter alpha" in mgmt.error(
        "set_selection_policy", {"app_name": "app", "policy": "exp3", "params": {"alpha": 1}})
    assert "expected type object" in mgmt.error(
        "set_selection_policy", {"app_name": "app", "policy": "exp3", "params": [1]})
    assert mgmt.ok("set_selection_policy", {"app_name": "app", "policy": "thompson",
                                            "params": {"per_user": True}}) == \
        "Successfully set the selection policy of 'app' to 'thompson'"
    assert mgmt.ok("get_selection_state", {"app_name": "app", "uid": 3}) == {
        "policy": "thompson", "params": {"per_user": True}, "learned": {}}
    assert link(mgmt, models=("m", "n")).text == \
        "Successfully linked model with name 'm', 'n' to application 'app'"
    assert mgmt.ok("get_linked_models", {"app_name": "app"}) == ["m", "n"]


@pytest.mark.parametrize(("route", "body", "names"), [
    ("set_traffic_split", {"model_name": "m", "weights": {"1": 90, "9": 10}},
     "Unknown version '9'"),
    ("set_traffic_split", {"model_name": "m", "weights": {"1": 0, "2": 0}}, "sum to a positive"),
    ("set_traffic_split", {"model_name": "m", "weights": {"1": -5, "2": 10}}, "version '1'"),
    ("set_traffic_split", {"model_name": "m", "weights": {"1": "lots"}}, "'lots'"),
    ("set_traffic_split", {"model_name": "m", "weights": []}, "key weights expected type object"),
    ("set_shadow_versions", {"model_name": "m", "versions": ["7"]}, "shadow version '7'"),
    ("set_shadow_versions", {"model_name": "m", "versions": ["2"]}, "is current"),
    ("promote_canary", {"model_name": "m"}, "no canary version"),
    ("rollback", {"model_name": "m"}, "nothing to roll back"),
])
def test_bad_input_to_the_traffic_routes_is_a_400_naming_it(mgmt, route, body, names) -> None:
    add_model(mgmt, "m", "1")
    add_model(mgmt, "m", "2")
    assert names in mgmt.error(route, body)
    assert mgmt.ok("get_traffic", {"model_name": "m"}) == {
        "current": "2", "split": {}, "shadows": [], "previous": None}  # nothing was written


def test_traffic_routes_split_promote_and_roll_back(mgmt) -> None:
    add_model(mgmt, "m", "1")
    add_model(mgmt, "m", "2")
    mgmt.ok("set_model_version", {"model_name": "m", "model_version": "1"})
    assert "No model with name 'zzz'" in mgmt.error("get_traffic", {"model_name": "zzz"})
    assert mgmt.ok("set_traffic_split", {"model_name": "m", "weights": {"1": 95, "2": 5}}) == \
        "Successfully split the traffic of model 'm' (1: 95, 2: 5)"
    assert mgmt.ok("set_shadow_versions", {"model_name": "m", "versions": ["2"]})
    assert mgmt.ok("get_traffic", {"model_name": "m"}) == {
        "current": "1", "split": {"1": 95, "2": 5}, "shadows": ["2"], "previous": "1"}
    assert mgmt.ok("promote_canary", {"model_name": "m"}) == \
        "Promoted version '2' of model 'm' to current"
    assert mgmt.ok("rollback", {"model_name": "m"}) == "Rolled model 'm' back to version '1'"
    assert mgmt.ok("get_traffic", {"model_name": "m"}) == {
        "current": "1", "split": {}, "shadows": [], "previous": None}
