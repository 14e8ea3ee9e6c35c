"""Scenario files, the scenario runtime (timeline, agent state) and the ground truth."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest
import yaml

from cilium_node_exporter import contract
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator.events import EventSpec
from cilium_node_simulator.scenario import (
    ScenarioError,
    ScenarioRuntime,
    builtin_scenarios,
    load_scenario,
    parse_scenario,
)
from tests.support.procs import wait_until
from tests.support.simulator_grpc import channel, collect, running_server, server_status

MiB = 2**20


@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_builtin_scenarios_parse(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name and scenario.phases and scenario.duration >= 60


def test_required_builtins_exist() -> None:
    assert {"steady", "policy-storm", "l7-denials", "datapath-errors", "hubble-overload",
            "showcase"} <= set(builtin_scenarios())


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "drill.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.parametrize(("body", "message"), [
    ("name: x\nphases: [{duration: 1m}]\ncolour: red\n", "unknown key 'colour'"),
    ("name: x\nphases: [{duration: 1m, ratez: []}]\n", "phases[0]: unknown key 'ratez'"),
    ("name: x\nphases: [{duration: 5 minutes}]\n", "phases[0].duration: invalid duration"),
    ("name: x\nphases: [{duration: 0s}]\n", "duration must be positive"),
    ("name: x\nphases: [{name: a}]\n", "'duration' is required"),
    ("name: x\nphases: []\n", "'phases' must be a non-empty list"),
    ("phases: [{duration: 1m}]\n", "'name' is required"),
    ("name: x\nring_capacity: 4096\nphases: [{duration: 1m}]\n", "ring_capacity"),
    ("name: x\nversion: latest\nphases: [{duration: 1m}]\n", "invalid version"),
    ("name: x\nphases: [{duration: 1m, rates: [{type: drop, rate: 1}]}]\n", "rates[0]: a drop needs 'reason'"),
    ("name: x\nphases: [{duration: 1m, rates: [{type: flood, rate: 1}]}]\n", "'type' must be one of"),
    ("name: x\nphases: [{duration: 1m, rates: [{type: drop, reason: NOPE, rate: 1}]}]\n", "unknown reason 'NOPE'"),
    ("name: x\nphases: [{duration: 1m, rates: [{type: verdict, direction: sideways}]}]\n", "unknown direction"),
    ("name: x\nphases: [{duration: 1m, rates: [{type: trace, rate: -1}]}]\n", "'rate' must be a non-negative"),
    ("name: x\nphases: [{duration: 1m, rates: [{type: trace, colour: 1}]}]\n", "rates[0]: unknown key 'colour'"),
    ("name: x\nphases: [{duration: 1m, lost: [{source: hubble_ring_buffer, rate: 1}]}]\n", "lost[0].source"),
    ("name: x\nphases: [{duration: 1m, agent: {working_set: lots}}]\n", "agent.working_set: invalid memory"),
    ("name: x\nphases: [{duration: 1m, agent: {working_set: {from: 1Gi}}}]\n", "needs both 'from' and 'to'"),
    ("name: x\nphases: [{duration: 1m, agent: {oom: true}}]\n", "agent: unknown key 'oom'"),
    ("name: x\nphases: [{duration: 1m, agent: {restart: yes please}}]\n", "agent.restart: expected true or false"),
    ("name: x\nphases: [{duration: 1m\n", "invalid YAML"),
])
def test_scenario_errors_name_the_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert message in str(err.value) and path in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_scenario_lists_builtins() -> None:
    with pytest.raises(ScenarioError, match=r"not one of .*showcase"):
        load_scenario("no-such-drill")


def test_scenario_values(tmp_path: Path) -> None:
    s = load_scenario(_write(tmp_path, """
        name: drill
        version: 1.16.5
        ring_capacity: 1023
        repeat: 2
        phases:
          - name: a
            duration: 1m30s
            rates: [{type: drop, reason: 250, direction: 7, rate: 2.5}, {type: http, method: PATCH, rate: 1}]
            lost: [{source: perf_event_ring_buffer, count: 100, cpu: 2}]
            agent: {working_set: {from: 250Mi, to: 1Gi}, limit: null}
    """))
    assert (s.version, s.ring_capacity, s.repeat, s.phases[0].duration) == ("1.16.5", 1023, 2, 90.0)
    drop, http = s.phases[0].rates
    assert (drop.reason, drop.direction, drop.rate, http.method) == (250, 7, 2.5, "PATCH")
    assert s.phases[0].lost[0].count == 100 and s.phases[0].agent.limit is None
    assert (s.phases[0].agent.working_set.start, s.phases[0].agent.working_set.end) == (250 * MiB, 1024 * MiB)


def test_ground_truth_follows_the_contract(tmp_path: Path) -> None:
    """Truth recorded at production equals the contract's counting rules applied to the delivered flows."""
    specs = [
        EventSpec("policy_denied", direction=1), EventSpec("policy_deny", direction=2),
        EventSpec("drop", reason=155, direction=2), EventSpec("drop", reason=250, direction=7),
        EventSpec("verdict", action=1, match=2, direction=2), EventSpec("verdict", action=4, match=9, direction=1),
        EventSpec("verdict", action=1, source_identity=1), EventSpec("verdict", action=1, destination_identity=4),
        EventSpec("http", method="POST", action=2), EventSpec("http", method="BREW"), EventSpec("dns", direction=2),
        EventSpec("trace")]
    with running_server(tmp_path) as server:
        server.emit([(server.compile(spec, i), i + 1) for i, spec in enumerate(specs)])
        server.sync()
        truth = server.truth.snapshot()
        flows = [r.flow for r in collect(channel(server), observer_pb2.GetFlowsRequest())]
        assert len(flows) == truth.seen_flows_total == server_status(channel(server)).seen_flows
    drops, verdicts, health, l7 = Counter(), Counter(), Counter(), Counter()
    for f in flows:
        d = contract.DIRECTION_BY_ENUM.get(f.traffic_direction, "unknown")
        a = contract.ACTION_BY_VERDICT.get(f.verdict, "unknown")
        if f.event_type.type == 1:
            drops[(contract.drop_reason_name(f.drop_reason_desc), d)] += 1
        elif f.event_type.type == 5 and f.source.identity != 1:
            key = (d, contract.MATCH_BY_TYPE.get(f.policy_match_type, "unknown"), a)
            (health if 4 in (f.source.identity, f.destination.identity) else verdicts)[key] += 1
        elif f.event_type.type == 129 and f.l7.type == 1:
            proto = f.l7.WhichOneof("record")
            method = f.l7.http.method if f.l7.http.method in contract.HTTP_METHODS else "other"
            verdicts[(d, f"l7/{proto}", a)] += 1
            l7[(proto, method if proto == "http" else "", d, a)] += 1
    assert truth.drops == drops and truth.verdicts == verdicts and truth.verdicts_health == health
    assert truth.l7_requests == l7
    assert truth.drops[("REASON_250", "unknown")] == 4 and truth.drops[("POLICY_DENIED", "ingress")] == 1
    assert truth.l7_requests[("http", "other", "ingress", "forwarded")] == 10
    assert truth.verdicts[("ingress", "unknown", "audit")] == 6
    assert truth.flows_by_type[4] == 12 and truth.flows_by_type[129] == 2 * (9 + 10 + 11)


