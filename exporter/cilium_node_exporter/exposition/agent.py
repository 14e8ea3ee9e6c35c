"""Metric families for the Cilium containers' memory and lifecycle (cilium-agent, cilium-envoy) and the
agent's datapath packet counters; the memory envelope's are in :mod:`.envelope`.

The families come from the snapshots the sources keep in the state: a missing snapshot (no such pod,
or the source failing) means no series; a ``None`` field means the kubelet omitted it, and the series
is left out rather than exported as zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cilium_node_exporter import contract as c
from cilium_node_exporter.aggregation.containers import AGENT, ENVOY
from cilium_node_exporter.aggregation.state import ExporterState


@dataclass(frozen=True)
class _Families:
    """The contract's metrics of one component."""

    working_set: c.Metric
    rss: c.Metric
    usage: c.Metric
    limit: c.Metric
    start_time: c.Metric
    restarts: c.Metric
    last_reason: c.Metric
    last_timestamp: c.Metric
    info: c.Metric


FAMILIES = {
    AGENT: _Families(c.AGENT_WORKING_SET, c.AGENT_RSS, c.AGENT_USAGE, c.AGENT_LIMIT, c.AGENT_START_TIME,
                     c.AGENT_RESTARTS, c.AGENT_LAST_TERMINATED_REASON, c.AGENT_LAST_TERMINATED_TIMESTAMP, c.AGENT_INFO),
    ENVOY: _Families(c.ENVOY_WORKING_SET, c.ENVOY_RSS, c.ENVOY_USAGE, c.ENVOY_LIMIT, c.ENVOY_START_TIME,
                     c.ENVOY_RESTARTS, c.ENVOY_LAST_TERMINATED_REASON, c.ENVOY_LAST_TERMINATED_TIMESTAMP, c.ENVOY_INFO),
}


def _gauge(metric: c.Metric, value: float | None) -> Iterator[Metric]:
    if value is not None:
        g = GaugeMetricFamily(metric.name, metric.help)
        g.add_metric([], value)
        yield g


def _counter(metric: c.Metric, value: float | None) -> Iterator[Metric]:
    if value is not None:
        family = CounterMetricFamily(metric.family, metric.help)
        family.add_metric([], value)
        yield family


def agent_families(state: ExporterState) -> Iterator[Metric]:
    """Whatever the container and agent sources recorded."""
    memory = dict(state.memory) if "kubelet" in state.sources else {}
    pods = dict(state.pods) if "apiserver" in state.sources else {}
    for component, families in FAMILIES.items():
        mem = memory.get(component)
        if mem is not None:
            yield from _gauge(families.working_set, mem.working_set)
            yield from _gauge(families.rss, mem.rss)
            yield from _gauge(families.usage, mem.usage)
            yield from _gauge(families.limit, mem.limit)
            yield from _gauge(families.start_time, mem.start_time)
        pod = pods.get(component)
        if pod is not None:
            yield from _counter(families.restarts, pod.restart_count)
            if pod.last_terminated_reason is not None:
                reason = GaugeMetricFamily(families.last_reason.name, families.last_reason.help,
                                           labels=list(families.last_reason.labels))
                reason.add_metric([pod.last_terminated_reason], 1)
                yield reason
            yield from _gauge(families.last_timestamp, pod.last_terminated_at)
            info = GaugeMetricFamily(families.info.name, families.info.help, labels=list(families.info.labels))
            info.add_metric([pod.namespace, pod.name, pod.uid], 1)
            yield info

    yield from datapath_packet_families(state)


def datapath_packet_families(state: ExporterState) -> Iterator[Metric]:
    """The agent's packet counters, map pressure and rate-limited events (source ``agent``)."""
    datapath = state.agent_datapath if "agent" in state.sources else None
    if datapath is None:
        return
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
    # The agent exports its rate-limit counter only once the limiter checked a first event
    # (bpf/lib/ratelimit.h creates the metrics map entry then). When the settings show that this agent
    # has the limiter (1.17+) its absence is a known zero: off, or nothing checked yet, nothing discarded.
    ratelimited = datapath.ratelimited_events
    settings = state.settings
    if ratelimited is None and settings is not None and settings.has_rate_limiter:
        ratelimited = 0.0
    yield from _counter(c.DATAPATH_RATELIMIT_DROPPED, ratelimited)
