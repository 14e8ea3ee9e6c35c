"""The two SLOs, their burn-rate windows and factors, and the drop-reason classes, from a configuration.

Both SLOs are per node and share the period (``sloPeriod``) and the windows (``sloBurnWindows``):
- drop-ratio (event-based): packets dropped for an *unexpected* reason / all datapath packets, counted by the
  agent's BPF metrics map (packet-exact). It pages. Nodes without the agent source have no drop SLI: the
  Hubble approximation (drop events / flows seen) only opens a ticket labelled as such.
- memory-envelope (time-based): the share of time the cilium-agent runs above its memory envelope (or does
  not run while the kubelet answers). Tickets only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cilium_node_exporter.mixin import names
from cilium_node_exporter.mixin.config import DEFAULTS, NOT_ERROR_CLASSES, duration_seconds


@dataclass(frozen=True)
class BurnWindow:
    """A multi-window pair: alert when both windows burn faster than ``factor`` x the budget."""

    severity: str
    long: str
    short: str
    budget_share: float
    for_: str
    factor: float


@dataclass(frozen=True)
class Slo:
    """One SLO: its name (the ``slo`` label), objective key, what an error is and its recorded ratios."""

    name: str
    title: str
    objective_key: str
    error: str
    ratio: Callable[[str], str]  # window -> recorded error ratio
    pages: bool


DROP = Slo(names.SLO_DROP, "Drop ratio", "dropSloObjective",
           "a packet dropped for an unexpected reason, out of all datapath packets (agent counters)",
           names.drop_ratio, pages=True)
MEMORY = Slo(names.SLO_MEMORY, "Memory envelope", "memorySloObjective",
             "a unit of time with the cilium-agent working set above the node's envelope, or the agent not "
             "running while the kubelet answers", names.memory_ratio, pages=False)
SLOS: tuple[Slo, ...] = (DROP, MEMORY)


def burn_factor(period: str, budget_share: float, long: str) -> float:
    """Budget share x period / long window, rounded to 2 decimals (28d: 13.44, 5.6, 2.8, 0.93)."""
    return round(budget_share * duration_seconds(period) / duration_seconds(long), 2)


def burn_windows(config: Mapping[str, Any] = DEFAULTS, slo: Slo = DROP) -> tuple[BurnWindow, ...]:
    """The window pairs of ``slo`` with their factors (the memory SLO only uses the warning pairs)."""
    out = []
    for w in config["sloBurnWindows"]:
        if slo.pages or w["severity"] != "critical":
            out.append(BurnWindow(w["severity"], w["long"], w["short"], w["budgetShare"], w["for"],
                                  burn_factor(config["sloPeriod"], w["budgetShare"], w["long"])))
    return tuple(out)


def objective(config: Mapping[str, Any], slo: Slo) -> float:
    """The objective of ``slo`` (e.g. 0.999)."""
    return float(config[slo.objective_key])


def windows(config: Mapping[str, Any] = DEFAULTS) -> list[str]:
    """Every SLI window the rules record, shortest first: the base rate window and every burn window."""
    found = {config["sloRateWindow"]}
    for w in config["sloBurnWindows"]:
        found.update((w["long"], w["short"]))
    return sorted(found, key=duration_seconds)


# Drop-SLI windows up to this long are ``increase()`` of the per-node counter copies, evaluated every cycle;
# longer ones sum the chain of counts recorded every base window (``sloRateWindow``), and the period sums the
# chain recorded every ``sloReviewStep``. Each is exact across scrape gaps, counter resets, exporter and
# Prometheus restarts and missed evaluations (alerts/recording.py); the split only prices them.
RAW_WINDOW_MAX_SECONDS = 6 * 3600


def from_raw(config: Mapping[str, Any], window: str) -> bool:
    """Whether the drop SLI over ``window`` is an ``increase()`` of the counter copies (short windows)."""
    return duration_seconds(window) <= RAW_WINDOW_MAX_SECONDS


def retention_needed_seconds(config: Mapping[str, Any] = DEFAULTS) -> float:
    """TSDB retention the SLOs need: the period, plus one review step and a day of margin."""
    return duration_seconds(config["sloPeriod"]) + duration_seconds(config["sloReviewStep"]) + 86400


# --- drop-reason classes ---------------------------------------------------------------------------
def drop_class(reason: str, config: Mapping[str, Any] = DEFAULTS) -> str:
    """Class of a DropReason name: policy, expected, handled, configured, transient or unexpected."""
    for name, reasons in config["dropClasses"].items():
        if reason in reasons:
            return name
    return "unexpected"


def not_error_reasons(config: Mapping[str, Any] = DEFAULTS) -> tuple[str, ...]:
    """Reasons whose drops are not SLO errors (policy, expected, handled, configured classes)."""
    return tuple(r for name in NOT_ERROR_CLASSES for r in config["dropClasses"][name])


def not_error_regex(config: Mapping[str, Any] = DEFAULTS) -> str:
    """PromQL regex of the reasons that are not errors, for ``reason!~"..."`` selectors."""
    return "|".join(not_error_reasons(config))


CLASS_WHY: dict[str, str] = {
    "policy": "dropped on purpose by a policy someone wrote; surges have their own alerts",
    "expected": "Cilium's own connectivity test expects these on a healthy cluster (cilium-cli "
                "`defaults/defaults.go` `ExpectedDropReasons`): background traffic Cilium does not handle",
    "handled": "consumed or redirected by Cilium, not lost",
    "configured": "the consequence of a setting the operator chose",
    "transient": "normal for seconds during start-up; counted as unexpected because, sustained, they mean a "
                 "node or endpoint that never became ready",
    "unexpected": "everything else, REASON_<n> for codes this exporter does not know included: errors",
}

# Why each classed reason sits where it does (docs/metrics.md renders this table).
DROP_REASON_WHY: dict[str, str] = {
    "POLICY_DENIED": "network policy denied the packet, as written",
    "POLICY_DENY": "an explicit deny rule matched",
    "AUTH_REQUIRED": "the policy requires mutual authentication that is not established yet for this pair",
    "DENIED_BY_LB_SRC_RANGE_CHECK": "the client is outside the Service's loadBalancerSourceRanges",
    "UNSUPPORTED_L2_PROTOCOL": "non-IP frames (LLDP, STP, ...) reach Cilium's devices on healthy clusters "
                               "(cilium/cilium#18347, #18257)",
    "UNSUPPORTED_L3_PROTOCOL": "IPv6 neighbour discovery and MLD on IPv4-only clusters (cilium/cilium#25460)",
    "STALE_OR_UNROUTABLE_IP": "traffic to or from pod IPs being released or not yet known (pod churn)",
    "SERVICE_BACKEND_NOT_FOUND": "a Service without a ready backend on this path (scaled to zero, rollouts, "
                                 "load-balancer health checks with externalTrafficPolicy: Local)",
    "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE": "protocols BPF masquerading does not translate",
    "INVALID_SOURCE_IP": "a packet whose source is not its endpoint's address (anti-spoofing)",
    "UNKNOWN_L3_TARGET_ADDRESS": "traffic to a node or router address Cilium does not answer for",
    "UNKNOWN_ICMPV4_CODE": "ICMPv4 codes Cilium does not handle",
    "UNKNOWN_ICMPV6_CODE": "ICMPv6 codes Cilium does not handle",
    "FORBIDDEN_ICMPV6_MESSAGE": "ICMPv6 message types Cilium refuses by design",
    "NO_EGRESS_GATEWAY": "an egress-gateway policy without an available gateway; Cilium's test expects it. "
                         "If you rely on egress gateways, move it to unexpected (dropClasses)",
    "IGMP_HANDLED": "an IGMP message consumed by Cilium's multicast support",
    "IGMP_SUBSCRIBED": "an IGMP join handled by Cilium's multicast support",
    "MULTICAST_HANDLED": "the original of a multicast packet Cilium replicated",
    "NAT_NOT_NEEDED": "an internal verdict: no NAT applies, the packet takes another path",
    "DROP_PUNT_PROXY": "the packet was handed to the L7 proxy",
    "UNENCRYPTED_TRAFFIC": "strict encryption mode refuses plain-text traffic between nodes",
    "DROP_RATE_LIMITED": "a rate limit Cilium was configured with",
    "VLAN_FILTERED": "VLAN traffic outside the configured VLAN filter",
    "DROP_EP_NOT_READY": "the endpoint's policy program is not loaded yet (pod or agent start-up)",
    "DROP_HOST_NOT_READY": "the host datapath is not loaded yet (agent start-up); Cilium's test expects it, "
                           "we count it when sustained",
}
