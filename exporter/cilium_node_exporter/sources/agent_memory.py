"""The agent's memory by part and its cluster objects, from the families of its metrics endpoint (source ``agent``).

Which release exposes what (read in each release's ``pkg/metrics``; docs/envelope.md has the table):

- ``go_memstats_heap_inuse_bytes``, ``go_memstats_sys_bytes``: prometheus client_golang's Go collector, which
  ``pkg/metrics/registry.go`` always registers (1.14-1.19; client_golang 1.16.0 in 1.14 to 1.23.2 in 1.19:
  the help texts change in 1.20.0, the names do not);
- ``cilium_process_resident_memory_bytes``: the process collector with namespace ``cilium`` (same file);
- ``cilium_bpf_{maps,progs}_virtual_memory_max_bytes``: ``pkg/metrics/bpf.go``, collected at scrape time and
  absent when collecting fails. Up to 1.16 the sum of ``bytes_memlock`` of *every* map and program on the node
  (``bpftool -j map show``); 1.17 only maps named ``cilium_*`` and the programs using them; from 1.18 the maps
  and programs reachable from programs named ``cil_*``/``tail_*`` (cilium/ebpf, commit 28432766dd). On kernels
  before 6.4 ``bytes_memlock`` is key + value per entry, below what the kernel allocates;
- ``cilium_bpf_map_pressure{map_name}`` (fill ratio, unprefixed map name; the ipcache map is ``ipcache`` up to
  1.17 and ``ipcache_v2`` from 1.18) and ``cilium_bpf_map_capacity{map_group}`` (1.15+; maps of 65,536 entries
  are not listed: ``UpdateMapCapacity`` skips them) give the entries of the ipcache and reverse-NAT maps;
- ``cilium_policy`` (rules in the policy repository) and ``cilium_identity{type}`` (identities by type).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families

from cilium_node_exporter.aggregation.memory import AgentMemory

PARTS = {"go_memstats_heap_inuse_bytes": "go_heap", "go_memstats_sys_bytes": "go_runtime",
         "cilium_process_resident_memory_bytes": "process_rss",
         "cilium_bpf_maps_virtual_memory_max_bytes": "bpf_maps",
         "cilium_bpf_progs_virtual_memory_max_bytes": "bpf_progs"}
MAP_CAPACITY = "cilium_bpf_map_capacity"
MAP_PRESSURE = "cilium_bpf_map_pressure"
POLICY = "cilium_policy"
IDENTITY = "cilium_identity"
# Exact family names this module reads (the agent source keeps their lines).
FAMILIES = frozenset({*PARTS, MAP_CAPACITY, POLICY, IDENTITY})
# The ipcache map's capacity (pkg/maps/ipcache/ipcache.go MaxEntries, 1.14-1.19), used before 1.15 has the
# capacity metric; the load-balancer maps' default (bpf-lb-map-max, LBMapEntries), which the metric omits.
IPCACHE_CAPACITY = 512000
LB_CAPACITY = 65536
_IPCACHE = (("ipcache_v2", "cilium_ipcache_v2"), ("ipcache", "cilium_ipcache"))  # newest first
_REVERSE_NAT = (("lb4_reverse_nat", "cilium_lb4_reverse_nat"), ("lb6_reverse_nat", "cilium_lb6_reverse_nat"))
_PRESSURE_MAPS = frozenset(p for p, _ in (*_IPCACHE, *_REVERSE_NAT))
_CAPACITY_GROUPS = frozenset(g for _, g in (*_IPCACHE, *_REVERSE_NAT))


def _usable(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def parse_memory(text: str) -> AgentMemory:
    """The memory parts and cluster objects in the (filtered) metrics text; what is absent stays unknown.

    The caller has parsed ``text`` already (a decode error is raised there); values that are not finite
    non-negative numbers are left out.
    """
    return memory_from_samples((sample.name, sample.labels, sample.value)
                               for family in text_string_to_metric_families(text) for sample in family.samples)


def memory_from_samples(samples: Iterable[tuple[str, Mapping[str, str], float]]) -> AgentMemory:
    """:func:`parse_memory` on samples already parsed: (name, labels, value)."""
    parts: dict[str, float] = {}
    capacity: dict[str, float] = {}
    pressure: dict[str, float] = {}
    objects: dict[str, float] = {}
    for name, labels, value in samples:
        if not _usable(value):
            continue
        if name in PARTS:
            parts[PARTS[name]] = value
        elif name == MAP_CAPACITY and labels.get("map_group") in _CAPACITY_GROUPS:
            capacity[labels["map_group"]] = value
        elif name == MAP_PRESSURE and labels.get("map_name") in _PRESSURE_MAPS:
            pressure[labels["map_name"]] = value
        elif name == POLICY:
            objects["policies"] = value
        elif name == IDENTITY:
            objects["identities"] = objects.get("identities", 0.0) + value
    ipcache = next(((p, g) for p, g in _IPCACHE if p in pressure), None)
    if ipcache is not None:
        objects["ipcache_entries"] = round(pressure[ipcache[0]] * capacity.get(ipcache[1], IPCACHE_CAPACITY))
    frontends = [round(pressure[p] * capacity.get(g, LB_CAPACITY)) for p, g in _REVERSE_NAT if p in pressure]
    if frontends:
        objects["services"] = sum(frontends)
    return AgentMemory(parts, objects)
