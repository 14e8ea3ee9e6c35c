"""The simulated agent's configuration per release (cilium.sock documents, the cilium-config ConfigMap), its
effect on what reaches Hubble (notifications off, the 1.17+ rate limiter, hubble-monitor-events and its L7
quirk), the cilium-envoy pod, and the fakes that serve all of it."""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from cilium_node_simulator.agent_metrics_fake import AgentMetricsFake, NoAgentMetrics
from cilium_node_simulator.cilium_settings import (
    ACCESS_LOG,
    DCM_FIELDS,
    DROP,
    POLICY_VERDICT,
    TRACE,
    AgentConfig,
    CiliumSpec,
    EventsRateLimiter,
    RuntimeOptions,
)
from cilium_node_simulator.hubble_server import HubbleServer
from cilium_node_simulator.k8s import NodeModel
from cilium_node_simulator.kubelet_fake import summary
from cilium_node_simulator.scenario import ScenarioError, ScenarioRuntime, load_scenario, parse_scenario
from tests.support.cluster import AgentState, Cluster
from tests.support.paths import DATA
from tests.support.procs import wait_until

FIXTURES = DATA / "cilium-agent"
MiB = 2**20
RELEASES = {"1.14": "1.14.2", "1.16": "1.16.6", "1.17": "1.17.5", "1.18": "1.18.6", "1.19": "1.19.4"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# --- documents per release, against the repository's fixtures ------------------------------------------------

@pytest.mark.parametrize("release", sorted(RELEASES))
def test_get_config_has_each_releases_keys(release: str) -> None:
    real = fixture(f"v{release}-get-config.json")
    sim = AgentConfig(CiliumSpec(), RELEASES[release]).config_doc()
    assert set(sim) == set(real) == {"spec", "status"}
    assert set(sim["spec"]["options"]) == set(real["spec"]["options"])
    assert sim["status"]["realized"]["options"] == sim["spec"]["options"]  # the handler's one spec, twice
    real_dcm, sim_dcm = real["status"]["daemonConfigurationMap"], sim["status"]["daemonConfigurationMap"]
    assert set(real_dcm) <= set(sim_dcm), set(real_dcm) - set(sim_dcm)
    for key, (first, last) in DCM_FIELDS.items():
        if (first, last) != ((1, 14), (1, 99)):  # a field that comes or goes: its absence is a fact too
            assert (key in real_dcm) == (key in sim_dcm), key
    for key in real_dcm:
        assert type(sim_dcm[key]) is type(real_dcm[key]), key
    assert set(sim["status"]) >= set(real["status"]) - {"addressing"}


def test_healthz_brief_and_version_format() -> None:
    sim = AgentConfig(CiliumSpec(), "1.16.6").healthz(brief=True)
    real = fixture("v1.16-get-healthz-brief.json")
    assert set(sim) == set(real) and set(sim["cilium"]) == set(real["cilium"])
    pattern = r"^(\d+\.\d+\.\d+) \(v\1-[0-9a-f]{8}\)$"
    assert re.match(pattern, real["cilium"]["msg"]) and re.match(pattern, sim["cilium"]["msg"])
    full = AgentConfig(CiliumSpec(), "1.16.6").healthz(brief=False)
    assert full["proxy"]["envoy-deployment-mode"] == "external" and full["kube-proxy-replacement"]["mode"] == "False"
    assert set(fixture("v1.16-get-healthz.json")) <= set(full)
    assert "proxy" not in AgentConfig(CiliumSpec(envoy="none"), "1.16.6").healthz(brief=False)
    assert AgentConfig(CiliumSpec(kube_proxy_replacement="strict"), "1.14.2").healthz(False)[
        "kube-proxy-replacement"]["mode"] == "Strict"


@pytest.mark.parametrize(("release", "spec"), [
    ("1.14", CiliumSpec(kube_proxy_replacement="strict", envoy="embedded")),
    ("1.16", CiliumSpec()),
    ("1.18", CiliumSpec(drop_events=False, rate_limit=1000, burst_limit=2000,
                        hubble_monitor_events=("drop", "policy-verdict"))),
])
def test_configmap_as_each_releases_chart_renders_it(release: str, spec: CiliumSpec) -> None:
    real = fixture(f"v{release}-cilium-config.json")["data"]
    sim = AgentConfig(spec, RELEASES[release]).configmap_data()
    assert sim == {k: sim[k] for k in sim}  # plain strings
    assert all(isinstance(v, str) for v in sim.values())
    for key, value in real.items():
        if key != "prometheus-serve-addr":
            assert sim.get(key) == value, key


# --- the startup configuration per release -----------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("version: 1.15.3\ncilium: {drop_events: false}", "bpf-events-drop-enabled exists from Cilium 1.16"),
    ("version: 1.16.6\ncilium: {rate_limit: 100, burst_limit: 100}", "rate limiter exists from Cilium 1.17"),
    ("version: 1.17.5\ncilium: {rate_limit: 100}", "give both or neither"),
    ("version: 1.16.6\ncilium: {kube_proxy_replacement: strict}", "not accepted by 1.16's chart"),
    ("version: 1.15.3\nenvoy: {working_set: 50Mi}", "no cilium-envoy pod with Envoy embedded"),
    ("cilium: {envoy: sidecar}", "envoy: 'sidecar'"),
    ("cilium: {colour: red}", "unknown key 'colour'"),
    ("phases: [{duration: 1s, cilium: {drop_events: false}}]", "unknown key 'drop_events'"),
])
def test_settings_a_release_does_not_have_are_refused(text: str, message: str) -> None:
    data = yaml.safe_load(text)
    data.setdefault("phases", [{"duration": "1s"}])
    with pytest.raises(ScenarioError, match=re.escape(message)):
        parse_scenario({"name": "x", **data})


