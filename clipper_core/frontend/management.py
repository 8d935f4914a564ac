"""The management REST API (port 1338): the rules of Clipper's management service over HTTP.

:class:`ManagementService` holds the rules (spec §2.2, with the original's quirks fixed);
:class:`ManagementFrontend` serves them on ``/admin/<route>``. Every route except
``GET /admin/ping`` is a ``POST`` with a JSON object body whose keys are the parameters of
the service method of the same name. Success bodies are plain-text sentences or JSON, as in
the original; rule and input errors are 400 with a plain-text message (what
``clipper_admin`` prints); unknown routes, wrong methods and missing tokens get a JSON
``{"error", "cause"}`` body. See ``docs/management-api.md``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import attrs
import orjson

from clipper_core import plugins
from clipper_core.config import SECRETS_FILE, ClusterConfig, is_loopback
from clipper_core.exceptions import ClipperError, ConflictError, NotFoundError, ValidationError
from clipper_core.frontend.dashboard import dashboard_file, is_dashboard_path
from clipper_core.frontend.http import HttpServer, Request, Responder, error_body
from clipper_core.frontend.traffic import check_weights, parse_traffic
from clipper_core.selection.api import split_parameters
from clipper_core.store.api import StateStore
from clipper_core.types import (
    ADAPTIVE_BATCH_SIZE,
    CONTAINERLESS_MODEL_IMAGE,
    Application,
    InputType,
    ModelVersion,
    Replica,
    validate_name,
)

log = logging.getLogger(__name__)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"

JsonValue = str | list[Any] | dict[str, Any]
#: ``scale(name, version, input_type, image, num_replicas)``: the backend's
#: ``ContainerManager.set_num_replicas``, when the management process can run replicas.
Scaler = Callable[[str, str, str, str, int], None]


class ManagementService:
    """The rules of the management API over a :class:`StateStore`.

    Each public method is one route; its parameters are the route's JSON keys (already
    type-checked by the frontend). Methods return the success body: a ``str`` is sent as
    plain text, anything else as JSON. Rule violations raise :class:`ClipperError`.
    """

    def __init__(self, store: StateStore, scale: Scaler | None = None,
                 max_replicas: int = attrs.fields(ClusterConfig).max_replicas.default) -> None:
        self.store = store
        self.scale = scale
        self.max_replicas = max_replicas

    # -- applications -------------------------------------------------------------------
    def add_app(self, name: str, input_type: str, default_output: str,
                latency_slo_micros: int) -> str:
        validate_name(name, "application name")
        parsed = InputType.parse(input_type)
        if latency_slo_micros <= 0:
            msg = (f"Invalid latency_slo_micros {latency_slo_micros} for application '{name}'. "
                   "Expected a positive number of microseconds")
            raise ValidationError(msg)
        if self.store.get_application(name) is not None:
            raise ConflictError(f"application '{name}' already exists")
        self.store.add_application(Application(name, parsed, default_output, latency_slo_micros))
        return f"Successfully added application with name '{name}'"

    def delete_app(self, name: str) -> str:
        if self.store.get_application(name) is None:
            raise NotFoundError(f"Application '{name}' does not exist")
        self.store.delete_application(name)
        return f"Successfully deleted application with name '{name}'"

    # -- links --------------------------------------------------------------------------
    def add_model_links(self, app_name: str, model_names: list[str]) -> str:
        app = self.store.get_application(app_name)
        if app is None:
            raise NotFoundError(f"No app with name '{app_name}' exists.")
        for model_name in model_names:
            model = self._current_model(model_name)
            if model.input_type != app.input_type:
                msg = (f"Model with name '{model_name}' has incompatible input_type "
                       f"'{model.input_type.canonical}'. Requested app to link to has "
                       f"input_type '{app.input_type.canonical}'.")
                raise ValidationError(msg)
        if not model_names:
            msg = ("Please provide the name of the model that you want to link to the "
                   f"application '{app_name}'")
            raise ValidationError(msg)
        single = app.policy in ("default", "DefaultOutputSelectionPolicy")
        if single and len(model_names) > 1:
            msg = ("Applications must be linked with at most one model. Attempted to add "
                   f"links to {len(model_names)} models.")
            raise ValidationError(msg)
        existing = self.store.get_links(app_name)
        for model_name in model_names:
            if model_name in existing:
                msg = f"The model with name '{model_name}' is already linked to '{app_name}'"
                raise ConflictError(msg)
        if single and existing:
            msg = f"A model with name {existing[0]} is already linked to '{app_name}'."
            raise ConflictError(msg)
        for model_name in dict.fromkeys(model_names):
            self.store.add_link(app_name, model_name)
        linked = ", ".join(f"'{name}'" for name in dict.fromkeys(model_names))
        return f"Successfully linked model with name {linked} to application '{app_name}'"

    def _current_model(self, model_name: str) -> ModelVersion:
        current = self.store.get_current_version(model_name)
        model = self.store.get_model_version(model_name, current) if current else None
        if model is not None:
            return model
        if self.store.list_model_versions(model_name):
            msg = (f"Model with name '{model_name}' has no current version. Make one "
                   "current with set_model_version first.")
            raise ValidationError(msg)
        raise NotFoundError(f"No model with name '{model_name}' exists.")

    def delete_model_links(self, app_name: str, model_names: list[str]) -> str:
        if self.store.get_application(app_name) is None:
            raise NotFoundError(f"No app with name {app_name} exists.")
        linked = self.store.get_links(app_name)
        for model_name in model_names:
            if model_name not in linked:
                msg = (f"Cannot remove nonexistent link between app {app_name} "
                       f"and model {model_name}")
                raise NotFoundError(msg)
        for model_name in dict.fromkeys(model_names):
            self.store.delete_link(app_name, model_name)
        return "Success!"

    # -- model versions -----------------------------------------------------------------
    def add_model(self, model_name: str, model_version: str, labels: list[str],
                  input_type: str, container_name: str, model_data_path: str,
                  batch_size: int) -> str:
        if batch_size <= 0 and batch_size != ADAPTIVE_BATCH_SIZE:
            raise ValidationError(
                "The batch size must be positive or DEFAULT_BATCH_SIZE, which is -1")
        validate_name(model_name, "model name")
        validate_name(model_version, "model version")
        for label in labels:
            validate_name(label, "label")
        parsed = InputType.parse(input_type)
        if not container_name:
            msg = ("Invalid container_name ''. Expected the image the model's replicas run, "
                   f"or {CONTAINERLESS_MODEL_IMAGE} for a model without containers")
            raise ValidationError(msg)
        if self.store.get_model_version(model_name, model_version) is not None:
            msg = (f"model with name '{model_name}' and version '{model_version}' "
                   "already exists")
            raise ConflictError(msg)
        self._check_linked_apps(model_name, parsed, "you provided for a new version of the model")
        self.store.add_model_version(ModelVersion(
            model_name, model_version, parsed, tuple(labels), container_name, batch_size,
            model_data_path))
        return (f"Successfully added model with name '{model_name}' and input type "
                f"'{parsed.canonical}'")

    def _check_linked_apps(self, model_name: str, input_type: InputType, what: str) -> None:
        for app_name in self.store.apps_linked_to(model_name):
            app = self.store.get_application(app_name)
            if app is not None and app.input_type != input_type:
                msg = (f"Model with name '{model_name}' is already linked to app '{app_name}' "
                       f"using input type '{app.input_type.canonical}'. The input type {what}, "
                       f"'{input_type.canonical}', is not compatible.")
                raise ValidationError(msg)

    def set_model_version(self, model_name: str, model_version: str) -> str:
        versions = self.store.list_model_versions(model_name)
        if not versions:
            raise NotFoundError(f"Cannot set version for nonexistent model '{model_name}'")
        model = next((m for m in versions if m.version == model_version), None)
        if model is None:
            msg = (f"Cannot set non-existent version '{model_version}' for model with name "
                   f"'{model_name}'")
            raise NotFoundError(msg)
        self._check_linked_apps(model_name, model.input_type,
                                f"of version '{model_version}'")
        self.store.set_current_version(model_name, model_version)
        return f"Successfully set model with name '{model_name}' to version '{model_version}'"

    def set_num_replicas(self, model_name: str, model_version: str, num_replicas: int) -> str:
        """Run ``num_replicas`` replicas of a model version (new route, for the dashboard)."""
        if self.scale is None:
            msg = ("This management API cannot start replicas (only the embedded default's "
                   "server process runs them itself). Use `clipper scale` or "
                   "ClipperConnection.set_num_replicas")
            raise ValidationError(msg)
        if not 0 <= num_replicas <= self.max_replicas:
            raise ValidationError(
                f"Invalid num_replicas {num_replicas}. Expected 0 to {self.max_replicas} (the "
                "cluster's max_replicas)")
        model = self.store.get_model_version(model_name, model_version)
        if model is None:
            msg = (f"model with name '{model_name}' and version '{model_version}' "
                   "does not exist")
            raise NotFoundError(msg)
        if model.image == CONTAINERLESS_MODEL_IMAGE:
            raise ValidationError(
                f"Cannot resize the replica set for containerless model {model.key}")
        self.scale(model_name, model_version, model.input_type.canonical, model.image,
                   num_replicas)
        return (f"Model with name '{model_name}' and version '{model_version}' now has "
                f"{num_replicas} replica(s)")

    def delete_versioned_model(self, model_name: str, model_version: str) -> str:
        if self.store.get_model_version(model_name, model_version) is None:
            msg = (f"model with name '{model_name}' and version '{model_version}' "
                   "does not exist")
            raise NotFoundError(msg)
        self.store.delete_model_version(model_name, model_version)
        return (f"Successfully deleted model with name '{model_name}' and version "
                f"'{model_version}'")

    # -- reads --------------------------------------------------------------------------
    def get_all_applications(self, verbose: bool) -> list[Any]:
        apps = self.store.list_applications()
        if not verbose:
            return [app.name for app in apps]
        return [self._app_json(app) for app in apps]

    def get_application(self, name: str) -> dict[str, Any]:
        app = self.store.get_application(name)
        return {} if app is None else self._app_json(app)

    def _app_json(self, app: Application) -> dict[str, Any]:
        return {
            "input_type": app.input_type.canonical,
            "default_output": app.default_output,
            "latency_slo_micros": app.latency_slo_micros,
            "name": app.name,
            "linked_models": self.store.get_links(app.name),
        }

    def get_linked_models(self, app_name: str) -> list[str]:
        if self.store.get_application(app_name) is None:
            raise NotFoundError(f"No application with name '{app_name}' exists.")
        return self.store.get_links(app_name)

    def get_all_models(self, verbose: bool) -> list[Any]:
        models = self.store.list_model_versions()
        if not verbose:
            return [model.key for model in models]
        current = {name: self.store.get_current_version(name)
                   for name in dict.fromkeys(m.name for m in models)}
        return [_model_json(m, current[m.name] == m.version) for m in models]

    def get_model(self, model_name: str, model_version: str) -> dict[str, Any]:
        model = self.store.get_model_version(model_name, model_version)
        if model is None:
            return {}
        return _model_json(model, self.store.get_current_version(model_name) == model_version)

    def get_all_containers(self, verbose: bool) -> list[Any]:
        replicas = self.store.list_replicas()
        if not verbose:
            return [f"{r.model_name}:{r.model_version}:{r.replica_id}" for r in replicas]
        return [_replica_json(r) for r in replicas]

    def get_container(self, model_name: str, model_version: str,
                      replica_id: int) -> dict[str, Any]:
        for replica in self.store.list_replicas():
            if (replica.model_name, replica.model_version, replica.replica_id) == (
                    model_name, model_version, replica_id):
                return _replica_json(replica)
        return {}

    # -- selection policies ---------------------------------------------------------------
    def set_selection_policy(self, app_name: str, policy: str,
                             params: dict[str, Any]) -> str:
        """Give an application a selection policy (its learned state starts afresh)."""
        if self.store.get_application(app_name) is None:
            raise NotFoundError(f"No app with name '{app_name}' exists.")
        _, policy_params = split_parameters(params)
        plugins.selection_policies().get(policy)(**policy_params)
        self.store.set_selection_policy(app_name, policy, orjson.dumps(params).decode())
        return f"Successfully set the selection policy of '{app_name}' to '{policy}'"

    def get_selection_state(self, app_name: str, uid: int) -> dict[str, Any]:
        """The application's policy, its parameters and what it learned for ``uid``
        (``learned`` is {} before the first feedback is stored)."""
        app = self.store.get_application(app_name)
        if app is None:
            raise NotFoundError(f"No app with name '{app_name}' exists.")
        frontend, _ = split_parameters(orjson.loads(app.policy_params))
        stored = self.store.get_policy_states(app_name).get(str(uid) if frontend["per_user"]
                                                             else "")
        return {"policy": app.policy, "params": orjson.loads(app.policy_params),
                "learned": {} if stored is None else orjson.loads(stored)}

    # -- traffic between versions ---------------------------------------------------------
    def _traffic(self, model_name: str) -> tuple[list[str], str | None, dict[str, Any]]:
        """The model's versions, current version and traffic; NotFoundError if none."""
        versions = [m.version for m in self.store.list_model_versions(model_name)]
        if not versions:
            raise NotFoundError(f"No model with name '{model_name}' exists.")
        return (versions, self.store.get_current_version(model_name),
                parse_traffic(self.store.get_traffic(model_name)))

    def _set_traffic(self, model_name: str, traffic: dict[str, Any]) -> None:
        kept = {key: value for key, value in traffic.items() if value}
        self.store.set_traffic(model_name, orjson.dumps(kept).decode() if kept else None)

    def set_traffic_split(self, model_name: str, weights: dict[str, Any]) -> str:
        """Split the model's queries between versions by weight (a canary)."""
        versions, current, traffic = self._traffic(model_name)
        check_weights(model_name, weights, versions)
        traffic["split"] = weights
        traffic["previous"] = traffic["previous"] or current
        self._set_traffic(model_name, traffic)
        shares = ", ".join(f"{v}: {w}" for v, w in weights.items())
        return f"Successfully split the traffic of model '{model_name}' ({shares})"

    def set_shadow_versions(self, model_name: str, versions: list[Any]) -> str:
        """Send a copy of the model's queries to ``versions`` ([]: no shadows)."""
        known, current, traffic = self._traffic(model_name)
        for version in versions:
            if version not in known:
                raise ValidationError(
                    f"Unknown shadow version '{version}' of model '{model_name}'; its versions "
                    f"are {', '.join(known)}")
            if version == current:
                raise ValidationError(
                    f"Version '{version}' of model '{model_name}' is current: it cannot shadow "
                    "itself; give a version that is not current")
        traffic["shadows"] = list(dict.fromkeys(versions))
        traffic["previous"] = traffic["previous"] or current
        self._set_traffic(model_name, traffic)
        return (f"Model '{model_name}' now mirrors its traffic to "
                f"{', '.join(versions) or 'no version'}")

    def promote_canary(self, model_name: str) -> str:
        """Make the canary (the split's non-current version with the largest weight) current
        with all traffic; :meth:`rollback` returns to the version current before."""
        _, current, traffic = self._traffic(model_name)
        canaries = [(w, v) for v, w in traffic["split"].items() if v != current and w > 0]
        if not canaries:
            raise ValidationError(
                f"Model '{model_name}' has no canary version to promote; split its traffic "
                "with set_traffic_split first")
        canary = max(canaries)[1]
        self.store.set_current_version(model_name, canary)
        self._set_traffic(model_name, {"previous": traffic["previous"] or current})
        return f"Promoted version '{canary}' of model '{model_name}' to current"

    def rollback(self, model_name: str) -> str:
        """Send all traffic back to the version that was current before the traffic was
        split, shadowed or promoted, and forget the split and shadows."""
        versions, _, traffic = self._traffic(model_name)
        previous = traffic["previous"]
        if previous is None:
            raise ValidationError(
                f"Model '{model_name}' has nothing to roll back: its traffic was never split, "
                "shadowed or promoted")
        if previous not in versions:
            raise ValidationError(
                f"Cannot roll model '{model_name}' back to version '{previous}': it was deleted")
        self.store.set_current_version(model_name, previous)
        self._set_traffic(model_name, {})
        return f"Rolled model '{model_name}' back to version '{previous}'"

    def get_traffic(self, model_name: str) -> dict[str, Any]:
        """The model's current version, split, shadows and previous version."""
        _, current, traffic = self._traffic(model_name)
        return {"current": current, **traffic}

    def get_state(self, app_name: str, uid: int) -> str:
        """The app's default output (personalized state is not supported: ``uid`` is ignored)."""
        app = self.store.get_application(app_name)
        return "" if app is None else app.default_output

    def get_status(self) -> dict[str, int]:
        """Counts of what the cluster holds (new route, for the CLI)."""
        apps = self.store.list_applications()
        models = self.store.list_model_versions()
        return {
            "applications": len(apps),
            "links": sum(len(self.store.get_links(app.name)) for app in apps),
            "models": len({m.name for m in models}),
            "model_versions": len(models),
            "replicas": len(self.store.list_replicas()),
        }


