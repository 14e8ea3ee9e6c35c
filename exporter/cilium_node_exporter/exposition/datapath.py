"""Metric families for the Hubble-derived datapath counters, the Hubble status and self-health."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cilium_node_exporter import __version__
from cilium_node_exporter import contract as c
from cilium_node_exporter.aggregation.state import ExporterState


def _counter(metric: c.Metric, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(metric.family, metric.help, labels=list(labels or metric.labels))


def _gauge(metric: c.Metric, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(metric.name, metric.help, labels=list(labels or metric.labels))


def _optional(present: tuple[str | None, ...], names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n, v in zip(names, present, strict=True) if v is not None)


def datapath_families(state: ExporterState) -> Iterator[Metric]:
    """Drops, policy verdicts, L7 requests and lost events (only when the hubble source is enabled)."""
    if "hubble" not in state.sources:
        return
    dp = state.datapath

    drops = _counter(c.DROPS, c.DROPS.labels + c.DROPS.optional_labels)
    for (code, direction, protocol, ns), value in dp.drops.copy().items():
        labels = [c.drop_reason_name(code) if code >= 0 else "REASON_other", direction,
                  protocol or "", ns or ""]
        drops.add_metric(labels, value)
    yield _drop_empty_optional(drops, c.DROPS)

    verdicts = _counter(c.POLICY_VERDICTS, c.POLICY_VERDICTS.labels + c.POLICY_VERDICTS.optional_labels)
    for (direction, match, action, ns, policy), value in dp.verdicts.copy().items():
        verdicts.add_metric([direction, match, action, ns or "", policy or ""], value)
    yield _drop_empty_optional(verdicts, c.POLICY_VERDICTS)

    l7 = _counter(c.L7_REQUESTS, c.L7_REQUESTS.labels + c.L7_REQUESTS.optional_labels)
    for (protocol, method, direction, action, ns), value in dp.l7.copy().items():
        l7.add_metric([protocol, method, direction, action, ns or ""], value)
    yield _drop_empty_optional(l7, c.L7_REQUESTS)

    lost = _counter(c.LOST_EVENTS)
    for source, value in sorted(dp.lost.copy().items()):
        lost.add_metric([source], value)
    yield lost

    status = state.hubble_status
    if status is not None and state.health["hubble"].up:
        seen = _counter(c.FLOWS_SEEN)
        seen.add_metric([], status.seen_flows)
        yield seen
        for metric, value in ((c.BUFFER_FLOWS, status.num_flows), (c.BUFFER_CAPACITY, status.max_flows)):
            g = _gauge(metric)
            g.add_metric([], value)
            yield g
        info = _gauge(c.HUBBLE_INFO)
        info.add_metric([status.version or "unknown"], 1)
        yield info


def _drop_empty_optional(family: Metric, metric: c.Metric) -> Metric:
    """Remove optional labels that no sample uses (a dimension that is switched off)."""
    used = {name for s in family.samples for name, v in s.labels.items() if v != ""}
    keep = set(metric.labels) | (used & set(metric.optional_labels))
    for i, s in enumerate(family.samples):
        family.samples[i] = s._replace(labels={k: v for k, v in s.labels.items() if k in keep})
    return family


def health_families(state: ExporterState) -> Iterator[Metric]:
    """Build info, source up/errors, events, reconnects, disconnected time, label overflow."""
    build = _gauge(c.BUILD_INFO)
    build.add_metric([__version__], 1)
    yield build

    up = _gauge(c.SOURCE_UP)
    unavailable = _gauge(c.SOURCE_UNAVAILABLE)
    errors = _counter(c.SOURCE_ERRORS)
    for name in state.sources:
        h = state.health[name]
        # no series while a source's first attempt (connect, list) is still under way; an optional
        # source without an endpoint on this node is unavailable instead of down
        if h.attempted and not h.unavailable:
            up.add_metric([name], 1 if h.up else 0)
        if h.attempted and h.optional:
            unavailable.add_metric([name], 1 if h.unavailable else 0)
        for reason in c.ERROR_REASONS:
            errors.add_metric([name, reason], h.errors.get(reason, 0))
    yield up
    yield unavailable
    yield errors

    if "hubble" in state.sources:
        events = _counter(c.EVENTS)
        counts = state.datapath.events.copy()
        for kind in c.EVENT_KINDS:
            events.add_metric([kind], counts.get(kind, 0))
        yield events
        reconnects = _counter(c.HUBBLE_RECONNECTS)
        reconnects.add_metric([], state.hubble_gap.reconnects)
        yield reconnects
        gap = _counter(c.HUBBLE_DISCONNECTED)
        gap.add_metric([], round(state.hubble_gap.disconnected_seconds(), 3))
        yield gap

    overflow = _counter(c.LABEL_OVERFLOW)
    for label, value in sorted(state.datapath.label_overflow.copy().items()):
        overflow.add_metric([label], value)
    yield overflow
