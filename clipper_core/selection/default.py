"""The default policy (Clipper's ``DefaultOutputSelectionPolicy``): one model answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from clipper_core.hookspecs import hookimpl
from clipper_core.selection.api import SelectionPolicy

T = TypeVar("T")


class DefaultPolicy(SelectionPolicy):
    """Query the first linked model; without one, answer with the default output."""

    name = "default"

    def select(self, candidates: Sequence[T]) -> Sequence[T]:
        return candidates[:1]


@hookimpl
def clipper_register_selection_policies() -> list[type[SelectionPolicy]]:
    return [DefaultPolicy]