def _model_json(model: ModelVersion, is_current: bool) -> dict[str, Any]:
    return {
        "model_name": model.name,
        "model_version": model.version,
        "input_type": model.input_type.canonical,
        "labels": list(model.labels),
        "container_name": model.image,
        "model_data_path": model.model_data_path,
        "is_current_version": is_current,
    }


def _replica_json(replica: Replica) -> dict[str, Any]:
    return {
        "model_id": f"{replica.model_name}:{replica.model_version}",
        "model_name": replica.model_name,
        "model_version": replica.model_version,
        "model_replica_id": replica.replica_id,
        "input_type": replica.input_type.canonical,
    }


# -- request parsing ---------------------------------------------------------------------
_REQUIRED = object()
_TYPE_NAMES = {str: "string", bool: "bool", int: "int", float: "float", list: "array",
               dict: "object", type(None): "null"}
_INPUT_TYPES = '"integers" | "bytes" | "floats" | "doubles" | "strings"'


@attrs.frozen
class Field:
    """One JSON key of a route: ``kind`` is ``str``, ``int``, ``bool``, ``list`` (of strings)."""

    name: str
    kind: type
    default: Any = _REQUIRED
    #: What the schema text shows for the value (defaults to the kind's name).
    shown: str = ""

    def schema(self) -> str:
        shown = self.shown or ("[string]" if self.kind is list else _TYPE_NAMES[self.kind])
        optional = "" if self.default is _REQUIRED else " (optional)"
        return f'"{self.name}" := {shown}{optional}'

    def check(self, value: Any) -> Any:
        """Return ``value`` if it has this field's JSON type, else raise a message."""
        found = _TYPE_NAMES.get(type(value), type(value).__name__)
        if self.kind is list:
            if not isinstance(value, list):
                raise _Mismatch(f"Type mismatch! JSON key {self.name} expected type array of "
                                f"strings but found type {found}")
            for item in value:
                if not isinstance(item, str):
                    item_type = _TYPE_NAMES.get(type(item), type(item).__name__)
                    raise _Mismatch(f"Array input of type {item_type} is not of type string "
                                    f"(JSON key {self.name} expects an array of strings)")
            return value
        if self.kind is dict and not isinstance(value, dict):
            raise _Mismatch(f"Type mismatch! JSON key {self.name} expected type object but "
                            f"found type {found}")
        if type(value) is not self.kind:
            raise _Mismatch(f"Type mismatch! JSON key {self.name} expected type "
                            f"{_TYPE_NAMES[self.kind]} but found type {found}")
        if self.kind is int and not INT32_MIN <= value <= INT32_MAX:
            raise _Mismatch(f"JSON key {self.name} expected a 32-bit int in "
                            f"[{INT32_MIN}, {INT32_MAX}] but found {value}")
        return value


