"""Recording rules: per-node rates the dashboards read, and the SLI ratios of both SLOs.

Every rule is aggregated ``by (<cluster>, <node>[, ...])``; a rule reads another rule when that one
already records what it needs (rules of one group are evaluated in order).
"""

from __future__ import annotations

from typing import Any

from cilium_node_exporter import contract as c

from .config import Values, duration_seconds
from .promql import PromQL

# Names the dashboards and the alerts rely on.
FLOWS_SEEN = "node:cilium_node_hubble_flows_seen:rate5m"
DROPS_BY_REASON = "node_reason:cilium_node_drops:rate5m"
DROPS_UNEXPECTED = "node:cilium_node_drops_unexpected:rate5m"
POLICY_DENIED = "node:cilium_node_policy_denied:rate5m"
L7_DENIED = "node:cilium_node_l7_denied:rate5m"
LOST_BY_SOURCE = "node_source:cilium_node_hubble_lost_events:rate5m"
DATAPATH_DROPS_BY_REASON = "node_reason:cilium_node_datapath_dropped_packets:rate5m"
DATAPATH_FORWARDED = "node:cilium_node_datapath_forwarded_packets:rate5m"
DATAPATH_PACKETS = "node:cilium_node_datapath_packets:rate5m"
DATAPATH_UNEXPECTED = "node:cilium_node_datapath_drops_unexpected:rate5m"
WORKING_SET = "node:cilium_node_agent_memory_working_set_bytes:max"
ENVELOPE_UPPER = "node:cilium_node_agent_memory_envelope_upper_bytes:max"
ENVELOPE_LOWER = "node:cilium_node_agent_memory_envelope_lower_bytes:max"
MEMORY_LIMIT = "node:cilium_node_agent_memory_limit_bytes:max"
MEMORY_ENVELOPE_ERROR = "node:cilium_node_agent_memory_envelope_error:bool"
SLO_OBJECTIVE = "cilium_node_slo:objective:ratio"
SLO_DROP = "drop-ratio"
SLO_MEMORY = "memory-envelope"
DASHBOARD_WINDOW = "5m"


def drop_traffic(window: str) -> str:
    """SLI events per second over ``window``: datapath packets, else Hubble seen flows."""
    return f"node:cilium_node_drop_slo_traffic:rate{window}"


def drop_errors(window: str) -> str:
    """Unexpected drops per second over ``window``, from the same source as drop_traffic."""
    return f"node:cilium_node_drop_slo_errors:rate{window}"


def drop_ratio(window: str) -> str:
    """Drop-ratio SLI errors (unexpected drops / traffic) over ``window``."""
    return f"node:cilium_node_drop_slo_errors:ratio_rate{window}"


def memory_ratio(window: str) -> str:
    """Memory-envelope SLI errors (share of bad time) over ``window``."""
    return f"node:cilium_node_agent_memory_envelope_slo_errors:ratio_rate{window}"


def slo_windows(values: Values) -> list[str]:
    """Every window of the burn-rate alerts plus the dashboards' 5m, shortest first."""
    windows = {DASHBOARD_WINDOW}
    for pair in values.raw("sloBurnWindows"):
        windows.update((pair["long"], pair["short"]))
    return sorted(windows, key=duration_seconds)


