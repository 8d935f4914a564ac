"""The shared state store: Redis, for several frontends (Docker, Kubernetes).

Key layout, under a prefix (``clipper:`` unless the URL says ``?prefix=...``)::

    <p>apps                  hash  app name -> "<seq> <json>"
    <p>links:<app>           zset  model name, scored by link order
    <p>models                hash  json [name, version] -> "<seq> <json>"
    <p>current               hash  model name -> current version
    <p>activations:<model>   zset  version, scored by when it was last made current
    <p>replicas              hash  json [name, version, id] -> "<seq> <json>"
    <p>replica_ids           hash  json [name, version] -> ids handed out so far
    <p>seq                   counter behind every "<seq>" and score (registration order)
    <p>policy:<app>          hash  key ("" or a user id) -> learned policy state (json)
    <p>traffic               hash  model name -> traffic management (json)

Every write is one Lua script: it checks, writes and ``PUBLISH``es its change on the channel
``<p>changes`` atomically. Each store object with subscribers runs one listener thread;
after a lost connection it resubscribes and delivers ``Change("resync", "")``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import orjson
import redis

from clipper_core.config import redact_url
from clipper_core.exceptions import ClipperError, ConflictError, NotFoundError, ValidationError
from clipper_core.hookspecs import hookimpl
from clipper_core.store.api import Change, StateStore, Subscription
from clipper_core.types import Application, InputType, ModelVersion, Replica

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "clipper:"
#: Longest pause between two attempts to reconnect the change feed.
MAX_RECONNECT_DELAY_S = 1.0

# Scripts return "OK", "CONFLICT" or "NOTFOUND". ARGV[1] is always the change channel.
_ADD_APP = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 'CONFLICT' end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[2], seq .. ' ' .. ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[4])
return 'OK'
"""
_DELETE_APP = """
if redis.call('HDEL', KEYS[1], ARGV[2]) == 0 then return 'NOTFOUND' end
redis.call('PUBLISH', ARGV[1], ARGV[3])
if redis.call('DEL', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[1], ARGV[4]) end
return 'OK'
"""
_ADD_LINK = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 'NOTFOUND' end
if redis.call('ZSCORE', KEYS[2], ARGV[3]) then return 'CONFLICT' end
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[4])
return 'OK'
"""
_DELETE_LINK = """
if redis.call('ZREM', KEYS[1], ARGV[2]) == 0 then return 'NOTFOUND' end
redis.call('PUBLISH', ARGV[1], ARGV[3])
return 'OK'
"""
# KEYS: models, seq, current, activations:<name>; ARGV: channel, field, value, name, version,
# change.
_ADD_MODEL = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 'CONFLICT' end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[2], seq .. ' ' .. ARGV[3])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('ZADD', KEYS[4], seq, ARGV[5])
redis.call('PUBLISH', ARGV[1], ARGV[6])
return 'OK'
"""
# KEYS: models, seq, current, activations:<name>; ARGV: channel, field, name, version, change.
_SET_CURRENT = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 'NOTFOUND' end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[2]), ARGV[4])
redis.call('PUBLISH', ARGV[1], ARGV[5])
return 'OK'
"""
# KEYS: models, current, activations:<name>; ARGV: channel, field, name, version, change.
_DELETE_MODEL = """
if redis.call('HDEL', KEYS[1], ARGV[2]) == 0 then return 'NOTFOUND' end
if redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[4] then redis.call('HDEL', KEYS[2], ARGV[3]) end
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[1], ARGV[5])
return 'OK'
"""
# KEYS: replicas, seq; ARGV: channel, field, value, change.
_ADD_REPLICA = """
redis.call('HSET', KEYS[1], ARGV[2], redis.call('INCR', KEYS[2]) .. ' ' .. ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[4])
return 'OK'
"""
_REMOVE_REPLICA = """
if redis.call('HDEL', KEYS[1], ARGV[2]) == 1 then redis.call('PUBLISH', ARGV[1], ARGV[3]) end
return 'OK'
"""
# KEYS: apps, policy states of the app; ARGV: channel, app name, app json, change.
_SET_POLICY = """
local old = redis.call('HGET', KEYS[1], ARGV[2])
if not old then return 'NOTFOUND' end
redis.call('HSET', KEYS[1], ARGV[2], string.sub(old, 1, string.find(old, ' ')) .. ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[4])
return 'OK'
"""
# KEYS: policy states of the app; ARGV: channel, key, state, change.
_PUT_POLICY_STATE = """
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[4])
return 'OK'
"""
# KEYS: traffic; ARGV: channel, model name, traffic json ("" to forget it), change.
_SET_TRAFFIC = """
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[2])
else redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) end
redis.call('PUBLISH', ARGV[1], ARGV[4])
return 'OK'
"""
# KEYS: replicas; ARGV: channel, frontend id.
_CLEAR_REPLICAS = """
local all = redis.call('HGETALL', KEYS[1])
local models = {}
for i = 1, #all, 2 do
  local value = all[i + 1]
  local replica = cjson.decode(string.sub(value, string.find(value, ' ') + 1))
  if replica.frontend_id == ARGV[2] then
    redis.call('HDEL', KEYS[1], all[i])
    models[replica.model_name] = true
  end
