"""Administration of a cluster: :class:`ClipperConnection` (the seeds' Python API)."""

from clipper_core.admin.connection import ClipperConnection

__all__ = ["ClipperConnection"]
