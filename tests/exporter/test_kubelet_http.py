"""The kubelet source against the simulator's kubelet over real TLS: auth, rotation, faults, caching."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cilium_node_exporter.sources.kubelet import KubeletSource
from cilium_node_simulator.k8s import make_tls
from tests.support.cluster import Cluster, MiB, scrape
from tests.support.procs import free_port


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, working_set=310 * MiB, rss=260 * MiB, limit=1024 * MiB)
    yield c
    c.close()


def make(cluster: Cluster, *extra: str, **overrides: object) -> tuple[KubeletSource, object]:
    cfg = cluster.config(*extra, **overrides)
    state = cluster.state(cfg)
    source = KubeletSource(cfg, state, clock=lambda: make.now)  # type: ignore[attr-defined]
    source.start()
    return source, state


make.now = 0.0  # type: ignore[attr-defined]


def tick() -> None:
    make.now += 10.0  # type: ignore[attr-defined]


def test_token_accepted_and_values_exported(cluster: Cluster) -> None:
    _, state = make(cluster)
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_up", source="kubelet") == 1
    assert m.value("cilium_node_agent_memory_working_set_bytes") == 310 * MiB
    assert m.value("cilium_node_agent_memory_rss_bytes") == 260 * MiB
    assert m.value("cilium_node_agent_memory_limit_bytes") == 1024 * MiB
    assert m.value("cilium_node_agent_container_start_time_seconds") > 1.7e9
    assert m.has("cilium_node_agent_memory_usage_bytes")


def test_two_scrapes_within_the_cache_cost_one_call(cluster: Cluster) -> None:
    _, state = make(cluster)
    scrape(state)
    scrape(state)
    assert cluster.kubelet.requests == 1
    tick()
    scrape(state)
    assert cluster.kubelet.requests == 2


def test_no_limit_no_limit_series(cluster: Cluster) -> None:
    cluster.runtime.set(limit=None)
    cluster.model.update()
    _, state = make(cluster)
    m = scrape(state)
    assert not m.has("cilium_node_agent_memory_limit_bytes")
    assert m.value("cilium_node_agent_memory_working_set_bytes") == 310 * MiB


def test_token_rotation_rereads_the_file(cluster: Cluster) -> None:
    _, state = make(cluster)
    assert scrape(state).value("cilium_node_exporter_source_up", source="kubelet") == 1
    cluster.tokens.tokens = {"token-2"}  # the kubelet now only accepts the rotated token
    tick()
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_up", source="kubelet") == 0
    assert m.value("cilium_node_exporter_source_errors_total", reason="auth", source="kubelet") == 1
    assert not m.has("cilium_node_agent_memory_working_set_bytes")  # not served stale
    (cluster.dir / "client" / "token").write_text("token-2\n")
    tick()
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_up", source="kubelet") == 1
    assert m.value("cilium_node_agent_memory_working_set_bytes") == 310 * MiB


@pytest.mark.parametrize(("fault", "reason"), [("401", "auth"), ("403", "auth"), ("500", "http"),
                                                ("garbage", "decode"), ("wrong-shape", "protocol"),
                                                ("huge", "protocol"), ("reset", "connect")])
def test_faults_drop_values_and_count_errors(cluster: Cluster, fault: str, reason: str) -> None:
    _, state = make(cluster)
    assert scrape(state).has("cilium_node_agent_memory_working_set_bytes")
    cluster.kubelet.fault = fault
    tick()
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_up", source="kubelet") == 0
    assert m.value("cilium_node_exporter_source_errors_total", reason=reason, source="kubelet") == 1
    assert not m.count("cilium_node_agent_memory_working")
    assert m.has("cilium_node_agent_memory_envelope_upper_bytes")  # the envelope is always there
    cluster.kubelet.fault = "none"
    tick()
    assert scrape(state).value("cilium_node_exporter_source_up", source="kubelet") == 1


def test_one_log_line_per_distinct_problem(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    _, state = make(cluster)
    cluster.kubelet.fault = "500"
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            tick()
            scrape(state)
    lines = [r for r in caplog.records if "HTTP 500" in r.getMessage()]
    assert len(lines) == 1
    assert state.health["kubelet"].errors["http"] == 5


def test_timeout(cluster: Cluster) -> None:
    cluster.kubelet.fault = "slow"
    cluster.kubelet.slow_seconds = 3.0
    _, state = make(cluster, kubelet_timeout=0.3)
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_errors_total", reason="timeout", source="kubelet") == 1
    assert m.value("cilium_node_exporter_source_up", source="kubelet") == 0


def test_connection_refused(cluster: Cluster) -> None:
    port = free_port()  # nothing listens there (not a port-0 pick: the kernel hands those out again)
    _, state = make(cluster, kubelet_address=f"https://127.0.0.1:{port}")
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_errors_total", reason="connect", source="kubelet") == 1


def test_wrong_ca_is_tls_and_the_log_names_the_fix(cluster: Cluster, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    other = make_tls(tmp_path / "other")
    with caplog.at_level(logging.WARNING):
        _, state = make(cluster, kubelet_ca=str(other.ca))
        m = scrape(state)
    assert m.value("cilium_node_exporter_source_errors_total", reason="tls", source="kubelet") == 1
    message = " ".join(r.getMessage() for r in caplog.records)
    for hint in ("--kubelet-insecure-skip-verify", "--kubelet-ca", "kubelet.insecureSkipVerify"):
        assert hint in message


def test_insecure_skip_verify_accepts_an_unknown_ca(cluster: Cluster, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    other = make_tls(tmp_path / "other")
    with caplog.at_level(logging.WARNING):
        _, state = make(cluster, kubelet_ca=str(other.ca), kubelet_insecure_skip_verify=True)
    assert any("insecure-skip-verify" in r.getMessage() for r in caplog.records)  # warned at start
    assert scrape(state).value("cilium_node_exporter_source_up", source="kubelet") == 1


def test_no_agent_pod_no_agent_series_source_up(cluster: Cluster) -> None:
    cluster.kubelet.fault = "no-agent"
    _, state = make(cluster)
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_up", source="kubelet") == 1
    assert not m.count("cilium_node_agent_memory_working") and not m.count("cilium_node_agent_container")
    assert not m.count("cilium_node_agent_info")


def test_missing_fields_from_the_kubelet_are_absent_not_zero(cluster: Cluster) -> None:
    cluster.kubelet.fault = "missing-fields"
    _, state = make(cluster)
    m = scrape(state)
    assert not m.has("cilium_node_agent_memory_rss_bytes")
    assert not m.has("cilium_node_agent_memory_usage_bytes")
    assert m.value("cilium_node_agent_memory_working_set_bytes") == 310 * MiB


def test_agent_down_between_restarts_is_absent(cluster: Cluster) -> None:
    cluster.runtime.set(running=False)
    cluster.model.update()
    _, state = make(cluster)
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_up", source="kubelet") == 1
    assert not m.has("cilium_node_agent_memory_working_set_bytes")


def test_missing_token_file_is_auth(cluster: Cluster, tmp_path: Path) -> None:
    _, state = make(cluster, kubelet_token_file=str(tmp_path / "nope"))
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_errors_total", reason="auth", source="kubelet") == 1
    assert cluster.kubelet.requests == 0
