"""The derived envelope against the published figures it rests on (docs/envelope.md has the same table).

Each published measurement is restated here with its source; the derivation must cover it (its upper bound at
least the measured memory) without being uselessly loose (at most twice it), and the BPF map model must
reproduce the per-map figures a real node reported.
"""

from __future__ import annotations

import pytest

from cilium_node_exporter.aggregation.envelope import (
    BPF_OTHER_ALLOWANCE,
    GO_BASE,
    Derivation,
    derive,
    dynamic_entries,
    map_bytes,
    map_entries,
)
from cilium_node_exporter.aggregation.memory import AgentMemory
from cilium_node_exporter.aggregation.settings import MapSizing

KiB, MiB, GiB = 2**10, 2**20, 2**30
STATIC = (200 * MiB, 500 * MiB)
KPR = MapSizing(ratio=0.0025, ipv4=True, ipv6=False, nodeport=True, socket_lb=True)  # kube-proxy replacement
NO_KPR = MapSizing(ratio=0.0025, ipv4=True, ipv6=False, nodeport=False, socket_lb=False)


def envelope(gib: float, sizing: MapSizing = KPR, agent: AgentMemory | None = None,
             ring: int | None = 4095, envoy: str | None = "external") -> Derivation:
    d = derive(STATIC, sizing, int(gib * GiB), agent, ring, envoy)
    assert d is not None
    return d


# --- Cilium's sizing rule --------------------------------------------------------------------------------

# Documentation/network/ebpf/maps.rst (1.16 branch; docs.cilium.io network/ebpf/maps): "Cilium CT entries" at
# bpf-map-dynamic-size-ratio 0.0025. Its 15 GiB and 360 GiB rows do not follow the table's own progression
# (142,280 x memory / 15 GiB elsewhere); the others predate a smaller socket reverse-NAT element and stay
# within 1 % of the agent's rule.
DOCS_CT_ENTRIES = {3.75: 131072, 7.5: 131072, 30: 284560, 60: 569120, 120: 1138240, 240: 2276480}


@pytest.mark.parametrize(("gib", "published"), sorted(DOCS_CT_ENTRIES.items()))
def test_ct_entries_follow_the_documented_table(gib: float, published: int) -> None:
    tcp = dynamic_entries(int(gib * GiB), 0.0025, {})["ct_tcp"]  # type: ignore[index]
    assert abs(tcp - published) / published < 0.01


def test_sizing_rule_limits_explicit_sizes_and_defaults() -> None:
    small = dynamic_entries(4 * GiB, 0.0025, {})
    assert small == {"ct_tcp": 131072, "ct_any": 65536, "nat": 131072, "neigh": 131072, "sock_rev": 65536}
    huge = dynamic_entries(4096 * GiB, 0.0025, {})
    assert huge is not None and huge["ct_tcp"] == huge["nat"] == 1 << 24  # LimitTableMax
    explicit = dynamic_entries(64 * GiB, 0.0025, {"ct_tcp": 1_000_000})
    assert explicit is not None and explicit["ct_tcp"] == 1_000_000 and explicit["ct_any"] == 301401
    assert dynamic_entries(None, 0.0, {}) == {"ct_tcp": 524288, "ct_any": 262144, "nat": 524288,
                                              "neigh": 524288, "sock_rev": 262144}  # ratio 0: the flags' defaults
    assert dynamic_entries(None, 0.0025, {}) is None  # needs the node's memory
    assert dynamic_entries(8 * GiB, 1.5, {}) is None  # the agent refuses ratios above 1


def test_the_agents_own_sizes_need_no_memory() -> None:
    effective = MapSizing(ratio=0.0025, effective=True,
                          entries={"ct_tcp": 301401, "ct_any": 150700, "nat": 301401, "neigh": 301401,
                                   "sock_rev": 150700})
    assert map_entries(effective, None) == effective.entries
    # 1.18+: no SockRevNatEntries in the agent's config map: computed like the agent (needs the memory then)
    partial = MapSizing(ratio=0.0025, effective=True, entries={"ct_tcp": 301401, "ct_any": 150700,
                                                               "nat": 301401, "neigh": 301401})
    assert map_entries(partial, None) is None
    assert map_entries(partial, 32 * GiB) == {**partial.entries, "sock_rev": 150700}


