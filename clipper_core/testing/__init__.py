"""What plugin authors import to test their plugins the way the built-ins are tested.

:class:`DeployerConformance` is the deployer conformance suite; :class:`DeployerEndToEnd` adds a
deployment on the embedded default queried over REST; :class:`DeployerRegistration` holds only
its registration tests, for deployers whose replicas are not Python. See ``docs/plugins/writing-a-deployer.md``.
:class:`clipper_core.testing.otlp.OtlpReceiver` collects the spans a traced cluster exports.
"""

from __future__ import annotations

from clipper_core.testing.conformance import (
    DeployerConformance,
    DeployerEndToEnd,
    DeployerRegistration,
    LocalCluster,
    assert_outputs_match,
    load_counting,
    parse_output,
    replica_batch,
    rest_input,
)

__all__ = [
    "DeployerConformance",
    "DeployerEndToEnd",
    "DeployerRegistration",
    "LocalCluster",
    "assert_outputs_match",
    "load_counting",
    "parse_output",
    "replica_batch",
    "rest_input",
]
