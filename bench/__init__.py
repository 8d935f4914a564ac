"""Benchmarks of the query path against a reference measured in the same run (issue 6).

``python -m bench`` (or ``--quick``) starts an embedded cluster, deploys the workloads, measures
them and nginx with wrk and an open-loop generator, and writes ``bench/results/``.
"""

from __future__ import annotations

from clipper_core.exceptions import ClipperError


class BenchError(ClipperError):
    """The benchmark could not run: a tool is missing, a server did not start or answer."""
