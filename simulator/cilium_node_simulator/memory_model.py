"""The simulated cilium-agent's memory by part, per release: what its metrics endpoint, the kubelet and the agent
API show, and the ground truth tests compare the exporter with.

Everything comes from this module's own tables, read from Cilium's sources and the kernel's (it never reads
the exporter's code):

- **Map sizes** - ``pkg/option/config.go`` ``calculateDynamicBPFMapSizes`` (1.14-1.19 alike): ``ratio x
  MemTotal`` spread over the CT (TCP, any), NAT, neighbour and socket reverse-NAT maps in proportion to their
  default sizes times the IPv6 element size (``daemon/cmd/daemon_main.go`` ``SetMapElementSizes``), each clamped
  to ``[LimitTableAuto*Min, LimitTableMax]``; a size set explicitly wins; ratio 0 leaves the flag defaults.
- **Which maps exist** - CT maps always; NAT and neighbour with NodePort; socket reverse-NAT with socket LB
  (1.16b ``daemon/cmd/datapath.go``), per address family (map names from ``pkg/maps``).
- **Kernel bytes** - ``kernel/bpf/hashtab.c``: an LRU hash map is always preallocated; it allocates
  ``48 + round8(key) + round8(value)`` bytes per element and 16 bytes per bucket (a power of two of them), plus
  ``struct bpf_htab`` and its locks; the memory cgroup of the process that *creates* a map is charged for it
  (kernels >= 5.11). ``bytes_memlock`` (what ``bpftool``/cilium/ebpf report) is that allocation from 6.4
  (``map_mem_usage``), ``round8(key + value) x max_entries`` before.
- **What the agent reports** - ``pkg/metrics/bpf.go``: every map on the node up to 1.16 (``bpftool``), Cilium's
  maps from 1.17; ``cilium_bpf_maps``/``cilium_bpf_progs`` counts from 1.17; ``cilium_bpf_map_capacity`` from
  1.15 for maps not of 65,536 entries; the ipcache map is ``ipcache`` up to 1.17 and ``ipcache_v2`` from 1.18;
  load-balancer pressures are reported on each change up to 1.17 and every ``lb-pressure-metrics-interval``
  (5 minutes) from 1.18.

The simulator's own assumptions (no published figure to read them from) are marked as such below.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

KiB, MiB, GiB = 2**10, 2**20, 2**30

# --- Cilium's sizing rule -----------------------------------------------------------------------------------
# (flag default, automatic minimum, IPv6 element bytes) per dynamically sized map.
SIZING = {"ct_tcp": (524288, 131072, 38 + 56), "ct_any": (262144, 65536, 38 + 56),
          "nat": (524288, 131072, 38 + 56), "neigh": (524288, 0, 16 + 8), "sock_rev": (262144, 65536, 32 + 20)}
TABLE_MAX = 16777216
CHART_RATIO = 0.0025  # the chart's and the agent's default bpf-map-dynamic-size-ratio

# --- the maps: (kind, family) -> (name, key bytes, value bytes) ---------------------------------------------
LRU_MAPS = {
    ("ct_tcp", 4): ("cilium_ct4_global", 14, 56), ("ct_any", 4): ("cilium_ct_any4_global", 14, 56),
    ("nat", 4): ("cilium_snat_v4_external", 14, 40), ("neigh", 4): ("cilium_nodeport_neigh4", 4, 8),
    ("sock_rev", 4): ("cilium_lb4_reverse_sk", 16, 8),
    ("ct_tcp", 6): ("cilium_ct6_global", 38, 56), ("ct_any", 6): ("cilium_ct_any6_global", 38, 56),
    ("nat", 6): ("cilium_snat_v6_external", 38, 56), ("neigh", 6): ("cilium_nodeport_neigh6", 16, 8),
    ("sock_rev", 6): ("cilium_lb6_reverse_sk", 32, 20),
}
HTAB_STRUCT = 4928  # struct bpf_htab and lock counters on a large machine (cilium/cilium#37935's residue)
IPCACHE_MAX = 512000
LB_MAX = 65536

# --- the simulator's own assumptions --------------------------------------------------------------------------
OTHER_MAPS_FIXED = 18 * MiB  # tunnel, lxc, lb, metrics... maps beside the dynamic ones
PER_IPCACHE_ENTRY_MAP = 96  # an LPM trie node with its key and value
PER_ENDPOINT_MAPS = 48 * KiB  # a policy map (LPM, grows with entries) and a per-endpoint call map
PROGS_FIXED, PER_ENDPOINT_PROGS = 5 * MiB, 96 * KiB
FOREIGN_MAPS = 3 * MiB  # maps of other software on the node (systemd...), counted by bpftool up to 1.16
FILE_MAPPED = 36 * MiB  # the agent binary's pages in its RSS (file-backed: not in the container's anon)
KERNEL_MISC = 14 * MiB  # sockets, slab, page tables charged to the container
INACTIVE_FILE = 24 * MiB
GO_HEAP_SHARE, GO_SYS_SHARE = 0.62, 0.93  # of the process RSS


@dataclass(frozen=True)
class Host:
    """The node: its memory (MemTotal) and kernel (map byte accounting)."""

    memory: int = 8 * GiB
    kernel: tuple[int, int] = (6, 8)


@dataclass(frozen=True)
class Cluster:
    """What the agent holds state for (whole cluster) and this node's endpoints."""

    pods: int = 300
    nodes: int = 3
    services: int = 40
    policies: int = 20
    identities: int = 60
    endpoints: int = 30


