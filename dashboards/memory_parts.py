"""Cilium / Node Detail, memory by part: what the agent's working set is made of, the footprint the envelope alerts
read (restart artefacts left out), and the envelope derived for the node with its inputs (docs/envelope.md)."""

from __future__ import annotations

from cilium_node_exporter import contract as c
from cilium_node_exporter.mixin import lifecycle as lc
from cilium_node_exporter.mixin.promql import PromQL
from dashboards import panels as P
from dashboards.panels import Q


def panels(q: PromQL) -> list:
    """The row's panels for one node (raw series by ``$job``, everything scoped to ``$cluster`` and ``$node``)."""
    return [
        P.timeseries(
            "Agent memory by part",
            "The agent's own report (metrics endpoint, absent with Cilium's default prometheus.enabled=false): Go "
            "heap and runtime, process RSS, BPF maps and programs; the kubelet's working set; the BPF memory charged "
            "to the running container (working set beyond its anonymous memory); and the footprint the envelope "
            "alerts and the forecast read: the working set plus the BPF memory an earlier container is charged for. "
            "After a restart that reuses the maps the working set drops and the footprint does not "
            "(cilium/cilium#37935).", "bytes",
            [Q(f"max by (part) ({q.sel(c.AGENT_MEMORY_PART)})", "{{part}}"),
             Q(f"max({q.sel(c.AGENT_BPF_CHARGED)})", "BPF charged to this container"),
             Q(f"max({q.sel(c.AGENT_WORKING_SET)})", "working set"),
             Q(q.rec(lc.FOOTPRINT), "footprint")],
            width=12, height=9, legend_table=True),
        P.timeseries(
            "Derived envelope by term (upper bound)",
            "The envelope derived for this node, term by term (stacked: the top is the upper bound): the agent's own "
            "memory (go_base, or process_static while the cluster's scale is unknown), the cluster's pods, services "
            "and policies, Hubble's ring, embedded Envoy, the dynamically sized BPF maps and the other maps and "
            "programs. Published in both envelope modes; the alerts use it when the mode is derived.", "bytes",
            [Q(f"max by (part) ({q.sel(c.DERIVED_UPPER)})", "{{part}}")],
            width=12, height=9, stacked=True, legend_table=True),
        P.stat("Envelope in force", "Where the envelope bounds come from now: static (--memory-envelope), derived "
               "(every input known) or annotation (the node's own).", "none",
               [Q(f"max by (source) ({q.sel(c.ENVELOPE_SOURCE)})", "{{source}}", instant=True)],
               width=6, height=5, text_mode=P.cm.BigValueTextMode.NAME, no_value="unknown"),
        P.stat("Node memory and the derived bounds", "The node's total memory (kubelet), which Cilium sizes its "
               "dynamic BPF maps by, and the derived envelope's bounds (sums of the terms).", "bytes",
               [Q(f"max({q.sel(c.MACHINE_MEMORY)})", "node", instant=True),
                Q(f"sum(max by (part) ({q.sel(c.DERIVED_LOWER)}))", "derived lower", instant=True),
                Q(f"sum(max by (part) ({q.sel(c.DERIVED_UPPER)}))", "derived upper", instant=True)],
               width=6, height=5, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
        P.stat("BPF map dynamic size ratio", "bpf-map-dynamic-size-ratio of this node's agent (0: dynamic sizing "
               "off; Cilium's default 0.0025).", "none", [Q(f"max({q.sel(c.BPF_MAP_SIZE_RATIO)})", instant=True)],
               width=6, height=5, decimals=4),
        P.stat("Cluster scale as the agent sees it", "What the agent holds state for, from its own metrics "
               "(ipcache entries: pods, nodes and CIDRs of the whole cluster; policies; services; identities).",
               "none", [Q(f"max by (kind) ({q.sel(c.CLUSTER_OBJECTS)})", "{{kind}}", instant=True)],
               width=6, height=5, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
    ]
