"""The derived envelope per node size, next to the published figures it rests on (docs/envelope.md's table).

Usage: ``python bench/envelope_table.py [--pods 6000] [--services 300] [--policies 120] [--ratio 0.0025]``

For nodes of 8 to 256 GiB it prints the exporter's derived envelope (``aggregation/envelope.py``, the code the
exporter runs) for a cluster of the given scale with kube-proxy replacement on IPv4 (every dynamic map) and
without (conntrack maps only), its terms, and the static default 200Mi-500Mi beside it; then the node sizes of
the published measurements with the envelope derived for their setups. Nothing is measured here: this is the
derivation's arithmetic, printed so that the note's table can be checked and regenerated.
"""

from __future__ import annotations

import argparse
import sys

from cilium_node_exporter.aggregation.envelope import derive
from cilium_node_exporter.aggregation.memory import AgentMemory
from cilium_node_exporter.aggregation.settings import MapSizing

MiB, GiB = 2**20, 2**30
STATIC = (200 * MiB, 500 * MiB)
PARTS = ("go_base", "cluster_pods", "services", "policies", "hubble_ring", "bpf_dynamic_maps", "bpf_other")
# (setup, node GiB, sizing, objects, reported BPF bytes or None, measured bytes, what was measured, source)
PUBLISHED = [
    ("4 GB workers, 50k pods", 4, dict(nodeport=True, socket_lb=True), {"ipcache_entries": 51000}, None,
     573 * MiB, "max agent memory", "scalability report (docs.cilium.io .../scalability/report)"),
    ("1k nodes, 30k pods, 30k policies", 16, dict(nodeport=True, socket_lb=True),
     {"ipcache_entries": 31000, "policies": 30000}, None, 1_743_000_000, "p99 (1.17.5)", "cilium/cilium PR #40227"),
    ("1k nodes, 2.5k services, 40k backends", 16, dict(nodeport=True, socket_lb=True),
     {"ipcache_entries": 41000, "services": 2500}, None, 762_000_000, "p50 (1.18.0-rc.0)", "cilium/cilium PR #40227"),
    ("homelab, ratio 0.08", 32, dict(nodeport=False, socket_lb=False, ratio=0.08), {"ipcache_entries": 300},
     2.36 * GiB, 2.5 * GiB, "working set (2.36 GiB maps reported)", "thaum-xyz/ankhmorpork PR #1109"),
    ("homelab, ratio 0.08", 64, dict(nodeport=False, socket_lb=False, ratio=0.08), {"ipcache_entries": 300},
     4.72 * GiB, 4.9 * GiB, "working set (4.72 GiB maps reported)", "thaum-xyz/ankhmorpork PR #1109"),
    ("2 TB node, KPR", 2014, dict(nodeport=True, socket_lb=True), {"ipcache_entries": 2000}, None, 8_238_000_000,
     "container memory (crictl)", "cilium/cilium#37935"),
]


def mib(n: float) -> str:
    return f"{n / MiB:,.0f}"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=6000, help="pods in the cluster (ipcache entries less the nodes)")
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--services", type=int, default=300)
    p.add_argument("--policies", type=int, default=120)
    p.add_argument("--ratio", type=float, default=0.0025, help="bpf-map-dynamic-size-ratio")
    args = p.parse_args(argv)
    agent = AgentMemory({}, {"ipcache_entries": args.pods + args.nodes, "services": args.services,
                             "policies": args.policies})
    print(f"Derived envelope (MiB) for {args.pods} pods on {args.nodes} nodes, {args.services} services, "
          f"{args.policies} policies, ratio {args.ratio}, Hubble ring 4095; static default "
          f"{mib(STATIC[0])}-{mib(STATIC[1])}")
    print("| node | maps | lower | upper | " + " | ".join(PARTS) + " |")
    print("|---|---|---|---|" + "---|" * len(PARTS))
    for gib in (8, 16, 32, 64, 128, 256):
        for label, kpr in (("KPR", True), ("CT only", False)):
            sizing = MapSizing(ratio=args.ratio, ipv4=True, ipv6=False, nodeport=kpr, socket_lb=kpr)
            d = derive(STATIC, sizing, gib * GiB, agent, 4095, "external")
            assert d is not None
            terms = {t.part: t.upper for t in d.terms}
            print(f"| {gib} GiB | {label} | {mib(d.lower)} | {mib(d.upper)} | "
                  + " | ".join(mib(terms.get(part, 0)) for part in PARTS) + " |")
    print()
    print("Published measurements and the envelope derived for their setups:")
    print("| setup | node | measured | derived upper | upper / measured | source |")
    print("|---|---|---|---|---|---|")
    for setup, gib, sizing_kw, objects, reported, measured, what, source in PUBLISHED:
        sizing = MapSizing(ratio=sizing_kw.pop("ratio", 0.0025), ipv4=True, ipv6=False, **sizing_kw)
        parts = {"bpf_maps": reported} if reported else {}
        d = derive(STATIC, sizing, int(gib * GiB), AgentMemory(parts, objects), 4095, "external")
        assert d is not None
        print(f"| {setup} | {gib} GiB | {what}: {mib(measured)} MiB | {mib(d.upper)} MiB | {d.upper / measured:.2f} | "
              f"{source} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
