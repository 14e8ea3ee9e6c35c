"""Helpers for the simulator tests: a real grpcio client on the simulator's unix socket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator.hubble_server import HubbleServer


@contextmanager
def running_server(tmp: Path, **kw: Any) -> Iterator[HubbleServer]:
    server = HubbleServer(socket_path=str(tmp / "run" / "hubble.sock"), **kw).start()
    try:
        yield server
    finally:
        server.stop()


def channel(server: HubbleServer, **options: Any) -> grpc.Channel:
    return grpc.insecure_channel(f"unix:{server.socket_path}", options=list(options.items()))


def get_flows(ch: grpc.Channel) -> Callable[..., Any]:
    return ch.unary_stream("/observer.Observer/GetFlows",
                           request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
                           response_deserializer=None)


def server_status(ch: grpc.Channel) -> observer_pb2.ServerStatusResponse:
    call = ch.unary_unary("/observer.Observer/ServerStatus",
                          request_serializer=observer_pb2.ServerStatusRequest.SerializeToString,
                          response_deserializer=observer_pb2.ServerStatusResponse.FromString)
    return call(observer_pb2.ServerStatusRequest(), timeout=5)


def collect(ch: grpc.Channel, req: observer_pb2.GetFlowsRequest, timeout: float = 5
            ) -> list[observer_pb2.GetFlowsResponse]:
    """A non-follow GetFlows to completion, decoded."""
    return [observer_pb2.GetFlowsResponse.FromString(b) for b in get_flows(ch)(req, timeout=timeout)]
