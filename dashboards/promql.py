"""PromQL vocabulary shared by the dashboards: selectors, recording-rule names, SLO windows.

Raw exporter series carry the target labels `job`, `node` and (when present) `cluster`; the alert
pack's recording rules aggregate `sum by (cluster, node, ...)`, so they keep `cluster` and `node`
but lose `job`. Selectors below reflect that: raw metrics are filtered by `$job`, recording rules not.
"""

from __future__ import annotations

from typing import Final

from cilium_node_exporter import contract

DEFAULT_JOB: Final = "cilium-node-exporter"

# Recording rules of the alert pack (alerts/rules/cilium-node-exporter.rules.yaml).
SLO_WINDOWS: Final = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "28d")
DROPS_BY_REASON: Final = "node_reason:cilium_node_drops:rate5m"
DROPS_UNEXPECTED: Final = "node:cilium_node_drops_unexpected:rate5m"
FLOWS_SEEN: Final = "node:cilium_node_hubble_flows_seen:rate5m"
POLICY_DENIED: Final = "node:cilium_node_policy_denied:rate5m"
L7_DENIED: Final = "node:cilium_node_l7_denied:rate5m"
LOST_EVENTS_BY_SOURCE: Final = "node_source:cilium_node_hubble_lost_events:rate5m"
DATAPATH_PACKETS: Final = "node:cilium_node_datapath_packets:rate5m"
MEMORY_ENVELOPE_ERROR: Final = "node:cilium_node_agent_memory_envelope_error:bool"
SLO_OBJECTIVE: Final = "cilium_node_slo:objective:ratio"
# Numerator and denominator of the drop-ratio SLI (5m), for windows the rules do not pre-compute.
DROP_SLO_ERRORS_RATE: Final = "node:cilium_node_drop_slo_errors:rate5m"
DROP_SLO_TRAFFIC_RATE: Final = "node:cilium_node_drop_slo_traffic:rate5m"


def drop_slo_errors(window: str) -> str:
    """Recording rule name of the drop-ratio SLO error ratio over ``window``."""
    return f"node:cilium_node_drop_slo_errors:ratio_rate{window}"


def memory_slo_errors(window: str) -> str:
    """Recording rule name of the memory-envelope SLO error ratio over ``window``."""
    return f"node:cilium_node_agent_memory_envelope_slo_errors:ratio_rate{window}"


RECORDING_RULES: Final[frozenset[str]] = frozenset(
    {DROPS_BY_REASON, DROPS_UNEXPECTED, FLOWS_SEEN, POLICY_DENIED, L7_DENIED, LOST_EVENTS_BY_SOURCE,
     DATAPATH_PACKETS, MEMORY_ENVELOPE_ERROR, SLO_OBJECTIVE, DROP_SLO_ERRORS_RATE, DROP_SLO_TRAFFIC_RATE}
    | {drop_slo_errors(w) for w in SLO_WINDOWS}
    | {memory_slo_errors(w) for w in SLO_WINDOWS}
)

# SLO names as in the objective series' `slo` label.
SLO_DROP: Final = "drop-ratio"
SLO_MEMORY: Final = "memory-envelope"

# Drop reasons outside the "unexpected" class (for `reason!~"..."` on raw drop counters).
EXPECTED_REASONS: Final = contract.expected_reasons_regex()


def raw(*extra: str) -> str:
    """Label matchers for a raw exporter series under the dashboard's variables."""
    return "{" + ", ".join(['job=~"$job"', 'cluster=~"$cluster"', 'node=~"$node"', *extra]) + "}"


def rec(*extra: str) -> str:
    """Label matchers for a recording rule (no `job`: the rules aggregate it away)."""
    return "{" + ", ".join(['cluster=~"$cluster"', 'node=~"$node"', *extra]) + "}"


def objective(slo: str) -> str:
    """The SLO objective as a scalar (global series, not filtered by cluster)."""
    return f'scalar(max({SLO_OBJECTIVE}{{slo="{slo}"}}))'


def budget(slo: str) -> str:
    """The error budget (1 - objective) as a scalar expression."""
    return f"(1 - {objective(slo)})"
