"""End to end: simulator -> exporter -> Debian's Prometheus (accelerated alert pack) -> Alertmanager
(shipped inhibitions) -> webhook. One node per scenario, all running at once (see tests/e2e/run.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from cilium_node_simulator.webhook import Delivery
from tests.e2e.run import NODES, Run
from tests.e2e.stack import wait_until
from tests.support.paths import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e"), pytest.mark.timeout(420)]



@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    e2e = Run(tmp_path_factory.mktemp("e2e"))
    try:
        e2e.start()
        yield e2e
    finally:
        e2e.stop()


def runbook_anchors() -> set[str]:
    """GitHub anchors of the headings of docs/runbooks.md."""
    text = (REPO / "docs" / "runbooks.md").read_text()
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+\s+(.+)$", text, re.M)}


def diagnostics(run: Run, node: str) -> str:
    got = [(round(d.received - run.t0), d.name, d.status) for d in run.webhook.deliveries(node=node)]
    return (f"\nwebhook for {node}: {got}\nPrometheus alerts for {node}: {run.stack.alert_states(node, run.t0)}"
            f"\ndirectors: {run.failures or 'ok'} {run.events}")


def delivered(run: Run, alertname: str, node: str, by: float, status: str = "firing") -> Delivery:
    """The first ``status`` notification of ``alertname`` for ``node``, waiting until ``by`` s into the run."""
    found = wait_until(lambda: run.webhook.deliveries(alertname, status, node=node),
                       max(1.0, run.t0 + by - time.time()),
                       lambda: f"{alertname} {status} for {node}" + diagnostics(run, node), interval=0.5)
    return found[0]


def check_alert(d: Delivery, node: str) -> None:
    """Labels and annotations every delivered alert of the pack carries."""
    assert d.labels["node"] == node
    assert d.labels.get("job", "cilium-node-exporter") == "cilium-node-exporter"
    assert d.labels["severity"] in ("critical", "warning", "info")
    assert d.annotations["summary"].endswith(".")
    assert node in d.annotations["description"], d.annotations["description"]
    url = urlsplit(d.annotations["runbook_url"])
    assert url.path.endswith("/docs/runbooks.md"), url
    assert url.fragment in runbook_anchors(), f"{url.fragment!r} is not a heading of docs/runbooks.md"
    assert url.fragment == d.name.lower()


def test_policy_storm_fires_policy_denial_surge(run: Run) -> None:
    d = delivered(run, "CiliumNodePolicyDenialSurge", "sim-policy-storm", by=120)
    check_alert(d, "sim-policy-storm")
    assert d.received - run.t0 > 40, "fired during the baseline (storm starts 45 s in)"


def test_l7_denials_fire_l7_denial_surge(run: Run) -> None:
    d = delivered(run, "CiliumNodeL7DenialSurge", "sim-l7-denials", by=120)
    check_alert(d, "sim-l7-denials")
    assert d.received - run.t0 > 40, "fired while only GETs were allowed"
    assert not run.webhook.deliveries("CiliumNodePolicyDenialSurge", node="sim-l7-denials")


def test_hubble_overload_fires_events_lost(run: Run) -> None:
    d = delivered(run, "CiliumHubbleEventsLost", "sim-hubble-overload", by=120)
    check_alert(d, "sim-hubble-overload")
    assert d.labels["source"] in ("perf_event_ring_buffer", "observer_events_queue")
    assert "agent is overloaded" in d.annotations["description"]


def test_conntrack_full_delivers_the_cause_not_its_echoes(run: Run) -> None:
    node = "sim-datapath-errors"
    d = delivered(run, "CiliumNodeConntrackMapFull", node, by=120)
    check_alert(d, node)
    echoes = ("CiliumNodeUnexpectedDrops", "CiliumNodeDropErrorBudgetBurn")
    # the echoes really fire in Prometheus (else the inhibition proves nothing) ...
    wait_until(lambda: all("firing" in run.stack.alert_states(node, run.t0).get(e, ()) for e in echoes), 60,
               lambda: "the echoes firing in Prometheus" + diagnostics(run, node), interval=1)
    # ... reach Alertmanager, which holds them as inhibited by the cause ...
    wait_until(lambda: all("suppressed-inhibited" in run.am_seen[(node, e)] for e in echoes), 30,
               lambda: f"echoes inhibited in Alertmanager: {dict(run.am_seen)}")
    time.sleep(2)
    # ... and never page.
    for echo in echoes:
        assert not run.webhook.deliveries(echo, node=node), f"{echo} delivered" + diagnostics(run, node)


def test_full_ct_map_fires_bpf_map_pressure_from_the_agent_source(run: Run) -> None:
    node = "sim-datapath-errors"
    d = delivered(run, "CiliumNodeBpfMapPressure", node, by=150)
    check_alert(d, node)
    assert d.labels["map_name"] == "ct4_global"  # Cilium drops the "cilium_" prefix
    # with the agent source on, the drop SLO reads the packet-exact datapath counters
    assert run.stack.query(f'cilium_node_datapath_dropped_packets_total{{node="{node}",'
                           'reason="CT_MAP_INSERTION_FAILED"} > 0')


def test_killed_exporter_fires_exporter_down(run: Run) -> None:
    node = "sim-exporter-down"
    d = delivered(run, "CiliumNodeExporterDown", node, by=60)
    assert "exporter-killed" in run.events, run.failures
    assert d.received > run.events["exporter-killed"]
    assert d.labels["node"] == node and d.labels["severity"] == "warning"
    assert node in d.annotations["description"]
    assert urlsplit(d.annotations["runbook_url"]).fragment in runbook_anchors()


def test_stopped_hubble_source_delivers_source_down_not_the_data_alerts(run: Run) -> None:
    node = "sim-hubble-outage"
    d = delivered(run, "CiliumNodeExporterSourceDown", node, by=90)
    check_alert(d, node)
    assert d.labels["source"] == "hubble"
    assert "hubble-stopped" in run.events, run.failures
    # the surge counted before the outage fires in Prometheus while the source is down ...
    wait_until(lambda: "firing" in run.stack.alert_states(node, run.t0).get("CiliumNodePolicyDenialSurge", ()),
               30, lambda: "CiliumNodePolicyDenialSurge firing in Prometheus" + diagnostics(run, node))

    wait_until(lambda: "suppressed-inhibited" in run.am_seen[(node, "CiliumNodePolicyDenialSurge")], 30,
               lambda: f"the surge inhibited in Alertmanager: {dict(run.am_seen)}")
    time.sleep(2)
    # ... and does not page: the source-down alert says what is wrong.
    assert not run.webhook.deliveries("CiliumNodePolicyDenialSurge", node=node), diagnostics(run, node)


def test_oom_loop_opens_a_ticket_then_pages(run: Run) -> None:
    node = "sim-oom-loop"
    ticket = delivered(run, "CiliumAgentOOMKilled", node, by=100)
    check_alert(ticket, node)
    assert ticket.labels["severity"] == "warning"
    assert ticket.received - run.t0 > 25, "fired before the first OOM kill (30 s in at speed 4)"
    # repeated kills: the loop pages (and mutes the single-kill ticket from then on)
    page = delivered(run, "CiliumAgentOOMKillLoop", node, by=140)
    check_alert(page, node)
    assert page.labels["severity"] == "critical" and page.received > ticket.received
    # the third kill within the restarts window: RestartingFrequently fires, and the OOM alerts inhibit it
    echo = "CiliumAgentRestartingFrequently"
    wait_until(lambda: "suppressed-inhibited" in run.am_seen[(node, echo)], max(1, run.t0 + 140 - time.time()),
               lambda: f"{echo} inhibited in Alertmanager: {dict(run.am_seen)}" + diagnostics(run, node))
    time.sleep(2)
    assert not run.webhook.deliveries(echo, node=node), diagnostics(run, node)


def test_memory_leak_forecast_then_above_envelope_then_both_resolve(run: Run) -> None:
    node = "sim-memory-leak"
    forecast = delivered(run, "CiliumAgentMemoryGrowthForecast", node, by=110)
    above = delivered(run, "CiliumAgentMemoryAboveEnvelope", node, by=130)
    for d in (forecast, above):
        check_alert(d, node)
    assert forecast.received < above.received, "the forecast must warn before the envelope is crossed"
    assert "MiB" in above.annotations["description"]
    # a restart at 120 s fixes the leak: both resolve, and stay resolved
    for name in ("CiliumAgentMemoryGrowthForecast", "CiliumAgentMemoryAboveEnvelope"):
        delivered(run, name, node, by=160, status="resolved")
    resolved_above = run.webhook.deliveries("CiliumAgentMemoryAboveEnvelope", "resolved", node=node)[0]
    assert resolved_above.received - run.t0 > 115, "resolved before the scenario recovered"
    run.wait_for(max(150, resolved_above.received - run.t0 + 15))
    for name in ("CiliumAgentMemoryGrowthForecast", "CiliumAgentMemoryAboveEnvelope"):
        last = run.webhook.deliveries(name, node=node)[-1]
        assert last.status == "resolved", f"{name} fired again after the recovery" + diagnostics(run, node)


# --- issue 12: a zero known to be a zero, and cilium-envoy apart from the agent ----------------------------
# sim-blind-drops: CiliumNodeHubbleBlind (cause drop_notifications_off) within 10 scenario minutes of the switch;
# sim-rate-limited: the same alert, cause events_rate_limited; sim-envoy-oom: Envoy's alerts (a ticket, then the
# page for the repeated kill), never the agent's; no SourceDown for a missing agent metrics endpoint.

def series(run: Run, expr: str) -> list[dict[str, Any]]:
    return run.stack.query(expr)


def test_drop_events_switched_off_is_reported_as_blind(run: Run) -> None:
    node = "sim-blind-drops"
    sel = f'node="{node}", event="drop"'
    # the switch happens 45 s in (3 simulated minutes at speed 4); settings are read every 5 s here
    wait_until(lambda: series(run, f"cilium_node_agent_notifications_enabled{{{sel}}} == 0"),
               max(1.0, run.t0 + 120 - time.time()), lambda: "drop notifications off" + diagnostics(run, node),
               interval=1)
    assert run.stack.query(f"cilium_node_agent_notifications_enabled{{{sel}}} == 1", at=run.t0 + 35), \
        "drop notifications were not reported on during the baseline" + diagnostics(run, node)
    assert not run.stack.query(f"cilium_node_agent_notifications_enabled{{{sel}}} == 0", at=run.t0 + 40), \
        "reported off before the scenario switched it off"
    # ...while the datapath keeps dropping: the agent counts packets that Hubble no longer reports
    blind = (f'sum(increase(cilium_node_datapath_dropped_packets_total{{node="{node}"}}[20s])) > 0 '
             f'and sum(increase(cilium_node_drops_total{{node="{node}"}}[20s])) == 0')
    wait_until(lambda: series(run, blind), 60, lambda: "datapath drops without Hubble drops" + diagnostics(run, node),
               interval=1)
    info = series(run, f'cilium_node_cilium_info{{node="{node}"}}')
    assert [s["metric"]["version"] for s in info] == ["1.18.6"]
    # the pack says which node is blind and why, within 10 scenario minutes (150 s at speed 4) of the switch
    d = delivered(run, "CiliumNodeHubbleBlind", node, by=45 + 150)
    check_alert(d, node)
    assert d.labels["cause"] == "drop_notifications_off" and d.received - run.t0 > 40, d
    assert "emits no drop notifications" in d.annotations["description"]
    # the Hubble approximation never counts the blind node as measured
    assert not [x for x in run.webhook.deliveries("CiliumNodeUnexpectedDrops", node=node)
                if x.labels.get("measurement") == "hubble-approximation"], diagnostics(run, node)


def test_rate_limited_events_are_counted(run: Run) -> None:
    node = "sim-rate-limited"
    wait_until(lambda: series(run, f'cilium_node_agent_events_rate_limit{{node="{node}", kind="rate"}} == 200'), 60,
               lambda: "the rate limit setting" + diagnostics(run, node), interval=1)
    wait_until(lambda: series(run, f'rate(cilium_node_datapath_ratelimited_events_total{{node="{node}"}}[20s]) > 100'),
               90, lambda: "rate-limited events counted" + diagnostics(run, node), interval=1)
    # Hubble reports no loss for them: the agent's counter is the only witness
    lost = series(run, f'sum(cilium_node_hubble_lost_events_total{{node="{node}"}})')
    assert not lost or float(lost[0]["value"][1]) == 0
    d = delivered(run, "CiliumNodeHubbleBlind", node, by=150)
    check_alert(d, node)
    assert d.labels["cause"] == "events_rate_limited", d


def test_envoy_oom_killed_is_envoys_and_the_agent_endpoint_is_unavailable(run: Run) -> None:
    node = "sim-envoy-oom"
    wait_until(lambda: series(run, f'cilium_node_envoy_last_terminated_reason{{node="{node}", reason="OOMKilled"}}'),
               max(1.0, run.t0 + 90 - time.time()), lambda: "Envoy OOMKilled" + diagnostics(run, node), interval=1)
    assert series(run, f'cilium_node_envoy_restarts_total{{node="{node}"}} >= 1')
    assert series(run, f'cilium_node_envoy_memory_limit_bytes{{node="{node}"}} == {256 * 2**20}')
    assert series(run, f'cilium_node_agent_restarts_total{{node="{node}"}} == 0')
    assert not series(run, f'cilium_node_agent_last_terminated_reason{{node="{node}"}}')
    assert [s["metric"]["envoy_mode"] for s in series(run, f'cilium_node_cilium_info{{node="{node}"}}')] == [
        "external"]
    # no agent metrics endpoint on this node: unavailable, never down, and the Hubble counters still flow
    assert series(run, f'cilium_node_exporter_source_unavailable{{node="{node}", source="agent"}} == 1')
    assert not series(run, f'cilium_node_exporter_source_up{{node="{node}", source="agent"}}')
    assert series(run, f'cilium_node_exporter_source_up{{node="{node}", source="settings"}} == 1')
    # pages for Envoy (the repeated kill), not for the agent
    ticket = delivered(run, "CiliumEnvoyOOMKilled", node, by=120)
    check_alert(ticket, node)
    page = delivered(run, "CiliumEnvoyOOMKillLoop", node, by=150)
    check_alert(page, node)
    assert page.labels["severity"] == "critical" and ticket.labels["severity"] == "warning"
    assert not run.webhook.deliveries("CiliumAgentOOMKilled", node=node), diagnostics(run, node)
    assert not run.webhook.deliveries("CiliumAgentOOMKillLoop", node=node), diagnostics(run, node)
    assert not run.webhook.deliveries("CiliumNodeExporterSourceDown", node=node), diagnostics(run, node)


def test_healthy_node_measures_a_zero_it_can_trust(run: Run) -> None:
    node = "sim-steady"
    wait_until(lambda: len(series(run, f'cilium_node_agent_notifications_enabled{{node="{node}"}} == 1')) == 3, 60,
               lambda: "all notifications on" + diagnostics(run, node), interval=1)
    assert len(series(run, f'cilium_node_hubble_monitor_events{{node="{node}"}} == 1')) == 4  # no filter
    # 1.19 has the limiter, switched off: the exporter knows the count is zero, not unknown
    assert series(run, f'cilium_node_datapath_ratelimited_events_total{{node="{node}"}} == 0')
    assert series(run, f'cilium_node_exporter_source_unavailable{{node="{node}", source="agent"}} == 0')


def test_every_dashboard_query_runs_and_returns_data(run: Run) -> None:
    run.wait_for(150)
    run.sweep_once()
    sweep = run.sweep
    assert sweep.queries, "no dashboard query found"
    assert not sweep.errors, "queries failing against Prometheus:\n" + "\n".join(
        f"{k}: {e}\n  {sweep.queries[k].expr}" for k, e in sweep.errors.items())
    empty = sorted(k for k in sweep.queries if not sweep.data.get(k))
    coverage = "\n".join(f"{'/'.join(k)}: {', '.join(sorted(sweep.data.get(k, ())))}" for k in sorted(sweep.queries))
    print("dashboard query coverage (nodes with data):\n" + coverage)
    assert not empty, "queries that returned no data for any scenario:\n" + "\n".join(
        f"{'/'.join(k)}: {sweep.queries[k].expr}" for k in empty)


def test_steady_node_never_alerts(run: Run) -> None:
    run.wait_for(150)
    node = "sim-steady"
    assert not run.webhook.deliveries(node=node), diagnostics(run, node)
    assert run.stack.alert_states(node, run.t0) == {}, diagnostics(run, node)
    assert run.stack.query(f'up{{node="{node}"}} == 1'), "steady node not scraped at the end"


def test_every_node_delivered_only_expected_alerts(run: Run) -> None:
    """No scenario pages for something it does not exercise (a false positive is a bug too)."""
    expected = {
        "sim-memory-leak": {"CiliumAgentMemoryGrowthForecast", "CiliumAgentMemoryAboveEnvelope",
                            "CiliumAgentMemoryEnvelopeBudgetBurn"},
        # an agent that is not running is bad time for the memory-envelope SLO
        "sim-oom-loop": {"CiliumAgentOOMKilled", "CiliumAgentOOMKillLoop", "CiliumAgentMemoryNearLimit",
                         "CiliumAgentMemoryEnvelopeBudgetBurn"},
        "sim-policy-storm": {"CiliumNodePolicyDenialSurge"},
        "sim-l7-denials": {"CiliumNodeL7DenialSurge"},
        "sim-hubble-overload": {"CiliumHubbleEventsLost"},
        "sim-datapath-errors": {"CiliumNodeConntrackMapFull", "CiliumNodeBpfMapPressure"},
        "sim-exporter-down": {"CiliumNodeExporterDown"},
        "sim-hubble-outage": {"CiliumNodeExporterSourceDown"},
        "sim-steady": set(),
        "sim-blind-drops": {"CiliumNodeHubbleBlind"},
        "sim-rate-limited": {"CiliumNodeHubbleBlind"},
        "sim-envoy-oom": {"CiliumEnvoyOOMKilled", "CiliumEnvoyOOMKillLoop"},
    }
    assert set(expected) == {n.name for n in NODES}
    # nodes without the agent's counters (sources without "agent"; the Envoy node's agent endpoint is
    # unavailable) have no drop SLO and say so: a ticket (the hubble-only node's memory SLO too)
    unmeasured = {"sim-memory-leak", "sim-oom-loop", "sim-policy-storm", "sim-l7-denials", "sim-hubble-overload",
                  "sim-hubble-outage", "sim-envoy-oom"}
    for node in unmeasured:
        expected[node] = expected[node] | {"CiliumNodeSloUnmeasured"}
    assert "CiliumNodeSloUnmeasured" in {d.name for d in run.webhook.deliveries(node="sim-policy-storm")}
    for node in expected:
        print(node, [(round(d.received - run.t0), d.name, d.status) for d in run.webhook.deliveries(node=node)],
              {k[1]: sorted(v) for k, v in run.am_seen.items() if k[0] == node})
    unexpected = {node: sorted({d.name for d in run.webhook.deliveries(node=node)} - names)
                  for node, names in expected.items()}
    assert not any(unexpected.values()), unexpected
    assert not run.webhook.bad, run.webhook.bad


def test_ipv6_nodes_run_entirely_over_ipv6_loopback(run: Run) -> None:
    for name in ("sim-steady", "sim-policy-storm"):
        node = run.node(name)
        flags = (node.config_dir / "client" / "exporter.flags").read_text()
        assert "--hubble-address=[::1]:" in flags and "--kubelet-address=https://[::1]:" in flags, flags
        (up,) = run.stack.query(f'up{{node="{name}"}}')
        assert up["metric"]["instance"] == f"[::1]:{node.port}" and up["value"][1] == "1"
        sources = {s["metric"]["source"]: s["value"][1]
                   for s in run.stack.query(f'cilium_node_exporter_source_up{{node="{name}"}}')}
        assert sources and set(sources.values()) == {"1"}, sources
