"""The real-time fleet run's own bookkeeping (no stack started)."""

from __future__ import annotations

from tests.e2e.fleet_run import CLUSTERS, SMOKE, ClusterRun, answering_clusters


def test_failed_scrapes_leave_out_clusters_whose_scenario_takes_exporters_down() -> None:
    """"TOO SLOW" counts failed scrapes only where every exporter keeps answering: the exporters-gone and
    exporters-absent scenarios take exporters down by design; every other scenario's exporters stay up."""
    assert answering_clusters(SMOKE) == ["healthy", "one-bad"]
    assert answering_clusters(CLUSTERS) == ["rollout", "healthy", "one-bad", "hubble-down"]
    assert answering_clusters((ClusterRun("x", "exporters-gone", 3, 600),)) == []
