"""Metric families for the memory envelope, the agent's memory by part and the derived envelope
(docs/envelope.md).

The envelope gauges are always published: the node annotation override when read, else the derived
envelope in derived mode when it can be derived, else the configured one (``aggregation/envelope.py``).
Inputs that are unknown leave their series out: a part the agent does not report, a derived envelope
without its inputs (no map sizing, no node memory), an estimate missing one of its terms.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from cilium_node_exporter import contract as c
from cilium_node_exporter.aggregation import envelope
from cilium_node_exporter.aggregation.containers import AGENT
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.exposition.agent import _gauge


def _family(metric: c.Metric, values: dict[str, float] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(metric.name, metric.help, labels=list(metric.labels) or None)
    for label, value in (values or {}).items():
        family.add_metric([label], value)
    return family


def envelope_families(state: ExporterState) -> Iterator[Metric]:
    """The envelope in force and its source, memory by part, cluster objects, node memory, map sizing and the
    derived envelope's terms."""
    derivation = envelope.derive_for(state)
    lower, upper, source = envelope.current(state, derivation)
    yield from _gauge(c.ENVELOPE_LOWER, lower)
    yield from _gauge(c.ENVELOPE_UPPER, upper)
    yield _family(c.ENVELOPE_SOURCE, {source: 1})
    agent = state.agent_memory if "agent" in state.sources else None
    if agent is not None:
        yield _family(c.AGENT_MEMORY_PART, {p: agent.parts[p] for p in c.MEMORY_PARTS if p in agent.parts})
        yield _family(c.CLUSTER_OBJECTS,
                      {k: agent.objects[k] for k in c.CLUSTER_OBJECT_KINDS if k in agent.objects})
    yield from _gauge(c.MACHINE_MEMORY, state.machine_memory if "kubelet" in state.sources else None)

    settings = state.settings if "settings" in state.sources else None
    sizing = settings.map_sizing if settings is not None else None
    if sizing is not None and sizing.ratio is not None:
        yield from _gauge(c.BPF_MAP_SIZE_RATIO, sizing.ratio)
    if derivation is not None:
        yield _family(c.DERIVED_LOWER, {t.part: t.lower for t in derivation.terms if t.lower})  # zeros: no series
        yield _family(c.DERIVED_UPPER, {t.part: t.upper for t in derivation.terms})

    memory = state.memory.get(AGENT) if "kubelet" in state.sources else None
    if memory is not None:
        yield from _gauge(c.AGENT_BPF_CHARGED, envelope.charged_estimate(memory.working_set, memory.rss,
                                                                           envelope.bpf_reference(agent, derivation)))
