"""The settings source's parsers against per-release documents (tests/data/cilium-agent): which setting each
release shows where, runtime values over startup flags, Cilium's quirks, and unknown stays unknown."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cilium_node_exporter.aggregation.settings import CiliumSettings
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.sources.k8s_http import SourceError
from cilium_node_exporter.sources.settings import agent_api, configmap, fill
from cilium_node_exporter.sources.settings import values as v
from tests.support.cluster import scrape
from tests.support.paths import DATA

FIXTURES = DATA / "cilium-agent"
ALL_ON = {"drop": True, "policy_verdict": True, "trace": True}
ALL_EVENTS = {"drop": True, "policy_verdict": True, "trace": True, "l7": True}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def from_api(release: str, health: str = "v1.16-get-healthz-brief.json") -> CiliumSettings:
    return agent_api.parse(load(f"v{release}-get-config.json"), load(health))


def test_v1_14_everything_but_the_rate_limiter() -> None:
    s = from_api("1.14")
    assert s.notifications == ALL_ON
    assert s.hubble_monitor_events == ALL_EVENTS  # HubbleMonitorEvents [] installs no filter
    assert (s.kube_proxy_replacement, s.envoy_mode, s.monitor_aggregation) == ("strict", "embedded", "medium")
    assert s.rate_limit == {} and not s.has_rate_limiter  # no limiter before 1.17: unknown, not 0


def test_v1_16_full_healthz_also_works_and_gives_the_version() -> None:
    brief, full = from_api("1.16"), from_api("1.16", "v1.16-get-healthz.json")
    assert brief == full
    assert (brief.version, brief.envoy_mode, brief.kube_proxy_replacement) == ("1.16.6", "external", "false")


def test_v1_17_has_the_rate_limit_but_no_hubble_monitor_events() -> None:
    s = from_api("1.17")
    assert s.rate_limit == {"rate": 1000, "burst": 2000} and s.has_rate_limiter
    assert s.hubble_monitor_events == {}  # moved out of DaemonConfig in 1.17: unknown from the agent API
    assert s.kube_proxy_replacement == "true"


def test_v1_18_drop_events_off_and_no_kube_proxy_replacement() -> None:
    s = from_api("1.18")
    assert s.notifications == {"drop": False, "policy_verdict": True, "trace": True}
    assert s.kube_proxy_replacement is None and s.hubble_monitor_events == {}
    assert s.rate_limit == {"rate": 0, "burst": 0} and s.has_rate_limiter  # limiter present, off


def test_v1_19_runtime_option_wins_over_the_startup_flag() -> None:
    s = from_api("1.19", "v1.19-get-healthz-brief.json")
    doc = load("v1.19-get-config.json")
    assert doc["status"]["daemonConfigurationMap"]["BPFEventsPolicyVerdictEnabled"] is True
    assert s.notifications["policy_verdict"] is False  # switched off with cilium-dbg config
    assert s.version == "1.19.4"  # the state is not Ok: a reason follows the version
    assert s.envoy_mode == "none"  # L7 proxy off: no Envoy at all


def test_startup_flag_fills_a_missing_runtime_option() -> None:
    doc = load("v1.16-get-config.json")
    del doc["spec"]["options"]["DropNotification"]
    doc["status"]["daemonConfigurationMap"]["BPFEventsDropEnabled"] = False
    s = agent_api.parse(doc, {})
    assert s.notifications["drop"] is False and s.version is None
    del doc["status"]["daemonConfigurationMap"]["BPFEventsDropEnabled"]
    assert "drop" not in agent_api.parse(doc, {}).notifications  # neither: unknown


@pytest.mark.parametrize("doc", [[], {"spec": {}}, {"status": {}}, {"spec": [], "status": {}}, "text"])
def test_not_a_daemon_configuration_is_a_protocol_error(doc: Any) -> None:
    with pytest.raises(SourceError) as err:
        agent_api.parse(doc, {})
    assert err.value.reason == "protocol"


def test_odd_value_types_are_unknown_not_guessed() -> None:
    doc = {"spec": {"options": {"DropNotification": True, "TraceNotification": "enabled",
                                "MonitorAggregationLevel": 3}},
           "status": {"daemonConfigurationMap": {"BPFEventsDefaultRateLimit": -1, "BPFEventsDefaultBurstLimit": 5,
                                                 "ExternalEnvoyProxy": "yes", "HubbleMonitorEvents": "drop",
                                                 "KubeProxyReplacement": "sometimes"}}}
    s = agent_api.parse(doc, {"cilium": {"msg": 42}})
    assert s.notifications == {} and s.monitor_aggregation is None and s.rate_limit == {}
    assert s.envoy_mode is None and s.hubble_monitor_events == {} and s.version is None
    assert s.kube_proxy_replacement == "other"  # a value outside the bounded set
    assert s.unreadable == ("BPFEventsDefaultRateLimit",)  # present, but no uint32: counted by the source


# --- the ConfigMap ---------------------------------------------------------------------------------------

def test_configmap_v1_14_keys_absent_mean_the_agent_defaults() -> None:
    s = configmap.parse(load("v1.14-cilium-config.json"))
    assert s.notifications == ALL_ON  # no bpf-events-* before 1.16: notifications always on at start
    assert s.hubble_monitor_events == ALL_EVENTS
    assert (s.envoy_mode, s.kube_proxy_replacement, s.monitor_aggregation) == ("embedded", "strict", "medium")
    assert s.version is None and s.rate_limit == {}  # neither is in the ConfigMap


def test_configmap_v1_18_events_off_and_filtered() -> None:
    s = configmap.parse(load("v1.18-cilium-config.json"))
    assert s.notifications == {"drop": False, "policy_verdict": True, "trace": True}
    # "drop policy-verdict": traces filtered, and L7 too (it passes only with "agent")
    assert s.hubble_monitor_events == {"drop": True, "policy_verdict": True, "trace": False, "l7": False}
    assert s.rate_limit == {}  # not taken from the ConfigMap: no release to say it applies
    assert s.envoy_mode == "external"


def test_configmap_values_as_the_agent_reads_them() -> None:
    data = {"bpf-events-drop-enabled": "F", "bpf-events-trace-enabled": "maybe", "monitor-aggregation": "MAXIMUM",
            "enable-l7-proxy": "false", "external-envoy-proxy": "true", "kube-proxy-replacement": "Partial"}
    s = configmap.parse({"data": data})
    assert s.notifications == {"drop": False, "policy_verdict": True}  # "maybe" is not a Go bool: unknown
    assert (s.monitor_aggregation, s.envoy_mode, s.kube_proxy_replacement) == ("max", "none", "partial")
    assert configmap.parse({"data": None}).monitor_aggregation == "none"  # the agent's flag default
    with pytest.raises(SourceError):
        configmap.parse({"data": ["x"]})


def test_fill_takes_only_what_is_unknown_and_says_so() -> None:
    api, cm = from_api("1.18"), configmap.parse(load("v1.18-cilium-config.json"))
    merged = fill(api, cm)
    assert merged.origin == "agent-api+configmap"
    assert merged.notifications == api.notifications  # the running values win over the ConfigMap's
    assert merged.kube_proxy_replacement == "false" and merged.hubble_monitor_events == cm.hubble_monitor_events
    assert merged.rate_limit == api.rate_limit and merged.version == api.version
    complete = from_api("1.14")
    assert fill(complete, configmap.parse(load("v1.14-cilium-config.json"))) == complete  # nothing to add


# --- value normalisation ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("msg", "label"), [
    ("1.16.6 (v1.16.6-8d4ce1f6)", "1.16.6"), ("1.19.0-rc.1 (v1.19.0-rc.1-abc)", "1.19.0-rc.1"),
    ("v1.15.3", "1.15.3"), ("unknown", "other"), ("1.2.3-" + "x" * 80, "other"), ("", None), (None, None)])
def test_version_label(msg: Any, label: str | None) -> None:
    got = v.version_of(msg)
    assert (got[0] if got else None) == label


@pytest.mark.parametrize(("text", "level"), [("Medium", "medium"), ("", "none"), ("disabled", "none"),
                                             ("3", "medium"), ("4", "max"), ("maximum", "max"), ("5", None),
                                             ("loud", None), (None, None)])
def test_monitor_aggregation_levels(text: Any, level: str | None) -> None:
    assert v.monitor_aggregation(text) == level


@pytest.mark.parametrize(("names", "version", "seen"), [
    ([], None, ALL_EVENTS), (None, None, ALL_EVENTS),
    (["drop"], None, {"drop": True, "policy_verdict": False, "trace": False, "l7": False}),
    (["drop", "l7"], None, {"drop": True, "policy_verdict": False, "trace": False, "l7": False}),
    (["policy-verdict", "agent"], None, {"drop": False, "policy_verdict": True, "trace": False, "l7": True}),
    (["drop", "bogus"], None, ALL_EVENTS),  # the filter fails and is not installed
    (["recorder"], (1, 18, 6), {"drop": False, "policy_verdict": False, "trace": False, "l7": False}),
    (["recorder"], (1, 19, 4), ALL_EVENTS),  # gone in 1.19: unknown name, no filter
    ("drop", None, None), ([1], None, None)])
def test_hubble_monitor_events(names: Any, version: Any, seen: dict[str, bool] | None) -> None:
    assert v.hubble_monitor_events(names, version) == seen


@pytest.mark.parametrize(("text", "version", "items"), [
    ("drop trace", None, ["drop", "trace"]), ("", None, []),
    ("trace,agent", None, None),  # which release reads it decides: unknown
    ("trace,agent", (1, 16, 6), ["trace,agent"]),  # viper GetStringSlice -> cast strings.Fields
    ("trace,agent", (1, 17, 0), ["trace", "agent"]),  # hive: comma split
    (" drop,agent ", (1, 18, 6), ["drop", "agent"]),
    ("drop, agent", (1, 18, 6), ["drop", " agent"])])  # nothing trimmed around commas: " agent" is unknown
def test_string_slice_like_each_release(text: str, version: Any, items: list[str] | None) -> None:
    assert v.string_slice(text, version) == items


@pytest.mark.parametrize(("version", "seen"), [
    (None, None),  # ConfigMap-only mode: the release is unknown, so is the filter
    ((1, 16, 6), ALL_EVENTS),  # one unknown name: the filter fails, Hubble sees everything (no false "blind")
    ((1, 17, 5), {"drop": False, "policy_verdict": False, "trace": True, "l7": True})])
def test_a_comma_list_in_the_configmap_per_release(version: Any, seen: dict[str, bool] | None) -> None:
    s = configmap.parse({"data": {"hubble-monitor-events": "trace,agent"}}, version)
    assert (s.hubble_monitor_events or None) == seen


def test_a_rate_limit_no_uint32_holds_is_unknown_and_said() -> None:
    doc = load("v1.17-get-config.json")
    doc["status"]["daemonConfigurationMap"]["BPFEventsDefaultRateLimit"] = 10**400
    s = agent_api.parse(doc, load("v1.16-get-healthz-brief.json"))
    assert s.rate_limit == {} and s.unreadable == ("BPFEventsDefaultRateLimit",)
    assert s.notifications  # the rest of the reading stands
    state = ExporterState(sources=("settings",), envelope=(1, 2))
    state.settings = s
    assert not scrape(state).count("cilium_node_agent_events_rate_limit")


# --- exposition: unknown is absent, never a 0 ------------------------------------------------------------

def test_exposition_of_known_and_unknown_settings() -> None:
    state = ExporterState(sources=("settings",), envelope=(1, 2))
    state.settings = from_api("1.18")
    m = scrape(state)
    agent = {"origin": "agent-api"}
    assert m.value("cilium_node_agent_notifications_enabled", event="drop", **agent) == 0
    assert m.value("cilium_node_agent_notifications_enabled", event="trace", **agent) == 1
    assert m.value("cilium_node_cilium_info", envoy_mode="external", kube_proxy_replacement="unknown",
                   monitor_aggregation="medium", version="1.16.6", **agent) == 1
    assert m.value("cilium_node_agent_events_rate_limit", kind="rate", **agent) == 0
    assert not m.count("cilium_node_hubble_monitor_events")  # unknown on 1.18's agent API
    state.settings = fill(from_api("1.18"), configmap.parse(load("v1.18-cilium-config.json"), (1, 18, 6)))
    m = scrape(state)
    assert m.value("cilium_node_hubble_monitor_events", event="drop", origin="configmap") == 1
    assert m.value("cilium_node_agent_notifications_enabled", event="drop", **agent) == 0
    assert m.value("cilium_node_cilium_info", envoy_mode="external", kube_proxy_replacement="false",
                   monitor_aggregation="medium", version="1.16.6", origin="agent-api+configmap") == 1
    state.settings = from_api("1.14")
    m = scrape(state)
    assert not m.count("cilium_node_agent_events_rate_limit")  # no limiter: unknown
    assert m.value("cilium_node_hubble_monitor_events", event="l7", **agent) == 1
    state.settings = None
    m = scrape(state)
    assert not m.count("cilium_node_cilium_info") and not m.count("cilium_node_agent_notifications")
