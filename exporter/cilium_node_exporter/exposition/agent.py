"""Metric families for the cilium-agent memory, lifecycle and datapath packet counters.

Placeholder until the kubelet/apiserver/agent sources land: publishes only the envelope.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from cilium_node_exporter import contract as c
from cilium_node_exporter.aggregation.state import ExporterState


def agent_families(state: ExporterState) -> Iterator[Metric]:
    """The envelope gauges (always), then whatever the agent sources recorded."""
    lower, upper = state.envelope
    for metric, value in ((c.ENVELOPE_LOWER, lower), (c.ENVELOPE_UPPER, upper)):
        g = GaugeMetricFamily(metric.name, metric.help)
        g.add_metric([], value)
        yield g
