"""The agent's memory by part, its cluster objects, the node's memory and Cilium's map sizing, as each release
exposes them: agent metrics payloads per release (tests/data/cilium-agent/metrics-v1.*.txt), the kubelet Summary's
node block (our fixture, and the real 1.35 sample beside the checkout), the agent API and ConfigMap documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cilium_node_exporter.sources.agent import filter_lines, parse_metrics
from cilium_node_exporter.sources.agent_memory import parse_memory
from cilium_node_exporter.sources.kubelet import machine_memory
from cilium_node_exporter.sources.settings import agent_api, configmap, fill
from tests.support.paths import DATA

AGENT = DATA / "cilium-agent"

# What each release's payload says (values of the fixtures; objects: pressure x capacity as the agent defines them).
EXPECTED = {
    "1.14": ({"go_heap": 148_201_472, "go_runtime": 231_810_312, "process_rss": 262_144_000,
              "bpf_maps": 98_541_568, "bpf_progs": 5_783_552},
             {"ipcache_entries": 6000, "services": 400, "policies": 42, "identities": 326}),
    "1.16": ({"go_heap": 171_393_024, "go_runtime": 252_475_432, "process_rss": 301_989_888,
              "bpf_maps": 341_270_528, "bpf_progs": 7_974_912},
             {"ipcache_entries": 12000, "services": 800, "policies": 187, "identities": 931}),
    "1.17": ({"go_heap": 132_120_576, "go_runtime": 208_731_144, "process_rss": 241_172_480,
              "bpf_maps": 77_594_624, "bpf_progs": 4_325_376},
             {"ipcache_entries": 2000, "services": 300, "policies": 12, "identities": 103}),
    "1.18": ({"go_heap": 190_840_832, "go_runtime": 289_407_016, "process_rss": 346_030_080,
              "bpf_maps": 648_019_968, "bpf_progs": 9_437_184},  # ipcache_v2; IPv4 and IPv6 frontends
             {"ipcache_entries": 50000, "services": 2300, "policies": 640, "identities": 4246}),
    "1.19": ({"go_heap": 119_537_664, "go_runtime": 186_734_856, "process_rss": 218_103_808,
              "bpf_maps": 70_254_592, "bpf_progs": 3_932_160},  # no reverse-NAT pressure reported: no services
             {"ipcache_entries": 1000, "policies": 0, "identities": 55}),
}


def payload(release: str) -> bytes:
    return (AGENT / f"metrics-v{release}.txt").read_bytes()


@pytest.mark.parametrize("release", sorted(EXPECTED))
def test_memory_parts_and_objects_per_release(release: str) -> None:
    text = filter_lines([payload(release)])
    memory = parse_memory(text)
    parts, objects = EXPECTED[release]
    assert dict(memory.parts) == parts
    assert dict(memory.objects) == objects
    assert parse_metrics(text).map_pressure  # the datapath families still parse from the same text


def test_only_the_named_families_are_kept() -> None:
    kept = filter_lines([payload("1.18")])
    for name in ("cilium_policy_change_total", "cilium_policy_regeneration_time_stats_seconds",
                 "cilium_identity_label_sources", "cilium_process_cpu_seconds_total", "go_memstats_alloc_bytes",
                 "cilium_bpf_maps ", "cilium_bpf_progs "):
        assert name not in kept
    for name in ("cilium_policy ", "cilium_identity{", "go_memstats_heap_inuse_bytes ", "cilium_bpf_map_capacity{"):
        assert name in kept


def test_ipcache_capacity_from_the_capacity_metric_else_cilium_constant() -> None:
    body = ("# TYPE cilium_bpf_map_pressure gauge\ncilium_bpf_map_pressure{map_name=\"ipcache\"} 0.5\n"
            "# TYPE cilium_bpf_map_capacity gauge\ncilium_bpf_map_capacity{map_group=\"cilium_ipcache\"} 1000\n")
    assert parse_memory(body).objects == {"ipcache_entries": 500}
    assert parse_memory(body.split("# TYPE cilium_bpf_map_capacity")[0]).objects == {"ipcache_entries": 256000}


@pytest.mark.parametrize("value", ["NaN", "-1", "+Inf"])
def test_unusable_values_are_unknown_not_zero(value: str) -> None:
    body = f"# TYPE cilium_process_resident_memory_bytes gauge\ncilium_process_resident_memory_bytes {value}\n"
    assert parse_memory(body).parts == {}


# --- the node's memory (kubelet) ----------------------------------------------------------------------------

def test_machine_memory_from_our_summary_fixture() -> None:
    doc = json.loads((DATA / "kubelet" / "stats_summary.json").read_text())
    assert machine_memory(doc) == 4_702_556_160 + 3_402_579_968
    del doc["node"]["memory"]["availableBytes"]
    assert machine_memory(doc) is None
    assert machine_memory({"node": {}}) is None


def test_machine_memory_is_the_machines_memory_in_a_real_scrape(real_samples: Path) -> None:
    """availableBytes + workingSetBytes of the node block equals cAdvisor's machine_memory_bytes of the same node."""
    doc = json.loads((real_samples / "kubelet" / "stats_summary_k8s-1.35_minikube.json").read_text())
    cadvisor = (real_samples / "kubelet" / "metrics_cadvisor_k8s-1.35_minikube.txt").read_text()
    line = next(x for x in cadvisor.splitlines() if x.startswith("machine_memory_bytes{"))
    assert machine_memory(doc) == int(float(line.rsplit(" ", 1)[1]))


