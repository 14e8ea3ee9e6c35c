"""Names of the recorded series: the interface between the rule pack, the dashboards and the SLO report.

Level prefixes follow the recording-rule convention ``level:metric:operations``: ``node:`` series keep the
cluster and node labels (names from the configuration), ``node_reason:`` also the drop reason, ``cluster:``
only the cluster. Window-dependent names are functions of the window (a Prometheus duration string).

Which series a consumer should read:
- per-node 5m rates (``DROPS_BY_REASON`` ...): dashboards and alerts, fresh every evaluation;
- SLI counts and ratios (``drop_errors``, ``drop_traffic``: packets over a window; ``drop_ratio``,
  ``memory_ratio``): the burn-rate windows;
- the drop SLI's chains (``tile(drop_errors(step), step)``): the packets counted since the previous sample,
  recorded about every ``step``; consecutive samples telescope, so a sum over any range is an exact count
  whatever the gaps. The SLO Review and the report read the ``sloReviewStep`` (hourly) chain;
- memory tiles (``tile(memory_ratio(step), step)``): the share of bad time over ``step``, once per ``step``.
"""

from __future__ import annotations

from typing import Final

RATE_WINDOW: Final = "5m"  # the window of the per-node rates the dashboards read

# --- Hubble (events; per packet for drops, per connection for allowed verdicts) -------------------------
FLOWS_SEEN: Final = "node:cilium_node_hubble_flows_seen:rate5m"
DROPS_BY_REASON: Final = "node_reason:cilium_node_drops:rate5m"
DROPS_UNEXPECTED: Final = "node:cilium_node_drops_unexpected:rate5m"
POLICY_DENIED: Final = "node:cilium_node_policy_denied:rate5m"
L7_DENIED: Final = "node:cilium_node_l7_denied:rate5m"
LOST_BY_SOURCE: Final = "node_source:cilium_node_hubble_lost_events:rate5m"

# --- datapath (agent metrics endpoint; packet-exact) ---------------------------------------------------
DATAPATH_DROPS_BY_REASON: Final = "node_reason:cilium_node_datapath_dropped_packets:rate5m"
DATAPATH_FORWARDED: Final = "node:cilium_node_datapath_forwarded_packets:rate5m"
DATAPATH_PACKETS: Final = "node:cilium_node_datapath_packets:rate5m"
DATAPATH_UNEXPECTED: Final = "node:cilium_node_datapath_drops_unexpected:rate5m"

# --- memory (kubelet) --------------------------------------------------------------------------------
WORKING_SET: Final = "node:cilium_node_agent_memory_working_set_bytes:max"
ENVELOPE_UPPER: Final = "node:cilium_node_agent_memory_envelope_upper_bytes:max"
ENVELOPE_LOWER: Final = "node:cilium_node_agent_memory_envelope_lower_bytes:max"
MEMORY_LIMIT: Final = "node:cilium_node_agent_memory_limit_bytes:max"
MEMORY_ENVELOPE_ERROR: Final = "node:cilium_node_agent_memory_envelope_error:bool"
ENVOY_WORKING_SET: Final = "node:cilium_node_envoy_memory_working_set_bytes:max"
ENVOY_LIMIT: Final = "node:cilium_node_envoy_memory_limit_bytes:max"

# --- visibility: 1 per (node, cause) while Hubble cannot see the node's drops or verdicts -----------------
BLIND: Final = "node_cause:cilium_node_hubble_blind:bool"
BLIND_CAUSES: Final = ("drop_notifications_off", "verdict_notifications_off", "monitor_events_filtered",
                       "events_rate_limited", "datapath_drops_unseen")

# --- the drop SLI's per-node counters: datapath counters summed per node (exporter pods merged) ---------
DROP_SLO_ERRORS_TOTAL: Final = "node:cilium_node_drop_slo_errors_total:sum"
DROP_SLO_TRAFFIC_TOTAL: Final = "node:cilium_node_drop_slo_traffic_total:sum"
DROP_SLO_TRANSIENT_TOTAL: Final = "node:cilium_node_drop_slo_transient_errors_total:sum"

# --- SLOs --------------------------------------------------------------------------------------------
SLO_OBJECTIVE: Final = "cilium_node_slo:objective:ratio"  # label slo = SLO name, value = objective
SLO_DROP: Final = "drop-ratio"
SLO_MEMORY: Final = "memory-envelope"


def drop_errors(window: str) -> str:
    """Packets dropped for unexpected reasons over ``window`` (datapath counters only): a count."""
    return f"node:cilium_node_drop_slo_errors:increase{window}"


def drop_traffic(window: str) -> str:
    """Datapath packets (forwarded + dropped) over ``window``: the drop SLI's valid events, a count."""
    return f"node:cilium_node_drop_slo_traffic:increase{window}"


def drop_transient(window: str) -> str:
    """Packets dropped for a start-up (transient-class) reason over ``window``: a count."""
    return f"node:cilium_node_drop_slo_transient_errors:increase{window}"


def drop_ratio(window: str) -> str:
    """Drop-ratio SLI errors over ``window``: unexpected drops / packets (no sample without traffic)."""
    return f"node:cilium_node_drop_slo_errors:ratio_rate{window}"


def memory_ratio(window: str) -> str:
    """Memory-envelope SLI errors over ``window``: the share of bad time (unknown time not counted)."""
    return f"node:cilium_node_agent_memory_envelope_slo_errors:ratio_rate{window}"


def tile(name: str, step: str) -> str:
    """``name`` recorded about once every ``step``: ``...:increase5m_every5m``, ``..._total:sum_every1h``."""
    return f"{name}_every{step}"


def cluster(name: str) -> str:
    """The per-cluster (fleet-pooled) series of a ``node:`` series."""
    if not name.startswith("node:"):
        raise ValueError(f"{name} is not a node-level series")
    return "cluster:" + name.removeprefix("node:")


# --- alerts other code names (the demo's "what happens next"); alerts/alerting.py defines them ------------
AGENT_ABOVE_ENVELOPE: Final = "CiliumAgentMemoryAboveEnvelope"
AGENT_NEAR_LIMIT: Final = "CiliumAgentMemoryNearLimit"
AGENT_GROWTH_FORECAST: Final = "CiliumAgentMemoryGrowthForecast"
AGENT_OOM_KILLED: Final = "CiliumAgentOOMKilled"
AGENT_OOM_KILL_LOOP: Final = "CiliumAgentOOMKillLoop"
POLICY_DENIAL_SURGE: Final = "CiliumNodePolicyDenialSurge"
L7_DENIAL_SURGE: Final = "CiliumNodeL7DenialSurge"
