"""A small grpcio Hubble server for the exporter's stream-logic tests (resume, dedupe, reconnect).

The product's simulator (``cilium_node_simulator``) is the full-fidelity fake; this one
keeps an explicit, inspectable ring of pre-built responses so tests can script exact replays.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from cilium_node_exporter.api.observer import observer_pb2


@dataclass
class FakeHubble:
    """Serves GetFlows (follow, since-rewind over ``ring``) and ServerStatus on a unix socket."""

    socket_path: str
    version: str = "1.19.4"
    ring: list[observer_pb2.GetFlowsResponse] = field(default_factory=list)
    requests: list[observer_pb2.GetFlowsRequest] = field(default_factory=list)
    seen_flows: int = 0
    refuse_masks: bool = False  # answer a masked request as a server whose Flow lacks a path would
    _server: grpc.Server | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stopping: bool = False

    def push(self, *responses: observer_pb2.GetFlowsResponse) -> None:
        with self._cond:
            self.ring.extend(responses)
            self.seen_flows += sum(1 for r in responses if r.HasField("flow"))
            self._cond.notify_all()

    def _get_flows(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext):
        self.requests.append(request)
        if self.refuse_masks and (request.field_mask.paths or request.experimental.field_mask.paths):
            context.abort(grpc.StatusCode.UNKNOWN, "invalid fieldmask")  # a Go error: grpc-go sends UNKNOWN
        since = request.since.seconds * 10**9 + request.since.nanos if request.HasField("since") else None
        with self._cond:
            if since is None:
                pos = len(self.ring)
            else:
                pos = 0
                while pos < len(self.ring) and self.ring[pos].HasField("flow") and _t(self.ring[pos]) < since:
                    pos += 1
        while context.is_active():
            with self._cond:
                while pos >= len(self.ring) and not self._stopping and context.is_active():
                    self._cond.wait(0.05)
                if self._stopping:
                    return
                batch = self.ring[pos:]
                pos = len(self.ring)
            for resp in batch:
                if resp.HasField("flow") and since is not None and _t(resp) < since:
                    continue
                yield resp

    def _status(self, request: observer_pb2.ServerStatusRequest, context: grpc.ServicerContext):
        with self._cond:
            return observer_pb2.ServerStatusResponse(num_flows=len(self.ring), max_flows=4095,
                                                     seen_flows=self.seen_flows, version=self.version)

    def start(self) -> FakeHubble:
        self._stopping = False
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "GetFlows": grpc.unary_stream_rpc_method_handler(
                self._get_flows, request_deserializer=observer_pb2.GetFlowsRequest.FromString,
                response_serializer=observer_pb2.GetFlowsResponse.SerializeToString),
            "ServerStatus": grpc.unary_unary_rpc_method_handler(
                self._status, request_deserializer=observer_pb2.ServerStatusRequest.FromString,
                response_serializer=observer_pb2.ServerStatusResponse.SerializeToString),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("observer.Observer", handlers),))
        server.add_insecure_port("unix:" + self.socket_path)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.stop(grace=None).wait(2)
            self._server = None


def _t(resp: observer_pb2.GetFlowsResponse) -> int:
    return resp.flow.time.seconds * 10**9 + resp.flow.time.nanos
