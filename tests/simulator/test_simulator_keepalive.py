"""grpc-go's keepalive enforcement in the simulator: too many pings get GOAWAY ENHANCE_YOUR_CALM."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from cilium_node_exporter.api.observer import observer_pb2
from tests.support.simulator_grpc import channel, get_flows, running_server


def test_aggressive_keepalive_gets_goaway_too_many_pings(tmp_path: Path) -> None:
    with running_server(tmp_path, keepalive_min_time=10.0) as server:
        ch = channel(server, **{"grpc.keepalive_time_ms": 500, "grpc.http2.max_pings_without_data": 0,
                                "grpc.keepalive_permit_without_calls": 1})
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            list(get_flows(ch)(observer_pb2.GetFlowsRequest(follow=True), timeout=15))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "too_many_pings" in (err.value.details() or "")
        assert server.stats["goaway_too_many_pings"] == 1
        assert time.monotonic() - start < 10  # the third strike, not the deadline


def test_polite_keepalive_is_tolerated(tmp_path: Path) -> None:
    with running_server(tmp_path, keepalive_min_time=0.2) as server:
        ch = channel(server, **{"grpc.keepalive_time_ms": 300, "grpc.http2.max_pings_without_data": 0})
        with pytest.raises(grpc.RpcError) as err:
            list(get_flows(ch)(observer_pb2.GetFlowsRequest(follow=True), timeout=1.6))
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert server.stats["goaway_too_many_pings"] == 0
