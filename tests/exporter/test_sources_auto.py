"""--sources=auto in the real exporter process: the agent metrics source is used where Cilium serves its
metrics, unavailable (said once, no source_up, no error) where nothing listens, and down when listed
explicitly; the settings source likewise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cilium_node_simulator.agent_metrics_fake import AgentMetricsFake, NoAgentMetrics
from tests.support.cluster import Cluster
from tests.support.procs import Exporter, Metrics

UP, UNAVAILABLE, ERRORS = ("cilium_node_exporter_source_up", "cilium_node_exporter_source_unavailable",
                           "cilium_node_exporter_source_errors_total")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, kubelet=True, kubeapi=True, agent_api=True)
    yield c
    c.close()


def has_series(m: Metrics, name: str, source: str) -> bool:
    return bool(m.series(name, source=source))


def test_auto_without_agent_metrics_is_unavailable_not_down(tmp_path: Path, cluster: Cluster) -> None:
    absent = NoAgentMetrics()
    port = absent.port
    flags = [*cluster.flags, "--sources=auto", f"--agent-metrics-address={absent.url}/metrics",
             f"--hubble-address=unix://{tmp_path}/no-hubble.sock"]
    try:
        with Exporter(tmp_path, *flags) as exp:
            m = exp.wait_metrics(lambda m: m.value(UNAVAILABLE, source="agent") == 1
                                 and m.value(UP, source="settings") == 1, what="agent unavailable, settings up")
            assert not has_series(m, UP, "agent")  # no source_up, so no SourceDown page
            assert m.value(UNAVAILABLE, source="settings") == 0
            assert not has_series(m, UNAVAILABLE, "kubelet")  # required sources have no such series
            for _ in range(5):
                m = exp.scrape()
            assert m.sum(ERRORS, source="agent") == 0  # not an error
            assert m.value(UP, source="hubble") == 0  # hubble stays required: down, not unavailable
            assert not m.has("cilium_node_datapath_dropped_packets_total")
            assert exp.log_count(r"source agent is not available on this node") == 1, exp.log()
            assert "prometheus.enabled" in exp.log()
            # Cilium's metrics get switched on: the source is used from the next scrape
            absent.stop()
            agent = AgentMetricsFake(port, cluster.model).start()
            try:
                m = exp.wait_metrics(lambda m: m.value(UP, source="agent") == 1, what="agent up")
                assert m.value(UNAVAILABLE, source="agent") == 0
                assert m.has("cilium_node_datapath_forwarded_packets_total")
                assert exp.log_count(r"source agent is available") == 1
            finally:
                agent.stop()
            # and off again: unavailable, not down
            m = exp.wait_metrics(lambda m: m.value(UNAVAILABLE, source="agent") == 1, what="unavailable again")
            assert not has_series(m, UP, "agent")
    finally:
        absent.stop()


def test_explicit_agent_source_without_endpoint_is_down(tmp_path: Path, cluster: Cluster) -> None:
    absent = NoAgentMetrics()
    try:
        with Exporter(tmp_path, *cluster.flags, "--sources=kubelet,agent",
                      f"--agent-metrics-address={absent.url}/metrics") as exp:
            m = exp.wait_metrics(lambda m: m.value(UP, source="agent") == 0, what="agent down")
            assert m.value(ERRORS, source="agent", reason="connect") >= 1
            assert not m.has(UNAVAILABLE)
            assert exp.log_count("connection refused") == 1  # once per distinct problem
    finally:
        absent.stop()


def test_auto_agent_requires_it_while_settings_stay_optional(tmp_path: Path, cluster: Cluster) -> None:
    absent = NoAgentMetrics()
    try:
        with Exporter(tmp_path, *cluster.flags, "--sources=auto,agent", f"--agent-metrics-address={absent.url}/x",
                      f"--agent-api-socket={tmp_path}/none.sock", "--settings-from=agent-api",
                      f"--hubble-address=unix://{tmp_path}/no-hubble.sock") as exp:
            m = exp.wait_metrics(lambda m: has_series(m, UP, "agent") and has_series(m, UNAVAILABLE, "settings"),
                                 what="agent down, settings unavailable")
            assert m.value(UP, source="agent") == 0 and m.value(UNAVAILABLE, source="settings") == 1
            assert not has_series(m, UP, "settings") and not has_series(m, UNAVAILABLE, "agent")
    finally:
        absent.stop()
