"""The cilium-agent's memory envelope derived per node, from what the exporter reads (docs/envelope.md).

The kubelet's working set of the agent container is the sum the OOM killer sees. Its parts scale with
different inputs, so the envelope is a sum of terms, each exported with its ``part`` and the figure behind
its coefficient:

- the agent's own memory (charged to whichever container runs it): ``go_base`` (the Go runtime and the
  process at idle), plus per cluster object ``cluster_pods`` (ipcache entries), ``services`` and
  ``policies``; without the agent's metrics (no scale known) the static envelope stands for all of these
  (``process_static``), which is what it was meant to describe;
- ``hubble_ring``: Hubble's ring buffer of decoded flows; ``envoy_embedded``: Envoy inside the agent
  container (Cilium <= 1.15 default, or ``envoy.enabled=false``);
- BPF maps, kernel memory charged (on kernels with memcg accounting of BPF, 5.11+) to the container that
  *created* them: ``bpf_dynamic_maps`` (the LRU maps sized from the node's memory: Cilium's own sizing
  rule applied to this node, then the kernel's bytes per element) and ``bpf_other`` (every other map and
  program: what the agent reports beyond the dynamic maps, else an allowance).

Restarts are not recoveries: a restarted agent container reuses the pinned maps and is not charged for
them (cilium/cilium#37935), so BPF terms raise only the upper bound; the lower bound is the agent's own
minimum. The derivation needs the map sizing (settings source) and, unless the agent reports its
effective sizes, the node's memory (kubelet); without them there is no derived envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cilium_node_exporter.aggregation.memory import AgentMemory
from cilium_node_exporter.aggregation.settings import MapSizing
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.contract import DYNAMIC_MAPS

KiB, MiB = 2**10, 2**20

# --- the agent's own memory -------------------------------------------------------------------------------
# Process RSS of an idle agent: 132 MB on a 5-node cluster (cilium/cilium#28772); 260-330 MiB on a small
# production cluster (thaum-xyz/ankhmorpork PR #1109), ~300 MB "usually" (cilium/cilium#41623).
GO_BASE = (128 * MiB, 330 * MiB)
# "each Cilium agent's memory increased by 10.5KiB per new pod in the cluster" (250 -> 50,000 pods; scalability
# report, Documentation/operations/performance/scalability/report.rst, docs.cilium.io .../scalability/report/).
PER_IPCACHE_ENTRY = 10.5 * KiB
# Load-balancer benchmark: 2.5-7 KB in use, 15 KB allocated per service (cilium/cilium PR #40121).
PER_SERVICE = 15_000
# 1k nodes, 30k pods, 6k identities, 30k policies, KPR on: p99 1,743 MB (1.17.5; cilium/cilium PR #40227) less
# GO_BASE's 330 MiB and 30k x 10.5 KiB leaves 1.07 GB: 36 KB per policy, identities included (an inference).
PER_POLICY = 36_000
# Hubble's ring holds one decoded flow per slot until overwritten: 1.3-3.8 KB of Go heap per flow measured on
# real flows by bench/hubble_flow_memory.py (the generated structs' layout); 4 KiB per slot covers the largest.
PER_RING_SLOT = 4 * KiB
RING_MAX = 65535  # the largest capacity Hubble accepts (pkg/hubble/container/ring.go Capacity65535)
# cilium-envoy at 17-29 MiB live on a small cluster (devantler-tech/platform PR #1713): Envoy's share when it
# runs inside the agent container.
ENVOY_EMBEDDED = (17 * MiB, 29 * MiB)

# --- Cilium's dynamic map sizing (pkg/option/config.go calculateDynamicBPFMapSizes, 1.14-1.19 alike) -------
# Defaults (CTMapEntriesGlobal{TCP,Any}Default, NATMapEntriesGlobalDefault, SockRevNATMapEntriesDefault; the
# neighbour map's flag defaults to the NAT default), lower limits (LimitTableAuto*Min) and LimitTableMax.
DEFAULT_ENTRIES = {"ct_tcp": 524288, "ct_any": 262144, "nat": 524288, "neigh": 524288, "sock_rev": 262144}
MIN_ENTRIES = {"ct_tcp": 131072, "ct_any": 65536, "nat": 131072, "sock_rev": 65536}
MAX_ENTRIES = 1 << 24
# The element sizes the agent distributes ratio x memory by: IPv6 key + value (daemon/cmd/daemon_main.go
# SetMapElementSizes: CT 38+56, NAT 38+56, neighbour 16+8, socket reverse NAT 32+20).
SIZING_ELEMENT = {"ct_tcp": 94, "ct_any": 94, "nat": 94, "neigh": 24, "sock_rev": 52}
SIZING_TOTAL = sum(DEFAULT_ENTRIES[m] * SIZING_ELEMENT[m] for m in DYNAMIC_MAPS)  # 149,422,080 bytes
# The agent's flag default for bpf-map-dynamic-size-ratio (daemon/cmd/daemon_main.go, 1.14-1.19).
DEFAULT_RATIO = 0.0025

# --- the kernel's bytes per map (kernel/bpf/hashtab.c: these LRU hash maps are always preallocated) ---------
# Per element sizeof(struct htab_elem) = 48 plus key and value each rounded up to 8; per bucket 16 bytes, with
# roundup_pow_of_two(max_entries) buckets (htab_map_mem_usage, 6.4+, which is also what is allocated and
# charged). Key and value sizes: pkg/maps ctmap (tuple 14 / 38, CtEntry 56), nat (NatEntry4 40 / NatEntry6 56),
# neighborsmap (4 / 16, 8), lbmap SockRevNat{4,6}{Key,Value} (16/8, 32/20). Checked against the per-map
# bytes_memlock of cilium/cilium#37935 (a 2 TiB node: ct_any4 1,406,756,304; snat_v4 2,013,270,848).
HTAB_ELEM, BUCKET = 48, 16
KEY_VALUE = {
    4: {"ct_tcp": (14, 56), "ct_any": (14, 56), "nat": (14, 40), "neigh": (4, 8), "sock_rev": (16, 8)},
    6: {"ct_tcp": (38, 56), "ct_any": (38, 56), "nat": (38, 56), "neigh": (16, 8), "sock_rev": (32, 20)},
}
# Every other map and program when the agent does not report its BPF memory: the largest residual of the
# published measurements beyond the dynamic maps (88 GiB node at ratio 0.008: ~1.34 GiB reported against
# 1.20 GiB of dynamic maps; GiganticMinecraft/seichi_infra PR #4836).
BPF_OTHER_ALLOWANCE = 150 * MiB


@dataclass(frozen=True)
class Term:
    """One term of the envelope: the part it comes from and its bounds in bytes."""

    part: str
    lower: float
    upper: float


@dataclass(frozen=True)
class Derivation:
    """The derived envelope of one node: its terms and the map sizes it used."""

    terms: tuple[Term, ...]
    entries: Mapping[str, int]

    @property
    def lower(self) -> int:
        return int(sum(t.lower for t in self.terms))

    @property
    def upper(self) -> int:
        return int(sum(t.upper for t in self.terms))

    def term(self, part: str) -> Term | None:
        return next((t for t in self.terms if t.part == part), None)


def dynamic_entries(memory: int | None, ratio: float, explicit: Mapping[str, int]) -> dict[str, int] | None:
    """The maps' capacities as the agent computes them at start; None when it needs ``memory`` and has none."""
    entries = {m: explicit.get(m, DEFAULT_ENTRIES[m]) for m in DYNAMIC_MAPS}
    if not 0.0 < ratio <= 1.0:
        return entries if ratio == 0.0 else None  # 0: the flags' defaults; outside (0, 1]: the agent refuses
    if memory is None:
        return None
    available = int(memory * ratio)

    def sized(m: str) -> int:
        return min(max(DEFAULT_ENTRIES[m] * available // SIZING_TOTAL, MIN_ENTRIES[m]), MAX_ENTRIES)

    for m in ("ct_tcp", "ct_any", "sock_rev"):
        if m not in explicit:
            entries[m] = sized(m)
    if "nat" not in explicit:
        entries["nat"] = sized("nat")
        if entries["nat"] > entries["ct_tcp"] + entries["ct_any"]:
            entries["nat"] = (entries["ct_tcp"] + entries["ct_any"]) * 2 // 3
    if "neigh" not in explicit:
        entries["neigh"] = entries["nat"]
    return entries


def map_entries(sizing: MapSizing, memory: int | None) -> dict[str, int] | None:
    """The capacities of the dynamic maps on this node: the agent's own, completed as the agent computes them."""
    given = {m: n for m, n in sizing.entries.items() if m in DYNAMIC_MAPS}
    if len(given) == len(DYNAMIC_MAPS):
        return given
    if sizing.ratio is None:
        return None
    return dynamic_entries(memory, sizing.ratio, given)


def _round8(n: int) -> int:
    return -(-n // 8) * 8


def map_bytes(kind: str, family: int, entries: int) -> int:
    """Kernel bytes of one preallocated hash map of ``entries`` elements."""
    key, value = KEY_VALUE[family][kind]
    buckets = 1 << max(entries - 1, 0).bit_length()
    return (HTAB_ELEM + _round8(key) + _round8(value)) * entries + BUCKET * buckets


def dynamic_maps_bytes(entries: Mapping[str, int], sizing: MapSizing) -> int:
    """The dynamic maps this node's agent creates (unknown switches count as on: an upper bound).

    CT maps always (``ctmap.GlobalMaps``), NAT and neighbour maps with NodePort (1.16b ``daemon/cmd/datapath.go``
    ``nat.GlobalMaps(..., EnableNodePort)``, ``neighborsmap.InitMaps``), the socket reverse-NAT map with socket LB
    (``svc.InitMaps(..., EnableSocketLB)``), for each enabled address family.
    """
    kinds = ["ct_tcp", "ct_any"]
    if sizing.nodeport is not False:
        kinds += ["nat", "neigh"]
    if sizing.socket_lb is not False:
        kinds.append("sock_rev")
    families = [f for f, on in ((4, sizing.ipv4), (6, sizing.ipv6)) if on is not False]
    return sum(map_bytes(kind, family, entries[kind]) for family in families for kind in kinds)


def derive(static: tuple[int, int], sizing: MapSizing | None, memory: int | None, agent: AgentMemory | None,
           ring_capacity: int | None, envoy_mode: str | None) -> Derivation | None:
    """The envelope from these inputs; None without the map sizing (or the node's memory it needs)."""
    if sizing is None:
        return None
    entries = map_entries(sizing, memory)
    if entries is None:
        return None
    terms: list[Term] = []
    objects = agent.objects if agent is not None else {}
    if "ipcache_entries" in objects:
        terms += [Term("go_base", *GO_BASE), Term("cluster_pods", 0, objects["ipcache_entries"] * PER_IPCACHE_ENTRY)]
        for kind, part, per in (("services", "services", PER_SERVICE), ("policies", "policies", PER_POLICY)):
            if kind in objects:
                terms.append(Term(part, 0, objects[kind] * per))
    else:
        terms.append(Term("process_static", *static))
    capacity = ring_capacity if ring_capacity is not None else RING_MAX
    terms.append(Term("hubble_ring", 0, (capacity + 1) * PER_RING_SLOT))
    if envoy_mode in ("embedded", None):
        terms.append(Term("envoy_embedded", ENVOY_EMBEDDED[0] if envoy_mode else 0, ENVOY_EMBEDDED[1]))
    dynamic = dynamic_maps_bytes(entries, sizing)
    terms.append(Term("bpf_dynamic_maps", 0, dynamic))
    parts = agent.parts if agent is not None else {}
    if "bpf_maps" in parts:
        reported = parts["bpf_maps"] + parts.get("bpf_progs", 0.0)
        terms.append(Term("bpf_other", 0, max(reported - dynamic, 0.0)))
    else:
        terms.append(Term("bpf_other", 0, BPF_OTHER_ALLOWANCE))
    return Derivation(tuple(terms), entries)


def derive_for(state: ExporterState) -> Derivation | None:
    """:func:`derive` on what the node's sources currently say."""
    settings = state.settings if "settings" in state.sources else None
    status = state.hubble_status if "hubble" in state.sources else None
    return derive(state.envelope, settings.map_sizing if settings is not None else None,
                  state.machine_memory if "kubelet" in state.sources else None,
                  state.agent_memory if "agent" in state.sources else None,
                  status.max_flows if status is not None else None,
                  settings.envoy_mode if settings is not None else None)


def current(state: ExporterState, derivation: Derivation | None) -> tuple[int, int, str]:
    """The envelope in force: the node annotation, else the derived one (in derived mode), else the static."""
    if state.envelope_override is not None:
        return (*state.envelope_override, "annotation")
    if state.envelope_mode == "derived" and derivation is not None:
        return derivation.lower, derivation.upper, "derived"
    return (*state.envelope, "static")


def bpf_reference(agent: AgentMemory | None, derivation: Derivation | None) -> float | None:
    """The agent's BPF memory (maps and programs) as it reports it, else the derived envelope's BPF terms."""
    parts = agent.parts if agent is not None else {}
    if "bpf_maps" in parts:
        return parts["bpf_maps"] + parts.get("bpf_progs", 0.0)
    if derivation is None:
        return None
    return sum(t.upper for t in derivation.terms if t.part in ("bpf_dynamic_maps", "bpf_other"))


def charged_estimate(working_set: int | None, rss: int | None, reference: float | None) -> float | None:
    """BPF map memory charged to the running container: its working set beyond its anonymous memory, at most
    the map memory ``reference``; None when an input is unknown."""
    if working_set is None or rss is None or reference is None:
        return None
    return float(min(max(working_set - rss, 0), reference))