end
for name, _ in pairs(models) do
  redis.call('PUBLISH', ARGV[1], cjson.encode({'replica', name}))
end
return 'OK'
"""


def _key(*parts: object) -> str:
    return orjson.dumps(parts).decode()


def _sequenced(raw: dict[str, str]) -> list[dict[str, Any]]:
    """Decode ``"<seq> <json>"`` values, in sequence order."""
    items = []
    for value in raw.values():
        seq, _, data = value.partition(" ")
        items.append((int(seq), orjson.loads(data)))
    items.sort(key=lambda item: item[0])
    return [data for _, data in items]


def _unsequenced(value: str | None) -> dict[str, Any] | None:
    return None if value is None else orjson.loads(value.partition(" ")[2])


def _parse_change(data: bytes) -> Change | None:
    """The change a feed message announces (``[kind, name]``), or None if it is not one."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, list) and len(parsed) == 2 and all(isinstance(p, str) for p in parsed):
        return Change(*parsed)
    return None


def _app(data: dict[str, Any]) -> Application:
    return Application(data["name"], InputType(data["input_type"]), data["default_output"],
                       data["latency_slo_micros"], data["policy"],
                       data.get("policy_params", "{}"))


def _app_json(app: Application) -> str:
    return orjson.dumps({"name": app.name, "input_type": int(app.input_type),
                         "default_output": app.default_output,
                         "latency_slo_micros": app.latency_slo_micros, "policy": app.policy,
                         "policy_params": app.policy_params}).decode()


def _model(data: dict[str, Any]) -> ModelVersion:
    return ModelVersion(data["name"], data["version"], InputType(data["input_type"]),
                        tuple(data["labels"]), data["image"], data["batch_size"],
                        data["model_data_path"])


def _replica(data: dict[str, Any]) -> Replica:
    return Replica(data["model_name"], data["model_version"], data["replica_id"],
                   InputType(data["input_type"]), data["frontend_id"])


