"""The simulator's agent memory by part: its own tables against published figures, the cgroup-charging artefact of
restarts, what each release's metrics endpoint shows, and the exporter reading the simulated node back (its parts,
the node's memory, the map sizes, the charged estimate and the derived envelope against the simulator's truth)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cilium_node_exporter.sources.agent import AgentMetricsSource
from cilium_node_exporter.sources.kubelet import KubeletSource
from cilium_node_exporter.sources.settings import SettingsSource
from cilium_node_simulator.agent_metrics_fake import memory_families, memory_lines
from cilium_node_simulator.cilium_settings import CiliumSpec
from cilium_node_simulator.memory_model import (
    FILE_MAPPED,
    HTAB_STRUCT,
    KERNEL_MISC,
    Cluster,
    Host,
    MapSizing,
    MemoryModel,
    agent_entries,
    lru_maps,
)
from cilium_node_simulator.scenario import ScenarioError, ScenarioRuntime, load_scenario, parse_scenario
from tests.support.cluster import Cluster as Fakes
from tests.support.cluster import scrape

MiB, GiB = 2**20, 2**30
KPR = MapSizing(nodeport=True, socket_lb=True)


# --- the simulator's own tables against published figures ------------------------------------------------

def test_map_sizes_follow_the_documented_ct_table() -> None:
    """Documentation/network/ebpf/maps.rst (1.16): Cilium CT entries at ratio 0.0025 for 30/60/120/240 GiB."""
    for gib, published in ((30, 284560), (60, 569120), (120, 1138240), (240, 2276480)):
        assert abs(agent_entries(gib * GiB, MapSizing())["ct_tcp"] - published) / published < 0.01
    assert agent_entries(4 * GiB, MapSizing())["ct_tcp"] == 131072  # LimitTableAutoGlobalTCPMin


def test_map_bytes_reproduce_a_real_2_tib_node() -> None:
    """cilium/cilium#37935: bytes_memlock of ct4_global, snat_v4_external and nodeport_neigh4 on a 2 TB node."""
    maps = {m.name: m for m in lru_maps(Host(2014 * GiB), KPR)}
    assert maps["cilium_ct4_global"].memlock == 2_281_706_304
    assert maps["cilium_snat_v4_external"].memlock == 2_013_270_848
    assert maps["cilium_nodeport_neigh4"].memlock == 1_342_182_208
    old_kernel = {m.name: m for m in lru_maps(Host(2014 * GiB, (6, 1)), KPR)}  # memlock = key + value before 6.4
    assert old_kernel["cilium_ct4_global"].memlock < maps["cilium_ct4_global"].memlock / 1.8
    assert old_kernel["cilium_ct4_global"].allocated == maps["cilium_ct4_global"].allocated


# --- restarts are not recoveries ---------------------------------------------------------------------------

class _NoHubble:
    """The runtime's Hubble server, for scenarios played for their agent state only."""

    truth = None

    def compile(self, spec: Any, index: int = 0) -> Any:
        from cilium_node_simulator.flows import FlowFactory

        return FlowFactory().compile(spec, index)

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: True


def _states(runtime: ScenarioRuntime, phases: int) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while len(seen) < phases and time.monotonic() < deadline:
        state = runtime.agent_state()
        if state.phase not in seen:
            time.sleep(0.05)  # well inside the phase
            seen.add(state.phase)
            out.append((runtime.agent_state(), runtime.agent_memory()))
        time.sleep(0.02)
    return out


def test_a_restart_drops_the_working_set_by_the_maps_it_reused() -> None:
    runtime = ScenarioRuntime(load_scenario("restart-artefact"), _NoHubble(), speed=1200, emit_events=False).start()
    try:
        (first, m1), (restarted, m2), (recreated, m3) = _states(runtime, 3)
    finally:
        runtime.stop()
    assert (first.phase, restarted.phase, recreated.phase) == ("first-start", "restarted", "maps-recreated")
    maps = m1.maps_allocated
    assert maps > 500 * MiB  # 128 GiB, kube-proxy replacement
    assert first.working_set - restarted.working_set == maps  # the maps stayed charged to the first container
    assert m2.reported_maps == m1.reported_maps and m2.process_rss == m1.process_rss  # nothing freed, nothing leaked
    assert recreated.working_set == first.working_set and m3.charged == m1.charged


