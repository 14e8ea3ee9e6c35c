"""The agent metrics source: Cilium's drop-reason strings to DropReason names, direction, filtering,
and the source against the simulator's agent endpoint (faults drop the values)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cilium_node_exporter.contract import DROP_REASONS
from cilium_node_exporter.sources.agent import (
    AgentMetricsSource,
    direction_label,
    filter_lines,
    parse_metrics,
    reason_name,
)
from cilium_node_exporter.sources.k8s_http import SourceError
from tests.support.cluster import Cluster, scrape

AGENT_TEXT = """\
# HELP cilium_drop_count_total Total dropped packets, tagged by drop reason and ingress/egress direction
# TYPE cilium_drop_count_total counter
cilium_drop_count_total{direction="INGRESS",reason="Policy denied"} 120
cilium_drop_count_total{direction="EGRESS",reason="Policy denied"} 3
cilium_drop_count_total{direction="INGRESS",reason="CT: Map insertion failed"} 7
cilium_drop_count_total{direction="INGRESS",reason="Policy denied by denylist"} 2
cilium_drop_count_total{direction="EGRESS",reason="A reason from Cilium 2.0"} 5
cilium_drop_count_total{direction="EGRESS",reason="Another new reason"} 6
cilium_drop_count_total{direction="INGRESS",reason="Success"} 1
cilium_drop_count_total{direction="SERVICE",reason="Service backend not found"} 4
cilium_drop_count_total{direction="EGRESS",reason="206, 0"} 9
# HELP cilium_drop_bytes_total Total dropped bytes
# TYPE cilium_drop_bytes_total counter
cilium_drop_bytes_total{direction="INGRESS",reason="Policy denied"} 9999
# HELP cilium_forward_count_total Total forwarded packets, tagged by ingress/egress direction
# TYPE cilium_forward_count_total counter
cilium_forward_count_total{direction="INGRESS"} 1e+06
cilium_forward_count_total{direction="EGRESS"} 2000
cilium_forward_count_total{direction="SERVICE"} 30
# HELP cilium_bpf_map_pressure Fill percentage of map, tagged by map name
# TYPE cilium_bpf_map_pressure gauge
cilium_bpf_map_pressure{map_name="cilium_ct4_global"} 0.93
# HELP cilium_bpf_map_ops_total Total operations on map
# TYPE cilium_bpf_map_ops_total counter
cilium_bpf_map_ops_total{map_name="x",operation="update",outcome="success"} 1
"""


def test_every_monitor_string_maps_to_its_enum_name() -> None:
    for name, text in DROP_REASONS.values():
        assert reason_name(text) == name
    assert reason_name("Policy denied") == "POLICY_DENIED"
    assert reason_name("Fragmentation needed") == "CT_MISSING_TCP_ACK_FLAG"  # the table's odd one out


def test_unknown_strings_are_other_and_enum_names_pass_through() -> None:
    assert reason_name("Something Cilium adds next year") == "other"
    assert reason_name("") == "other"
    assert reason_name("POLICY_DENIED") == "POLICY_DENIED"


def test_drop_reason_ext_codes_become_reason_n_like_hubble() -> None:
    """pkg/monitor/api/drop.go DropReasonExt: "<code>, <ext>" for a code without a string (main has
    206 "No device", which flow.proto and this exporter do not name yet)."""
    assert reason_name("206, 0") == "REASON_206"  # Hubble's drop_reason_desc 206 is REASON_206 too
    assert reason_name("250, -3") == "REASON_250"
    assert reason_name("133, 0") == "POLICY_DENIED"  # a code the exporter knows keeps its name
    assert reason_name("Policy denied, 5") == "POLICY_DENIED"  # a known string with an extended error
    assert reason_name("Unknown thing, 5") == "other"
    assert reason_name("999, 0") == "other"  # not a uint8 code: bounded
    assert reason_name("LB, sock cgroup: Reverse entry stale") == "other"
    values = {reason_name(f"{code}, {ext}") for code in range(1000) for ext in (0, 1, -1)}
    assert len(values) <= 257  # REASON_0..REASON_255 (or their names) and other


def test_direction_is_the_metrics_map_direction() -> None:
    """pkg/maps/metricsmap/metricsmap.go: INGRESS, EGRESS, SERVICE, UNKNOWN."""
    assert direction_label("INGRESS") == "ingress"
    assert direction_label("Egress") == "egress"
    assert direction_label("SERVICE") == "service"
    assert direction_label("UNKNOWN") == "unknown"
    assert direction_label("sideways") == "unknown"


def test_parse_maps_and_sums() -> None:
    snap = parse_metrics(filter_lines([AGENT_TEXT.encode()]))
    assert snap.dropped == {("POLICY_DENIED", "ingress"): 120, ("POLICY_DENIED", "egress"): 3,
                            ("CT_MAP_INSERTION_FAILED", "ingress"): 7, ("POLICY_DENY", "ingress"): 2,
                            ("other", "egress"): 11, ("DROP_REASON_UNKNOWN", "ingress"): 1,
                            ("SERVICE_BACKEND_NOT_FOUND", "service"): 4, ("REASON_206", "egress"): 9}
    assert snap.forwarded == {"ingress": 1e6, "egress": 2000, "service": 30}
    assert snap.map_pressure == {"cilium_ct4_global": 0.93}


def test_filter_works_across_chunk_boundaries() -> None:
    data = AGENT_TEXT.encode()
    chunks = [data[i:i + 7] for i in range(0, len(data), 7)]
    assert filter_lines(chunks) == filter_lines([data])
    assert "cilium_drop_bytes_total" not in filter_lines([data])
    assert "cilium_bpf_map_ops_total" not in filter_lines([data])


@pytest.mark.parametrize("body", [b"<html>not metrics</html>", b"cilium_drop_count_total{reason=\n# TYPE x gauge\n",
                                  b"# TYPE cilium_forward_count_total counter\ncilium_forward_count_total{} abc\n"])
def test_garbage_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(SourceError) as err:
        parse_metrics(filter_lines([body]))
    assert err.value.reason == "decode"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, kubelet=False, agent=True)
    yield c
    c.close()


def test_source_against_the_simulator(cluster: Cluster) -> None:
    now = [0.0]
    cfg = cluster.config(agent_timeout=0.3)
    state = cluster.state(cfg)
    AgentMetricsSource(cfg, state, clock=lambda: now[0]).start()
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_up", source="agent") == 1
    dropped = "cilium_node_datapath_dropped_packets_total"
    assert m.series(dropped, direction="ingress", reason="POLICY_DENIED")
    assert m.series(dropped, direction="egress", reason="REASON_206")  # "206, 0"
    assert m.series(dropped, direction="service", reason="SERVICE_BACKEND_NOT_FOUND")
    assert m.series("cilium_node_datapath_forwarded_packets_total", direction="egress")
    assert m.series("cilium_node_datapath_forwarded_packets_total", direction="service")
    assert m.value("cilium_node_bpf_map_pressure", map_name="ct4_global") == 0.12
    scrape(state)
    assert cluster.agent.requests == 1  # cached within a second
    for fault, reason in (("500", "http"), ("garbage", "decode"), ("slow", "timeout")):
        cluster.agent.fault = fault
        cluster.agent.slow_seconds = 2.0
        now[0] += 10
        before = state.health["agent"].errors.get(reason, 0)
        m = scrape(state)
        assert m.value("cilium_node_exporter_source_up", source="agent") == 0
        assert state.health["agent"].errors[reason] == before + 1
        assert not m.count("cilium_node_datapath_")  # nothing stale
    cluster.agent.fault = "none"
    cluster.runtime.set(running=False)
    cluster.model.update()
    now[0] += 10
    m = scrape(state)
    assert m.value("cilium_node_exporter_source_up", source="agent") == 0  # a dead agent drops the connection


def test_map_pressure_series_are_capped() -> None:
    from cilium_node_exporter.sources.agent import MAX_MAPS

    body = "# TYPE cilium_bpf_map_pressure gauge\n" + "".join(
        f'cilium_bpf_map_pressure{{map_name="m{i}"}} 0.5\n' for i in range(MAX_MAPS + 50))
    snapshot = parse_metrics(filter_lines([body.encode()]))
    assert len(snapshot.map_pressure) == MAX_MAPS
