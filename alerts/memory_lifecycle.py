"""Restarts are not recoveries, warm-ups and churn are not leaks, and the version canary (issue 25, phase 2).

The expressions live in cilium_node_exporter.mixin.lifecycle (the dashboards and the report read the same
names); this module turns them into the pack's records and alerts:

- records, appended to the main recording group (they read its memory and datapath series of the same
  evaluation): the per-node footprint and its parts, then the canary's cohorts;
- no alert for a restart artefact (a routine rollout would raise one per node): the record
  ``node:cilium_node_agent_memory_bpf_uncharged_bytes:max`` says by how much a restarted agent's working set is
  lower because its maps stay charged to the earlier container (cilium/cilium#37935), for the dashboards and the
  report; the envelope alerts read the footprint and so neither resolve nor fire on that drop;
- ``CiliumClusterVersionCanary`` (warning): while a rollout leaves two Cilium versions in a cluster, the newest
  cohort compares worse than the best one beyond noise.

The growth forecast and the above-envelope alerts of alerting.py take their expressions from the mixin.
"""

from __future__ import annotations

from typing import Any

from alerts.alerting import CLUSTER, Alert
from cilium_node_exporter.mixin import lifecycle as lc
from cilium_node_exporter.mixin.config import Values
from cilium_node_exporter.mixin.promql import PromQL

CANARY_WHAT = (
    '{{ if eq $labels.signal "process_memory" }}the median agent process uses {{ $value | humanize1024 }}B'
    '{{ else if eq $labels.signal "bpf_memory" }}the median agent holds {{ $value | humanize1024 }}B of BPF '
    "memory beyond its dynamically sized maps"
    '{{ else if eq $labels.signal "unexpected_drops" }}{{ $value | humanizePercentage }} of packets are dropped '
    "for unexpected reasons"
    '{{ else if eq $labels.signal "policy_denials" }}policy denies {{ $value | humanize }} packets/s per node'
    "{{ else }}agents restarted {{ $value | humanize }} times per node in the last %(canaryRestartsWindow)s{{ end }}"
)


def lifecycle_records(q: PromQL) -> list[dict[str, Any]]:
    """The footprint's records and the canary's, for the end of the main recording group."""
    return [{"record": name, "expr": expr} for name, expr in lc.node_records(q) + lc.cohort_records(q)]


def lifecycle_alerts(v: Values) -> list[Alert]:
    """The version canary."""
    q = PromQL(v)
    return [
        Alert(name=lc.VERSION_CANARY, severity="warning",
              expr=lc.version_canary(q), for_=v["canaryFor"],
              summary="Nodes on the new Cilium version compare worse than those on the old one.",
              description="In %(cluster)s, on the nodes running Cilium {{ $labels.version }} (the newest cohort) "
                          + CANARY_WHAT + ", worse than the best other cohort beyond the canary's thresholds for "
                          "%(canaryFor)s: pause the rollout and compare the cohorts (Cilium / Node Fleet, "
                          "Version canary).",
              scope=CLUSTER),
    ]
