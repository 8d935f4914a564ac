"""Where a policy's learned state lives: in memory for the query path, in the store for
restarts and for the other frontends.

Each state is stored as ``{"version": n, "state": {...}}`` under the application and a key
(``""``, or the user id with ``per_user``). Changed states are written behind, at most every
:data:`FLUSH_INTERVAL_S`; a frontend that sees another one's write (``Change("policy_state",
app)``) reads the application's states again and takes each one whose version is newer than
its own. Two frontends that learn from the same key at the same moment do not merge: the
later write wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import Executor

import orjson

from clipper_core.selection.api import SelectionPolicy, State
from clipper_core.store.api import StateStore

log = logging.getLogger(__name__)

#: Longest time a learned state stays only in memory.
FLUSH_INTERVAL_S = 0.05


class PolicyStates:
    """The learned states of one application's policy, by key."""

    def __init__(self, app_name: str, policy: SelectionPolicy, store: StateStore,
                 executor: Executor, loop: asyncio.AbstractEventLoop) -> None:
        self.app_name = app_name
        self.policy = policy
        self.store = store
        self.executor = executor
        self.loop = loop
        self.states: dict[str, State] = {}
        self.versions: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._flush_handle: asyncio.TimerHandle | None = None

    def get(self, key: str) -> State:
        """The state of ``key`` (a fresh one the first time)."""
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = self.policy.init_state()
            self.versions[key] = 0
        return state

    def changed(self, key: str) -> None:
        """``key``'s state was updated in place: store it soon."""
        self.versions[key] = self.versions.get(key, 0) + 1
        self._dirty.add(key)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_later(FLUSH_INTERVAL_S, self._flush)

    def load(self, stored: Mapping[str, str]) -> None:
        """Take every stored state that is newer than the one in memory."""
        for key, text in stored.items():
            try:
                doc = orjson.loads(text)
                version, state = int(doc["version"]), doc["state"]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("ignored an unreadable policy state %r of application %s", key,
                            self.app_name)
                continue
            if version > self.versions.get(key, 0):
                self.states[key] = state
                self.versions[key] = version

    def refresh(self) -> None:
        """Read the stored states again (another frontend wrote one)."""
        future = self.loop.run_in_executor(self.executor, self.store.get_policy_states,
                                           self.app_name)
        future.add_done_callback(self._loaded)

    def _loaded(self, future: asyncio.Future[dict[str, str]]) -> None:
        try:
            self.load(future.result())
        except Exception:
            log.exception("reading the policy states of %s failed", self.app_name)

    def _flush(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, set()
        writes = [(key, orjson.dumps({"version": self.versions[key],
                                      "state": self.states[key]}).decode()) for key in dirty]
        self.loop.run_in_executor(self.executor, self._write, writes)

    def _write(self, writes: list[tuple[str, str]]) -> None:
        for key, text in writes:
            try:
                self.store.put_policy_state(self.app_name, key, text)
            except Exception:
                log.exception("storing the policy state %r of %s failed", key, self.app_name)

