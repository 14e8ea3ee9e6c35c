"""``simulate --fleet``: fleet scenario files, one node's exporter exposition, the fleet's HTTP server."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest

from cilium_node_exporter import contract
from cilium_node_simulator import fleet as fleet_mod
from cilium_node_simulator.cli import main as simulate_main
from cilium_node_simulator.events import EventSpec
from cilium_node_simulator.exporter_process import Metrics
from cilium_node_simulator.fleet import ClusterSpec, Fleet, FleetServer
from cilium_node_simulator.fleet_node import FleetNode, compiled_kind, occurrence_delta, server_version
from cilium_node_simulator.fleet_scenario import assign, builtin_fleets, load_fleet, parse_fleet
from cilium_node_simulator.quantities import envelope_of
from cilium_node_simulator.scenario import ScenarioError
from tests.support.procs import wait_until

DAY = [{"type": "trace", "rate": 200}, {"type": "verdict", "action": "forwarded", "match": "l3-l4", "rate": 20},
       {"type": "verdict", "action": "forwarded", "destination_identity": "health", "rate": 5},
       {"type": "policy_denied", "rate": 4}, {"type": "drop", "reason": "CT_MAP_INSERTION_FAILED", "rate": 10},
       {"type": "http", "method": "POST", "action": "dropped", "rate": 3}, {"type": "dns", "rate": 2}]


def fleet_of(*groups: dict[str, Any], nodes: int = 1, **top: Any) -> Any:
    return parse_fleet({"name": "t", "nodes": nodes, "groups": list(groups), **top})


def scrape(node: FleetNode) -> Metrics:
    return Metrics(generate_latest(node.registry).decode())


def one_node(phases: list[dict[str, Any]], speed: float = 60.0, **scenario: Any) -> FleetNode:
    fleet = fleet_of({"scenario": {"phases": phases, **scenario}, "jitter": 0})
    (name, a), = assign(fleet, 1, speed)
    return FleetNode(name, "c1", a.plan, fleet.sources, fleet.memory_envelope, speed,
                     exporter_flags=("--settings-interval=5s",))


# --- fleet scenario files ---------------------------------------------------------------------

def test_builtin_fleet_scenarios_load() -> None:
    names = set(builtin_fleets())
    assert {"healthy-day", "one-bad-node", "bad-rollout", "hubble-down", "exporters-gone"} <= names
    for name in names:
        assert load_fleet(name).description


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "t", "groups": [{"scenario": "steady", "nodez": 1}]}, "unknown key 'nodez'"),
    ({"name": "t", "groups": [{"scenario": "steady", "nodes": "lots"}]}, "groups[0].nodes"),
    ({"name": "t", "groups": [{"scenario": {"phases": [{"duration": "1m", "exporter": "gone"}]}}]},
     "phases[0].exporter: one of up, down, absent"),
    ({"name": "t", "groups": [{"scenario": {"phases": [{"duration": "1m", "version": "latest"}]}}]},
     "phases[0].version"),
    ({"name": "t", "groups": [{"scenario": {"phases": [{"duration": "1m", "rates": [{"type": "drop"}]}]}}]},
     "a drop needs 'reason'"),
    ({"name": "t", "sources": "hubble,magic", "groups": [{"scenario": "steady"}]}, "sources"),
    ({"name": "t", "groups": [{"scenario": "no-such-scenario"}]}, "no node scenario 'no-such-scenario'"),
])
def test_bad_fleet_files_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_fleet(data, "drill.yaml")
    assert message in str(err.value) and str(err.value).startswith("drill.yaml")


def test_groups_take_counts_shares_and_the_rest_in_order() -> None:
    steady = {"phases": [{"duration": "1m"}]}
    fleet = fleet_of({"name": "a", "nodes": 1, "scenario": steady}, {"name": "b", "nodes": "10%", "scenario": steady},
                     {"name": "c", "scenario": steady})
    groups = [a.group for _, a in assign(fleet, 50, 30)]
    assert groups == ["a"] + ["b"] * 5 + ["c"] * 44
    assert [n for n, _ in assign(fleet, 3, 30)] == ["node-001", "node-002", "node-003"]


def test_stagger_delays_each_node_and_speed_leaves_rates_per_second() -> None:
    fleet = fleet_of({"stagger": "4m", "jitter": 0, "scenario": {"phases": [
        {"duration": "10m", "rates": [{"type": "trace", "rate": 300}]}, {"duration": "1m"}]}})
    plans = [a.plan for _, a in assign(fleet, 4, 30)]
    assert [p.scenario.phases[0].duration for p in plans] == [600, 660, 720, 780]
    # the runtime multiplies rates by the speed: the fleet divides them first (rates stay per real second)
    assert plans[0].scenario.phases[0].rates[0].rate * 30 == pytest.approx(300)


def test_fleet_phase_keys_are_inherited_and_a_version_rolls_the_agent() -> None:
    fleet = fleet_of({"scenario": {"phases": [
        {"duration": "1m"}, {"duration": "1m", "version": "1.16.6", "hubble": False},
        {"duration": "1m", "exporter": "down"}, {"duration": "1m", "hubble": True, "rollout": True}]}})
    (_, a), = assign(fleet, 1, 30)
    extras = a.plan.extras
    assert [(e.version, e.rollout, e.hubble, e.exporter) for e in extras] == [
        ("1.16.5", False, True, "up"), ("1.16.6", True, False, "up"), ("1.16.6", False, False, "down"),
        ("1.16.6", True, True, "down")]
    # a rollout restarts the agent (Hubble and the agent's counters restart; the new pod resets the count)
    assert [p.agent.restart for p in a.plan.scenario.phases] == [False, True, False, True]


# --- one node: the exporter's exposition of the node's scenario -------------------------------------

def test_node_counts_what_the_simulator_produced_with_the_exporters_rules() -> None:
    node = one_node([{"duration": "1h", "rates": DAY}]).start()
    try:
        time.sleep(1.6)
        node.runtime.stop()
        m = scrape(node)
    finally:
        node.stop()
    truth = node.hubble.truth.snapshot()  # what Hubble received: every notification (none switched off)
    datapath = node.runtime.datapath_truth.snapshot()
    assert truth.drops and truth.verdicts and truth.verdicts_health and truth.l7_requests
    assert truth.drops == datapath.drops
    assert m.table(contract.DROPS.name, "reason", "direction") == {k: float(v) for k, v in truth.drops.items()}
    assert m.table(contract.POLICY_VERDICTS.name, "direction", "match", "action") == \
        {k: float(v) for k, v in truth.verdicts.items()}  # health verdicts excluded, as by default
    assert m.table(contract.L7_REQUESTS.name, "protocol", "method", "direction", "action") == \
        {k: float(v) for k, v in truth.l7_requests.items()}
    assert m.value(contract.FLOWS_SEEN.name) == truth.seen_flows_total
    # the agent source re-exports the same drops, packet-exact, with forwarded packets beside them
    assert m.table(contract.DATAPATH_DROPPED.name, "reason", "direction") == {
        (r, d): float(n) for (r, d), n in datapath.drops.items()}
    assert m.sum(contract.DATAPATH_FORWARDED.name) == 5 * datapath.flows_by_type[4]
    assert m.value(contract.HUBBLE_INFO.name, version=server_version("1.16.5")) == 1
    assert m.value(contract.SOURCE_UP.name, source="kubelet") == 1
    assert m.value(contract.AGENT_WORKING_SET.name) > 0


def test_envelope_is_read_as_the_simulator_reads_the_quantities() -> None:
    """The exporter's envelope bounds against the simulator's own units (quantities.py), never the exporter's:
    ``Mi`` parsed as 10**6 by the exporter fails here."""
    fleet = fleet_of({"scenario": {"phases": [{"duration": "1h", "rates": DAY}]}, "jitter": 0},
                     memory_envelope="300Mi-1Gi")
    (name, a), = assign(fleet, 1, 60.0)
    node = FleetNode(name, "c1", a.plan, fleet.sources, fleet.memory_envelope, 60.0)
    try:
        m = scrape(node)
    finally:
        node.stop()
    lower, upper = envelope_of("300Mi-1Gi")
    assert (lower, upper) == (300 * 2**20, 2**30)
    assert m.value(contract.ENVELOPE_LOWER.name) == lower and m.value(contract.ENVELOPE_UPPER.name) == upper


def test_one_event_kind_is_counted_by_the_exporters_rules_once_per_release() -> None:
    compiled = compiled_kind(EventSpec("policy_deny", direction=2), "1.16.5")
    other = compiled_kind(EventSpec("policy_deny", direction=2, rate=7), "1.16.5")
    assert other.spec.rate == 7 and other.occurrences[0] is compiled.occurrences[0]  # the flows shared by nodes
    delta = {(table, key): n for table, key, n in occurrence_delta(compiled.occurrences[0])}
    # one type-5 verdict and one type-1 drop (reason 181, POLICY_DENY) per explicitly denied packet
    assert delta[("drops", (181, "egress", None, None))] == 1
    assert delta[("events", "drop")] == 1 and delta[("events", "policy_verdict")] == 1
    assert server_version("1.16.5").startswith("cilium v1.16.5+g")


def test_rollout_makes_a_new_pod_and_the_version_label_changes() -> None:
    node = one_node([{"duration": "1m", "rates": DAY, "agent": {"oom_kill": True}},
                     {"duration": "1m", "rates": DAY},
                     {"duration": "1h", "rates": DAY, "version": "1.16.6"}], speed=120).start()
    try:
        wait_until(lambda: scrape(node).value(contract.AGENT_RESTARTS.name) == 1, 5, "the OOM kill counted")
        before = scrape(node)
        assert before.value(contract.AGENT_LAST_TERMINATED_REASON.name, reason="OOMKilled") == 1
        old_pod = next(iter(before.series(contract.AGENT_INFO.name)))
        wait_until(lambda: scrape(node).value(contract.HUBBLE_INFO.name, 0, version=server_version("1.16.6")), 5,
                   "the new release's version label")
        after = scrape(node)
        # the settings source reads the release from the agent's API (cilium_node_cilium_info), every 5 s here
        assert [dict(k)["version"] for k in before.series(contract.CILIUM_INFO.name)] == ["1.16.5"]
        wait_until(lambda: [dict(k)["version"] for k in scrape(node).series(contract.CILIUM_INFO.name)] ==
                   ["1.16.6"], 8, "the new release in cilium_node_cilium_info")
    finally:
        node.stop()
    assert not after.series(contract.HUBBLE_INFO.name, version=server_version("1.16.5"))
    assert after.value(contract.AGENT_RESTARTS.name) == 0  # a new pod starts its restart count at 0
    assert old_pod not in after.series(contract.AGENT_INFO.name)
    assert after.value(contract.HUBBLE_RECONNECTS.name) >= 1


def test_hubble_off_is_a_down_source_and_back_on_a_reconnect() -> None:
    node = one_node([{"duration": "1m", "rates": DAY}, {"duration": "2m", "rates": DAY, "hubble": False},
                     {"duration": "1h", "rates": DAY, "hubble": True}], speed=60).start()
    try:
        wait_until(lambda: scrape(node).value(contract.SOURCE_UP.name, -1, source="hubble") == 0, 5, "hubble down")
        down = scrape(node)
        assert not down.series(contract.FLOWS_SEEN.name)
        dropped_while_off = node.runtime.agent_datapath()["dropped"]
        wait_until(lambda: scrape(node).value(contract.SOURCE_UP.name, -1, source="hubble") == 1, 8, "hubble back")
        up = scrape(node)
    finally:
        node.stop()
    assert up.value(contract.SOURCE_ERRORS.name, source="hubble", reason="connect") >= 2  # break + failed attempts
    assert up.value(contract.HUBBLE_RECONNECTS.name) == 1
    assert dropped_while_off  # the datapath kept counting while Hubble was off


# --- the fleet's server -------------------------------------------------------------------------------

def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (http.client.RemoteDisconnected, ConnectionError):
        return 0, b""
    finally:
        conn.close()


def test_fleet_server_serves_each_node_ksm_and_follows_exporters(tmp_path: Path) -> None:
    down = {"phases": [{"duration": "1h", "exporter": "down"}]}
    absent_later = {"phases": [{"duration": "1m"}, {"duration": "1h", "exporter": "absent"}]}
    gone = fleet_of({"nodes": 1, "scenario": down}, {"nodes": 1, "scenario": absent_later},
                    {"scenario": {"phases": [{"duration": "1h", "rates": DAY}]}}, nodes=4)
    fleet = Fleet([ClusterSpec("a", gone, 4), ClusterSpec("b", gone, 3)], speed=60)
    targets = tmp_path / "fleet.json"
    server = FleetServer(fleet, "127.0.0.1", 0, targets)
    port = server.server_address[1]
    fleet.start()
    server.start()
    try:
        first = json.loads(targets.read_text())
        paths = {t["labels"]["__metrics_path__"] for t in first}
        assert "/nodes/a/node-002/metrics" in paths and "/kube-state-metrics/b/metrics" in paths
        assert {t["labels"]["job"] for t in first} == {fleet_mod.JOB, fleet_mod.KSM_JOB}
        status, body = get(port, "/nodes/b/node-003/metrics")
        assert status == 200 and b"cilium_node_exporter_build_info" in body
        assert get(port, "/nodes/a/node-001/metrics") == (0, b"")  # down: no answer
        wait_until(lambda: "/nodes/a/node-002/metrics" not in targets.read_text(), 5, "the absent node's target gone")
        ksm = get(port, "/kube-state-metrics/a/metrics")[1].decode()
        assert ksm.count("kube_node_info{") == 4
        assert 'kube_daemonset_status_desired_number_scheduled{namespace="monitoring",daemonset=' \
               '"cilium-node-exporter"} 3' in ksm
        assert 'kube_daemonset_status_number_unavailable{namespace="monitoring",daemonset=' \
               '"cilium-node-exporter"} 1' in ksm
        assert get(port, "/nodes/c/node-001/metrics")[0] == 404
        status = json.loads(get(port, "/-/fleet")[1])
        assert {(s["cluster"], s["node"], s["exporter"]) for s in status} >= {("a", "node-001", "down")}
    finally:
        server.stop()
        fleet.stop()


def test_cli_rejects_a_bad_cluster_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_main(["--fleet", "2", "--cluster", "a=no-such-fleet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cilium-node-exporter simulate --fleet: error:") and "no-such-fleet" in err


def test_cli_help_documents_the_fleet_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_main(["--fleet", "1", "--help"]) == 0
    out = capsys.readouterr().out
    for needle in ("groups:", "stagger:", "version: 1.16.6", "exporter: down", "--targets-file"):
        assert needle in out
