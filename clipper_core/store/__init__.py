"""Configuration state: the :class:`StateStore` interface and :func:`open_store`.

Built-in stores: ``sqlite`` (:mod:`clipper_core.store.sqlite`, the embedded default) and
``redis`` (:mod:`clipper_core.store.redis`, shared by several frontends). Plugins add more
through the ``clipper_register_stores`` hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clipper_core.exceptions import PluginError, ValidationError
from clipper_core.store.api import CHANGE_KINDS, Change, StateStore, Subscription

if TYPE_CHECKING:
    import pluggy

__all__ = ["CHANGE_KINDS", "Change", "StateStore", "Subscription", "open_store"]


def open_store(url: str, pm: pluggy.PluginManager | None = None) -> StateStore:
    """Open the store at ``url`` with the store class registered for its scheme."""
    from clipper_core import plugins

    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        msg = (
            f"Invalid store URL {url!r}. Expected <scheme>://..., e.g. "
            "sqlite:///abs/path/state.db or redis://host:6379/0"
        )
        raise ValidationError(msg)
    try:
        store_class = plugins.stores(pm).get(scheme)
    except PluginError as exc:
        raise PluginError(f"Cannot open the store at {url!r}: {exc}") from None
    return store_class.from_url(url)