@dataclass(frozen=True)
class MapSizing:
    """The agent's startup configuration of its large maps."""

    ratio: float = CHART_RATIO
    explicit: Mapping[str, int] = field(default_factory=dict)
    ipv4: bool = True
    ipv6: bool = False
    nodeport: bool = False
    socket_lb: bool = False


def agent_entries(memory: int, sizing: MapSizing) -> dict[str, int]:
    """The capacities the agent sets at start (Cilium's rule, see the module docstring)."""
    entries = {kind: sizing.explicit.get(kind, default) for kind, (default, _, _) in SIZING.items()}
    if not 0 < sizing.ratio <= 1:
        return entries
    budget = int(memory * sizing.ratio)
    total = sum(default * element for default, _, element in SIZING.values())
    for kind in ("ct_tcp", "ct_any", "nat", "sock_rev"):
        if kind not in sizing.explicit:
            default, minimum, _ = SIZING[kind]
            entries[kind] = min(max(default * budget // total, minimum), TABLE_MAX)
    if "nat" not in sizing.explicit and entries["nat"] > entries["ct_tcp"] + entries["ct_any"]:
        entries["nat"] = (entries["ct_tcp"] + entries["ct_any"]) * 2 // 3
    if "neigh" not in sizing.explicit:
        entries["neigh"] = entries["nat"]
    return entries


def _up8(n: int) -> int:
    return (n + 7) // 8 * 8


@dataclass(frozen=True)
class BpfMap:
    """One of the agent's preallocated maps on this node."""

    name: str
    entries: int
    allocated: int  # what the kernel allocates (and charges to the creator's cgroup)
    memlock: int  # what bytes_memlock says on this kernel


def lru_maps(host: Host, sizing: MapSizing) -> list[BpfMap]:
    """The dynamically sized maps the agent creates on ``host``."""
    entries = agent_entries(host.memory, sizing)
    kinds = ["ct_tcp", "ct_any"] + (["nat", "neigh"] if sizing.nodeport else []) + \
        (["sock_rev"] if sizing.socket_lb else [])
    out = []
    for family in [f for f, on in ((4, sizing.ipv4), (6, sizing.ipv6)) if on]:
        for kind in kinds:
            name, key, value = LRU_MAPS[(kind, family)]
            n = entries[kind]
            buckets = 1
            while buckets < n:
                buckets *= 2
            allocated = HTAB_STRUCT + (48 + _up8(key) + _up8(value)) * n + 16 * buckets
            memlock = allocated if host.kernel >= (6, 4) else -(-(_up8(key + value) * n) // 4096) * 4096
            out.append(BpfMap(name, n, allocated, memlock))
    return out


@dataclass(frozen=True)
class MemorySample:
    """The agent's memory at one instant: its parts, what is charged to its container, what it reports."""

    process_rss: int
    go_heap: int
    go_sys: int
    maps_allocated: int  # every map the agent created (dynamic, others, leaked entries)
    progs_allocated: int
    charged: int  # BPF bytes charged to the running container's cgroup
    reported_maps: int  # cilium_bpf_maps_virtual_memory_max_bytes on this release and kernel
    reported_progs: int
    anon: int  # the container's anonymous memory (kubelet rssBytes)
    working_set: int
    usage: int


@dataclass(frozen=True)
class MemoryModel:
    """The node, the cluster and the agent's map sizing of one simulated agent (per release)."""

    release: tuple[int, int]
    host: Host = Host()
    cluster: Cluster = Cluster()
    sizing: MapSizing = MapSizing()

    @functools.cached_property
    def maps(self) -> list[BpfMap]:
        return lru_maps(self.host, self.sizing)

    @functools.cached_property
    def entries(self) -> dict[str, int]:
        return agent_entries(self.host.memory, self.sizing)

    @property
    def ipcache_entries(self) -> int:
        return self.cluster.pods + self.cluster.nodes

    def default_process(self) -> int:
        """An agent's RSS when the scenario does not say: 250 MiB plus 10.5 KiB per ipcache entry (the latter from
        the scalability report, docs.cilium.io operations/performance/scalability/report)."""
        return 250 * MiB + int(self.ipcache_entries * 10.5 * KiB)

    def sample(self, process_rss: int, owns_maps: bool, leaked: int = 0) -> MemorySample:
        """The parts when the agent's RSS is ``process_rss``, its container created the maps or not (a restart that
        reused the pinned maps is not charged for them, cilium/cilium#37935), with ``leaked`` bytes of entries
        leaked into maps that grow (charged to the maps' creator too)."""
        maps = self.maps
        other = OTHER_MAPS_FIXED + PER_IPCACHE_ENTRY_MAP * self.ipcache_entries + \
            PER_ENDPOINT_MAPS * self.cluster.endpoints
        allocated = sum(m.allocated for m in maps) + other + leaked
        progs = PROGS_FIXED + PER_ENDPOINT_PROGS * self.cluster.endpoints
        memlock = sum(m.memlock for m in maps) + other + leaked
        reported_maps = memlock + (FOREIGN_MAPS if self.release <= (1, 16) else 0)
        charged = (allocated if owns_maps else 0) + progs  # programs are loaded again by every agent start
        anon = max(process_rss - FILE_MAPPED, 0)
        working_set = anon + FILE_MAPPED + KERNEL_MISC + charged
        return MemorySample(process_rss, int(process_rss * GO_HEAP_SHARE), int(process_rss * GO_SYS_SHARE),
                            allocated, progs, charged, reported_maps, progs, anon, working_set,
                            working_set + INACTIVE_FILE)
