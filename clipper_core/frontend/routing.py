"""The query frontend's routing state: applications, links, versions and their policies.

:class:`RoutingTable` loads everything a query needs from the state store at start, reloads it
whenever the store reports a change, and points each application at the model version that
should serve it now (:meth:`RoutingTable.reroute`, also called by the scheduler when a replica
connects or leaves). It knows nothing of HTTP: the query frontend looks a request's path up in
:attr:`RoutingTable.paths` and gets the :class:`AppRoute` to serve it with.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
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
from clipper_core.types import Application, ModelVersion

if TYPE_CHECKING:
    from clipper_core.frontend.query import Pending

log = logging.getLogger(__name__)

#: Names the original stored for the default policy.
_POLICY_ALIASES = {"DefaultOutputSelectionPolicy": "default"}
#: The event loop's timers may fire up to a millisecond early.
_TIMER_SLACK_S = 0.001

Snapshot = tuple[list[Application], dict[str, list[str]], list[ModelVersion],
                 dict[str, str | None], dict[str, list[str]], dict[str, dict[str, str]],
                 dict[str, dict]]


class AppRoute:
    """Everything the hot path needs about one application, rebuilt on every reload."""

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
        horizon = self.loop.time() + _TIMER_SLACK_S
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
    """Applications by path, and which version queue serves each, kept in step with the store."""

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
        self._versions: dict[str, set[str]] = {}
        self._current: dict[str, str | None] = {}
        self._order: dict[str, list[str]] = {}
        self._traffic: dict[str, dict] = {}
        #: Per-query selectors by application, kept across reloads while the policy and its
        #: parameters stay the same (what they learned survives).
        self._selectors: dict[str, tuple[tuple[str, str], Selector]] = {}
        self._rng = random.Random()
        self._subscription: Subscription | None = None
        self._reloading = False
        self._reload_again = False
        self._after_reload: list[Callable[[], None]] = []

    # -- loading ----------------------------------------------------------------------------
    async def load(self) -> None:
        """Read everything from the store, then follow its change feed."""
        self._apply(await self.loop.run_in_executor(self.executor, self._snapshot))
        self._subscription = self.store.subscribe(self._on_change)

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _on_change(self, change: Change) -> None:
        """Store callback, from the store's thread: hop onto the loop."""
        if change.kind == "replica":
            return
        try:
            if change.kind == "policy_state":
                self.loop.call_soon_threadsafe(self._refresh_states, change.name)
            else:
                self.loop.call_soon_threadsafe(self.reload)
        except RuntimeError:  # the loop is closed: the frontend stopped
            pass

    def _refresh_states(self, app_name: str) -> None:
        entry = self._selectors.get(app_name)
        if entry is not None:
            entry[1].states.refresh()

    @property
    def reloads_waiting(self) -> int:
        """Callbacks waiting for the running reload."""
        return len(self._after_reload)

    def reload(self, then: Callable[[], None] | None = None) -> None:
        """Read the store again (once more if a change arrives meanwhile), then call ``then``."""
        if then is not None:
            self._after_reload.append(then)
        if self._reloading:
            self._reload_again = True
            return
        self._reloading = True
        self.loop.create_task(self._reload())

    async def _reload(self) -> None:
        try:
            while True:
                self._reload_again = False
                try:
                    self._apply(await self.loop.run_in_executor(self.executor, self._snapshot))
                except Exception:
                    log.exception("reloading applications from the store failed")
                if not self._reload_again:
                    break
        finally:
            self._reloading = False
            waiting, self._after_reload = self._after_reload, []
            for callback in waiting:
                callback()

    def _snapshot(self) -> Snapshot:
        store = self.store
        apps = store.list_applications()
        links = {app.name: store.get_links(app.name) for app in apps}
        versions = store.list_model_versions()
        names = {v.name for v in versions}
        current = {name: store.get_current_version(name) for name in names}
        order = {name: store.activation_order(name) for name in names}
        states = {app.name: store.get_policy_states(app.name) for app in apps
                  if _POLICY_ALIASES.get(app.policy, app.policy) != "default"}
        traffic = {name: parse_traffic(stored) for name in names
                   if (stored := store.get_traffic(name)) is not None}
        return apps, links, versions, current, order, states, traffic

    def _apply(self, snapshot: Snapshot) -> None:
        apps, links, versions, current, order, states, traffic = snapshot
        paths: dict[bytes, tuple[AppRoute, bool]] = {}
        by_name: dict[str, AppRoute] = {}
        selectors: dict[str, tuple[tuple[str, str], Selector]] = {}
        for app in apps:
            policy, policy_error, selector, in_body = None, None, None, False
            try:
                frontend_params, params = split_parameters(orjson.loads(app.policy_params))
                in_body = frontend_params["versions_in_body"]
                name = _POLICY_ALIASES.get(app.policy, app.policy)
                policy = self.policies.get(name)(**params)
                if policy.routes_per_query:
                    selector = self._selector(app, policy, frontend_params,
                                              states.get(app.name, {}))
                    selectors[app.name] = ((app.policy, app.policy_params), selector)
            except PluginError:
                policy_error = f"{app.policy} is an invalid selection_policy."
            except (ValidationError, orjson.JSONDecodeError, TypeError) as exc:
                policy_error = f"The selection policy of {app.name} is misconfigured: {exc}"
            route = AppRoute(app, list(links.get(app.name, ())), policy, policy_error,
                             self.metrics, self.loop, selector, in_body)
            by_name[app.name] = route
            base = b"/" + app.name.encode()
            for suffix, is_predict in ((b"/predict", True), (b"/update", False)):
                paths[base + suffix] = paths[base + suffix + b"/"] = (route, is_predict)
        self._selectors = selectors
        self._versions = {}
        for mv in versions:
            self._versions.setdefault(mv.name, set()).add(mv.version)
        self._current = current
        self._order = order
        self._traffic = traffic
        self.scheduler.set_batch_sizes({(mv.name, mv.version): mv.batch_size
                                        for mv in versions})
        self.apps = by_name
        self.paths = paths
        self.metrics.retain(by_name, [(mv.name, mv.version) for mv in versions],
                            self.scheduler.queues)
        self.reroute()

    def _selector(self, app: Application, policy: SelectionPolicy, params: dict[str, object],
                  stored: dict[str, str]) -> Selector:
        """The application's selector: the one it had if its policy did not change."""
        kept = self._selectors.get(app.name)
        if kept is not None and kept[0] == (app.policy, app.policy_params):
            return kept[1]
        states = PolicyStates(app.name, policy, self.store, self.executor, self.loop)
        states.load(stored)
        return Selector(policy, states, self.scheduler, self.loop, self.metrics,
                        per_user=bool(params["per_user"]), seed=params["seed"])  # type: ignore[arg-type]

    # -- routing ----------------------------------------------------------------------------
    def reroute(self) -> None:
        """Point every application at the version that should serve it now (rollout)."""
        queues = self.scheduler.queues
        for route in self.apps.values():
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
        return sorted(self._versions.get(model, ()))

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
        if version not in self._versions.get(model, ()):
            raise NotFoundError(
                f"Requested version: {version} does not exist for model: {model}")
        queue = self.scheduler.queues.get((model, version))
        return queue if queue is not None and queue.replicas else None