class _Mismatch(Exception):
    """A JSON body that does not match its route's schema (turned into a 400)."""


@attrs.frozen
class Route:
    """One ``POST /admin/<name>`` route: its JSON keys, in schema order."""

    name: str
    fields: tuple[Field, ...]

    @property
    def schema(self) -> str:
        return "{" + ", ".join(f.schema() for f in self.fields) + "}"

    def parse(self, body: bytes) -> dict[str, Any]:
        """Decode and type-check a request body into the service method's keyword arguments."""
        if not self.fields and not body.strip():
            return {}
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(self._error(f"JSON parse error: {exc}")) from None
        if not isinstance(data, dict):
            found = _TYPE_NAMES.get(type(data), type(data).__name__)
            raise ValidationError(self._error(f"Expected a JSON object but found type {found}"))
        kwargs = {}
        try:
            for field in self.fields:
                if field.name in data:
                    kwargs[field.name] = field.check(data[field.name])
                elif field.default is _REQUIRED:
                    raise _Mismatch(f"JSON object does not have required key {field.name}")
                else:
                    kwargs[field.name] = field.default
        except _Mismatch as exc:
            raise ValidationError(self._error(str(exc))) from None
        return kwargs

    def _error(self, what: str) -> str:
        return f"Error parsing JSON: {what}. Expected JSON schema: {self.schema}"