class RedisStore(StateStore):
    """State in Redis; see the module docstring for the key layout and the change feed."""

    name = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self.channel = prefix + "changes"
        self._client = redis.Redis.from_url(url, decode_responses=True,
                                            health_check_interval=10)
        self._scripts = {
            name: self._client.register_script(source) for name, source in (
                ("add_app", _ADD_APP), ("delete_app", _DELETE_APP), ("add_link", _ADD_LINK),
                ("delete_link", _DELETE_LINK), ("add_model", _ADD_MODEL),
                ("set_current", _SET_CURRENT), ("delete_model", _DELETE_MODEL),
                ("add_replica", _ADD_REPLICA), ("remove_replica", _REMOVE_REPLICA),
                ("clear_replicas", _CLEAR_REPLICAS), ("set_policy", _SET_POLICY),
                ("put_policy_state", _PUT_POLICY_STATE), ("set_traffic", _SET_TRAFFIC))
        }
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._stopping = threading.Event()
        self._listener: threading.Thread | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """``redis://host:port/db``, optionally with ``?prefix=<key prefix>``."""
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            msg = (f"Invalid Redis store URL {url!r}. Expected redis://host:port/db, "
                   "e.g. redis://127.0.0.1:6379/0")
            raise ValidationError(msg)
        query = parse_qsl(parts.query)
        prefix = dict(query).get("prefix", DEFAULT_PREFIX)
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        return cls(urlunsplit(parts._replace(query=rest)), prefix)

    def __repr__(self) -> str:
        return f"RedisStore({redact_url(self.url)!r}, prefix={self.prefix!r})"

    # -- plumbing -----------------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _run(self, script: str, keys: list[str], args: list[object]) -> str:
        return self._scripts[script](keys=keys, args=[self.channel, *args])

    @staticmethod
    def _change(kind: str, name: str) -> str:
        return _key(kind, name)

    # -- applications -------------------------------------------------------------------
    def add_application(self, app: Application) -> None:
        result = self._run("add_app", [self._k("apps"), self._k("seq")],
                           [app.name, _app_json(app), self._change("application", app.name)])
        if result == "CONFLICT":
            raise ConflictError(f"application '{app.name}' already exists")

    def delete_application(self, name: str) -> None:
        self._client.delete(self._k("policy", name))
        result = self._run("delete_app", [self._k("apps"), self._k("links", name)],
                           [name, self._change("application", name), self._change("link", name)])
        if result == "NOTFOUND":
            raise NotFoundError(f"Application '{name}' does not exist")

    def get_application(self, name: str) -> Application | None:
        data = _unsequenced(self._client.hget(self._k("apps"), name))
        return None if data is None else _app(data)

    def list_applications(self) -> list[Application]:
        return [_app(data) for data in _sequenced(self._client.hgetall(self._k("apps")))]

    # -- selection policies ---------------------------------------------------------------
    def set_selection_policy(self, app_name: str, policy: str, params: str) -> None:
        app = self.get_application(app_name)
        if app is None:
            raise NotFoundError(f"Application '{app_name}' does not exist")
        app = attrs.evolve(app, policy=policy, policy_params=params)
        result = self._run("set_policy", [self._k("apps"), self._k("policy", app_name)],
                           [app_name, _app_json(app), self._change("application", app_name)])
        if result == "NOTFOUND":
            raise NotFoundError(f"Application '{app_name}' does not exist")

    def put_policy_state(self, app_name: str, key: str, state: str) -> None:
        self._run("put_policy_state", [self._k("policy", app_name)],
                  [key, state, self._change("policy_state", app_name)])

    def get_policy_states(self, app_name: str) -> dict[str, str]:
        return self._client.hgetall(self._k("policy", app_name))

    # -- traffic between versions ---------------------------------------------------------
    def set_traffic(self, model_name: str, traffic: str | None) -> None:
        self._run("set_traffic", [self._k("traffic")],
                  [model_name, traffic or "", self._change("model", model_name)])

    def get_traffic(self, model_name: str) -> str | None:
        return self._client.hget(self._k("traffic"), model_name)

    # -- links --------------------------------------------------------------------------
    def add_link(self, app_name: str, model_name: str) -> None:
        result = self._run("add_link",
                           [self._k("apps"), self._k("links", app_name), self._k("seq")],
                           [app_name, model_name, self._change("link", app_name)])
        if result == "NOTFOUND":
            raise NotFoundError(f"No app with name '{app_name}' exists.")
        if result == "CONFLICT":
            msg = f"The model with name '{model_name}' is already linked to '{app_name}'"
            raise ConflictError(msg)

    def delete_link(self, app_name: str, model_name: str) -> None:
        result = self._run("delete_link", [self._k("links", app_name)],
                           [model_name, self._change("link", app_name)])
        if result == "NOTFOUND":
            msg = (f"Cannot remove nonexistent link between app {app_name} "
                   f"and model {model_name}")
            raise NotFoundError(msg)

    def get_links(self, app_name: str) -> list[str]:
        return self._client.zrange(self._k("links", app_name), 0, -1)

    def apps_linked_to(self, model_name: str) -> list[str]:
        apps = [app.name for app in self.list_applications()]
        with self._client.pipeline(transaction=False) as pipe:
            for app in apps:
                pipe.zscore(self._k("links", app), model_name)
            scores = pipe.execute()
        linked = [(score, app) for app, score in zip(apps, scores, strict=True)
                  if score is not None]
        return [app for _, app in sorted(linked)]

    # -- model versions -----------------------------------------------------------------
    def _model_keys(self, name: str) -> list[str]:
        return [self._k("models"), self._k("seq"), self._k("current"),
                self._k("activations", name)]

    def add_model_version(self, model: ModelVersion) -> None:
        data = {"name": model.name, "version": model.version,
                "input_type": int(model.input_type), "labels": list(model.labels),
                "image": model.image, "batch_size": model.batch_size,
                "model_data_path": model.model_data_path}
        result = self._run("add_model", self._model_keys(model.name),
                           [_key(model.name, model.version), orjson.dumps(data).decode(),
                            model.name, model.version, self._change("model", model.name)])
        if result == "CONFLICT":
            msg = (f"model with name '{model.name}' and version '{model.version}' "
                   "already exists")
            raise ConflictError(msg)

    def get_model_version(self, name: str, version: str) -> ModelVersion | None:
        data = _unsequenced(self._client.hget(self._k("models"), _key(name, version)))
        return None if data is None else _model(data)

    def list_model_versions(self, name: str | None = None) -> list[ModelVersion]:
        models = [_model(data) for data in _sequenced(self._client.hgetall(self._k("models")))]
        return models if name is None else [m for m in models if m.name == name]

    def set_current_version(self, name: str, version: str) -> None:
        result = self._run("set_current", self._model_keys(name),
                           [_key(name, version), name, version, self._change("model", name)])
        if result == "NOTFOUND":
            msg = f"Cannot set non-existent version '{version}' for model with name '{name}'"
            raise NotFoundError(msg)

    def get_current_version(self, name: str) -> str | None:
        return self._client.hget(self._k("current"), name)

    def activation_order(self, name: str) -> list[str]:
        return self._client.zrevrange(self._k("activations", name), 0, -1)

    def delete_model_version(self, name: str, version: str) -> None:
        keys = [self._k("models"), self._k("current"), self._k("activations", name)]
        result = self._run("delete_model", keys,
                           [_key(name, version), name, version, self._change("model", name)])
        if result == "NOTFOUND":
            msg = f"model with name '{name}' and version '{version}' does not exist"
            raise NotFoundError(msg)

    # -- replicas -----------------------------------------------------------------------
    def add_replica(self, replica: Replica) -> None:
        data = {"model_name": replica.model_name, "model_version": replica.model_version,
                "replica_id": replica.replica_id, "input_type": int(replica.input_type),
                "frontend_id": replica.frontend_id}
        self._run("add_replica", [self._k("replicas"), self._k("seq")],
                  [_key(replica.model_name, replica.model_version, replica.replica_id),
                   orjson.dumps(data).decode(), self._change("replica", replica.model_name)])

    def remove_replica(self, replica: Replica) -> None:
        self._run("remove_replica", [self._k("replicas")],
                  [_key(replica.model_name, replica.model_version, replica.replica_id),
                   self._change("replica", replica.model_name)])

    def list_replicas(self) -> list[Replica]:
        return [_replica(data) for data in _sequenced(self._client.hgetall(self._k("replicas")))]

    def clear_replicas(self, frontend_id: str) -> None:
        self._run("clear_replicas", [self._k("replicas")], [frontend_id])

    def next_replica_id(self, model_name: str, model_version: str) -> int:
        return int(self._client.hincrby(self._k("replica_ids"),
                                        _key(model_name, model_version), 1)) - 1

    # -- change feed --------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Change], None]) -> Subscription:
        sub = Subscription(callback, self._unsubscribe)
        with self._lock:
            if self._stopping.is_set():
                msg = f"{self!r} is closed; open the store again"
                raise ClipperError(msg)
            self._subscribers.append(sub)
            if self._listener is None:
                pubsub = self._pubsub()  # subscribed before this returns: no change is missed
                self._listener = threading.Thread(target=self._listen, args=(pubsub,),
                                                  name="clipper-redis-feed", daemon=True)
                self._listener.start()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def _pubsub(self) -> redis.client.PubSub:
        """A pub/sub connection whose subscription the server has confirmed."""
        # The feed reads raw bytes: a message that is not UTF-8 must not break the connection.
        pool = self._client.connection_pool
        pubsub = redis.client.PubSub(redis.ConnectionPool(
            connection_class=pool.connection_class,
            **{**pool.connection_kwargs, "decode_responses": False}))
        try:
            pubsub.subscribe(self.channel)
            deadline = time.monotonic() + 10.0
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "subscribe":
                    return pubsub
                if time.monotonic() > deadline:
                    raise redis.TimeoutError(f"no confirmation of SUBSCRIBE {self.channel}")
        except BaseException:
            pubsub.close()
            raise

    def _listen(self, pubsub: redis.client.PubSub | None) -> None:
        """Deliver changes until closed. Any failure (a lost connection, a refused
        subscription, a server error) is logged and retried with backoff; a resubscription
        delivers ``resync`` so that subscribers reload what they may have missed."""
        delay = 0.05
        try:
            while not self._stopping.is_set():
                try:
                    if pubsub is None:
                        pubsub = self._pubsub()
                        delay = 0.05
                        self._deliver(Change("resync", ""))
                    message = pubsub.get_message(timeout=0.2)
                except Exception as exc:
                    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
                        log.warning("lost the change feed of %r (%s); reconnecting", self, exc)
                    else:
                        log.exception("the change feed of %r failed; resubscribing", self)
                    if pubsub is not None:
                        pubsub.close()
                        pubsub = None
                    self._stopping.wait(delay)
                    delay = min(delay * 2, MAX_RECONNECT_DELAY_S)
                    continue
                if message is not None and message["type"] == "message":
                    change = _parse_change(message["data"])
                    if change is None:
                        log.warning("ignored a malformed message on %s: %.200r", self.channel,
                                    message["data"])
                    else:
                        self._deliver(change)
        finally:
            if pubsub is not None:
                pubsub.close()

    def _deliver(self, change: Change) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.callback(change)
            except Exception:
                log.exception("a change-feed subscriber of %r failed on %r", self, change)

    def close(self) -> None:
        with self._lock:
            self._stopping.set()
            self._subscribers.clear()
            listener = self._listener
        if listener is not None and listener is not threading.current_thread():
            listener.join()
        self._client.close()


@hookimpl
def clipper_register_stores() -> list[type[StateStore]]:
    return [RedisStore]