def test_version_override_rechecks_the_settings() -> None:
    from cilium_node_simulator.scenario import with_version

    scenario = load_scenario("rate-limited")
    with pytest.raises(ScenarioError, match=re.escape("rate limiter exists from Cilium 1.17")):
        with_version(scenario, "1.16.6")
    assert with_version(scenario, "1.18.0").version == "1.18.0"
    default_envoy = parse_scenario({"name": "e", "version": "1.16.6", "envoy": {"working_set": "50Mi"},
                                    "phases": [{"duration": 1}]})
    with pytest.raises(ScenarioError, match="envoy blocks"):
        with_version(default_envoy, "1.15.3")  # the 1.15 chart runs Envoy inside the agent
    assert with_version(load_scenario("envoy-oom"), "1.15.3").version == "1.15.3"  # explicit external: fine
    assert with_version(load_scenario("blind-drops"), "1.14.2").version == "1.14.2"  # runtime options: any release


def test_runtime_options_and_restart() -> None:
    cfg = AgentConfig(CiliumSpec(drop_events=False), "1.18.6")
    assert cfg.silenced_types() == {DROP}
    cfg.apply(RuntimeOptions(drop_notification=True, trace_notification=False, monitor_aggregation="low"))
    assert cfg.silenced_types() == {TRACE} and cfg.options["MonitorAggregationLevel"] == "Low"
    doc = cfg.config_doc()
    assert doc["status"]["daemonConfigurationMap"]["BPFEventsDropEnabled"] is False  # flags do not follow
    cfg.restart()
    assert cfg.silenced_types() == {DROP}
    # before 1.16 the notifications are always Enabled at start
    assert AgentConfig(CiliumSpec(), "1.15.3").silenced_types() == set()


@pytest.mark.parametrize(("names", "version", "filtered"), [
    ((), "1.18.6", set()),
    (("drop",), "1.18.6", {POLICY_VERDICT, TRACE, ACCESS_LOG}),
    (("drop", "l7"), "1.18.6", {POLICY_VERDICT, TRACE, ACCESS_LOG}),  # L7 arrives as an agent event
    (("drop", "agent"), "1.18.6", {POLICY_VERDICT, TRACE}),
    (("drop", "nonsense"), "1.18.6", set()),  # the filter fails: none installed
    (("recorder", "drop"), "1.18.6", {POLICY_VERDICT, TRACE, ACCESS_LOG}),
    (("recorder", "drop"), "1.19.4", set()),  # no recorder type in 1.19
])
def test_hubble_monitor_filter(names: tuple[str, ...], version: str, filtered: set[int]) -> None:
    assert AgentConfig(CiliumSpec(hubble_monitor_events=names), version).hubble_filtered_types() == filtered


def test_rate_limiter_token_bucket() -> None:
    limiter = EventsRateLimiter(rate=10, burst=20)
    assert not limiter.checked
    assert limiter.admit(25, now=0.0) == 10 and limiter.dropped == 15  # a new bucket holds `rate` tokens
    assert limiter.admit(5, now=0.9) == 0  # no top-up within the second
    assert limiter.admit(100, now=3.5) == 20  # three top-ups, capped at the burst
    assert limiter.checked and limiter.dropped == 15 + 5 + 80


# --- what reaches Hubble -----------------------------------------------------------------------------------