def _record(name: str, expr: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = labels
    return rule


def _hubble_rules(q: PromQL) -> list[dict[str, Any]]:
    zero_if_hubble = f"0 * {FLOWS_SEEN}"
    policy_denied = q.rate(c.POLICY_VERDICTS, "5m", 'action="dropped"', 'match!~"l7/.*"')
    l7_denied = q.rate(c.L7_REQUESTS, "5m", 'action="dropped"')
    return [
        _record(FLOWS_SEEN, q.rate(c.FLOWS_SEEN, "5m")),
        _record(DROPS_BY_REASON, q.rate(c.DROPS, "5m", by=("reason",))),
        _record(DROPS_UNEXPECTED,
                f"sum by ({q.by()}) ({DROPS_BY_REASON}{{{q.unexpected()}}})\nor\n{zero_if_hubble}"),
        _record(POLICY_DENIED, f"{policy_denied}\nor\n{zero_if_hubble}"),
        _record(L7_DENIED, f"{l7_denied}\nor\n{zero_if_hubble}"),
        _record(LOST_BY_SOURCE, q.rate(c.LOST_EVENTS, "5m", by=("source",))),
    ]


def _datapath_rules(q: PromQL) -> list[dict[str, Any]]:
    dropped = f"sum by ({q.by()}) ({DATAPATH_DROPS_BY_REASON})"
    return [
        _record(DATAPATH_DROPS_BY_REASON, q.rate(c.DATAPATH_DROPPED, "5m", by=("reason",))),
        _record(DATAPATH_FORWARDED, q.rate(c.DATAPATH_FORWARDED, "5m")),
        _record(DATAPATH_PACKETS, f"({DATAPATH_FORWARDED} + {dropped})\nor\n{DATAPATH_FORWARDED}"),
        _record(DATAPATH_UNEXPECTED,
                f"sum by ({q.by()}) ({DATAPATH_DROPS_BY_REASON}{{{q.unexpected()}}})\nor\n"
                f"0 * {DATAPATH_PACKETS}"),
    ]


def _memory_rules(q: PromQL) -> list[dict[str, Any]]:
    kubelet_up = q.max(c.SOURCE_UP, 'source="kubelet"')
    return [
        _record(WORKING_SET, q.max(c.AGENT_WORKING_SET)),
        _record(ENVELOPE_UPPER, q.max(c.ENVELOPE_UPPER)),
        _record(ENVELOPE_LOWER, q.max(c.ENVELOPE_LOWER)),
        _record(MEMORY_LIMIT, q.max(c.AGENT_LIMIT)),
        # 1 = bad (above the upper bound, or not running while the kubelet answers), 0 = good; no
        # sample (missing time) when the kubelet source is down or the exporter is not scraped.
        _record(MEMORY_ENVELOPE_ERROR,
                f"({WORKING_SET} > bool {ENVELOPE_UPPER})\nor\n"
                f"({kubelet_up} == 1 unless {WORKING_SET})"),
    ]


def _drop_window_rules(q: PromQL, window: str) -> list[dict[str, Any]]:
    if window == DASHBOARD_WINDOW:
        traffic = f"{DATAPATH_PACKETS}\nor\n{FLOWS_SEEN}"
        errors = f"{DATAPATH_UNEXPECTED}\nor\n{DROPS_UNEXPECTED}"
    else:
        forwarded = q.rate(c.DATAPATH_FORWARDED, window)
        traffic = (f"({forwarded}\n + {q.rate(c.DATAPATH_DROPPED, window)})\nor\n{forwarded}\nor\n"
                   f"{q.rate(c.FLOWS_SEEN, window)}")
        errors = (f"{q.rate(c.DATAPATH_DROPPED, window, q.unexpected())}\nor\n0 * {forwarded}\nor\n"
                  f"{q.rate(c.DROPS, window, q.unexpected())}\nor\n0 * {q.rate(c.FLOWS_SEEN, window)}")
    return [
        _record(drop_traffic(window), traffic),
        _record(drop_errors(window), errors),
        _record(drop_ratio(window), f"{drop_errors(window)}\n/\n({drop_traffic(window)} > 0)"),
    ]


def recording_groups(values: Values) -> list[dict[str, Any]]:
    """The recording-rule groups: per-node rates and SLI windows, then the SLO period."""
    q = PromQL(values)
    windows = slo_windows(values)
    rules = _hubble_rules(q) + _datapath_rules(q) + _memory_rules(q)
    for window in windows:
        rules += _drop_window_rules(q, window)
    rules += [_record(memory_ratio(w), f"avg_over_time({MEMORY_ENVELOPE_ERROR}[{w}])") for w in windows]
    rules += [
        _record(SLO_OBJECTIVE, f"vector({values['dropSloObjective']})", {"slo": SLO_DROP}),
        _record(SLO_OBJECTIVE, f"vector({values['memorySloObjective']})", {"slo": SLO_MEMORY}),
    ]
    period, shortest = values.raw("sloPeriod"), windows[0]
    period_rules = [
        _record(drop_ratio(period),
                f"sum_over_time({drop_errors(shortest)}[{period}])\n/\n"
                f"(sum_over_time({drop_traffic(shortest)}[{period}]) > 0)"),
        _record(memory_ratio(period), f"avg_over_time({MEMORY_ENVELOPE_ERROR}[{period}])"),
    ]
    return [
        {"name": "cilium-node-exporter.rules", "rules": rules},
        {"name": "cilium-node-exporter.slo-period.rules", "interval": values["sloPeriodInterval"],
         "rules": period_rules},
    ]