# --- map sizing (settings) ----------------------------------------------------------------------------------

def _api(release: str) -> Any:
    config = json.loads((AGENT / f"v{release}-get-config.json").read_text())
    health = {"cilium": {"state": "Ok", "msg": f"{release}.6 (v{release}.6-1a2b3c4d)"}}
    return agent_api.parse(config, health)


def test_agent_api_reports_the_sizes_it_computed() -> None:
    s = _api("1.14").map_sizing
    assert s is not None and s.effective and s.ratio == 0.0025
    assert dict(s.entries) == {"ct_tcp": 301401, "ct_any": 150700, "nat": 301401, "neigh": 301401, "sock_rev": 150700}
    assert (s.ipv4, s.ipv6, s.nodeport, s.socket_lb) == (True, False, True, True)
    s18 = _api("1.18").map_sizing  # SockRevNatEntries, EnableNodePort and EnableSocketLB left DaemonConfig in 1.18
    assert s18 is not None and "sock_rev" not in s18.entries and s18.nodeport is None
    s19 = _api("1.19").map_sizing
    assert s19 is not None and s19.ratio == 0.0 and s19.entries["ct_tcp"] == 524288  # dynamic sizing off


def test_configmap_sizing_and_the_agents_defaults() -> None:
    s = configmap.parse(json.loads((AGENT / "v1.16-cilium-config.json").read_text())).map_sizing
    assert s is not None and not s.effective and s.ratio == 0.0025 and dict(s.entries) == {}
    assert (s.ipv4, s.ipv6, s.nodeport, s.socket_lb) == (True, False, False, False)
    kpr = configmap.parse({"data": {"kube-proxy-replacement": "true", "bpf-ct-global-tcp-max": "1000000"}}).map_sizing
    assert kpr is not None and (kpr.nodeport, kpr.socket_lb) == (True, True)
    assert dict(kpr.entries) == {"ct_tcp": 1000000}
    assert (kpr.ratio, kpr.ipv4, kpr.ipv6) == (0.0025, True, True)  # absent keys: the agent's flag defaults
    odd = configmap.parse({"data": {"bpf-map-dynamic-size-ratio": "lots", "kube-proxy-replacement": "probe"}})
    assert odd.map_sizing is not None and odd.map_sizing.ratio is None and odd.map_sizing.nodeport is None


def test_configmap_fills_what_the_1_18_agent_api_no_longer_says() -> None:
    merged = fill(_api("1.18"), configmap.parse(json.loads((AGENT / "v1.18-cilium-config.json").read_text())))
    s = merged.map_sizing
    assert s is not None and s.effective and s.entries["ct_tcp"] == 1205604  # the agent's own sizes win
    assert (s.nodeport, s.socket_lb) == (False, False)  # from the ConfigMap