def _routes(*routes: Route) -> dict[bytes, Route]:
    return {f"/admin/{r.name}".encode(): r for r in routes}


_TYPE = Field("input_type", str, shown=_INPUT_TYPES)
ROUTES = _routes(
    Route("add_app", (Field("name", str), _TYPE, Field("default_output", str),
                      Field("latency_slo_micros", int))),
    Route("delete_app", (Field("name", str),)),
    Route("add_model_links", (Field("app_name", str), Field("model_names", list))),
    Route("delete_model_links", (Field("app_name", str), Field("model_names", list))),
    Route("add_model", (Field("model_name", str), Field("model_version", str),
                        Field("labels", list, []), _TYPE,
                        Field("container_name", str, CONTAINERLESS_MODEL_IMAGE),
                        Field("model_data_path", str, "DEPRECATED"),
                        Field("batch_size", int, ADAPTIVE_BATCH_SIZE))),
    Route("set_model_version", (Field("model_name", str), Field("model_version", str))),
    Route("set_num_replicas", (Field("model_name", str), Field("model_version", str),
                               Field("num_replicas", int))),
    Route("delete_versioned_model", (Field("model_name", str), Field("model_version", str))),
    Route("get_all_applications", (Field("verbose", bool, False),)),
    Route("get_application", (Field("name", str),)),
    Route("get_linked_models", (Field("app_name", str),)),
    Route("get_all_models", (Field("verbose", bool, False),)),
    Route("get_model", (Field("model_name", str), Field("model_version", str))),
    Route("get_all_containers", (Field("verbose", bool, False),)),
    Route("get_container", (Field("model_name", str), Field("model_version", str),
                            Field("replica_id", int))),
    Route("get_state", (Field("app_name", str), Field("uid", int, 0))),
    Route("get_status", ()),
    Route("set_selection_policy", (Field("app_name", str), Field("policy", str),
                                   Field("params", dict, {}))),
    Route("get_selection_state", (Field("app_name", str), Field("uid", int, 0))),
    Route("set_traffic_split", (Field("model_name", str), Field("weights", dict))),
    Route("set_shadow_versions", (Field("model_name", str), Field("versions", list))),
    Route("promote_canary", (Field("model_name", str),)),
    Route("rollback", (Field("model_name", str),)),
    Route("get_traffic", (Field("model_name", str),)),
)
PING_PATH = b"/admin/ping"