def test_a_leak_into_the_maps_grows_what_the_agent_reports_and_the_creator_pays() -> None:
    model = MemoryModel((1, 16), Host(64 * GiB), Cluster(), KPR)
    base, leaking = model.sample(300 * MiB, True), model.sample(300 * MiB, True, 200 * MiB)
    assert leaking.reported_maps - base.reported_maps == 200 * MiB
    assert leaking.working_set - base.working_set == 200 * MiB
    reused = model.sample(300 * MiB, False, 200 * MiB)  # a restarted container: neither the maps nor the leak
    assert reused.working_set == base.working_set - base.maps_allocated


@pytest.mark.parametrize(("text", "message"), [
    ("agent: {process: 300Mi, working_set: 400Mi}", "either process"),
    ("host: {memory: 512Mi}", "at least 1Gi"),
    ("host: {kernel: six}", "kernel version"),
    ("cilium: {map_dynamic_size_ratio: 1.5}", "outside 0.0-1.0"),
    ("cluster: {pods: -3}", "cluster.pods"),
    ("cilium: {envoy: external}\nenvoy: {process: 60Mi}", "cilium-envoy has no"),
])
def test_memory_model_keys_are_checked(text: str, message: str) -> None:
    import yaml

    data = {"name": "x", "version": "1.16.15", "phases": [{"duration": "1m"}], **yaml.safe_load(text)}
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data)


# --- what each release's endpoint shows ----------------------------------------------------------------

def _families(release: tuple[int, int], uptime: float = 600) -> dict[str, list[tuple[dict[str, str], float]]]:
    model = MemoryModel(release, Host(32 * GiB), Cluster(), KPR)
    return {name: samples for name, _, samples in memory_families(model, model.sample(300 * MiB, True), uptime, 0.0)}


def test_each_release_exposes_its_own_families() -> None:
    old, new = _families((1, 14)), _families((1, 19))
    assert "cilium_bpf_map_capacity" not in old and "cilium_bpf_map_capacity" in _families((1, 15))
    assert "cilium_bpf_maps" not in _families((1, 16)) and "cilium_bpf_maps" in _families((1, 17))
    reported = "cilium_bpf_maps_virtual_memory_max_bytes"
    assert old[reported][0][1] > new[reported][0][1]  # up to 1.16 bpftool counts every map on the node
    assert {s[0]["map_name"] for s in old["cilium_bpf_map_pressure"]} == {"ipcache", "lb4_reverse_nat"}
    assert {s[0]["map_name"] for s in new["cilium_bpf_map_pressure"]} == {"ipcache_v2", "lb4_reverse_nat"}
    assert {s[0]["map_name"] for s in _families((1, 18), uptime=60)["cilium_bpf_map_pressure"]} == {"ipcache_v2"}


def test_go_collector_help_texts_change_with_client_golang_1_20() -> None:
    model = MemoryModel((1, 16))
    old = memory_lines(model, model.sample(300 * MiB, True), 0, 0.0)
    model = MemoryModel((1, 17))
    new = memory_lines(model, model.sample(300 * MiB, True), 0, 0.0)
    assert "# HELP go_memstats_sys_bytes Number of bytes obtained from system." in old
    assert any(line.startswith("# HELP go_memstats_sys_bytes") and "Equals to" in line for line in new)
    assert "cilium_process_resident_memory_bytes 3.145728e+08" in old  # Go's float formatting


# --- the exporter reading the simulated node back ---------------------------------------------------------

@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    c = Fakes(Path(tmp_path_factory.mktemp("memory")), kubelet=True, agent=True, agent_api=True, version="1.16.15",
              cilium=CiliumSpec(kube_proxy_replacement="true"), process=320 * MiB,
              cluster=Cluster(pods=6000, nodes=200, services=300, policies=120, identities=900, endpoints=30))
    yield c
    c.close()


def _read(fakes: Fakes, mode: str = "derived") -> Any:
    cfg = fakes.config("--settings-from=agent-api", f"--memory-envelope-mode={mode}")
    state = fakes.state(cfg)
    state.envelope_mode = cfg.memory_envelope_mode
    SettingsSource(cfg, state).read_once()
    KubeletSource(cfg, state).start()
    AgentMetricsSource(cfg, state).start()
    return scrape(state)


