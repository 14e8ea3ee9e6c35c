"""The real-time fleet smoke: simulated clusters of nodes (``simulate --fleet``) -> Debian's Prometheus (accelerated
pack, 2 s scrape, 1 s evaluation) -> Alertmanager with the shipped configuration -> the page and ticket receivers.

What 310 nodes fire and notify is decided deterministically in test_fleet_replay.py (virtual time, promtool, a
real Alertmanager fed step by step). This smoke keeps the real pipe honest at a size a loaded 2-core machine can
serve (80 nodes): targets scraped as real exporters, one bad node's page delivered to the webhook, one
cluster-wide outage held by Alertmanager for its receiver alone, a healthy cluster quiet. When scrapes failed, every
failure message starts with "TOO SLOW" (failed scrapes, load average, CPU shares): the machine, not the pack. How
the run's time compression relates to Alertmanager's real-time timers: see the fleet_run module docstring.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e import fleet_pack
from tests.e2e.fleet_pack import PAGE, TICKET
from tests.e2e.fleet_run import INCIDENT_WINDOW, SMOKE, ClusterRun, FleetRun
from tests.e2e.stack import JOB

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e"), pytest.mark.timeout(420)]

BY_NAME = {c.name: c for c in SMOKE}
OUTAGE, OUTAGE_ALERT = "exporters-gone", "CiliumClusterExportersDown"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRun]:
    fleet = FleetRun(tmp_path_factory.mktemp("fleet"), SMOKE)
    try:
        fleet.start()
        # The first 15 scenario minutes of every incident, then the page route's group_wait, so that every page
        # group formed in that window has sent its first notification. Tickets are read from Alertmanager's
        # notifiable groups, not waited for (2m more of every run): the ticket route's timers are decided step by
        # step in test_fleet_replay.py, and a ticket's real delivery is test_e2e_stack.py's.
        page_wait = fleet_pack.route_timers(fleet.am_config, PAGE)[0]
        end = max(fleet.end_of_window(c) for c in SMOKE) + page_wait + 5
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
    before_incidents = run.real(min(c.incident_at for c in SMOKE) - 60)
    for c in SMOKE:
        n = run.stack.query(f'count(cilium_node_exporter_build_info{{job="{JOB}", cluster="{c.name}"}})',
                            at=before_incidents)
        assert n and int(float(n[0]["value"][1])) == c.nodes, run.too_slow() + f"{c.name}: {n}"
    ksm = run.stack.query('count by (cluster) (kube_node_info{job="kube-state-metrics"})')
    assert {s["metric"]["cluster"]: int(float(s["value"][1])) for s in ksm} == {c.name: c.nodes for c in SMOKE}


def test_healthy_cluster_notifies_nobody(run: FleetRun) -> None:
    """No notification, and no group Alertmanager would notify (a ticket's group_wait outlasts the run)."""
    assert not run.notifications(PAGE, "healthy") and not run.notifications(TICKET, "healthy"), \
        run.summary("healthy")
    assert not run.groups_of(PAGE, "healthy") and not run.groups_of(TICKET, "healthy"), run.summary("healthy")


def test_one_bad_node_page_is_delivered_for_itself(run: FleetRun) -> None:
    """A real notification reaches the page webhook, naming node-001 only, once in the incident's window."""
    cluster = BY_NAME["one-bad"]
    keys, _, bound = page_bound(run, cluster)
    sent = sent_in_window(run, cluster)
    assert keys == 1 and 1 <= len(sent) <= bound, run.summary(cluster.name)
    assert {a["labels"].get("node") for p in sent for a in p["alerts"]} == {"node-001"}, run.summary(cluster.name)


def test_cluster_wide_outage_reaches_its_receiver_without_node_noise(run: FleetRun) -> None:
    """At the end of the run, the outage's cluster alert is the only alert of its cluster Alertmanager would notify,
    for the receiver its severity routes it to (read from the pack); no node's alert was delivered. A page is also
    delivered. (A node's alert may be notifiable for a moment before the cluster alert that inhibits it arrives:
    the ticket route's group_wait covers that; test_fleet_replay.py decides it.)"""
    receiver = run.receivers[OUTAGE_ALERT]
    assert receiver in (PAGE, TICKET), f"{OUTAGE_ALERT} is routed to {receiver!r}"
    assert {(r, labels["alertname"], labels.get("node")) for r, labels in run.held(OUTAGE)} == \
        {(receiver, OUTAGE_ALERT, None)}, run.summary(OUTAGE)
    notes = run.notifications(PAGE, OUTAGE) + run.notifications(TICKET, OUTAGE)
    assert not [a for p in notes for a in p["alerts"] if a["labels"].get("node")], run.summary(OUTAGE)
    if receiver == PAGE:
        sent = run.notifications(PAGE, OUTAGE)
        assert sent and {a["labels"]["alertname"] for p in sent for a in p["alerts"]} == {OUTAGE_ALERT}, \
            run.summary(OUTAGE)


def test_inhibitions_stay_within_their_cluster(run: FleetRun) -> None:
    assert run.inhibitions, "nothing was inhibited: the scoping is untested\n" + run.summary(OUTAGE)
    crossed = [(i, by) for i, by in run.inhibitions.values() if any(b.get("cluster") != i.get("cluster") for b in by)]
    assert not crossed, crossed[:3]


def test_fleet_process_and_watchers_survive_the_run(run: FleetRun) -> None:
    """The fleet process served to the end and the Alertmanager watcher never failed; prints the run's figures
    for the report (pytest -s)."""
    print(f"\nfleet run timings (s): {run.timings}; CPU shares of one core: {run.cpu_shares()}")
    for c in SMOKE:
        keys, _, bound = page_bound(run, c)
        tickets = run.groups_of(TICKET, c.name, before=run.end_of_window(c))
        print(f"{c.name:17} page keys {keys} (<= {bound} notifications in 15m), "
              f"sent {len(run.notifications(PAGE, c.name))}; ticket keys {len(tickets)}, "
              f"sent {len(run.notifications(TICKET, c.name))}")
    assert run.stack.procs.alive("fleet"), run.stack.procs.log("fleet")
    assert not run.failures, run.failures