class ManagementFrontend:
    """Serves :class:`ManagementService` on ``config.management_host:management_port``.

    Requests are parsed on the event loop; the service runs on one worker thread, so store
    I/O never blocks the loop and the check-then-write rules of one process never interleave.
    """

    def __init__(self, config: ClusterConfig, store: StateStore,
                 scale: Scaler | None = None) -> None:
        self.config = config
        self.service = ManagementService(store, scale, config.max_replicas)
        self._token = config.management_token.encode() if config.management_token else None
        #: Off loopback (or with require_management_token) every route but ping needs the token.
        self._token_required = (config.require_management_token
                                or not is_loopback(config.management_host))
        if self._token_required and self._token is None:
            msg = (f"The management API on {config.management_host} would answer anyone: "
                   "off loopback (or with require_management_token) it needs a "
                   "management_token. start_clipper generates one; or bind it to 127.0.0.1")
            raise ValidationError(msg)
        where = config.secrets_file or f"~/.clipper/{config.cluster_name}/{SECRETS_FILE}"
        self._unauthorized = error_body(
            HTTPStatus.UNAUTHORIZED.phrase,
            "This management API requires a token. Send the header 'Authorization: Bearer "
            f"<token>' with the cluster's management_token: start_clipper wrote it to {where} "
            "on the machine that started the cluster (or into its backend's secret store); "
            "ClipperConnection and the clipper CLI send it by themselves and `clipper token` "
            "prints it")
        self._http = HttpServer.for_config(config, self._handle, log.exception)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="clipper-management")
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._http.start(self.config.management_host, self.config.management_port)
        log.info("management API listening on %s:%d", self.config.management_host, self.port)

    @property
    def port(self) -> int:
        return self._http.port

    async def stop(self) -> None:
        await self._http.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False)

    # -- request handling ---------------------------------------------------------------
    def _handle(self, request: Request, responder: Responder) -> None:
        path = request.path.rstrip(b"/") if request.path != b"/" else request.path
        if path == PING_PATH:
            if request.method == b"GET":
                responder.send(200, b"PONG", _TEXT)
            else:
                _method_not_allowed(request, responder, b"GET")
            return
        if is_dashboard_path(path):
            self._dashboard(request, path, responder)
            return
        refusal = self._auth_refusal(request)
        if refusal == 401:
            responder.send(401, self._unauthorized,
                           extra_headers=((b"WWW-Authenticate", b"Bearer"),))
            return
        if refusal == 403:
            host = request.headers.get(b"host", b"").decode("latin-1")
            responder.send(403, error_body(HTTPStatus.FORBIDDEN.phrase, (
                f"Host {host!r} refused: this management API is bound to loopback and answers "
                "requests addressed to localhost only (a page on another name may be a DNS "
                "rebinding attack); send the management token to use another name")))
            return
        refusal = _cross_origin_refusal(request, path)
        if refusal is not None:
            responder.send(refusal[0], error_body(HTTPStatus(refusal[0]).phrase, refusal[1]))
            return
        route = ROUTES.get(path)
        if route is None:
            known = ", ".join(["GET /admin/ping", *(f"POST {p.decode()}" for p in ROUTES)])
            responder.send(404, error_body(
                HTTPStatus.NOT_FOUND.phrase,
                f"No management route {path.decode('utf-8', 'replace')}. Known routes: {known}"))
            return
        if request.method != b"POST":
            _method_not_allowed(request, responder, b"POST")
            return
        try:
            kwargs = route.parse(request.body)
        except ClipperError as exc:
            responder.send(400, exc.msg.encode(), _TEXT)
            return
        task = asyncio.get_running_loop().create_task(self._call(route, kwargs, responder))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dashboard(self, request: Request, path: bytes, responder: Responder) -> None:
        """The dashboard's static files (no secrets in them: the token stays in the browser)."""
        if request.method != b"GET":
            _method_not_allowed(request, responder, b"GET")
            return
        found = dashboard_file(path, self.config.query_port)
        if found is None:
            responder.send(404, error_body(HTTPStatus.NOT_FOUND.phrase,
                                           f"No dashboard file {path.decode('utf-8', 'replace')}"))
            return
        responder.send(200, *found)

    def _auth_refusal(self, request: Request) -> int | None:
        """401 (token needed or wrong), 403 (a foreign Host on loopback) or None (go on).

        A token that is sent is always checked; without one, a loopback-bound API answers
        requests whose Host names this machine (as the original Clipper's clients expect).
        """
        header = request.headers.get(b"authorization")
        if self._token is not None and (header is not None or self._token_required):
            scheme, _, token = (header or b"").partition(b" ")
            valid = scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(),
                                                                         self._token)
            return None if valid else 401
        return None if _names_this_machine(request.headers.get(b"host", b"")) else 403

    async def _call(self, route: Route, kwargs: dict[str, Any], responder: Responder) -> None:
        method = getattr(self.service, route.name)
        loop = asyncio.get_running_loop()
        try:
            result: JsonValue = await loop.run_in_executor(
                self._executor, lambda: method(**kwargs))
        except ClipperError as exc:
            # Clipper answers 400 to every refused call; a fault of the server keeps its status.
            status = exc.status if exc.status >= 500 else 400
            responder.send(status, exc.msg.encode(), _TEXT)
        except Exception:
            log.exception("management route %s failed", route.name)
            responder.send(500, error_body(
                HTTPStatus.INTERNAL_SERVER_ERROR.phrase,
                f"The management route {route.name} failed unexpectedly; see the server log"))
        else:
            if isinstance(result, str):
                responder.send(200, result.encode(), _TEXT)
            else:
                responder.send(200, orjson.dumps(result), _JSON)


