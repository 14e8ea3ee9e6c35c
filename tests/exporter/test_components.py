"""cilium-envoy as a component of the kubelet and API server sources (its memory, restarts and OOM kills
apart from the agent's), and the BPF events rate limiter's discards from the agent metrics source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cilium_node_exporter.aggregation.agent import AgentDatapath
from cilium_node_exporter.aggregation.settings import CiliumSettings
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.sources.agent import parse_metrics
from cilium_node_exporter.sources.apiserver import ApiServerSource
from cilium_node_exporter.sources.kubelet import KubeletSource
from cilium_node_simulator.exporter_process import Metrics
from tests.support.cluster import AgentState, Cluster, scrape
from tests.support.procs import wait_until

MiB = 2**20
ENVOY_WS = "cilium_node_envoy_memory_working_set_bytes"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, kubelet=True, kubeapi=True, envoy=AgentState(working_set=80 * MiB, rss=70 * MiB,
                                                                         limit=256 * MiB))
    yield c
    c.close()


def run(cluster: Cluster, *extra: str) -> tuple[ExporterState, KubeletSource, ApiServerSource]:
    cfg = cluster.config(*extra)
    state = cluster.state(cfg)
    kubelet, api = KubeletSource(cfg, state), ApiServerSource(cfg, state)
    api.min_interval, api.backoff_max = 0.05, 0.2
    api.start()
    return state, kubelet, api


def refreshed(state: ExporterState, kubelet: KubeletSource) -> Metrics:
    kubelet._last_attempt = None  # past the 1 s cache
    kubelet.refresh()
    return scrape(state)


def test_envoy_memory_and_pod_apart_from_the_agent(cluster: Cluster) -> None:
    state, kubelet, api = run(cluster)
    try:
        wait_until(lambda: "envoy" in state.pods and state.health["apiserver"].up, what="both pods listed")
        m = refreshed(state, kubelet)
        assert m.value(ENVOY_WS) == 80 * MiB and m.value("cilium_node_envoy_memory_rss_bytes") == 70 * MiB
        assert m.value("cilium_node_envoy_memory_limit_bytes") == 256 * MiB
        assert m.value("cilium_node_agent_memory_working_set_bytes") == 300 * MiB  # the agent's own container
        assert m.value("cilium_node_envoy_restarts_total") == 0
        assert m.has("cilium_node_envoy_container_start_time_seconds")
        envoy = cluster.model.envoy
        assert envoy is not None
        info = m.value("cilium_node_envoy_info", envoy_namespace="kube-system", envoy_pod=envoy.name,
                       envoy_uid=envoy.uid)
        assert info == 1 and envoy.name.startswith("cilium-envoy-")
    finally:
        api.stop()


def test_envoy_oom_kill_is_envoys_not_the_agents(cluster: Cluster) -> None:
    state, kubelet, api = run(cluster)
    try:
        wait_until(lambda: "envoy" in state.pods, what="envoy pod")
        cluster.runtime.set_envoy(working_set=256 * MiB, running=False, last_terminated_reason="OOMKilled")
        wait_until(lambda: state.pods["envoy"].last_terminated_reason == "OOMKilled", what="OOMKilled")
        m = refreshed(state, kubelet)
        assert not m.has(ENVOY_WS)  # the kubelet omits a container that is not running
        cluster.runtime.set_envoy(working_set=60 * MiB, running=True, restart_count=1)
        wait_until(lambda: state.pods["envoy"].restart_count == 1, what="envoy restarted")
        m = refreshed(state, kubelet)
        assert m.value("cilium_node_envoy_last_terminated_reason", reason="OOMKilled") == 1
        assert m.value("cilium_node_envoy_restarts_total") == 1 and m.value(ENVOY_WS) == 60 * MiB
        assert m.has("cilium_node_envoy_last_terminated_timestamp_seconds")
        assert m.value("cilium_node_agent_restarts_total") == 0
        assert not m.count("cilium_node_agent_last_terminated")
    finally:
        api.stop()


def test_embedded_envoy_has_no_envoy_series(tmp_path: Path) -> None:
    c = Cluster(tmp_path, kubelet=True, kubeapi=True)  # no cilium-envoy pod on the node
    state, kubelet, api = run(c)
    try:
        wait_until(lambda: state.health["apiserver"].up, what="both watches listed")
        m = refreshed(state, kubelet)
        assert not m.count("cilium_node_envoy_")
        assert m.has("cilium_node_agent_memory_working_set_bytes") and "agent" in state.pods
    finally:
        api.stop()
        c.close()


def test_envoy_switched_off_and_its_own_namespace(cluster: Cluster) -> None:
    state, kubelet, api = run(cluster, "--envoy=false")
    try:
        assert set(api.watches) == {"agent"}
        wait_until(lambda: state.health["apiserver"].up, what="agent listed")
        assert not refreshed(state, kubelet).count("cilium_node_envoy_")
    finally:
        api.stop()
    state, kubelet, api = run(cluster, "--envoy-namespace=cilium-envoy")
    try:
        assert api.watches["envoy"].component.namespace == "cilium-envoy"
        wait_until(lambda: cluster.kubeapi.pod_lists["k8s-app=cilium-envoy"] and state.health["apiserver"].up,
                   what="envoy namespace listed")
        assert "envoy" not in state.pods  # the simulated pod is in kube-system
        assert not refreshed(state, kubelet).has(ENVOY_WS)  # the kubelet part matches the namespace too
    finally:
        api.stop()


# --- rate-limited events -------------------------------------------------------------------------------

RATELIMIT = """\
# HELP cilium_bpf_ratelimit_dropped_total Total drops resulting from BPF ratelimiter, tagged by source of drop
# TYPE cilium_bpf_ratelimit_dropped_total counter
cilium_bpf_ratelimit_dropped_total{usage="icmpv6"} 3
cilium_bpf_ratelimit_dropped_total{usage="events"} 1234
"""
COUNTER = "cilium_node_datapath_ratelimited_events_total"


def test_ratelimit_counter_is_the_events_usage_only() -> None:
    assert parse_metrics(RATELIMIT).ratelimited_events == 1234
    assert parse_metrics(RATELIMIT.replace('"events"', '"other"')).ratelimited_events is None


@pytest.mark.parametrize(("sample", "rate_limit", "expected"), [
    (42.0, {}, 42.0),  # the agent says so
    (None, {"rate": 0, "burst": 0}, 0.0),  # 1.17+ with the limiter off: nothing can be discarded
    (None, {"rate": 100, "burst": 200}, 0.0),  # on, no event checked yet: the map entry does not exist yet
    (None, {}, None),  # before 1.17, or settings unknown: unknown, no series
])
def test_ratelimited_zero_only_when_known(sample: float | None, rate_limit: dict[str, int],
                                          expected: float | None) -> None:
    state = ExporterState(sources=("agent", "settings"), envelope=(1, 2))
    state.agent_datapath = AgentDatapath(ratelimited_events=sample)
    state.settings = CiliumSettings(origin="agent-api", rate_limit=rate_limit)
    assert scrape(state).samples.get((COUNTER, frozenset())) == expected
    state.agent_datapath = None  # the agent source down: nothing, whatever the settings say
    assert not scrape(state).has(COUNTER)
