"""The node-local Hubble Observer service: RPC dispatch, ServerStatus, GetNamespaces, health, idle streams.

``/observer.Observer/<M>``: ``GetFlows`` (:mod:`.getflows`), ``ServerStatus``, ``GetNamespaces``,
``GetAgentEvents``/``GetDebugEvents`` (no events), ``GetNodes`` (UNIMPLEMENTED, as on the node-local
server: only Hubble Relay implements it), and ``/grpc.health.v1.Health/Check`` for
``hubble.server.Observer`` (the service name the agent registers).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator.getflows import get_flows
from cilium_node_simulator.grpc_h2 import H2Stream, StreamGone
from cilium_node_simulator.grpc_wire import Status, frame

if TYPE_CHECKING:
    from cilium_node_simulator.hubble_server import HubbleServer

log = logging.getLogger(__name__)

SERVICE = "observer.Observer"
HEALTH_SERVICE_NAME = "hubble.server.Observer"


async def dispatch(server: HubbleServer, stream: H2Stream) -> None:
    """Answer one RPC; a bug in a handler ends that RPC with INTERNAL, never the loop."""
    conn = stream.conn
    try:
        if not stream.requests and stream.reader.pending:
            conn.send_trailers(stream, Status.INTERNAL, "grpc: truncated request message")
            return
        if any(compressed for compressed, _ in stream.requests):
            conn.send_trailers(stream, Status.UNIMPLEMENTED,
                               "grpc: Decompressor is not installed for grpc-encoding \"\"")
            return
        payload = stream.requests[0][1] if stream.requests else b""
        service, _, method = stream.path.lstrip("/").partition("/")
        if service == SERVICE:
            if method == "GetFlows":
                await get_flows(server, stream, payload)
            elif method == "ServerStatus":
                await _server_status(server, stream)
            elif method == "GetNamespaces":
                await _get_namespaces(server, stream)
            elif method == "GetNodes":
                conn.send_trailers(stream, Status.UNIMPLEMENTED, "GetNodes not implemented")
            elif method in ("GetAgentEvents", "GetDebugEvents"):
                await _idle_events(stream, payload)
            else:
                conn.send_trailers(stream, Status.UNIMPLEMENTED, f"unknown method {method} for service {service}")
        elif service == "grpc.health.v1.Health" and method in ("Check", "Watch"):
            await _health(stream, payload, watch=method == "Watch")
        else:
            conn.send_trailers(stream, Status.UNIMPLEMENTED, f"unknown service {service}")
    except StreamGone:
        pass
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug here must not kill the loop
        log.exception("simulator: handler error on %s", stream.path)
        conn.send_trailers(stream, Status.INTERNAL, f"simulator error: {exc}")
    finally:
        server.stream_closed(stream)


async def _unary(stream: H2Stream, message: bytes) -> None:
    await stream.conn.send(stream, frame(message))
    stream.conn.send_trailers(stream, Status.OK)


async def _server_status(server: HubbleServer, stream: H2Stream) -> None:
    st = server.status()
    resp = observer_pb2.ServerStatusResponse(
        num_flows=st["num_flows"], max_flows=st["max_flows"], seen_flows=st["seen_flows"],
        uptime_ns=st["uptime_ns"], version=st["version"])
    if server.release.flows_rate:
        resp.flows_rate = st["flows_rate"]
    await _unary(stream, resp.SerializeToString())


async def _get_namespaces(server: HubbleServer, stream: H2Stream) -> None:
    resp = observer_pb2.GetNamespacesResponse(
        namespaces=[observer_pb2.Namespace(namespace=ns) for ns in sorted(server.namespaces)])
    await _unary(stream, resp.SerializeToString())


async def _idle_events(stream: H2Stream, payload: bytes) -> None:
    try:
        req = observer_pb2.GetAgentEventsRequest.FromString(payload)
    except DecodeError as exc:
        stream.conn.send_trailers(stream, Status.INTERNAL, f"grpc: error unmarshalling request: {exc}")
        return
    if req.follow:
        while not stream.closed:
            stream.window.clear()
            await stream.window.wait()
    stream.conn.send_trailers(stream, Status.OK)


async def _health(stream: H2Stream, payload: bytes, watch: bool) -> None:
    service = ""
    if payload[:1] == b"\x0a":
        length = payload[1]
        service = payload[2:2 + length].decode("utf-8", "replace")
    if service not in ("", HEALTH_SERVICE_NAME):
        stream.conn.send_trailers(stream, Status.NOT_FOUND, "unknown service")
        return
    serving = b"\x08\x01"
    if not watch:
        await _unary(stream, serving)
        return
    await stream.conn.send(stream, frame(serving))
    while not stream.closed:
        stream.window.clear()
        await stream.window.wait()