# --- the kernel's bytes per map ---------------------------------------------------------------------------

# cilium/cilium#37935 (2025-03-08): bytes_memlock of the largest maps on a 2 TB node at ratio 0.0025 (kernel with
# htab_map_mem_usage), against 8.04 GB of cgroup kernel memory and 265 MB of process RSS.
ISSUE_37935 = {"ct_tcp": 2_281_706_304, "nat": 2_013_270_848, "neigh": 1_342_182_208, "ct_any": 1_406_756_304,
               "sock_rev": 951_429_936}
PER_MAP_OVERHEAD = 4928  # struct bpf_htab and its lock counters: the same on every map of that node


def test_map_model_reproduces_a_real_2_tib_node() -> None:
    clamped = 1 << 24
    for kind in ("ct_tcp", "nat", "neigh"):
        assert map_bytes(kind, 4, clamped) + PER_MAP_OVERHEAD == ISSUE_37935[kind]
    # ct_any and sock_rev share one dynamic size (both from the 262,144 default): one entry count fits both
    buckets = 16 * (1 << 24)  # 16 bytes per bucket, 2^24 buckets for 8.4M-16.8M entries
    entries = (ISSUE_37935["ct_any"] - PER_MAP_OVERHEAD - buckets) // 120  # 48 + 16 + 56 bytes per CT entry
    assert map_bytes("ct_any", 4, entries) + PER_MAP_OVERHEAD == ISSUE_37935["ct_any"]
    assert map_bytes("sock_rev", 4, entries) + PER_MAP_OVERHEAD == ISSUE_37935["sock_rev"]
    # ... the size the agent's rule gives a 2,014 GiB node (2 TB of RAM less what the firmware keeps)
    assert dynamic_entries(2014 * GiB, 0.0025, {})["ct_any"] == pytest.approx(entries, rel=0.001)  # type: ignore[index]


def test_an_envelope_for_the_2_tib_node_covers_its_working_set() -> None:
    d = envelope(2014, agent=AgentMemory({}, {"ipcache_entries": 2000}))
    measured = 8_238_000_000  # crictl stats of the agent container (cilium/cilium#37935)
    assert measured <= d.upper <= 1.5 * measured
    assert d.lower <= 265_000_000  # the process alone (its RSS there): a restarted container is that small


# --- the whole envelope against published figures ---------------------------------------------------------

# (what, node GiB, map sizing, agent objects, measured bytes, source)
PUBLISHED = [
    ("scalability report: 50,000 pods, max agent memory", 4, KPR, {"ipcache_entries": 51000}, 573 * MiB,
     "docs.cilium.io operations/performance/scalability/report"),
    ("1k nodes, 30k pods, 30k policies: p99 (1.17.5)", 16, KPR, {"ipcache_entries": 31000, "policies": 30000},
     1_743_000_000, "cilium/cilium PR #40227"),
    ("1k nodes, 2.5k services, 40k backends: p50 (1.18.0-rc.0)", 16, KPR,
     {"ipcache_entries": 41000, "services": 2500}, 762_000_000, "cilium/cilium PR #40227"),
    ("homelab, ratio 0.08: 2.5 GiB working set, 2.36 GiB of maps reported on 32 GiB", 32,
     MapSizing(ratio=0.08, ipv4=True, ipv6=False, nodeport=False, socket_lb=False), {"ipcache_entries": 300},
     2.5 * GiB, "thaum-xyz/ankhmorpork PR #1109"),
]
REPORTED_PARTS = {"thaum-xyz/ankhmorpork PR #1109": {"bpf_maps": 2.36 * GiB}}


@pytest.mark.parametrize("case", PUBLISHED, ids=[c[0] for c in PUBLISHED])
def test_derived_upper_covers_published_measurements(case: tuple) -> None:
    _, gib, sizing, objects, measured, source = case
    d = envelope(gib, sizing, AgentMemory(REPORTED_PARTS.get(source, {}), objects))
    assert measured <= d.upper <= 2 * measured


