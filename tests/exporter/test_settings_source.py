"""The settings source against the simulator's cilium.sock (HTTP on a real unix socket) and the fake API
server's cilium-config ConfigMap: where each release's settings come from, fallback, unavailability,
faults, GET only, and a low, scrape-independent reading rate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.sources import settings as settings_module
from cilium_node_exporter.sources.settings import SettingsSource
from cilium_node_simulator.cilium_settings import DROP, CiliumSpec, RuntimeOptions
from tests.support.cluster import Cluster, scrape
from tests.support.procs import wait_until

NOTIFY = "cilium_node_agent_notifications_enabled"


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "REQUEST_TIMEOUT", 1.0)  # the slow faults answer after 30 s


def make(tmp: Path, *, agent_api: bool = True, kubeapi: bool = True, version: str = "1.18.6",
         **cilium: Any) -> Cluster:
    return Cluster(tmp, kubelet=False, kubeapi=kubeapi, agent_api=agent_api, version=version,
                   cilium=CiliumSpec(**cilium))


def source_for(cluster: Cluster, *extra: str, sources: str | None = None) -> tuple[SettingsSource, ExporterState]:
    args = [*extra] + ([f"--sources={sources}"] if sources else [])
    cfg = cluster.config(*args)
    state = cluster.state(cfg)
    return SettingsSource(cfg, state), state


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = make(tmp_path, drop_events=False, hubble_monitor_events=("drop", "policy-verdict"), rate_limit=500,
             burst_limit=1000)
    yield c
    c.close()


def test_agent_api_then_the_configmap_for_what_1_18_does_not_show(cluster: Cluster) -> None:
    source, state = source_for(cluster)
    assert source.read_once()
    s = state.settings
    assert s is not None and s.origin == "agent-api+configmap"
    assert s.version == "1.18.6" and s.envoy_mode == "external"
    assert s.notifications == {"drop": False, "policy_verdict": True, "trace": True}
    assert s.rate_limit == {"rate": 500, "burst": 1000}  # from the agent (DCM, 1.17+)
    assert s.kube_proxy_replacement == "false"  # from the ConfigMap (DCM has none from 1.18)
    assert s.hubble_monitor_events == {"drop": True, "policy_verdict": True, "trace": False, "l7": False}
    assert state.health["settings"].up and not state.health["settings"].errors
    m = scrape(state)
    agent, cm = {"origin": "agent-api"}, {"origin": "configmap"}
    assert m.value(NOTIFY, event="drop", **agent) == 0 and m.value(NOTIFY, event="policy_verdict", **agent) == 1
    assert m.value("cilium_node_hubble_monitor_events", event="l7", **cm) == 0  # 1.18: only the ConfigMap says
    assert m.value("cilium_node_agent_events_rate_limit", kind="burst", **agent) == 1000


def test_only_gets_with_the_brief_header(cluster: Cluster) -> None:
    source, _ = source_for(cluster)
    for _ in range(3):
        source.read_once()
    assert cluster.agent_api is not None
    assert set(cluster.agent_api.requests) == {("GET", "/v1/healthz", "true"), ("GET", "/v1/config", None)}
    assert len(cluster.agent_api.requests) == 6


def test_a_runtime_change_is_seen_on_the_next_reading(cluster: Cluster) -> None:
    source, state = source_for(cluster)
    source.read_once()
    cluster.runtime.cilium.apply(RuntimeOptions(trace_notification=False))  # cilium-dbg config
    source.read_once()
    assert state.settings is not None and state.settings.notifications["trace"] is False
    cluster.runtime.cilium.restart()  # an agent restart brings the startup flags back
    source.read_once()
    assert state.settings.notifications["trace"] is True


def test_1_16_agent_api_is_complete_without_the_configmap(tmp_path: Path) -> None:
    c = make(tmp_path, version="1.16.6", hubble_monitor_events=("drop", "agent"))
    try:
        source, state = source_for(c)
        assert source.read_once()
        s = state.settings
        assert s is not None and s.origin == "agent-api"  # DCM has HubbleMonitorEvents and KubeProxyReplacement
        assert s.hubble_monitor_events == {"drop": True, "policy_verdict": False, "trace": False, "l7": True}
        assert s.rate_limit == {}  # no limiter in 1.16
        assert c.kubeapi is not None and c.kubeapi.requests == 0
    finally:
        c.close()


def test_no_socket_falls_back_to_the_configmap(tmp_path: Path) -> None:
    c = make(tmp_path, agent_api=False, drop_events=False)
    try:
        source, state = source_for(c, f"--agent-api-socket={tmp_path}/nothing-here.sock", sources="settings")
        assert source.read_once()
        s = state.settings
        assert s is not None and s.origin == "configmap" and s.version is None
        assert s.notifications["drop"] is False
        assert state.health["settings"].up and not state.health["settings"].errors  # absent is not an error
        (info,) = scrape(state).series("cilium_node_cilium_info")
        assert dict(info)["version"] == "unknown"
    finally:
        c.close()


def test_agent_down_refuses_then_comes_back(cluster: Cluster) -> None:
    source, state = source_for(cluster, "--settings-from=agent-api")
    assert source.read_once()
    cluster.runtime.set(running=False)
    sock = Path(cluster.agent_api.path) if cluster.agent_api else None
    wait_until(lambda: not source.read_once(), what="the socket refusing")
    assert sock is not None and sock.exists()  # the stale socket file stays; nothing listens
    assert state.settings is None and state.health["settings"].errors["connect"] >= 1  # required here: down
    cluster.runtime.set(running=True)
    wait_until(source.read_once, what="the agent back")
    assert state.settings is not None


@pytest.mark.parametrize(("sources", "unavailable"), [("auto", True), ("settings", False)])
def test_nothing_answers_unavailable_when_optional_down_when_required(tmp_path: Path, sources: str,
                                                                      unavailable: bool) -> None:
    c = make(tmp_path, agent_api=False)
    try:
        assert c.kubeapi is not None
        c.kubeapi.configmap_fault = "403"
        source, state = source_for(c, f"--agent-api-socket={tmp_path}/none.sock", sources=sources)
        assert not source.read_once()
        h = state.health["settings"]
        assert h.unavailable is unavailable and not h.up
        m = scrape(state)
        if unavailable:
            assert m.value("cilium_node_exporter_source_unavailable", source="settings") == 1
            assert not m.series("cilium_node_exporter_source_up", source="settings")
            assert not sum(h.errors.values())
        else:
            assert m.value("cilium_node_exporter_source_up", source="settings") == 0
            assert h.errors["connect"] == 1 and h.errors["auth"] == 1  # every failure counted
            assert "configmaps/cilium-config" in (h.last_problem or ("", ""))[1]  # says which RBAC is missing
        c.kubeapi.configmap_fault = ""
        assert source.read_once() and h.up and not h.unavailable
        if unavailable:
            assert scrape(state).value("cilium_node_exporter_source_unavailable", source="settings") == 0
    finally:
        c.close()


def test_an_agent_api_that_disables_its_endpoints_leaves_the_configmap_to_answer(cluster: Cluster) -> None:
    """The API allow-list without GetConfig (403): there is no agent API to read, as without a socket."""
    assert cluster.agent_api is not None
    cluster.agent_api.fault = "disabled"
    source, state = source_for(cluster)
    assert source.read_once()
    s = state.settings
    assert s is not None and s.origin == "configmap"
    assert state.health["settings"].up and state.health["settings"].errors["rejected"] == 1
    assert scrape(state).value(NOTIFY, event="drop", origin="configmap") == 0


@pytest.mark.parametrize(("fault", "reason"), [("garbage", "decode"), ("huge", "protocol"), ("slow", "timeout"),
                                               ("500", "http"), ("reset", "connect")])
def test_a_failing_agent_api_makes_every_setting_unknown_not_the_configmaps(cluster: Cluster, fault: str,
                                                                           reason: str) -> None:
    """Issue 23 row 6: the agent switched drop notifications off at run time, then its API fails. The ConfigMap
    (start-up: on) must not stand in for it, nor the last reading: unknown, the source down, the error counted."""
    cluster.runtime.cilium.apply(RuntimeOptions(drop_notification=False))  # cilium-dbg config
    source, state = source_for(cluster)
    assert source.read_once()
    assert scrape(state).value(NOTIFY, event="drop", origin="agent-api") == 0
    assert cluster.agent_api is not None
    cluster.agent_api.fault = fault
    assert not source.read_once()
    assert state.settings is None and not state.health["settings"].up
    assert state.health["settings"].errors[reason] == 1
    m = scrape(state)
    assert not m.has(NOTIFY) and not m.has("cilium_node_cilium_info")
    assert m.value("cilium_node_exporter_source_up", source="settings") == 0
    cluster.agent_api.fault = ""
    assert source.read_once() and scrape(state).value(NOTIFY, event="drop", origin="agent-api") == 0


def test_a_failing_settings_source_leaves_the_other_sources_alone(tmp_path: Path) -> None:
    c = Cluster(tmp_path, kubelet=True, kubeapi=False, agent_api=True, version="1.17.3")
    try:
        assert c.agent_api is not None
        c.agent_api.fault = "garbage"
        cfg = c.config("--settings-from=agent-api")
        state = c.state(cfg)
        SettingsSource(cfg, state).read_once()
        from cilium_node_exporter.sources.kubelet import KubeletSource

        kubelet = KubeletSource(cfg, state)
        kubelet.refresh()
        m = scrape(state)
        assert m.value("cilium_node_exporter_source_up", source="kubelet") == 1
        assert m.value("cilium_node_exporter_source_up", source="settings") == 0
        assert m.has("cilium_node_agent_memory_working_set_bytes")
    finally:
        c.close()


def test_scrapes_never_trigger_a_reading(cluster: Cluster) -> None:
    source, state = source_for(cluster)
    source.start()
    try:
        wait_until(lambda: state.settings is not None, what="the first reading at start")
        assert cluster.agent_api is not None
        before = len(cluster.agent_api.requests)
        for _ in range(20):
            scrape(state)
        assert len(cluster.agent_api.requests) == before == 2  # one reading: two GETs; the next in a minute
        assert source.interval == 60
    finally:
        source.stop()


@pytest.mark.parametrize(("version", "agent_api"), [("1.16.6", False), ("1.17.5", False), ("1.16.6", True),
                                                    ("1.17.5", True)])
def test_a_comma_list_in_hubble_monitor_events_is_never_a_false_filter(tmp_path: Path, version: str,
                                                                       agent_api: bool) -> None:
    """Issue 21 item 7: "trace,agent" in the ConfigMap is one unknown name to 1.14-1.16 (no filter: Hubble sees
    every event) and two names to 1.17+ (drops and verdicts filtered). The simulated agent applies its release's
    rule; the exporter says filtered only when it knows the release, else nothing."""
    c = make(tmp_path, agent_api=agent_api, version=version, hubble_monitor_events_text="trace,agent")
    try:
        source, state = source_for(c, f"--agent-api-socket={tmp_path}/run/cilium.sock", sources="settings")
        assert source.read_once()
        filtered = DROP in c.runtime.cilium.hubble_filtered_types()  # the simulated node's truth
        assert filtered is (version >= "1.17")
        events = state.settings.hubble_monitor_events if state.settings else {}
        if agent_api:  # the release is known: the exporter reads the list as that release does
            assert events.get("drop") is (not filtered)
        else:  # ConfigMap-only: the release is unknown, so is the filter
            assert events == {}
            assert not scrape(state).has("cilium_node_hubble_monitor_events")
    finally:
        c.close()
