"""What the fleet scenarios fire and notify, decided deterministically (tests/e2e/fleet_replay.py): 310 nodes'
exporters recorded in virtual time, the shipped default pack evaluated by promtool over the recording, the shipped
Alertmanager configuration fed each evaluation's firing alerts. No wall-clock race: green on a busy machine, or a
real finding. Expectations are read from the pack (severities, scopes, routes), never written here.

The real-time run through Prometheus and Alertmanager (test_fleet.py) stays as the end-to-end smoke.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import fleet_pack
from tests.e2e.fleet_pack import PAGE, TICKET
from tests.e2e.fleet_replay import Replay, replay
from tests.e2e.fleet_run import CLUSTERS, INCIDENT_WINDOW, ClusterRun
from tests.e2e.stack import JOB

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("fleet-replay"),
              pytest.mark.timeout(1800)]  # a hang guard: a loaded machine stretches the recording (15 min at load 30)

BY_NAME = {c.name: c for c in CLUSTERS}
FLEET_ALERTS = {"hubble-down": "CiliumClusterExporterSourceDown", "exporters-gone": "CiliumClusterExportersDown",
                "exporters-absent": "CiliumClusterExportersAbsent"}
# Page groups of one fleet-wide incident: one per alert name it pages with, at most this many (alerts/routing.py).
MOST_PAGE_NAMES = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    result = replay(Path(tmp_path_factory.mktemp("fleet-replay")))
    print(f"\nfleet replay timings (s): { {k: round(v, 1) for k, v in result.timings.items()} }")
    yield result


def end_of_window(cluster: ClusterRun) -> float:
    return cluster.incident_at + INCIDENT_WINDOW


def test_every_node_is_recorded_with_its_target_labels(run: Replay) -> None:
    first = 1  # the first evaluation step
    for c in CLUSTERS:
        up = [v for (name, labels), v in run.recording.series.items()
              if name == "up" and dict(labels).get("job") == JOB and dict(labels)["cluster"] == c.name]
        assert sum(1 for values in up if values[first] == 1.0) == c.nodes, c.name


def test_nothing_fires_before_the_incidents(run: Replay) -> None:
    """Every cluster is healthy for its first 10 minutes: the start of a fleet is quiet."""
    for c in CLUSTERS:
        assert not run.fired(c.name, 0, c.incident_at - 1), run.summary(c.name)


def test_healthy_day_fires_nothing_and_notifies_nobody(run: Replay) -> None:
    assert not run.fired("healthy"), run.summary("healthy")
    assert not run.groups_of(PAGE, "healthy") and not run.groups_of(TICKET, "healthy"), run.summary("healthy")


def test_bad_rollout_on_200_nodes_pages_at_most_three_times_naming_the_cluster(run: Replay) -> None:
    cluster = BY_NAME["rollout"]
    groups = run.groups_of(PAGE, cluster.name, before=end_of_window(cluster))
    assert 1 <= len(groups) <= MOST_PAGE_NAMES, run.summary(cluster.name)
    per_key = fleet_pack.notifications_per_group(fleet_pack.alertmanager_config("http://x"), PAGE, INCIDENT_WINDOW)
    assert per_key == 1, per_key
    cluster_pages = fleet_pack.cluster_alerts(run.receivers, PAGE)
    names = {dict(a)["alertname"] for g in groups for a in g.alerts}
    assert names <= cluster_pages, (names - cluster_pages, run.summary(cluster.name))
    assert not [a for g in groups for a in g.alerts if dict(a).get("node")], run.summary(cluster.name)
    # the incident is real: at least half the nodes fire a per-node page in Prometheus
    node_pages = {n for n, r in run.receivers.items() if r == PAGE} - cluster_pages
    nodes = {node for name, fired in run.fired(cluster.name).items() if name in node_pages for node in fired}
    assert len(nodes) >= cluster.nodes // 2, (len(nodes), run.summary(cluster.name))


def test_bad_rollout_tickets_are_one_group_per_alert_name(run: Replay) -> None:
    cluster = BY_NAME["rollout"]
    groups = run.groups_of(TICKET, cluster.name, before=end_of_window(cluster))
    names = {dict(a)["alertname"] for g in groups for a in g.alerts}
    assert len(groups) == len(names), run.summary(cluster.name)
    scope = fleet_pack.DEFAULTS["scopeLabel"]
    assert all(set(g.labels) <= {scope, "cluster", "alertname"} for g in groups), [g.labels for g in groups]


def test_one_bad_node_pages_once_for_itself(run: Replay) -> None:
    cluster = BY_NAME["one-bad"]
    groups = run.groups_of(PAGE, cluster.name, before=end_of_window(cluster))
    assert len(groups) == 1, run.summary(cluster.name)
    assert {dict(a).get("node") for g in groups for a in g.alerts} == {"node-001"}, run.summary(cluster.name)
    tickets = run.groups_of(TICKET, cluster.name)
    assert {dict(a).get("node") for g in tickets for a in g.alerts} <= {"node-001"}, run.summary(cluster.name)


@pytest.mark.parametrize("name", ["hubble-down", "exporters-gone", "exporters-absent"])
def test_cluster_wide_outage_notifies_once_without_node_noise(run: Replay, name: str) -> None:
    """The cluster alert (page or ticket: its severity in the pack and the shipped routes decide) is the only
    notifiable group of the cluster; every per-node echo is held back by it."""
    alert = FLEET_ALERTS[name]
    receiver = run.receivers.get(alert)
    assert receiver in (PAGE, TICKET), f"{alert} is routed to {receiver!r}: the outage would notify nobody"
    assert run.fired(name).get(alert) == {""}, run.summary(name)
    groups = run.groups_of(receiver, name)
    assert [{dict(a)["alertname"] for a in g.alerts} for g in groups] == [{alert}], run.summary(name)
    other = TICKET if receiver == PAGE else PAGE
    assert not run.groups_of(other, name), run.summary(name)
    noisy = [a for g in run.groups_of(PAGE, name) + run.groups_of(TICKET, name) for a in g.alerts
             if dict(a).get("node")]
    assert not noisy, (noisy[:3], run.summary(name))


def test_inhibitions_happen_and_stay_within_their_cluster(run: Replay) -> None:
    assert run.inhibited, "nothing was inhibited: the scoping is untested\n" + run.summary("rollout")
    crossed = [(i, by) for i, by in run.inhibited if any(b.get("cluster") != i.get("cluster") for b in by)]
    assert not crossed, crossed[:3]
