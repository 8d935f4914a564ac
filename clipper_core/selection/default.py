"""The default policy (Clipper's ``DefaultOutputSelectionPolicy``): one model answers."""

from __future__ import annotations

import random
from collections.abc import Sequence

from clipper_core.hookspecs import hookimpl
from clipper_core.selection.api import SelectionPolicy, State


class DefaultPolicy(SelectionPolicy):
    """Query the first linked model; without one, answer with the default output.

    It chooses when the routing changes, not per query, keeps no state and ignores feedback:
    an application with this policy costs the query path nothing.
    """

    name = "default"
    parameters = {}
    routes_per_query = False
    learns = False

    def select(self, state: State | None, arms: Sequence[str],
               rng: random.Random) -> Sequence[str]:
        return arms[:1]


@hookimpl
def clipper_register_selection_policies() -> list[type[SelectionPolicy]]:
    return [DefaultPolicy]