def test_static_envelope_holds_to_64_gib_and_fails_above() -> None:
    """anchors-refresh §4: 200-500 MB holds up to ~64 GiB at first start, not from 128 GiB (a 512Mi limit breaks on
    256 GB nodes: tuist/tuist PR #10893). The static band leaves 500 - 330 MiB (GO_BASE's top) for the maps; the
    derived map term (default ratio, kube-proxy replacement, IPv4) fits there up to 32 GiB, not from 128 GiB."""
    headroom = STATIC[1] - GO_BASE[1]
    maps = {g: envelope(g).term("bpf_dynamic_maps").upper for g in (8, 16, 32, 64, 128, 256)}  # type: ignore[union-attr]
    assert all(maps[g] < headroom for g in (8, 16, 32))
    assert maps[128] > 3 * headroom and maps[256] > 6 * headroom
    assert envelope(64, NO_KPR).term("bpf_dynamic_maps").upper < headroom  # type: ignore[union-attr]


def test_bpf_terms_only_raise_the_upper_bound() -> None:
    small, big = envelope(8), envelope(256)
    assert small.lower == big.lower  # a restarted agent is not charged for its maps (cilium/cilium#37935)
    assert big.term("bpf_dynamic_maps").upper > 8 * small.term("bpf_dynamic_maps").upper  # type: ignore[union-attr]
    v6 = envelope(64, MapSizing(ratio=0.0025, ipv4=True, ipv6=True, nodeport=True, socket_lb=True))
    assert v6.term("bpf_dynamic_maps").upper > 2 * envelope(64).term("bpf_dynamic_maps").upper  # type: ignore[union-attr]
    unknown = envelope(64, MapSizing(ratio=0.0025))  # unknown switches: every map, both families
    assert unknown.term("bpf_dynamic_maps").upper == v6.term("bpf_dynamic_maps").upper  # type: ignore[union-attr]
    ct_only = envelope(64, NO_KPR).term("bpf_dynamic_maps").upper  # type: ignore[union-attr]
    assert ct_only < envelope(64).term("bpf_dynamic_maps").upper / 2  # type: ignore[union-attr]


def test_terms_follow_what_is_known() -> None:
    without_agent = envelope(64)
    parts = {t.part for t in without_agent.terms}
    assert "process_static" in parts and "go_base" not in parts  # no scale known: the static envelope
    assert without_agent.term("process_static") is not None
    assert without_agent.term("bpf_other").upper == BPF_OTHER_ALLOWANCE  # type: ignore[union-attr]
    reported = envelope(64, agent=AgentMemory({"bpf_maps": 400 * MiB, "bpf_progs": 10 * MiB},
                                              {"ipcache_entries": 1000}))
    dynamic = reported.term("bpf_dynamic_maps").upper  # type: ignore[union-attr]
    assert reported.term("bpf_other").upper == 410 * MiB - dynamic  # type: ignore[union-attr]
    assert reported.term("go_base").lower == GO_BASE[0]  # type: ignore[union-attr]
    assert reported.term("services") is None and reported.term("policies") is None  # not reported: no term
    unknown_ring = envelope(64, ring=None).term("hubble_ring").upper  # type: ignore[union-attr]
    assert unknown_ring == 16 * envelope(64).term("hubble_ring").upper  # type: ignore[union-attr]  # 65535 slots
    assert envelope(64, envoy="embedded").term("envoy_embedded").lower > 0  # type: ignore[union-attr]
    assert envelope(64, envoy=None).term("envoy_embedded").lower == 0  # type: ignore[union-attr]
    assert envelope(64, envoy="none").term("envoy_embedded") is None
    assert derive(STATIC, None, 64 * GiB, None, 4095, None) is None  # no map sizing: no derived envelope
    assert derive(STATIC, KPR, None, None, 4095, None) is None  # dynamic sizing without the node's memory


def test_the_notes_tables_are_what_the_code_derives(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/envelope.md quotes bench/envelope_table.py's rows: a change of coefficient must change the note."""
    from bench.envelope_table import main
    from tests.support.paths import REPO

    main([])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "GiB" in line]
    note = (REPO / "docs" / "envelope.md").read_text()
    derived = [r for r in rows if r.split(" | ")[1] in ("KPR", "CT only")]
    assert len(derived) == 12 and all(r in note for r in derived)
    for row in rows[12:]:  # the published ones: the note adds the assumptions to the setup column
        cells = row.split(" | ")
        assert f"| {cells[3]} | {cells[4]} |" in note, row
