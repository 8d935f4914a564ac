"""Every pluggy hook specification of Clipper, grouped by what it configures.

Hooks configure; the hot path calls objects. Registration hooks are called once, when a
registry is built (:mod:`clipper_core.plugins`); nothing here runs per query.

A plugin is a module (or object) with functions marked ``@clipper_core.hookimpl`` whose names
are the hook names below. Register it under the entry-point group ``clipper``::

    [project.entry-points.clipper]
    deployer-xgboost = "clipper_deployer_xgboost.plugin"

Registration hooks return *classes*; each class has a ``name`` class attribute, the key users
type (``deployer="pytorch"``, ``backend="docker"``). Core owns the registries and raises
:class:`~clipper_core.exceptions.PluginError` on a duplicate or unknown name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from clipper_core.backends.api import ContainerManager
    from clipper_core.cache.api import PredictionCache
    from clipper_core.deployers.api import Deployer
    from clipper_core.selection.api import SelectionPolicy
    from clipper_core.store.api import StateStore

PROJECT_NAME = "clipper"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -------------------------------------------------------------------------------------------
# Deployers: how a model is saved into a bundle and loaded back inside a replica
# -------------------------------------------------------------------------------------------


@hookspec
def clipper_register_deployers() -> list[type[Deployer]]:
    """Return the :class:`~clipper_core.deployers.api.Deployer` classes this plugin provides.

    Called once when the deployer registry is built: by a deployer function
    (``deploy_pytorch_model``) to save a bundle, and by the model runtime to load one
    (``bundle.json`` names the deployer that wrote it).

    Use in: ``clipper-deployer-pytorch`` returns ``[PyTorchDeployer]``.
    """


# -------------------------------------------------------------------------------------------
# Container backends: where the frontends and the model replicas run
# -------------------------------------------------------------------------------------------


@hookspec
def clipper_register_backends() -> list[type[ContainerManager]]:
    """Return the :class:`~clipper_core.backends.api.ContainerManager` classes this plugin provides.

    Called when ``clipper`` (the CLI) or :func:`clipper_core.plugins.get_backend` looks a
    backend up by name (``local``, ``docker``, ``kubernetes``).
    """


# -------------------------------------------------------------------------------------------
# Query path objects: resolved once at frontend start, then called directly per query
# -------------------------------------------------------------------------------------------


@hookspec
def clipper_register_selection_policies() -> list[type[SelectionPolicy]]:
    """Return the :class:`~clipper_core.selection.api.SelectionPolicy` classes this plugin provides.

    Called once when the query frontend starts, and by the management API to check
    ``set_selection_policy``; an application's ``policy`` names one. The frontend then calls
    the policy object directly: ``select`` per query (or per routing change for a policy
    whose ``routes_per_query`` is False), ``combine`` when the chosen models answered or the
    SLO ran out, ``observe`` per feedback. See ``docs/selection.md``.

    Use in: ``clipper_core.selection.bandits`` returns ``[Exp3Policy, EpsilonGreedyPolicy,
    UCB1Policy, ThompsonSamplingPolicy]``.
    """


@hookspec
def clipper_register_caches() -> list[type[PredictionCache]]:
    """Return the :class:`~clipper_core.cache.api.PredictionCache` classes this plugin provides.

    Called once when the query frontend starts; the cluster configuration's ``cache`` names one.
    """


# -------------------------------------------------------------------------------------------
# Configuration state
# -------------------------------------------------------------------------------------------


@hookspec
def clipper_register_stores() -> list[type[StateStore]]:
    """Return the :class:`~clipper_core.store.api.StateStore` classes this plugin provides.

    Called once by each server process; the cluster configuration's ``store`` URL scheme
    (``sqlite``, ``redis``) names one.
    """
