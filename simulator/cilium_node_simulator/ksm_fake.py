"""The kube-state-metrics series a cluster's fleet alerts read, for one simulated cluster.

Real kube-state-metrics needs an API server with the cluster's nodes and DaemonSets, which a 200-node fleet in
one process does not have. This serves the families the rule pack reads, named and labelled as
kube-state-metrics v2 exposes them (``internal/store/node.go``: ``kube_node_info`` with ``node`` and the node's
system info; ``internal/store/daemonset.go``: ``kube_daemonset_status_*`` with ``namespace`` and
``daemonset``; docs/metrics/cluster/{node,daemonset}-metrics.md), computed from the fleet's nodes:

- every node of the cluster has a ``kube_node_info`` series (the nodes exist whatever their exporters do);
- the exporter DaemonSet exists while at least one node's exporter is not ``absent``; it schedules a pod on
  every such node, and a node whose exporter is ``down`` counts as unavailable (not ready).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EXPORTER_DAEMONSET = ("monitoring", "cilium-node-exporter")


@dataclass(frozen=True)
class NodeView:
    """What kube-state-metrics knows of one node and the exporter pod on it."""

    name: str
    index: int
    exporter: str  # up | down | absent
    kubelet_version: str = "v1.31.4"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_esc(v)}"' for k, v in pairs)


def render(nodes: list[NodeView]) -> str:
    """The exposition of one cluster's kube-state-metrics (text format 0.0.4)."""
    lines = ["# HELP kube_node_info Information about a cluster node.", "# TYPE kube_node_info gauge"]
    for n in nodes:
        lines.append("kube_node_info{" + _labels((
            ("node", n.name), ("kernel_version", "6.1.0-28-amd64"), ("os_image", "Debian GNU/Linux 12 (bookworm)"),
            ("container_runtime_version", "containerd://1.7.24"), ("kubelet_version", n.kubelet_version),
            ("kubeproxy_version", n.kubelet_version), ("provider_id", ""),
            ("pod_cidr", f"10.{(n.index >> 8) % 256}.{n.index % 256}.0/24"),
            ("system_uuid", f"00000000-0000-4000-8000-{n.index:012d}"),
            ("internal_ip", f"10.0.{(n.index >> 8) % 256}.{n.index % 256}"))) + "} 1")
    scheduled = [n for n in nodes if n.exporter != "absent"]
    if scheduled:
        ready = sum(1 for n in scheduled if n.exporter == "up")
        ds = _labels((("namespace", EXPORTER_DAEMONSET[0]), ("daemonset", EXPORTER_DAEMONSET[1])))
        for name, help_, value in (
                ("desired_number_scheduled", "The number of nodes that should be running the daemon pod.",
                 len(scheduled)),
                ("current_number_scheduled", "The number of nodes running at least one daemon pod and are "
                 "supposed to.", len(scheduled)),
                ("updated_number_scheduled", "The total number of nodes that are running updated daemon pod",
                 len(scheduled)),
                ("number_ready", "The number of nodes that should be running the daemon pod and have one or more "
                 "of the daemon pod running and ready.", ready),
                ("number_available", "The number of nodes that should be running the daemon pod and have one or "
                 "more of the daemon pod running and available", ready),
                ("number_unavailable", "The number of nodes that should be running the daemon pod and have none "
                 "of the daemon pod running and available", len(scheduled) - ready),
                ("number_misscheduled", "The number of nodes running a daemon pod but are not supposed to.", 0)):
            lines += [f"# HELP kube_daemonset_status_{name} {help_}", f"# TYPE kube_daemonset_status_{name} gauge",
                      f"kube_daemonset_status_{name}{{{ds}}} {value}"]
    return "\n".join(lines) + "\n"
