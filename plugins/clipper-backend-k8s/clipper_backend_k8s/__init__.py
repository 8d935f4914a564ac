"""Run Clipper on Kubernetes: ``KubernetesContainerManager`` (also importable from
``clipper_admin``, the seeds' path, when this plugin is installed)."""

from __future__ import annotations

from clipper_backend_k8s.backend import KubernetesContainerManager, check_service_types

__all__ = ["KubernetesContainerManager", "check_service_types"]
