"""The selection policy interface: which linked model versions answer a query, and how.

A policy is resolved by name once per application, when the frontend loads the application,
and :meth:`SelectionPolicy.select` is called whenever the application's routing changes (a
link, a current version or a connected replica changed), never per query. It receives the
candidate model versions in link order, each already resolved to the version that should
serve it (rollout fallback applied), and returns the ones to query. As in Clipper, a query
is sent to the first selected version; when none is selected the query gets the
application's default output at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, TypeVar

from clipper_core.types import Application

T = TypeVar("T")


class SelectionPolicy(ABC):
    """One policy instance per application."""

    #: The name an application's ``policy`` field selects this policy by.
    name: ClassVar[str]

    def __init__(self, app: Application) -> None:
        self.app = app

    @abstractmethod
    def select(self, candidates: Sequence[T]) -> Sequence[T]:
        """The candidates to send the query to (possibly none)."""
