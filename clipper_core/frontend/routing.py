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
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import orjson

from clipper_core import plugins
from clipper_core.batching.scheduler import Scheduler, VersionQueue
from clipper_core.exceptions import PluginError, ValidationError
from clipper_core.frontend.codec import decoder_for, render_output
from clipper_core.metrics import MetricsRegistry
from clipper_core.selection.api import SelectionPolicy
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
                 dict[str, str | None], dict[str, list[str]]]


class AppRoute:
    """Everything the hot path needs about one application, rebuilt on every reload."""

    __slots__ = ("app", "decode_batch", "decode_single", "default_fragment", "default_ratio",
                 "defaults", "expiring", "latency", "linked", "loop", "num_predictions",
                 "policy", "policy_error", "slo_s", "target", "throughput", "timer")

    def __init__(self, app: Application, linked: list[str], policy: SelectionPolicy | None,
                 policy_error: str | None, metrics: MetricsRegistry,
                 loop: asyncio.AbstractEventLoop) -> None:
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
        #: The version queue queries of this application go to (None: default output).
        self.target: VersionQueue | None = None
        prefix = f"app:{app.name}:"
        self.latency = metrics.histogram(prefix + "prediction_latency")
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
            self.loop.call_soon_threadsafe(self.reload)
        except RuntimeError:  # the loop is closed: the frontend stopped
            pass

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
        return apps, links, versions, current, order

    def _apply(self, snapshot: Snapshot) -> None:
        apps, links, versions, current, order = snapshot
        paths: dict[bytes, tuple[AppRoute, bool]] = {}
        by_name: dict[str, AppRoute] = {}
        for app in apps:
            policy, policy_error = None, None
            try:
                policy = self.policies.get(_POLICY_ALIASES.get(app.policy, app.policy))(app)
            except PluginError:
                policy_error = f"{app.policy} is an invalid selection_policy."
            route = AppRoute(app, list(links.get(app.name, ())), policy, policy_error,
                             self.metrics, self.loop)
            by_name[app.name] = route
            base = b"/" + app.name.encode()
            for suffix, is_predict in ((b"/predict", True), (b"/update", False)):
                paths[base + suffix] = paths[base + suffix + b"/"] = (route, is_predict)
        self._versions = {}
        for mv in versions:
            self._versions.setdefault(mv.name, set()).add(mv.version)
        self._current = current
        self._order = order
        self.scheduler.set_batch_sizes({(mv.name, mv.version): mv.batch_size
                                        for mv in versions})
        self.apps = by_name
        self.paths = paths
        self.reroute()

    # -- routing ----------------------------------------------------------------------------
    def reroute(self) -> None:
        """Point every application at the version that should serve it now (rollout)."""
        queues = self.scheduler.queues
        for route in self.apps.values():
            candidates: list[VersionQueue] = []
            for model in route.linked:
                current = self._current.get(model)
                order = ([current] if current else []) + self._order.get(model, [])
                for version in order:
                    queue = queues.get((model, version))
                    if queue is not None and queue.replicas:
                        candidates.append(queue)
                        break
            selected = route.policy.select(candidates) if route.policy is not None else ()
            route.target = selected[0] if selected else None

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
            raise ValidationError(
                f"Requested version: {version} does not exist for model: {model}")
        queue = self.scheduler.queues.get((model, version))
        return queue if queue is not None and queue.replicas else None
