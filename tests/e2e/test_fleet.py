"""Fleet end to end: simulated clusters of nodes (``simulate --fleet``) -> Debian's Prometheus (accelerated pack,
1 s scrape and evaluation) -> Alertmanager with the shipped configuration -> the page and ticket receivers.

One run (tests/e2e/fleet_run.py) plays every fleet scenario at once, one cluster each; the tests read what
reached the receivers and what Alertmanager grouped and inhibited. How the run's time compression relates to
Alertmanager's real-time timers: see the fleet_run module docstring.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cilium_node_exporter.mixin.config import DEFAULTS
from tests.e2e import fleet_pack
from tests.e2e.fleet_pack import PAGE, TICKET
from tests.e2e.fleet_run import CLUSTERS, INCIDENT_WINDOW, ClusterRun, FleetRun
from tests.e2e.stack import JOB

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e"), pytest.mark.timeout(420)]

BY_NAME = {c.name: c for c in CLUSTERS}
# The cluster-scope alert that notifies (page or ticket: its severity in the pack decides) for each cluster-wide
# outage.
FLEET_ALERTS = {"hubble-down": "CiliumClusterExporterSourceDown", "exporters-gone": "CiliumClusterExportersDown",
                "exporters-absent": "CiliumClusterExportersAbsent"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRun]:
    fleet = FleetRun(tmp_path_factory.mktemp("fleet"))
    try:
        fleet.start()
        # The first 15 scenario minutes of every incident, then the longest group_wait of the shipped routes,
        # so that every group formed in that window has sent its first notification.
        longest_wait = max(fleet_pack.route_timers(fleet.am_config, r)[0] for r in (PAGE, TICKET))
        end = max(fleet.end_of_window(c) for c in CLUSTERS) + longest_wait + 5
        fleet.wait_until_scenario(0)
        time.sleep(max(0.0, end - time.time()))
        fleet.poll_alertmanager()
        fleet.timings["run"] = time.time() - fleet.t0
        yield fleet
    finally:
        fleet.stop()


def sent_in_window(fleet: FleetRun, cluster: ClusterRun, receiver: str = PAGE) -> list[dict]:
    """Notifications of ``receiver`` for ``cluster`` from the groups formed in the incident's first 15 minutes (a
    group formed later, say under load, is another alert name's: page_bound does not count it either)."""
    early = [g.labels for g in fleet.groups_of(receiver, cluster.name, before=fleet.end_of_window(cluster))]
    return [p for p in fleet.notifications(receiver, cluster.name) if p["groupLabels"] in early]


def page_bound(fleet: FleetRun, cluster: ClusterRun, receiver: str = PAGE) -> tuple[int, int, int]:
    """(group keys of ``receiver`` formed in the incident's first 15 minutes, most notifications per key in
    15 real minutes from the shipped timers, their product: the bound on notifications)."""
    keys = len(fleet.groups_of(receiver, cluster.name, before=fleet.end_of_window(cluster)))
    per_key = fleet_pack.notifications_per_group(fleet.am_config, receiver, INCIDENT_WINDOW)
    return keys, per_key, keys * per_key


def test_fleet_is_scraped_as_real_exporters(run: FleetRun) -> None:
    """Every present node is a target with its own exporter series and the cluster label."""
    before_incidents = run.real(min(c.incident_at for c in CLUSTERS) - 60)
    for c in CLUSTERS:
        n = run.stack.query(f'count(cilium_node_exporter_build_info{{job="{JOB}", cluster="{c.name}"}})',
                            at=before_incidents)
        assert n and int(float(n[0]["value"][1])) == c.nodes, (c.name, n)
    ksm = run.stack.query('count by (cluster) (kube_node_info{job="kube-state-metrics"})')
    assert {s["metric"]["cluster"]: int(float(s["value"][1])) for s in ksm} == {c.name: c.nodes for c in CLUSTERS}


def test_healthy_day_notifies_nobody(run: FleetRun) -> None:
    """(The pack's memory-envelope error rule reads the raw series, not the working-set recording rule of the same
    group: a first scrape committing between the two rules would otherwise fire the budget burn here.)"""
    cluster = "healthy"
    firing = {name for name, states in run.prometheus_alerts(cluster).items() if "firing" in states}
    assert not firing, run.summary(cluster)
    assert not [k for k in run.am_states if k[0] == cluster], run.summary(cluster)
    assert not run.notifications(PAGE, cluster) and not run.notifications(TICKET, cluster), run.summary(cluster)
    # the routine rollout really happened on every node (else the quiet proves nothing)
    versions = run.stack.query(f'count by (version) (cilium_node_hubble_info{{cluster="{cluster}"}})')
    assert {s["metric"]["version"].split("+")[0]: int(float(s["value"][1])) for s in versions} == \
        {"cilium v1.16.6": BY_NAME[cluster].nodes}, versions


