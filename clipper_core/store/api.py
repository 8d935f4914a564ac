"""The state store interface: applications, links, model versions and connected replicas.

A store is plain storage with atomic operations and a change feed. The rules (an app links at
most one model, input types must match, names are valid...) live in the management service
(:mod:`clipper_core.frontend.management`), not here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import attrs

from clipper_core.types import Application, ModelVersion, Replica

#: What changed: one of these kinds, plus the name of the app or model concerned.
CHANGE_KINDS = ("application", "link", "model", "replica", "policy_state")


@attrs.frozen
class Change:
    """One entry of the change feed."""

    kind: str
    name: str


class Subscription:
    """A handle on a change-feed subscription: ``callback`` is called until :meth:`close`."""

    def __init__(self, callback: Callable[[Change], None],
                 on_close: Callable[[Subscription], None]) -> None:
        self.callback = callback
        self._on_close = on_close

    def close(self) -> None:
        """Stop delivering changes."""
        self._on_close(self)


class StateStore(ABC):
    """Durable configuration state shared by the frontends of one cluster.

    Implementations must be safe to use from several threads of one process and, for the
    same URL, from several processes. Every write publishes a :class:`Change` to the
    subscribers of every process using the same store.
    """

    #: URL scheme this store serves (``sqlite``, ``redis``).
    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_url(cls, url: str) -> StateStore:
        """Open (creating if needed) the store at ``url``."""

    # -- applications -------------------------------------------------------------------
    @abstractmethod
    def add_application(self, app: Application) -> None:
        """Insert ``app``; ConflictError if the name exists."""

    @abstractmethod
    def delete_application(self, name: str) -> None:
        """Remove an app and its links; NotFoundError if it does not exist."""

    @abstractmethod
    def get_application(self, name: str) -> Application | None: ...

    @abstractmethod
    def list_applications(self) -> list[Application]:
        """All apps, in registration order."""

    # -- links --------------------------------------------------------------------------
    @abstractmethod
    def add_link(self, app_name: str, model_name: str) -> None: ...

    @abstractmethod
    def delete_link(self, app_name: str, model_name: str) -> None: ...

    @abstractmethod
    def get_links(self, app_name: str) -> list[str]:
        """Names of the models linked to ``app_name`` ([] if none)."""

    @abstractmethod
    def apps_linked_to(self, model_name: str) -> list[str]: ...

    # -- selection policies ---------------------------------------------------------------
    @abstractmethod
    def set_selection_policy(self, app_name: str, policy: str, params: str) -> None:
        """Give an application a policy (``params``: a JSON object) and forget its learned
        state; NotFoundError if the application does not exist."""

    @abstractmethod
    def put_policy_state(self, app_name: str, key: str, state: str) -> None:
        """Store one learned state (JSON) of an application's policy; ``key`` is ``""`` or a
        user id. Publishes ``Change("policy_state", app_name)``."""

    @abstractmethod
    def get_policy_states(self, app_name: str) -> dict[str, str]:
        """Every learned state of an application's policy, by key ({} if none)."""

    # -- traffic between versions ---------------------------------------------------------
    @abstractmethod
    def set_traffic(self, model_name: str, traffic: str | None) -> None:
        """Store a model's traffic management (JSON: split, shadows, previous version; see
        :mod:`clipper_core.frontend.traffic`), or forget it (None). Publishes
        ``Change("model", model_name)``."""

    @abstractmethod
    def get_traffic(self, model_name: str) -> str | None:
        """A model's traffic management (JSON), None if it has none."""

    # -- model versions -----------------------------------------------------------------
    @abstractmethod
    def add_model_version(self, model: ModelVersion) -> None:
        """Insert a version and make it current; ConflictError if it exists."""

    @abstractmethod
    def get_model_version(self, name: str, version: str) -> ModelVersion | None: ...

    @abstractmethod
    def list_model_versions(self, name: str | None = None) -> list[ModelVersion]:
        """Versions of one model (or of all), in registration order."""

    @abstractmethod
    def set_current_version(self, name: str, version: str) -> None: ...

    @abstractmethod
    def get_current_version(self, name: str) -> str | None: ...

    @abstractmethod
    def activation_order(self, name: str) -> list[str]:
        """Versions of ``name``, most recently made current first (rollout fallback order)."""

    @abstractmethod
    def delete_model_version(self, name: str, version: str) -> None:
        """Remove a version; if it was current, no version is current until one is set."""

    # -- connected replicas (written by query frontends) ---------------------------------
    @abstractmethod
    def add_replica(self, replica: Replica) -> None: ...

    @abstractmethod
    def remove_replica(self, replica: Replica) -> None: ...

    @abstractmethod
    def list_replicas(self) -> list[Replica]: ...

    @abstractmethod
    def clear_replicas(self, frontend_id: str) -> None:
        """Forget every replica recorded by one frontend (it restarted)."""

    @abstractmethod
    def next_replica_id(self, model_name: str, model_version: str) -> int:
        """A replica id never handed out before for this model version (0, 1, 2...)."""

    # -- change feed --------------------------------------------------------------------
    @abstractmethod
    def subscribe(self, callback: Callable[[Change], None]) -> Subscription:
        """Call ``callback`` (from a background thread) for every change, from any process.

        After a lost connection an implementation delivers ``Change("resync", "")`` so that
        the subscriber reloads everything.
        """

    @abstractmethod
    def close(self) -> None: ...
