"""The Hubble source over a real gRPC unix socket: counting, resume without double counts, gaps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_exporter.config import parse_args
from cilium_node_exporter.sources.hubble.stream import HubbleSource
from tests.support.cluster import scrape
from tests.support.hubble_fake import FakeHubble
from tests.support.procs import wait_until as wait_for

BASE_NS = 1_700_000_000 * 10**9


def drop(i: int, reason: int = 133, uuid: bool = True) -> observer_pb2.GetFlowsResponse:
    t = BASE_NS + i * 1_000_000
    f = flow_pb2.Flow(time={"seconds": t // 10**9, "nanos": t % 10**9}, event_type={"type": 1},
                      verdict=flow_pb2.DROPPED, drop_reason_desc=reason, traffic_direction=flow_pb2.EGRESS,
                      uuid=f"u-{i}" if uuid else "")
    return observer_pb2.GetFlowsResponse(flow=f, time=f.time)


@pytest.fixture
def sock(tmp_path: Path) -> str:
    return str(tmp_path / "hubble.sock")


def make_source(sock: str, *extra: str) -> tuple[HubbleSource, ExporterState]:
    cfg = parse_args(["--sources", "hubble", "--hubble-address", f"unix://{sock}", "--hubble-backoff-max", "0.2",
                      "--hubble-status-interval", "0.2", *extra], environ={})
    state = ExporterState(sources=cfg.sources, envelope=cfg.memory_envelope)
    return HubbleSource(cfg, state), state


@contextmanager
def running(sock: str, server: FakeHubble | None = None, *extra: str) -> Iterator[tuple[HubbleSource, ExporterState]]:
    """The Hubble source started against ``sock`` (and ``server`` started first, when given); both stopped
    at the end, whatever the test did to them."""
    if server is not None:
        server.start()
    source, state = make_source(sock, *extra)
    source.start()
    try:
        yield source, state
    finally:
        source.stop()
        if server is not None:
            server.stop()


def drops_total(state: ExporterState) -> int:
    return sum(state.datapath.drops.values())


def test_counts_flow_through_to_metrics(sock: str) -> None:
    server = FakeHubble(sock)
    with running(sock, server) as (_, state):
        wait_for(lambda: state.hubble_gap.connected)
        server.push(*(drop(i) for i in range(100)))
        wait_for(lambda: drops_total(state) == 100)
        m = scrape(state)
        assert m.value("cilium_node_drops_total", direction="egress", reason="POLICY_DENIED") == 100
        assert m.value("cilium_node_exporter_source_up", source="hubble") == 1
        assert m.value("cilium_node_exporter_events_total", kind="drop") == 100
        wait_for(lambda: state.hubble_status is not None)
        assert scrape(state).value("cilium_node_hubble_info", version="1.19.4") == 1
        req = server.requests[0]
        assert [f.type for f in req.whitelist[0].event_type] == [1, 5, 129] and req.follow
        assert "drop_reason_desc" in req.field_mask.paths and not req.HasField("since")


def test_server_restart_resumes_without_double_count(sock: str) -> None:
    server = FakeHubble(sock)
    with running(sock, server) as (_, state):
        wait_for(lambda: state.hubble_gap.connected)
        server.push(*(drop(i) for i in range(50)))
        wait_for(lambda: drops_total(state) == 50)
        server.stop()  # the agent restarts: the stream breaks
        wait_for(lambda: not state.hubble_gap.connected)
        assert state.health["hubble"].up is False
        # the same ring comes back (replayed by the rewind) plus new events
        server.push(*(drop(i) for i in range(50, 80)))
        server.start()
        wait_for(lambda: state.hubble_gap.connected and state.hubble_gap.reconnects == 1)
        server.push(*(drop(i) for i in range(80, 90)))
        wait_for(lambda: drops_total(state) == 90)
        last = server.requests[-1]
        assert last.HasField("since")  # resumed from the last counted event
        m = scrape(state)
        assert m.value("cilium_node_exporter_hubble_reconnects_total") == 1
        assert m.value("cilium_node_exporter_hubble_disconnected_seconds_total") > 0
        assert m.value("cilium_node_exporter_source_errors_total", reason="connect", source="hubble") >= 1
    assert drops_total(state) == 90  # nothing counted twice


def test_resume_without_uuids_old_server(sock: str) -> None:
    server = FakeHubble(sock, version="1.13.2")
    with running(sock, server) as (_, state):
        wait_for(lambda: state.hubble_gap.connected)
        server.push(*(drop(i, uuid=False) for i in range(20)))
        wait_for(lambda: drops_total(state) == 20)
        server.stop()
        wait_for(lambda: not state.hubble_gap.connected)
        server.push(*(drop(i, uuid=False) for i in range(20, 25)))
        server.start()
        wait_for(lambda: drops_total(state) == 25)
        assert not server.requests[0].HasField("field_mask")  # 1.13: no mask support
    assert drops_total(state) == 25


def test_refused_mask_falls_back_once_to_no_mask(sock: str) -> None:
    server = FakeHubble(sock, refuse_masks=True)
    with running(sock, server) as (_, state):
        wait_for(lambda: state.hubble_gap.connected)
        server.push(*(drop(i) for i in range(10)))
        wait_for(lambda: drops_total(state) == 10)
        masked = [r for r in server.requests if r.field_mask.paths]
        assert len(masked) == 1 and not server.requests[-1].field_mask.paths  # refused once, never again
        m = scrape(state)
        assert m.value("cilium_node_exporter_source_errors_total", reason="rejected", source="hubble") == 1
        assert m.value("cilium_node_exporter_source_up", source="hubble") == 1


def test_refused_mask_is_tried_again_when_the_server_reports_a_new_version(sock: str) -> None:
    """The refusal belongs to the server version that answered it: after an upgrade (the agent restarts with
    another release) the exporter sends its mask again; the same version restarting stays unmasked."""
    server = FakeHubble(sock, version="1.19.3", refuse_masks=True)
    with running(sock, server) as (_, state):
        wait_for(lambda: state.hubble_gap.connected)
        server.stop()  # the agent restarts with the same release: still no mask
        wait_for(lambda: not state.hubble_gap.connected)
        server.start()
        wait_for(lambda: state.hubble_gap.connected and state.hubble_gap.reconnects == 1)
        assert [bool(r.field_mask.paths) for r in server.requests] == [True, False, False]
        server.stop()  # upgraded: a release that takes the mask
        wait_for(lambda: not state.hubble_gap.connected)
        server.version, server.refuse_masks = "1.19.4", False
        server.start()
        wait_for(lambda: state.hubble_gap.connected and state.hubble_gap.reconnects == 2)
        server.push(*(drop(i) for i in range(5)))
        wait_for(lambda: drops_total(state) == 5)
        assert server.requests[-1].field_mask.paths, "no mask sent to the new release after an old one refused it"
        assert "drop_reason_desc" in server.requests[-1].field_mask.paths


def test_socket_absent_at_start_then_appears(sock: str) -> None:
    with running(sock) as (_, state):
        wait_for(lambda: state.health["hubble"].errors["connect"] >= 1)
        assert not state.hubble_gap.connected
        m = scrape(state)
        assert m.value("cilium_node_exporter_source_up", source="hubble") == 0
        server = FakeHubble(sock).start()
        wait_for(lambda: state.hubble_gap.connected)
        server.push(drop(1))
        wait_for(lambda: drops_total(state) == 1)
        assert state.hubble_gap.reconnects == 0  # the first stream is not a reconnect
        server.stop()


def test_stop_is_prompt(sock: str) -> None:
    server = FakeHubble(sock).start()
    source, state = make_source(sock)
    source.start()
    wait_for(lambda: state.hubble_gap.connected)
    t = threading.Thread(target=source.stop)
    t.start()
    t.join(3)
    assert not t.is_alive()
    server.stop()


def test_source_up_absent_until_first_attempt_completes(sock: str) -> None:
    source, state = make_source(sock)
    assert not scrape(state).series("cilium_node_exporter_source_up", source="hubble")
    source.start()
    try:
        wait_for(lambda: state.health["hubble"].attempted)
        assert scrape(state).value("cilium_node_exporter_source_up", source="hubble") == 0
    finally:
        source.stop()