def test_runtime_rates_restarts_and_agent_state(tmp_path: Path) -> None:
    scenario = parse_scenario(yaml.safe_load("""
        name: drill
        agent: {working_set: 300Mi, limit: 1Gi}
        phases:
          - name: storm
            duration: 10s
            rates: [{type: policy_denied, direction: ingress, rate: 100}, {type: trace, rate: 50}]
            lost: [{source: perf_event_ring_buffer, rate: 20}, {source: observer_events_queue, count: 77}]
          - name: climb
            duration: 10s
            server_restart: true
            agent: {working_set: {from: 400Mi, to: 800Mi}, rss: {from: 300Mi, to: 700Mi}}
          - name: oom
            duration: 10s
            agent: {working_set: 800Mi, oom_kill: true, running: false}
          - name: back
            duration: 10s
            agent: {working_set: 260Mi, restart: true, running: true, limit: null}
    """), "drill")
    with running_server(tmp_path) as server:
        runtime = ScenarioRuntime(scenario, server, speed=40, tick=0.02)
        assert runtime.agent_state().working_set == 300 * MiB
        runtime.start()
        wait_until(lambda: runtime.phase.name == "climb" and server.stats["restarts"] == 1 and server.running,
                   what="phase climb, server restarted")
        truth = server.truth.snapshot()
        assert abs(truth.drops[("POLICY_DENIED", "ingress")] - 1000) <= 1
        assert truth.verdicts[("ingress", "none", "dropped")] == truth.drops[("POLICY_DENIED", "ingress")]
        assert abs(truth.lost["perf_event_ring_buffer"] - 200) <= 1 and truth.lost["observer_events_queue"] == 77
        assert server.status()["seen_flows"] == 0 and server.status()["num_flows"] == 0  # server_restart
        state = runtime.agent_state()
        assert 400 * MiB <= state.working_set <= 800 * MiB and state.limit == 1024 * MiB
        assert state.restart_count == 0 and state.rss < state.working_set
        wait_until(lambda: runtime.phase.name == "oom", what="phase oom")
        state = runtime.agent_state()
        assert (state.restart_count, state.last_terminated_reason, state.running) == (1, "OOMKilled", False)
        assert not server.running
        wait_until(lambda: runtime.phase.name == "back" and server.running, what="phase back")
        state = runtime.agent_state()
        assert (state.restart_count, state.last_terminated_reason, state.running) == (1, "OOMKilled", True)
        assert state.working_set == 260 * MiB and state.rss == int(260 * MiB * 0.85) and state.limit is None
        assert runtime.wait(5) and runtime.elapsed() == pytest.approx(40)
        runtime.stop()


