"""Metric families for the cilium-agent memory envelope, memory, lifecycle and datapath packet counters.

The envelope gauges are always published (the node annotation override, when read, replaces the
configured envelope). The other families come from the snapshots the sources keep in the state:
a ``None`` snapshot (no agent pod, or the source failing) means no series; a ``None`` field means
the kubelet omitted it, and the series is left out rather than exported as zero.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cilium_node_exporter import contract as c
from cilium_node_exporter.aggregation.state import ExporterState


def _gauge(metric: c.Metric, value: float | None) -> Iterator[Metric]:
    if value is not None:
        g = GaugeMetricFamily(metric.name, metric.help)
        g.add_metric([], value)
        yield g


def agent_families(state: ExporterState) -> Iterator[Metric]:
    """The envelope gauges (always), then whatever the agent sources recorded."""
    lower, upper = state.envelope_override or state.envelope
    yield from _gauge(c.ENVELOPE_LOWER, lower)
    yield from _gauge(c.ENVELOPE_UPPER, upper)

    memory = state.agent_memory if "kubelet" in state.sources else None
    if memory is not None:
        yield from _gauge(c.AGENT_WORKING_SET, memory.working_set)
        yield from _gauge(c.AGENT_RSS, memory.rss)
        yield from _gauge(c.AGENT_USAGE, memory.usage)
        yield from _gauge(c.AGENT_LIMIT, memory.limit)
        yield from _gauge(c.AGENT_START_TIME, memory.start_time)

    pod = state.agent_pod if "apiserver" in state.sources else None
    if pod is not None:
        if pod.restart_count is not None:
            restarts = CounterMetricFamily(c.AGENT_RESTARTS.family, c.AGENT_RESTARTS.help)
            restarts.add_metric([], pod.restart_count)
            yield restarts
        if pod.last_terminated_reason is not None:
            reason = GaugeMetricFamily(c.AGENT_LAST_TERMINATED_REASON.name, c.AGENT_LAST_TERMINATED_REASON.help,
                                       labels=list(c.AGENT_LAST_TERMINATED_REASON.labels))
            reason.add_metric([pod.last_terminated_reason], 1)
            yield reason
        yield from _gauge(c.AGENT_LAST_TERMINATED_TIMESTAMP, pod.last_terminated_at)
        info = GaugeMetricFamily(c.AGENT_INFO.name, c.AGENT_INFO.help, labels=list(c.AGENT_INFO.labels))
        info.add_metric([pod.namespace, pod.name, pod.uid], 1)
        yield info

    datapath = state.agent_datapath if "agent" in state.sources else None
    if datapath is not None:
        dropped = CounterMetricFamily(c.DATAPATH_DROPPED.family, c.DATAPATH_DROPPED.help,
                                      labels=list(c.DATAPATH_DROPPED.labels))
        for (reason_name, direction), value in sorted(datapath.dropped.items()):
            dropped.add_metric([reason_name, direction], value)
        yield dropped
        forwarded = CounterMetricFamily(c.DATAPATH_FORWARDED.family, c.DATAPATH_FORWARDED.help,
                                        labels=list(c.DATAPATH_FORWARDED.labels))
        for direction, value in sorted(datapath.forwarded.items()):
            forwarded.add_metric([direction], value)
        yield forwarded
        pressure = GaugeMetricFamily(c.BPF_MAP_PRESSURE.name, c.BPF_MAP_PRESSURE.help,
                                     labels=list(c.BPF_MAP_PRESSURE.labels))
        for map_name, value in sorted(datapath.map_pressure.items()):
            pressure.add_metric([map_name], value)
        yield pressure
