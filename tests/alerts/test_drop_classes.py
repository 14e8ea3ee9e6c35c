"""The drop-reason classes, checked against an independent statement of them (not the code's own lists).

Each literal below carries the reason it sits in its class. Cilium's own list of drops it expects on a healthy
cluster is typed from cilium-cli `defaults/defaults.go` `ExpectedDropReasons` (cilium/cilium `cilium-cli/`,
main branch, read at commit d15aaab064c1 of a fork and identical at 9e9eb76d4851; an older cilium/cilium
commit, bc93e08e2ab6, had 12 entries, among them "No tunnel/encapsulation endpoint (datapath BUG!)", since
removed). Finally the generated rules are run by promtool on one drop series per reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts import generate
from cilium_node_exporter import contract
from cilium_node_exporter.mixin import slo
from cilium_node_exporter.mixin.config import DEFAULTS, NOT_ERROR_CLASSES

# cilium-cli defaults/defaults.go ExpectedDropReasons (Cilium's monitor strings), in file order.
CILIUM_CLI_EXPECTED_DROP_REASONS = (
    "Policy denied",
    "Policy denied by denylist",
    "Unsupported L2 protocol",
    "Unsupported L3 protocol",
    "Stale or unroutable IP",
    "Authentication required",
    "Service backend not found",
    "Unsupported protocol for NAT masquerade",
    "Invalid source ip",
    "Unknown L3 target address",
    "Host datapath not ready",
    "Unknown ICMPv4 code",
    "Unknown ICMPv6 code",
    "Forbidden ICMPv6 message",
    "No egress gateway found",
)

# reason -> (class, why). Independent of the code: a change of class must change this table too.
CLASSES: dict[str, tuple[str, str]] = {
    "POLICY_DENIED": ("policy", "network policy denied it, as written"),
    "POLICY_DENY": ("policy", "an explicit deny rule"),
    "AUTH_REQUIRED": ("policy", "mutual authentication the policy requires is pending"),
    "DENIED_BY_LB_SRC_RANGE_CHECK": ("policy", "loadBalancerSourceRanges of the Service"),
    "UNSUPPORTED_L2_PROTOCOL": ("expected", "Cilium expects it: LLDP/STP frames"),
    "UNSUPPORTED_L3_PROTOCOL": ("expected", "Cilium expects it: NDP/MLD on IPv4-only clusters"),
    "STALE_OR_UNROUTABLE_IP": ("expected", "Cilium expects it: pod IP churn"),
    "SERVICE_BACKEND_NOT_FOUND": ("expected", "Cilium expects it: Services without ready backends"),
    "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE": ("expected", "Cilium expects it"),
    "INVALID_SOURCE_IP": ("expected", "Cilium expects it: anti-spoofing"),
    "UNKNOWN_L3_TARGET_ADDRESS": ("expected", "Cilium expects it"),
    "UNKNOWN_ICMPV4_CODE": ("expected", "Cilium expects it"),
    "UNKNOWN_ICMPV6_CODE": ("expected", "Cilium expects it"),
    "FORBIDDEN_ICMPV6_MESSAGE": ("expected", "Cilium expects it"),
    "NO_EGRESS_GATEWAY": ("expected", "Cilium expects it (tests without gateway nodes); configurable"),
    "IGMP_HANDLED": ("handled", "consumed by multicast support"),
    "IGMP_SUBSCRIBED": ("handled", "consumed by multicast support"),
    "MULTICAST_HANDLED": ("handled", "the original of a replicated multicast packet"),
    "NAT_NOT_NEEDED": ("handled", "an internal verdict, the packet goes on"),
    "DROP_PUNT_PROXY": ("handled", "handed to the L7 proxy"),
    "UNENCRYPTED_TRAFFIC": ("configured", "strict encryption mode"),
    "DROP_RATE_LIMITED": ("configured", "a configured rate limit"),
    "VLAN_FILTERED": ("configured", "the VLAN filter"),
    "DROP_EP_NOT_READY": ("transient", "start-up; an error when sustained"),
    "DROP_HOST_NOT_READY": ("transient", "start-up; Cilium expects it, we count it when sustained"),
}
# Reasons that must stay errors, whatever anyone thinks is noise.
MUST_BE_ERRORS = ("CT_MAP_INSERTION_FAILED", "FIB_LOOKUP_FAILED", "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT",
                  "MISSED_TAIL_CALL", "NO_MAPPING_FOR_NAT_MASQUERADE", "DROP_REASON_UNKNOWN", "REASON_250")


def test_default_classes_are_the_independent_table() -> None:
    table: dict[str, list[str]] = {}
    for reason, (name, _) in CLASSES.items():
        table.setdefault(name, []).append(reason)
    assert {k: sorted(v) for k, v in DEFAULTS["dropClasses"].items()} == {k: sorted(v) for k, v in table.items()}
    for reason, (name, _) in CLASSES.items():
        assert slo.drop_class(reason) == name, reason
        assert slo.DROP_REASON_WHY[reason], reason  # the docs say why
    for reason in MUST_BE_ERRORS:
        assert slo.drop_class(reason) == "unexpected", reason


def test_ciliums_expected_drops_are_not_errors_except_a_sustained_start_up() -> None:
    names = [contract.DROP_REASON_NAME_BY_STRING[text] for text in CILIUM_CLI_EXPECTED_DROP_REASONS]
    not_errors = set(slo.not_error_reasons())
    counted = [name for name in names if name not in not_errors]
    assert counted == ["DROP_HOST_NOT_READY"]  # transient: counted when it lasts (docs/metrics.md says why)
    assert set(DEFAULTS["dropClasses"]["expected"]) <= set(names)


def _promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: apt-get install prometheus (make system-deps)")
    return path


def test_the_rules_count_exactly_the_unexpected_reasons(tmp_path: Path) -> None:
    """One drop series per known reason at 1 pps (agent counters and Hubble): the recorded unexpected rates
    equal the number of reasons the independent table does not exempt."""
    reasons = [*sorted(contract.DROP_REASON_STRING_BY_NAME), "REASON_250"]
    errors = [r for r in reasons if CLASSES.get(r, ("unexpected",))[0] not in NOT_ERROR_CLASSES]
    series = []
    for metric in ("cilium_node_datapath_dropped_packets_total", "cilium_node_drops_total"):
        series += [{"series": f'{metric}{{job="cilium-node-exporter",node="n1",reason="{r}",direction="egress"}}',
                    "values": "0+60x10"} for r in reasons]
    series.append({"series": 'cilium_node_hubble_flows_seen_total{job="cilium-node-exporter",node="n1"}',
                   "values": "0+60000x10"})
    (tmp_path / "rules.yaml").write_text(generate.render_rules())
    test = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [
            {"expr": "node:cilium_node_datapath_drops_unexpected:rate5m", "eval_time": "10m",
             "exp_samples": [{"labels": 'node:cilium_node_datapath_drops_unexpected:rate5m{node="n1"}',
                              "value": len(errors)}]},
            {"expr": "node:cilium_node_drops_unexpected:rate5m", "eval_time": "10m",
             "exp_samples": [{"labels": 'node:cilium_node_drops_unexpected:rate5m{node="n1"}', "value": len(errors)}]},
        ]}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    result = subprocess.run([_promtool(), "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 40 < len(errors) < len(reasons)