@pytest.mark.parametrize("gib", [8, 16, 32, 64, 128, 256])
def test_exporter_reads_the_simulated_node_and_its_envelope_holds_it(fakes: Fakes, gib: int) -> None:
    runtime = fakes.runtime
    runtime.move(Host(gib * GiB), runtime.memory.cluster)
    runtime.set(owns_maps=True)
    fakes.model.update()  # the pods' model follows the agent now, not at its next poll
    truth, first = runtime.agent_memory(), runtime.agent_state()
    m = _read(fakes)
    part = "cilium_node_agent_memory_part_bytes"
    assert m.value("cilium_node_machine_memory_bytes") == gib * GiB
    assert m.value(part, part="process_rss") == truth.process_rss and m.value(part, part="go_heap") == truth.go_heap
    assert m.value(part, part="bpf_maps") == truth.reported_maps
    assert m.value("cilium_node_agent_cluster_objects", kind="ipcache_entries") == 6200
    # the exporter's map model (from the agent API's sizes) against the simulator's kernel allocation per map
    assert m.value("cilium_node_agent_memory_derived_upper_bytes", part="bpf_dynamic_maps") == \
        sum(bpf.allocated - HTAB_STRUCT for bpf in runtime.memory.maps)
    charged = m.value("cilium_node_agent_bpf_maps_charged_bytes")
    assert truth.charged <= charged <= truth.charged + FILE_MAPPED + KERNEL_MISC
    lower, upper = m.value("cilium_node_agent_memory_envelope_lower_bytes"), \
        m.value("cilium_node_agent_memory_envelope_upper_bytes")
    assert m.value("cilium_node_agent_memory_envelope_source", source="derived") == 1
    assert lower <= first.working_set <= upper  # the first container, charged for every map
    runtime.set(owns_maps=False)  # a restart that reused the maps
    fakes.model.update()
    restarted = runtime.agent_state()
    m = _read(fakes)
    assert lower <= restarted.working_set <= upper
    assert m.value(part, part="bpf_maps") == truth.reported_maps  # the maps are still there ...
    assert m.value("cilium_node_agent_bpf_maps_charged_bytes") < 64 * MiB  # ... charged elsewhere


# --- the fleet's good and bad upgrades, one 256 GiB node each ---------------------------------------------

def _upgrade_node(name: str) -> Any:
    from cilium_node_simulator.fleet_node import FleetNode
    from cilium_node_simulator.fleet_scenario import assign, load_fleet

    fleet = load_fleet(name)
    assignment = next(a for _, a in assign(fleet, 200, 1200.0) if a.group == "256gi")  # the group's first node
    return FleetNode("node-256", "c1", assignment.plan, fleet.sources, fleet.memory_envelope, 1200.0,
                     exporter_flags=("--settings-interval=5s",), memory_envelope_mode=fleet.memory_envelope_mode)


@pytest.mark.parametrize("name", ["upgrade-good", "upgrade-bad"])
def test_upgrades_by_memory_part(name: str) -> None:
    """Good: after the rollout the working set drops by the reused maps (charged elsewhere), the process and the maps
    are unchanged. Bad: the new release recreates its maps (charged again) and leaks into them and its heap."""
    from prometheus_client import generate_latest

    from cilium_node_simulator.exporter_process import Metrics
    from tests.support.procs import wait_until

    def scrape_node() -> Metrics:
        return Metrics(generate_latest(node.registry).decode())

    node = _upgrade_node(name).start()
    part = "cilium_node_agent_memory_part_bytes"
    charged = "cilium_node_agent_bpf_maps_charged_bytes"
    ws = "cilium_node_agent_memory_working_set_bytes"
    try:
        before = wait_until(lambda: (m := scrape_node()).value(part, 0, part="bpf_maps") and m, 5, "the agent's parts")
        assert before.value(charged) > 1 * GiB  # the first container created the maps: charged to it
        rss, maps = before.value(part, part="process_rss"), before.value(part, part="bpf_maps")
        if name == "upgrade-good":  # the new container reuses the maps: a restart artefact, not a recovery
            after = wait_until(lambda: (m := scrape_node()).value(charged) < 100 * MiB and m, 10, "the upgrade")
            assert after.value(ws) < before.value(ws) - 1 * GiB
            assert (after.value(part, part="process_rss"), after.value(part, part="bpf_maps")) == (rss, maps)
        else:  # maps recreated (charged again), leaking into them and into the heap
            after = wait_until(lambda: (m := scrape_node()).value(part, part="process_rss") > rss + 300 * MiB
                               and m, 10, "the leak")
            assert after.value(charged) > 1 * GiB
            assert after.value(part, part="bpf_maps") > maps + 200 * MiB
        assert after.value("cilium_node_agent_memory_envelope_source", source="derived") == 1
    finally:
        node.stop()