#: Routes that change state: a browser page must not be able to drive them (see docs/security.md).
WRITE_ROUTES = frozenset(f"/admin/{name}".encode() for name in (
    "add_app", "delete_app", "add_model_links", "delete_model_links", "add_model",
    "set_model_version", "delete_versioned_model"))


def _cross_origin_refusal(request: Request, path: bytes) -> tuple[int, str] | None:
    """Why a request that a web page could have sent is refused (status, cause), or None.

    A cross-origin page can POST ``text/plain`` without a preflight, so writes need a JSON
    content type; and a request whose ``Origin`` is another site is refused outright.
    """
    origin = request.headers.get(b"origin")
    host = request.headers.get(b"host", b"")
    if origin is not None and origin.split(b"://", 1)[-1] != host:
        return 403, (f"Cross-origin request from {origin.decode('latin-1')} refused: the "
                     "management API only answers its own pages and non-browser clients")
    if path in WRITE_ROUTES and request.method == b"POST":
        content_type = request.headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            return 415, ("Management writes need the header 'Content-Type: application/json' "
                         f"(got {content_type.decode('latin-1') or 'none'!r})")
    return None


def _names_this_machine(host: bytes) -> bool:
    """True if a Host header (``name[:port]``, ``[v6][:port]``) is empty or a loopback name."""
    name = host[1:host.find(b"]")] if host.startswith(b"[") else host.rsplit(b":", 1)[0]
    return not name or is_loopback(name.decode("latin-1").lower())


def _method_not_allowed(request: Request, responder: Responder, allowed: bytes) -> None:
    responder.send(405, error_body(
        HTTPStatus.METHOD_NOT_ALLOWED.phrase,
        f"{request.path.decode('utf-8', 'replace')} accepts {allowed.decode()} requests, "
        f"not {request.method.decode('utf-8', 'replace')}"),
        extra_headers=((b"Allow", allowed),))