def run(tmp_path: Path, text: str, until: str, speed: float = 1.0) -> tuple[ScenarioRuntime, HubbleServer]:
    scenario = parse_scenario(yaml.safe_load(text))
    server = HubbleServer(socket_path=str(tmp_path / "h.sock"), version=scenario.version).start()
    runtime = ScenarioRuntime(scenario, server, speed=speed, tick=0.02).start()
    wait_until(lambda: runtime.phase.name == until, timeout=20, what=f"phase {until}")
    server.sync()
    return runtime, server


def test_drop_notifications_switched_off_at_run_time(tmp_path: Path) -> None:
    runtime, server = run(tmp_path, """
name: notifications-off
version: 1.15.3
phases:
  - {name: on, duration: 1s, rates: [{type: policy_denied, direction: ingress, rate: 100}]}
  - {name: off, duration: 2s, cilium: {drop_notification: false},
     rates: [{type: policy_denied, direction: ingress, rate: 100}]}
  - {name: end, duration: 30s}
""", "end")
    try:
        hubble, datapath = server.truth.snapshot(), runtime.datapath_truth.snapshot()
        seen, happened = hubble.drops[("POLICY_DENIED", "ingress")], datapath.drops[("POLICY_DENIED", "ingress")]
        assert 280 <= happened <= 310 and 90 <= seen <= 110  # only the first second's drops were notified
        assert hubble.verdicts[("ingress", "none", "dropped")] == happened  # the verdicts still are
        assert runtime.agent_datapath()["dropped"][("Policy denied", "INGRESS")] == happened
    finally:
        runtime.stop()
        server.stop()


def test_rate_limiter_discards_and_counts(tmp_path: Path) -> None:
    runtime, server = run(tmp_path, """
name: limited
version: 1.17.5
cilium: {rate_limit: 50, burst_limit: 50}
phases:
  - {name: flood, duration: 3s, rates: [{type: trace, rate: 400}, {type: http, method: GET, rate: 20},
                                        {type: drop, reason: CT_MAP_INSERTION_FAILED, direction: egress, rate: 100}]}
  - {name: end, duration: 30s}
""", "end")
    try:
        hubble, datapath = server.truth.snapshot(), runtime.datapath_truth.snapshot()
        limited = hubble.flows_by_type[TRACE] + hubble.flows_by_type[DROP]
        assert limited <= 50 * 4 + 1  # the first bucket plus three top-ups of 50
        assert hubble.flows_by_type[ACCESS_LOG] == datapath.flows_by_type[ACCESS_LOG] > 0  # L7 is not limited
        discarded = runtime.agent_datapath()["ratelimited"]
        assert discarded == datapath.flows_by_type[TRACE] + datapath.flows_by_type[DROP] - limited > 1000
        # drops of both kinds share the bucket fairly
        assert hubble.drops[("CT_MAP_INSERTION_FAILED", "egress")] > 0
    finally:
        runtime.stop()
        server.stop()


def test_monitor_events_filter_and_the_l7_quirk(tmp_path: Path) -> None:
    runtime, server = run(tmp_path, """
name: filtered
version: 1.16.6
cilium: {hubble_monitor_events: [drop, l7]}
phases:
  - {name: mix, duration: 1s, rates: [{type: policy_denied, direction: ingress, rate: 50}, {type: trace, rate: 50},
                                      {type: http, method: GET, rate: 20}]}
  - {name: end, duration: 30s}
""", "end")
    try:
        hubble, datapath = server.truth.snapshot(), runtime.datapath_truth.snapshot()
        assert hubble.drops == datapath.drops and sum(hubble.drops.values()) > 0
        assert not hubble.verdicts and not hubble.l7_requests and hubble.flows_by_type[TRACE] == 0
        assert runtime.agent_datapath()["ratelimited"] is None  # no limiter in 1.16
    finally:
        runtime.stop()
        server.stop()


def test_envoy_oom_kill_leaves_agent_and_hubble_alone(tmp_path: Path) -> None:
    runtime, server = run(tmp_path, """
name: envoy
version: 1.18.6
envoy: {working_set: 100Mi, limit: 256Mi}
phases:
  - {name: grow, duration: 1s, envoy: {working_set: {from: 100Mi, to: 256Mi}}}
  - {name: killed, duration: 1s, envoy: {oom_kill: true, working_set: 80Mi}}
  - {name: end, duration: 30s}
""", "end")
    try:
        envoy, agent = runtime.envoy_state(), runtime.agent_state()
        assert envoy is not None and (envoy.restart_count, envoy.last_terminated_reason) == (1, "OOMKilled")
        assert envoy.working_set == 80 * MiB and envoy.limit == 256 * MiB
        assert agent.restart_count == 0 and server.stats["restarts"] == 0
        embedded = ScenarioRuntime(parse_scenario({"name": "e", "version": "1.15.3", "phases": [{"duration": 1}]}),
                                   server)
        assert embedded.envoy_state() is None  # 1.14/1.15 chart default: Envoy inside the agent
    finally:
        runtime.stop()
        server.stop()


