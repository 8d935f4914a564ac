"""The query frontend's routing state: applications, links, versions and their policies.

:class:`RoutingTable` loads everything a query needs from the state store at start, applies
each change the store reports (reading only the application or model it names), and points
each application at the model version that should serve it now (:meth:`RoutingTable.reroute`,
also called by the scheduler when a replica connects or leaves). It knows nothing of HTTP: the query frontend looks a request's path up in
:attr:`RoutingTable.paths` and gets the :class:`AppRoute` to serve it with.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from time import monotonic
from typing import TYPE_CHECKING

import orjson

from clipper_core import plugins
from clipper_core.batching.scheduler import Scheduler, VersionQueue
from clipper_core.exceptions import NotFoundError, PluginError, ValidationError
from clipper_core.frontend.codec import decoder_for, render_output
from clipper_core.frontend.selecting import Selector
from clipper_core.frontend.traffic import Shadows, Split, parse_traffic
from clipper_core.metrics import MetricsRegistry, slo_bounds
from clipper_core.selection.api import SelectionPolicy, split_parameters
from clipper_core.selection.states import PolicyStates
from clipper_core.store.api import Change, StateStore, Subscription
from clipper_core.types import Application, ModelVersion, is_safe_name

if TYPE_CHECKING:
    from clipper_core.frontend.query import Pending

log = logging.getLogger(__name__)

#: Names the original stored for the default policy.
_POLICY_ALIASES = {"DefaultOutputSelectionPolicy": "default"}
#: The event loop's timers may fire up to a millisecond early.
_TIMER_SLACK_S = 0.001

#: Requests for unknown applications that may wait for their lookup at once (beyond: 404).
MAX_WAITING = 1024
#: Store reads per second that requests for unknown applications may cause, and their burst.
LOOKUPS_PER_S = 20.0
LOOKUP_BURST = 20
#: How long a request for an unknown application waits for the change feed instead, once
#: the reads are spent (every store's feed brings a registration well within it).
FEED_WAIT_S = 0.25
#: After a failed store read, everything is read again after this pause, which doubles up to
#: :data:`RETRY_MAX_S` while reads keep failing (a change or a lookup tries at once).
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0

#: An application as read from the store: itself, its links, its policy's stored states.
AppData = tuple[Application, list[str], dict[str, str]]
#: A model as read from the store: its versions, current version, activation order, traffic.
ModelData = tuple[list[ModelVersion], str | None, list[str], dict | None]
Snapshot = tuple[list[AppData], dict[str, ModelData]]
#: Changed applications (None: deleted), links and models.
Delta = tuple[dict[str, AppData | None], dict[str, list[str]], dict[str, ModelData]]


class AppRoute:
    """Everything the hot path needs about one application, rebuilt when it changes."""

    __slots__ = ("app", "arms", "decode_batch", "decode_single", "default_fragment",
                 "default_ratio", "defaults", "expiring", "latency", "linked", "loop",
                 "num_predictions", "policy", "policy_error", "selector", "shadows", "slo_s", "split",
                 "target", "throughput", "timer", "versions_in_body")

    def __init__(self, app: Application, linked: list[str], policy: SelectionPolicy | None,
                 policy_error: str | None, metrics: MetricsRegistry,
                 loop: asyncio.AbstractEventLoop, selector: Selector | None = None,
                 versions_in_body: bool = False) -> None:
        self.app = app
        self.loop = loop
        #: Unanswered requests in arrival order. All share the app's SLO, so this is also
        #: deadline order and one timer (for the head) serves them all.
        self.expiring: deque[Pending] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.decode_single, self.decode_batch = decoder_for(app.input_type)
        self.default_fragment = render_output(app.default_output.encode())
        self.slo_s = app.latency_slo_micros / 1e6
        self.linked = linked
        self.policy = policy
        self.policy_error = policy_error
        #: Set when the policy chooses per query; None for the default policy.
        self.selector = selector
        self.versions_in_body = versions_in_body
        #: The linked models' serving version queues, by arm name, in link order.
        self.arms: dict[str, VersionQueue] = {}
        #: The version queue queries of this application go to, when the policy does not
        #: choose per query (None: default output).
        self.target: VersionQueue | None = None
        #: The model's weighted split between versions (replaces ``target``), and its shadow
        #: versions; None when it has none (:mod:`clipper_core.frontend.traffic`).
        self.split: Split | None = None
        self.shadows: Shadows | None = None
        prefix = f"app:{app.name}:"
        self.latency = metrics.histogram(prefix + "prediction_latency",
                                         bounds=slo_bounds(app.latency_slo_micros))
        self.throughput = metrics.meter(prefix + "prediction_throughput")
        self.num_predictions = metrics.counter(prefix + "num_predictions")
        self.default_ratio = metrics.ratio(prefix + "default_prediction_ratio")
        self.defaults = metrics.counter(prefix + "num_defaults")

    def watch(self, pending: Pending) -> None:
        """Answer ``pending`` with default outputs if it is not done by its deadline."""
        expiring = self.expiring
        while expiring and expiring[0].parts is None:
            expiring.popleft()
        expiring.append(pending)
        if self.timer is None:
            self.timer = self.loop.call_at(pending.deadline, self._expire_due)

    def _expire_due(self) -> None:
        self.timer = None
        expiring = self.expiring
        horizon = monotonic() + _TIMER_SLACK_S
        while expiring:
            head = expiring[0]
            if head.parts is not None:
                if head.deadline > horizon:
                    self.timer = self.loop.call_at(head.deadline, self._expire_due)
                    return
                head.expire()
            expiring.popleft()

    def default_part(self, query_id: int, explanation: str) -> bytes:
        return b'{"query_id":%d,"output":%b,"default":true,"default_explanation":%b}' % (
            query_id, self.default_fragment, orjson.dumps(explanation))


class RoutingTable:
    """Applications by path, and which version queue serves each, kept in step with the store.

    Each change the store reports is applied on its own: an application, link or model change
    reads that application or model again, and only the applications it concerns are rebuilt
    or rerouted, so following the feed costs the same with ten applications or ten thousand.
    Everything is read at start and after a ``resync``.
    """

    def __init__(self, store: StateStore, executor: Executor, scheduler: Scheduler,
                 policies: plugins.Registry[SelectionPolicy], metrics: MetricsRegistry,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.executor = executor
        self.scheduler = scheduler
        self.policies = policies
        self.metrics = metrics
        self.loop = loop
        #: ``/<app>/predict`` and ``/<app>/update`` (with and without a trailing slash) to
        #: ``(route, is_predict)``.
        self.paths: dict[bytes, tuple[AppRoute, bool]] = {}
        self.apps: dict[str, AppRoute] = {}
        #: Per model: its versions' batch sizes, current version, activation order, traffic.
        self._batch_sizes: dict[str, dict[str, int]] = {}
        self._current: dict[str, str | None] = {}
        self._order: dict[str, list[str]] = {}
        self._traffic: dict[str, dict] = {}
        #: Per-query selectors by application, kept across reloads while the policy and its
        #: parameters stay the same (what they learned survives).
        self._selectors: dict[str, tuple[tuple[str, str], Selector]] = {}
        self._rng = random.Random()
        self._subscription: Subscription | None = None
        #: Changes not applied yet (``(kind, name)``), or everything (``_read_all``).
        self._changes: set[tuple[str, str]] = set()
        self._read_all = False
        self._syncing = False
        self._after_sync: list[Callable[[], None]] = []
        self._retry: asyncio.TimerHandle | None = None
        self._retry_s = RETRY_FIRST_S
        self._read_failures = metrics.counter("internal:store_read_failures")
        #: Store reads that requests for unknown applications may still cause (a token
        #: bucket refilled at :data:`LOOKUPS_PER_S`, up to :data:`LOOKUP_BURST`).
        self._lookups = float(LOOKUP_BURST)
        self._lookups_at = loop.time()
        #: Requests for unknown applications waiting :data:`FEED_WAIT_S` for the change feed.
        self._feed_waiting = 0

    # -- loading ----------------------------------------------------------------------------
    async def load(self) -> None:
        """Follow the store's change feed, and read everything from it."""
        self._subscription = self.store.subscribe(self._on_change)
        self._apply_all(await self.loop.run_in_executor(self.executor, self._snapshot))

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _on_change(self, change: Change) -> None:
        """Store callback, from the store's thread: hop onto the loop."""
        if change.kind == "replica":
            return
        try:
            self.loop.call_soon_threadsafe(self._changed, change.kind, change.name)
        except RuntimeError:  # the loop is closed: the frontend stopped
            pass

    def _changed(self, kind: str, name: str) -> None:
        if kind == "policy_state":
            entry = self._selectors.get(name)
            if entry is not None:
                entry[1].states.refresh()
            return
        if kind in ("application", "link", "model"):
            self._changes.add((kind, name))
        else:  # "resync", or a kind this frontend does not know: read everything
            self._read_all = True
        if kind != "application" and kind != "link":
            # The cached answers of the model may be another registration's now.
            self.scheduler.forget_answers(name if kind == "model" else None)
        self._sync()

    def look_up(self, app_name: str, then: Callable[[], None]) -> bool:
        """Read application ``app_name`` from the store (it may have been registered a moment
        ago, its change not applied yet), then call ``then``.

        Requests for unknown applications must not make the store work for each of them:
        lookups of one name share one read, and reads are rate-limited; once they are spent,
        ``then`` is called after :data:`FEED_WAIT_S`, when the change feed has brought an
        application registered a moment ago. False (``then`` is not called) when too many
        requests wait already.
        """
        if len(self._after_sync) + self._feed_waiting >= MAX_WAITING \
                or not is_safe_name(app_name):
            return False
        change = ("application", app_name)
        if change not in self._changes:
            now = self.loop.time()
            self._lookups = min(float(LOOKUP_BURST),
                                self._lookups + (now - self._lookups_at) * LOOKUPS_PER_S)
            self._lookups_at = now
            if self._lookups < 1.0:
                self._feed_waiting += 1
                self.loop.call_later(FEED_WAIT_S, self._fed, then)
                return True
            self._lookups -= 1.0
            self._changes.add(change)
        self._after_sync.append(then)
        self._sync()
        return True

    def _fed(self, then: Callable[[], None]) -> None:
        self._feed_waiting -= 1
        then()

    def _sync(self) -> None:
        if not self._syncing:
            self._syncing = True
            self.loop.create_task(self._run_sync())

    async def _run_sync(self) -> None:
        run = self.loop.run_in_executor
        try:
            while self._read_all or self._changes:
                read_all, changes = self._read_all, self._changes
                self._read_all, self._changes = False, set()
                try:
                    if read_all:
                        self._apply_all(await run(self.executor, self._snapshot))
                    else:
                        self._apply_changes(await run(self.executor, self._read_changes,
                                                      changes))
                except Exception as exc:
                    self._read_all = True  # what failed may be any part: read everything
                    self._retry_later(exc)
                    break
            else:
                self._retry_s = RETRY_FIRST_S
        finally:
            self._syncing = False
            waiting, self._after_sync = self._after_sync, []
            for callback in waiting:
                callback()

    def _retry_later(self, exc: Exception) -> None:
        """Read everything again after a pause that doubles while reads keep failing."""
        self._read_failures.count += 1
        first = self._retry_s == RETRY_FIRST_S
        if self._retry is None:
            self._retry = self.loop.call_later(self._retry_s, self._retry_now)
            self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
        wait = self._retry.when() - self.loop.time()
        if first:
            log.error("reading applications from %r failed; reading everything again in %.1f s",
                      self.store, wait, exc_info=exc)
        else:
            log.warning("reading applications from %r failed again (%s); next try in %.1f s",
                        self.store, exc, wait)

    def _retry_now(self) -> None:
        self._retry = None
        self._sync()

    # -- reading ----------------------------------------------------------------------------
    def _read_app(self, name: str) -> AppData | None:
        store = self.store
        app = store.get_application(name)
        if app is None:
            return None
        states = store.get_policy_states(name) \
            if _POLICY_ALIASES.get(app.policy, app.policy) != "default" else {}
        return app, store.get_links(name), states

    def _read_model(self, name: str) -> ModelData:
        store = self.store
        stored = store.get_traffic(name)
        return (store.list_model_versions(name), store.get_current_version(name),
                store.activation_order(name), None if stored is None else parse_traffic(stored))

    def _snapshot(self) -> Snapshot:
        store = self.store
        apps = [data for app in store.list_applications()
                if (data := self._read_app(app.name)) is not None]
        names = dict.fromkeys(mv.name for mv in store.list_model_versions())
        return apps, {name: self._read_model(name) for name in names}

    def _read_changes(self, changes: set[tuple[str, str]]) -> Delta:
        apps = {name for kind, name in changes if kind == "application"}
        return ({name: self._read_app(name) for name in apps},
                {name: self.store.get_links(name) for kind, name in changes
                 if kind == "link" and name not in apps},
                {name: self._read_model(name) for kind, name in changes if kind == "model"})

    # -- applying ---------------------------------------------------------------------------
    def _apply_all(self, snapshot: Snapshot) -> None:
        apps, models = snapshot
        self._batch_sizes, self._current, self._order, self._traffic = {}, {}, {}, {}
        for name, data in models.items():
            self._set_model(name, data)
        self.paths, self.apps = {}, {}
        selectors, self._selectors = self._selectors, {}
        for data in apps:
            self._set_app(data, selectors)
        self._batch_sizes_changed()
        self._retain()
        self.reroute()

    def _apply_changes(self, delta: Delta) -> None:
        apps, links, models = delta
        removed = False
        for name, data in models.items():
            kept = {mv.version for mv in data[0]}
            removed = removed or not kept.issuperset(self._batch_sizes.get(name, ()))
            self._set_model(name, data)
        if models:
            self._batch_sizes_changed()
        for name, app_data in apps.items():
            if app_data is None:
                removed |= self._remove_app(name)
            else:
                self._set_app(app_data, self._selectors)
        for name, linked in links.items():
            route = self.apps.get(name)
            if route is not None:
                route.linked = linked
        if removed:
            self._retain()
        self._reroute(route for name, route in self.apps.items() if name in apps
                      or name in links or not models.keys().isdisjoint(route.linked))

    def _set_model(self, name: str, data: ModelData) -> None:
        versions, current, order, traffic = data
        for table in (self._batch_sizes, self._current, self._order, self._traffic):
            table.pop(name, None)
        if not versions:
            return
        self._batch_sizes[name] = {mv.version: mv.batch_size for mv in versions}
        self._current[name] = current
        self._order[name] = order
        if traffic is not None:
            self._traffic[name] = traffic

    def _batch_sizes_changed(self) -> None:
        self.scheduler.set_batch_sizes({(name, version): size
                                        for name, sizes in self._batch_sizes.items()
                                        for version, size in sizes.items()})

    def _retain(self) -> None:
        """Forget the metrics of deleted applications and versions."""
        self.metrics.retain(self.apps, [(name, version) for name, sizes in
                                        self._batch_sizes.items() for version in sizes],
                            self.scheduler.queues)

    def _paths(self, app_name: str) -> list[tuple[bytes, bool]]:
        base = b"/" + app_name.encode()
        return [(base + suffix + slash, is_predict)
                for suffix, is_predict in ((b"/predict", True), (b"/update", False))
                for slash in (b"", b"/")]

    def _remove_app(self, name: str) -> bool:
        self._selectors.pop(name, None)
        if self.apps.pop(name, None) is None:
            return False
        for path, _ in self._paths(name):
            self.paths.pop(path, None)
        return True

    def _set_app(self, data: AppData, selectors: dict[str, tuple[tuple[str, str], Selector]]
                 ) -> None:
        """(Re)build the route of one application; its selector is kept from ``selectors``
        if its policy did not change."""
        app, links, states = data
        policy, policy_error, selector, in_body = None, None, None, False
        try:
            frontend_params, params = split_parameters(orjson.loads(app.policy_params))
            in_body = frontend_params["versions_in_body"]
            name = _POLICY_ALIASES.get(app.policy, app.policy)
            policy = self.policies.get(name)(**params)
            if policy.routes_per_query:
                selector = self._selector(app, policy, frontend_params, states,
                                          selectors.get(app.name))
        except PluginError:
            policy_error = f"{app.policy} is an invalid selection_policy."
        except (ValidationError, orjson.JSONDecodeError, TypeError) as exc:
            policy_error = f"The selection policy of {app.name} is misconfigured: {exc}"
        if selector is None:
            self._selectors.pop(app.name, None)
        else:
            self._selectors[app.name] = ((app.policy, app.policy_params), selector)
        route = AppRoute(app, list(links), policy, policy_error, self.metrics, self.loop,
                         selector, in_body)
        self.apps[app.name] = route
        for path, is_predict in self._paths(app.name):
            self.paths[path] = (route, is_predict)

    def _selector(self, app: Application, policy: SelectionPolicy, params: dict[str, object],
                  stored: dict[str, str],
                  kept: tuple[tuple[str, str], Selector] | None) -> Selector:
        """The application's selector: the one it had if its policy did not change."""
        if kept is not None and kept[0] == (app.policy, app.policy_params):
            return kept[1]
        states = PolicyStates(app.name, policy, self.store, self.executor, self.loop)
        states.load(stored)
        return Selector(policy, states, self.scheduler, self.loop, self.metrics,
                        per_user=bool(params["per_user"]), seed=params["seed"])  # type: ignore[arg-type]

    # -- routing ----------------------------------------------------------------------------
    def reroute(self) -> None:
        """Point every application at the version that should serve it now (rollout)."""
        self._reroute(self.apps.values())

    def _reroute(self, routes: Iterable[AppRoute]) -> None:
        queues = self.scheduler.queues
        for route in routes:
            arms: dict[str, VersionQueue] = {}
            for model in route.linked:
                current = self._current.get(model)
                order = ([current] if current else []) + self._order.get(model, [])
                for version in order:
                    queue = queues.get((model, version))
                    if queue is not None and queue.replicas:
                        arms[queue.arm] = queue
                        break
            route.arms = arms
            target = None
            if route.policy is not None and route.selector is None and arms:
                chosen = route.policy.select(None, list(arms), self._rng)
                target = arms[chosen[0]] if chosen else None
            route.target = target
            route.split, route.shadows = self._traffic_of(route, queues)

    def _traffic_of(self, route: AppRoute,
                    queues: dict[tuple[str, str], VersionQueue]) -> tuple[Split | None,
                                                                          Shadows | None]:
        """The split and shadows of the application's model, among versions with replicas
        (a single model under the default policy only)."""
        if route.selector is not None or len(route.linked) != 1 or route.target is None:
            return None, None
        model = route.linked[0]
        traffic = self._traffic.get(model)
        if traffic is None:
            return None, None

        def serving(version: str) -> VersionQueue | None:
            queue = queues.get((model, version))
            return queue if queue is not None and queue.replicas else None

        weighted = [(queue, float(weight)) for version, weight in traffic["split"].items()
                    if weight > 0 and (queue := serving(version)) is not None]
        split = Split(weighted, self.metrics, self._rng) if weighted else None
        shadow_queues = [queue for version in traffic["shadows"]
                         if (queue := serving(version)) is not None]
        shadows = Shadows(shadow_queues, self.scheduler, self.metrics) if shadow_queues \
            else None
        return split, shadows

    def queue_for(self, route: AppRoute, version: str | None) -> VersionQueue | None:
        """The queue a request answered by one version goes to: ``version``'s if the request
        pins one, else the application's target (or its split's pick)."""
        if version is not None:
            return self.version_target(route, version)
        return route.target if route.split is None else route.split.pick()

    def model_versions(self, model: str) -> list[str]:
        """The registered versions of ``model``, sorted."""
        return sorted(self._batch_sizes.get(model, ()))

    def version_target(self, route: AppRoute, version: str) -> VersionQueue | None:
        """The queue of ``version`` of the application's model (a query that pins a version)."""
        app_name = route.app.name
        if len(route.linked) > 1:
            raise ValidationError(f"Too many models linked to application {app_name}")
        if not route.linked:
            raise ValidationError(
                f"No model is linked to application {app_name}; link one before asking for "
                f"version {version}")
        model = route.linked[0]
        if version not in self._batch_sizes.get(model, ()):
            raise NotFoundError(
                f"Requested version: {version} does not exist for model: {model}")
        queue = self.scheduler.queues.get((model, version))
        return queue if queue is not None and queue.replicas else None
