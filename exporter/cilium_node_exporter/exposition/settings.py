"""Metric families of the node's Cilium settings (source ``settings``).

An unknown setting is a missing series (or ``unknown`` in the info series' labels), never a 0: a
0 here says "switched off", which alerts read as "this node cannot see these events". Every series says where
its values were read (``origin``): the running agent, or the ConfigMap's start-up values.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from cilium_node_exporter import contract as c
from cilium_node_exporter.aggregation.state import ExporterState


def settings_families(state: ExporterState) -> Iterator[Metric]:
    """Info, notifications, Hubble's monitor events and the events rate limit, as far as they are known."""
    settings = state.settings if "settings" in state.sources else None
    if settings is None:
        return
    info = GaugeMetricFamily(c.CILIUM_INFO.name, c.CILIUM_INFO.help, labels=list(c.CILIUM_INFO.labels))
    info.add_metric([settings.version or c.UNKNOWN_VALUE, settings.envoy_mode or c.UNKNOWN_VALUE,
                     settings.kube_proxy_replacement or c.UNKNOWN_VALUE,
                     settings.monitor_aggregation or c.UNKNOWN_VALUE, settings.origin], 1)
    yield info
    for metric, name, known, order in (
            (c.AGENT_NOTIFICATIONS_ENABLED, "notifications", settings.notifications, c.NOTIFICATION_EVENTS),
            (c.HUBBLE_MONITOR_EVENTS, "hubble_monitor_events", settings.hubble_monitor_events, c.MONITOR_EVENTS),
            (c.AGENT_EVENTS_RATE_LIMIT, "rate_limit", settings.rate_limit, c.RATE_LIMIT_KINDS)):
        if not known:
            continue
        origin = settings.origin_of(name)
        family = GaugeMetricFamily(metric.name, metric.help, labels=list(metric.labels))
        for key in order:
            if key in known:
                family.add_metric([key, origin], float(known[key]))
        yield family
