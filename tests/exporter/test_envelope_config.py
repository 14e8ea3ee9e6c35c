"""The memory envelope: quantity parsing, the flag's errors, the gauges, the node annotation override."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client import generate_latest

from cilium_node_exporter.aggregation.containers import ContainerMemory, ContainerPod
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.app import build_registry
from cilium_node_exporter.config import ConfigError, parse_args
from cilium_node_exporter.sources.apiserver import envelope_from_annotation
from cilium_node_exporter.units import UnitError, parse_envelope, parse_quantity

Mi = 2**20


@pytest.mark.parametrize(("text", "value"), [("500Mi", 500 * Mi), ("1Gi", 2**30), ("500M", 500 * 10**6),
                                             ("1G", 10**9), ("1.5Gi", 3 * 2**29), ("123456", 123456)])
def test_quantities(text: str, value: int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["500MB", "-1Mi", "Mi", "", "1e3"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(UnitError):
        parse_quantity(text)


def test_envelope_default_and_forms() -> None:
    assert parse_args([], environ={}).memory_envelope == (200 * Mi, 500 * Mi)
    assert parse_envelope("250M-1G") == (250 * 10**6, 10**9)
    assert parse_args(["--memory-envelope", "300Mi-1Gi"], environ={}).memory_envelope == (300 * Mi, 2**30)
    assert parse_args([], environ={"CNE_MEMORY_ENVELOPE": "1Gi-2Gi"}).memory_envelope == (2**30, 2**31)


@pytest.mark.parametrize("text", ["500Mi-200Mi", "500Mi-500Mi", "200Mi", "200Mi-300Mi-400Mi", "a-b"])
def test_invalid_envelope_flag_is_a_clear_error(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_args(["--memory-envelope", text], environ={})
    assert "--memory-envelope" in str(err.value)


def test_invalid_envelope_stops_the_process_at_start() -> None:
    proc = subprocess.run([sys.executable, "-m", "cilium_node_exporter", "--memory-envelope", "9Gi-1Gi"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--memory-envelope" in proc.stderr and "lower bound" in proc.stderr


def test_annotation_values() -> None:
    def node(value: str | None) -> dict:
        annotations = {} if value is None else {"cilium-node-exporter.io/memory-envelope": value}
        return {"metadata": {"name": "n", "annotations": annotations}}

    assert envelope_from_annotation(node("300Mi-800Mi")) == (300 * Mi, 800 * Mi)
    assert envelope_from_annotation(node(None)) is None
    assert envelope_from_annotation({"metadata": {}}) is None
    with pytest.raises(UnitError):
        envelope_from_annotation(node("big-small"))


def families(state: ExporterState) -> dict[str, float]:
    text = generate_latest(build_registry(state)).decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("cilium_node_")}


def test_envelope_gauges_always_and_override_replaces() -> None:
    state = ExporterState(sources=("hubble",), envelope=(200 * Mi, 500 * Mi))
    m = families(state)
    assert m["cilium_node_agent_memory_envelope_lower_bytes"] == 200 * Mi
    assert m["cilium_node_agent_memory_envelope_upper_bytes"] == 500 * Mi
    state.envelope_override = (300 * Mi, 800 * Mi)
    m = families(state)
    assert m["cilium_node_agent_memory_envelope_lower_bytes"] == 300 * Mi
    assert m["cilium_node_agent_memory_envelope_upper_bytes"] == 800 * Mi


def test_agent_families_follow_the_snapshots() -> None:
    state = ExporterState(sources=("kubelet", "apiserver"), envelope=(1, 2))
    assert not any(k.startswith(("cilium_node_agent_memory_working", "cilium_node_agent_info",
                                 "cilium_node_agent_restarts")) for k in families(state))
    state.memory["agent"] = ContainerMemory("kube-system", "cilium-a", "u1", working_set=5, rss=None, usage=7,
                                            limit=None, start_time=None)
    state.pods["agent"] = ContainerPod("kube-system", "cilium-a", "u1", restart_count=3,
                                       last_terminated_reason="OOMKilled", last_terminated_at=1782468780.0)
    m = families(state)
    assert m["cilium_node_agent_memory_working_set_bytes"] == 5
    assert m["cilium_node_agent_memory_usage_bytes"] == 7
    for absent in ("cilium_node_agent_memory_rss_bytes", "cilium_node_agent_memory_limit_bytes",
                   "cilium_node_agent_container_start_time_seconds"):
        assert absent not in m
    assert m["cilium_node_agent_restarts_total"] == 3
    assert m['cilium_node_agent_last_terminated_reason{reason="OOMKilled"}'] == 1
    assert m["cilium_node_agent_last_terminated_timestamp_seconds"] == 1782468780.0
    assert m['cilium_node_agent_info{agent_namespace="kube-system",agent_pod="cilium-a",agent_uid="u1"}'] == 1


# --- the derived envelope (--memory-envelope-mode) -----------------------------------------------------------

def test_envelope_mode_flag() -> None:
    assert parse_args([], environ={}).memory_envelope_mode == "static"
    assert parse_args(["--memory-envelope-mode=derived"], environ={}).memory_envelope_mode == "derived"
    assert parse_args([], environ={"CNE_MEMORY_ENVELOPE_MODE": "Derived"}).memory_envelope_mode == "derived"
    with pytest.raises(ConfigError) as err:
        parse_args(["--memory-envelope-mode=dynamic"], environ={})
    assert "--memory-envelope-mode" in str(err.value)


def derived_state(mode: str, **inputs: object) -> ExporterState:
    """A node with every input of the derivation: 64 GiB, 1.16's effective map sizes, the agent's metrics."""
    from cilium_node_exporter.aggregation.hubble_status import HubbleStatus
    from cilium_node_exporter.aggregation.memory import AgentMemory
    from cilium_node_exporter.aggregation.settings import CiliumSettings, MapSizing

    state = ExporterState(sources=("hubble", "kubelet", "agent", "settings"), envelope=(200 * Mi, 500 * Mi),
                          envelope_mode=mode)
    sizing = MapSizing(ratio=0.0025, effective=True, ipv4=True, ipv6=False, nodeport=True, socket_lb=True,
                       entries={"ct_tcp": 602802, "ct_any": 301401, "nat": 602802, "neigh": 602802,
                                "sock_rev": 301401})
    state.settings = CiliumSettings(origin="agent-api", envoy_mode="external", map_sizing=sizing)
    state.machine_memory = 64 * 2**30
    state.agent_memory = AgentMemory({"process_rss": 280 * Mi, "bpf_maps": 330 * Mi},
                                     {"ipcache_entries": 6000, "policies": 100, "services": 300})
    state.hubble_status = HubbleStatus(seen_flows=1, num_flows=1, max_flows=4095, version="cilium v1.16.15+g1")
    state.memory["agent"] = ContainerMemory("kube-system", "cilium-a", "u1", working_set=700 * Mi, rss=300 * Mi)
    for key, value in inputs.items():
        setattr(state, key, value)
    return state


def test_derived_mode_puts_the_derived_bounds_on_the_envelope_gauges() -> None:
    m = families(derived_state("derived"))
    lower = sum(v for k, v in m.items() if k.startswith("cilium_node_agent_memory_derived_lower_bytes{"))
    upper = sum(v for k, v in m.items() if k.startswith("cilium_node_agent_memory_derived_upper_bytes{"))
    assert m["cilium_node_agent_memory_envelope_lower_bytes"] == lower == 128 * Mi
    assert m["cilium_node_agent_memory_envelope_upper_bytes"] == pytest.approx(upper)
    assert upper > 500 * Mi
    assert m['cilium_node_agent_memory_envelope_source{source="derived"}'] == 1
    assert m['cilium_node_agent_memory_derived_upper_bytes{part="cluster_pods"}'] == 6000 * 10.5 * 1024
    assert m['cilium_node_agent_memory_derived_upper_bytes{part="bpf_other"}'] == pytest.approx(
        330 * Mi - m['cilium_node_agent_memory_derived_upper_bytes{part="bpf_dynamic_maps"}'])
    assert m["cilium_node_bpf_map_dynamic_size_ratio"] == 0.0025
    assert m["cilium_node_machine_memory_bytes"] == 64 * 2**30
    assert m['cilium_node_agent_memory_part_bytes{part="process_rss"}'] == 280 * Mi
    assert m['cilium_node_agent_cluster_objects{kind="ipcache_entries"}'] == 6000
    assert m["cilium_node_agent_bpf_maps_charged_bytes"] == 330 * Mi  # 400 MiB beyond anon, at most the maps


def test_static_mode_keeps_the_static_bounds_and_still_exports_the_derived_ones() -> None:
    m = families(derived_state("static"))
    assert m["cilium_node_agent_memory_envelope_upper_bytes"] == 500 * Mi
    assert m['cilium_node_agent_memory_envelope_source{source="static"}'] == 1
    assert m['cilium_node_agent_memory_derived_upper_bytes{part="bpf_dynamic_maps"}'] > 0


def test_derived_mode_falls_back_to_static_while_an_input_is_unknown() -> None:
    from cilium_node_exporter.aggregation.settings import CiliumSettings, MapSizing

    ratio_only = CiliumSettings(origin="configmap", map_sizing=MapSizing(ratio=0.0025))
    m = families(derived_state("derived", machine_memory=None, settings=ratio_only))
    assert m["cilium_node_agent_memory_envelope_upper_bytes"] == 500 * Mi
    assert m['cilium_node_agent_memory_envelope_source{source="static"}'] == 1
    assert not any(k.startswith("cilium_node_agent_memory_derived_") for k in m)
    # the charged estimate then takes the agent's own map memory as its ceiling
    assert m["cilium_node_agent_bpf_maps_charged_bytes"] == 330 * Mi


def test_the_node_annotation_wins_over_the_derived_envelope() -> None:
    m = families(derived_state("derived", envelope_override=(1 * 2**30, 3 * 2**30)))
    assert m["cilium_node_agent_memory_envelope_upper_bytes"] == 3 * 2**30
    assert m['cilium_node_agent_memory_envelope_source{source="annotation"}'] == 1


def test_no_agent_metrics_no_parts_and_the_static_envelope_stands_for_the_process() -> None:
    m = families(derived_state("derived", agent_memory=None))
    assert not any(k.startswith(("cilium_node_agent_memory_part_bytes", "cilium_node_agent_cluster_objects"))
                   for k in m)
    assert m['cilium_node_agent_memory_derived_lower_bytes{part="process_static"}'] == 200 * Mi
    assert m['cilium_node_agent_memory_derived_upper_bytes{part="process_static"}'] == 500 * Mi
    # the charged estimate is the working set beyond anon (400 MiB), below the derived BPF terms then
    ceiling = sum(m[f'cilium_node_agent_memory_derived_upper_bytes{{part="{p}"}}'] for p in ("bpf_dynamic_maps",
                                                                                             "bpf_other"))
    assert m["cilium_node_agent_bpf_maps_charged_bytes"] == 400 * Mi < ceiling


def test_sources_that_are_off_publish_nothing_of_theirs() -> None:
    state = derived_state("derived")
    state.sources = ("hubble",)
    m = families(state)
    assert not any(k.startswith(("cilium_node_agent_memory_part", "cilium_node_machine_memory",
                                 "cilium_node_agent_memory_derived", "cilium_node_bpf_map_",
                                 "cilium_node_agent_bpf_maps_charged")) for k in m)
    assert m['cilium_node_agent_memory_envelope_source{source="static"}'] == 1