def test_bad_rollout_on_200_nodes_pages_at_most_three_times(run: FleetRun) -> None:
    """Page groups are per alert name (alerts/routing.py): each notifies once in its first 15 minutes, and the
    incident pages with at most three names, its per-node pages muted by the per-cluster ones."""
    cluster = BY_NAME["rollout"]
    keys, per_key, bound = page_bound(run, cluster)
    assert per_key == 1, per_key
    assert 1 <= keys <= 3, f"page groups for one incident: {keys}\n{run.summary(cluster.name)}"
    assert bound <= 3, (keys, per_key)
    sent = sent_in_window(run, cluster)
    assert 1 <= len(sent) <= bound, run.summary(cluster.name)
    # the incident is real: every node runs the new release and pages in Prometheus
    versions = run.stack.query(f'count by (version) (cilium_node_hubble_info{{cluster="{cluster.name}"}})')
    assert [s["metric"]["version"].split("+")[0] for s in versions] == ["cilium v1.16.7"], versions
    settings = run.stack.query(f'count by (version) (cilium_node_cilium_info{{cluster="{cluster.name}"}})')
    assert {s["metric"]["version"]: s["value"][1] for s in settings} == {"1.16.7": str(cluster.nodes)}, settings
    node_pages = sorted(name for name, r in run.receivers.items() if r == PAGE and name not in
                        fleet_pack.cluster_alerts(run.receivers, PAGE))
    assert node_pages, f"the pack has no per-node page: {run.receivers}"
    firing = run.stack.query(f'count(count by (node) (ALERTS{{cluster="{cluster.name}", alertstate="firing", '
                             f'node!="", alertname=~"{"|".join(node_pages)}"}}))')
    assert firing and int(float(firing[0]["value"][1])) >= 100, (firing, run.summary(cluster.name))
    # the page names the cluster's problem: only the pack's cluster-scoped pages (read from the pack), no node
    scopes = {a["labels"]["alertname"] for p in sent for a in p["alerts"] if not a["labels"].get("node")}
    cluster_pages = fleet_pack.cluster_alerts(run.receivers, PAGE)
    assert scopes and scopes <= cluster_pages, (scopes, cluster_pages, run.summary(cluster.name))
    assert not [a for p in sent for a in p["alerts"] if a["labels"].get("node")], run.summary(cluster.name)


def test_bad_rollout_tickets_are_one_per_alert_name(run: FleetRun) -> None:
    cluster = BY_NAME["rollout"]
    groups = run.groups_of(TICKET, cluster.name, before=run.end_of_window(cluster))
    names = {dict(a)["alertname"] for g in groups for a in g.alerts}
    assert len(groups) == len(names), run.summary(cluster.name)
    scope = DEFAULTS["scopeLabel"]
    assert all(set(g.labels) <= {scope, "cluster", "alertname"} for g in groups), [g.labels for g in groups]
    _, _, bound = page_bound(run, cluster, TICKET)
    assert len(sent_in_window(run, cluster, TICKET)) <= bound, run.summary(cluster.name)


def test_one_bad_node_pages_once_for_itself(run: FleetRun) -> None:
    cluster = BY_NAME["one-bad"]
    keys, _, bound = page_bound(run, cluster)
    assert keys == 1, run.summary(cluster.name)
    sent = sent_in_window(run, cluster)
    assert 1 <= len(sent) <= bound, run.summary(cluster.name)
    nodes = {a["labels"].get("node") for p in sent for a in p["alerts"]}
    assert nodes == {"node-001"}, run.summary(cluster.name)
    group = run.groups_of(PAGE, cluster.name)[0]
    assert {dict(a).get("node") for a in group.alerts} == {"node-001"}, run.summary(cluster.name)


@pytest.mark.parametrize("name", ["hubble-down", "exporters-gone", "exporters-absent"])
def test_cluster_wide_outage_notifies_once_without_node_noise(run: FleetRun, name: str) -> None:
    """One outage, one notification: the cluster alert's group (page or ticket, as the pack's severity and the
    shipped routes decide) notifies once, no other group of the cluster notifies, and no node-level alert of the
    cluster is notifiable (all held back by the cluster alert)."""
    alert = FLEET_ALERTS[name]
    assert alert in run.pack_alerts, sorted(run.pack_alerts)
    receiver = run.receivers[alert]
    assert receiver in (PAGE, TICKET), f"{alert} is routed to {receiver!r}: the outage would notify nobody"
    cluster = BY_NAME[name]
    keys, _, bound = page_bound(run, cluster, receiver)
    assert keys == 1, run.summary(name)
    sent = sent_in_window(run, cluster, receiver)
    assert 1 <= len(sent) <= bound, run.summary(name)
    assert {a["labels"]["alertname"] for p in sent for a in p["alerts"]} == {alert}, run.summary(name)
    other = TICKET if receiver == PAGE else PAGE
    assert not run.groups_of(other, name, before=run.end_of_window(cluster)), run.summary(name)
    # the per-node echoes are held back by the cluster alert: no notification names a node, and none could
    notes = run.notifications(PAGE, name) + run.notifications(TICKET, name)
    assert not [a for p in notes for a in p["alerts"] if a["labels"].get("node")], run.summary(name)
    notifiable = [a["labels"] for a in run.last_alerts if a["labels"].get("cluster") == name
                  and a["labels"].get("node") and a["status"]["state"] == "active"]
    assert not notifiable, (notifiable[:3], run.summary(name))


def test_inhibitions_stay_within_their_cluster(run: FleetRun) -> None:
    assert run.inhibitions, "nothing was inhibited: the scoping is untested\n" + run.summary("rollout")
    crossed = [(i, by) for i, by in run.inhibitions.values() if any(b.get("cluster") != i.get("cluster") for b in by)]
    assert not crossed, crossed[:3]


def test_fleet_process_and_watchers_survive_the_run(run: FleetRun) -> None:
    """The fleet process served to the end and the Alertmanager watcher never failed; prints the run's figures
    for the report (pytest -s)."""
    print(f"\nfleet run timings (s): {run.timings}; CPU shares of one core: {run.cpu_shares()}")
    for c in CLUSTERS:
        keys, _, bound = page_bound(run, c)
        tickets = run.groups_of(TICKET, c.name, before=run.end_of_window(c))
        print(f"{c.name:17} page keys {keys} (<= {bound} notifications in 15m), "
              f"sent {len(run.notifications(PAGE, c.name))}; ticket keys {len(tickets)}, "
              f"sent {len(run.notifications(TICKET, c.name))}")
    assert run.stack.procs.alive("fleet"), run.stack.procs.log("fleet")
    assert not run.failures, run.failures