# --- the fakes ---------------------------------------------------------------------------------------------

def unix_get(path: str, url: str, method: str = "GET", body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("localhost", timeout=5)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(path)
    conn.request(method, url, body=body, headers=headers or {})
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out


def test_agent_api_fake_follows_the_agent_and_accepts_patch(tmp_path: Path) -> None:
    c = Cluster(tmp_path, kubelet=False, agent_api=True, version="1.18.6")
    try:
        assert c.agent_api is not None
        path = c.agent_api.path
        status, body = unix_get(path, "/v1/healthz", headers={"brief": "true"})
        assert status == 200 and set(json.loads(body)) == {"cilium", "cluster"}
        patch = json.dumps({"options": {"DropNotification": "Disabled"}}).encode()
        assert unix_get(path, "/v1/config", "PATCH", patch, {"Content-Type": "application/json"})[0] == 200
        doc = json.loads(unix_get(path, "/v1/config")[1])
        assert doc["spec"]["options"]["DropNotification"] == "Disabled"
        assert ("PATCH", "/v1/config", None) in c.agent_api.requests
        c.agent_api.fault = "disabled"
        status, body = unix_get(path, "/v1/config")
        assert status == 403 and b"administratively disabled" in body
        c.agent_api.fault = "none"
        c.runtime.set(running=False)
        wait_until(lambda: _refused(path), what="refused while the agent is down")
        assert Path(path).exists()
        c.runtime.set(running=True)
        wait_until(lambda: not _refused(path), what="listening again")
    finally:
        c.close()
    assert not Path(path).exists()


def _refused(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):  # the fake re-creates the socket when it comes back
            return True
    return False


def test_node_model_serves_the_envoy_pod(tmp_path: Path) -> None:
    c = Cluster(tmp_path, kubelet=False, kubeapi=True, envoy=AgentState(working_set=90 * MiB))
    try:
        doc = summary(c.model)
        names = {ctr["name"] for pod in doc["pods"] for ctr in pod["containers"]}
        assert {"cilium-agent", "cilium-envoy"} <= names
        assert c.kubeapi is not None
        ctx = __import__("ssl").create_default_context(cafile=str(c.tls.ca))

        def pods(selector: str) -> list[str]:
            req = urllib.request.Request(f"{c.kubeapi.url}/api/v1/namespaces/kube-system/pods?labelSelector={selector}"
                                         "&fieldSelector=spec.nodeName%3Dnode-a",
                                         headers={"Authorization": "Bearer token-1"})
            with urllib.request.urlopen(req, context=ctx) as resp:
                return [p["spec"]["containers"][0]["name"] for p in json.load(resp)["items"]]

        assert pods("k8s-app%3Dcilium-envoy") == ["cilium-envoy"]
        assert pods("k8s-app%3Dcilium") == ["cilium-agent"]
        req = urllib.request.Request(f"{c.kubeapi.url}/api/v1/namespaces/kube-system/configmaps/cilium-config",
                                     headers={"Authorization": "Bearer token-1"})
        with urllib.request.urlopen(req, context=ctx) as resp:
            assert json.load(resp)["data"]["external-envoy-proxy"] == "true"
    finally:
        c.close()


def test_agent_metrics_without_prometheus_and_with_the_rate_limiter(tmp_path: Path) -> None:
    absent = NoAgentMetrics()
    with pytest.raises(OSError):
        urllib.request.urlopen(absent.url + "/metrics", timeout=2)
    absent.stop()

    class Runtime:
        cilium = AgentConfig(CiliumSpec(), "1.17.5")

        def agent_state(self) -> AgentState:
            return AgentState()

        def agent_datapath(self) -> dict[str, Any]:
            return {"dropped": {}, "forwarded": {}, "map_pressure": {}, "ratelimited": self.value}

        value: int | None = None

    runtime = Runtime()
    model = NodeModel(runtime, "node-a")
    fake = AgentMetricsFake(0, model).start()
    try:
        text = urllib.request.urlopen(fake.url + "/metrics", timeout=5).read().decode()
        assert "cilium_bpf_ratelimit_dropped_total" not in text  # no entry before the first check
        runtime.value = 17
        text = urllib.request.urlopen(fake.url + "/metrics", timeout=5).read().decode()
        assert 'cilium_bpf_ratelimit_dropped_total{usage="events"} 17' in text
    finally:
        fake.stop()