def test_event_spec_rejects_unknown_type() -> None:
    import pytest

    from cilium_node_simulator.events import EventSpec, SpecError

    with pytest.raises(SpecError, match="event type"):
        EventSpec("l7")


def test_agent_datapath_follows_the_scenario_and_resets_with_the_agent(tmp_path) -> None:
    import yaml

    from cilium_node_simulator.hubble_server import HubbleServer
    from cilium_node_simulator.scenario import ScenarioRuntime, parse_scenario
    from tests.support.procs import wait_until

    scenario = parse_scenario(yaml.safe_load("""
name: datapath
phases:
  - name: drops
    duration: 2s
    rates: [{type: drop, reason: CT_MAP_INSERTION_FAILED, direction: egress, rate: 50}, {type: trace, rate: 20}]
    map_pressure: {ct4_global: 0.95}
  - name: restarted
    duration: 30s
    agent: {restart: true}
    rates: [{type: drop, reason: POLICY_DENIED, direction: ingress, rate: 10}]
"""))
    server = HubbleServer(socket_path=str(tmp_path / "h.sock")).start()
    runtime = ScenarioRuntime(scenario, server, speed=1).start()
    try:
        ct = ("CT: Map insertion failed", "EGRESS")
        first = wait_until(lambda: (d := runtime.agent_datapath())["dropped"].get(ct) and d, timeout=5)
        assert first["map_pressure"] == {"ct4_global": 0.95}
        assert first["forwarded"]["INGRESS"] > 0
        wait_until(lambda: runtime.phase.name == "restarted", timeout=5)
        after = wait_until(lambda: (d := runtime.agent_datapath())["dropped"] and d, timeout=5)
        assert ("CT: Map insertion failed", "EGRESS") not in after["dropped"]  # counters reset with the agent
        assert set(after["dropped"]) == {("Policy denied", "INGRESS")}
        assert after["map_pressure"]["ct4_global"] < 0.5
    finally:
        runtime.stop()
        server.stop()


def test_map_pressure_must_be_ratios() -> None:
    import pytest
    import yaml

    from cilium_node_simulator.scenario import ScenarioError, parse_scenario

    with pytest.raises(ScenarioError, match="fill ratio"):
        parse_scenario(yaml.safe_load("name: x\nphases: [{duration: 1s, map_pressure: {m: 95}}]"))
