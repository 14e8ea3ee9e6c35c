"""A Hubble Observer gRPC server on ``h2`` (not grpcio): fast enough to benchmark the exporter.

It speaks gRPC over HTTP/2 with prior knowledge (h2c) on a unix socket, and optionally over TCP
with TLS (ALPN ``h2``, mTLS with a client CA). It runs its own asyncio loop in a background thread.

Methods (``/observer.Observer/<M>``): ``GetFlows`` (filters, follow, number, first, since/until,
field masks per emulated version, ring-buffer loss per reader), ``ServerStatus``,
``GetNamespaces``, ``GetAgentEvents``/``GetDebugEvents`` (no events), ``GetNodes`` (UNIMPLEMENTED,
as on the node-local server) and ``/grpc.health.v1.Health/Check`` for ``hubble.server.Observer``.
Responses carry ``hubble-server-version``; like grpc-go, response headers go out with the first
message (a stream that never sends gets a trailers-only response at its end).

Using it (tests, ``bench/hubble_stream.py``)::

    from cilium_node_simulator.hubble_server import HubbleServer
    from cilium_node_simulator.events import EventSpec

    server = HubbleServer(socket_path="/tmp/x/hubble.sock", version="1.19.4")
    server.start()
    drops = server.compile(EventSpec("drop", reason=155, direction=2))
    server.emit([(drops, 100)])          # thread-safe; 100 events stamped "now"
    server.sync()                        # wait until they are in the ring
    server.emit_lost("perf_event_ring_buffer", 30, cpu=1)
    server.truth.snapshot()              # what the exporter should count
    done = server.bench(1_000_000)       # benchmark: N matching flows (+ traces a whitelist drops)
    done.wait(); server.bench_stats()    # paced to the slowest follow reader, then the stream idles
    server.faults.getflows_status = 14   # fault injection (see Faults)
    server.restart(); server.stop()

Benchmark mode produces only when a follow GetFlows stream is open and never laps the slowest
follow reader (no ring loss), so it measures the client. Throughput of this server alone:
``bench/simulator_throughput.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from google.protobuf import field_mask_pb2
from google.protobuf.message import DecodeError

from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator.events import (
    LOST_SOURCES,
    LOST_TEMPLATE,
    BenchMix,
    CompiledSpec,
    EventSpec,
    FlowFactory,
    FlowTemplate,
    Stamper,
)
from cilium_node_simulator.filters import compile_filters
from cilium_node_simulator.grpc_wire import (
    MessageReader,
    MessageTooLarge,
    Status,
    encode_grpc_message,
    frame,
    timestamp,
    varint,
)
from cilium_node_simulator.ring import Ring
from cilium_node_simulator.truth import GroundTruth

log = logging.getLogger(__name__)

SERVICE = "observer.Observer"
HEALTH_SERVICE_NAME = "hubble.server.Observer"
MAX_PING_STRIKES = 2
PING_WITHOUT_STREAM_MIN = 7200.0  # grpc-go: pings without streams are fine once per 2 hours
_BATCH_MAX_BYTES = 1 << 20
_BATCH_MAX_EVENTS = 8192


@dataclass
class TLSConfig:
    """Server certificate and key (PEM files); ``client_ca`` enables mTLS (client cert required)."""

    cert: str
    key: str
    client_ca: str | None = None


@dataclass
class Faults:
    """Fault injection for GetFlows (tests of the exporter's failure handling). Change at any time.

    - ``getflows_status``: answer every GetFlows with this status (e.g. 12 UNIMPLEMENTED,
      14 UNAVAILABLE, 8 RESOURCE_EXHAUSTED) and ``getflows_message``.
    - ``stall_after``: after this many messages the stream goes silent (0: nothing at all, not even
      headers) while the connection stays up.
    - ``corrupt_after`` + ``corrupt_kind``: after this many messages send one bad message:
      ``"protobuf"`` (valid length prefix, garbage payload; the stream continues), ``"length"``
      (a length prefix announcing 2 GiB, then OK trailers: grpcio fails with RESOURCE_EXHAUSTED)
      or ``"truncated"`` (half a message, then OK trailers: grpcio silently drops it).
    - ``close_after``: after this many messages drop the connection (no GOAWAY, no trailers).
    """

    getflows_status: int | None = None
    getflows_message: str = ""
    stall_after: int | None = None
    corrupt_after: int | None = None
    corrupt_kind: str = "protobuf"
    close_after: int | None = None


class _StreamGone(Exception):
    """The client reset the stream or the connection went away."""


def _parse_tcp(tcp: str | tuple[str, int] | None) -> tuple[str, int] | None:
    if tcp is None or isinstance(tcp, tuple):
        return tcp
    host, _, port = tcp.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port)


class _Stream:
    """One HTTP/2 stream (= one RPC) on a connection."""

    def __init__(self, conn: _Connection, stream_id: int, path: str) -> None:
        self.conn = conn
        self.id = stream_id
        self.path = path
        self.reader = MessageReader()
        self.requests: list[tuple[bool, bytes]] = []
        self.headers_sent = False
        self.closed = False
        self.window = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.pos = 0  # ring position of a GetFlows reader
        self.follow = False
        self.messages_sent = 0
        self.lost_sent = 0

    def wake(self) -> None:
        self.window.set()


class _Connection(asyncio.Protocol):
    """One client connection: h2 state machine, stream dispatch, keepalive policy."""

    def __init__(self, server: HubbleServer) -> None:
        self.server = server
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.paused = False
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.closed = False
        self.ping_strikes = 0
        self.last_ping: float | None = None
        self.reset_ping_strikes = False

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=1 << 20, low=1 << 18)
        self.server._conns.add(self)
        self.server.stats["connections"] += 1
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 16 << 20})
        self.h2.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._conns.discard(self)
        for stream in list(self.streams.values()):
            self._drop_stream(stream)
        self.resumed.set()

    def pause_writing(self) -> None:
        self.paused = True
        self.resumed.clear()

    def resume_writing(self) -> None:
        self.paused = False
        self.resumed.set()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.warning("simulator: HTTP/2 protocol error from client: %r", exc)
            self.flush()
            self.abort()
            return
        for event in events:
            self._handle_event(event)
        self.flush()

    # -- helpers ------------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _drop_stream(self, stream: _Stream) -> None:
        stream.closed = True
        stream.wake()
        self.streams.pop(stream.id, None)
        self.server._followers.discard(stream)
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()

    def _handle_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers or [])
            stream = _Stream(self, event.stream_id, str(headers.get(":path", "")))
            self.streams[event.stream_id] = stream
            ctype = str(headers.get("content-type", ""))
            if headers.get(":method") != "POST":
                self._http_error(stream, "405")
            elif not ctype.startswith("application/grpc"):
                self._http_error(stream, "415")
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is None or stream.closed:
                return
            try:
                stream.requests.extend(stream.reader.feed(event.data))
            except MessageTooLarge as exc:
                self.send_trailers(stream, Status.RESOURCE_EXHAUSTED, str(exc))
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.closed and stream.task is None:
                self._dispatch(stream)
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self.server.stats["streams_reset_by_client"] += 1
                self._drop_stream(stream)
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0:
                for stream in self.streams.values():
                    stream.wake()
            elif (stream := self.streams.get(event.stream_id)) is not None:
                stream.wake()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for stream in self.streams.values():
                stream.wake()
        elif isinstance(event, h2.events.PingReceived):
            self._keepalive_policy()
        elif isinstance(event, h2.events.ConnectionTerminated):
            for stream in list(self.streams.values()):
                self._drop_stream(stream)
            self.flush()
            if self.transport is not None:
                self.transport.close()

    def _keepalive_policy(self) -> None:
        """grpc-go's server keepalive enforcement (MinTime, PermitWithoutStream=false, 2 strikes)."""
        now = time.monotonic()
        last, self.last_ping = self.last_ping, now
        if self.reset_ping_strikes:
            self.reset_ping_strikes = False
            self.ping_strikes = 0
            return
        active = any(not s.closed for s in self.streams.values())
        if not active and not self.server.permit_without_stream:
            if last is not None and now - last < PING_WITHOUT_STREAM_MIN:
                self.ping_strikes += 1
        elif last is not None and now - last < self.server.keepalive_min_time:
            self.ping_strikes += 1
        if self.ping_strikes > MAX_PING_STRIKES:
            log.info("simulator: client pinged too often; sending GOAWAY ENHANCE_YOUR_CALM too_many_pings")
            self.server.stats["goaway_too_many_pings"] += 1
            self.h2.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
                                     additional_data=b"too_many_pings")
            self.flush()
            for stream in list(self.streams.values()):
                self._drop_stream(stream)
            if self.transport is not None:
                self.transport.close()
            self.closed = True

    def _http_error(self, stream: _Stream, status: str) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.send_headers(stream.id, [(":status", status)], end_stream=True)
        stream.closed = True
        stream.task = None
        self.streams.pop(stream.id, None)

    def _dispatch(self, stream: _Stream) -> None:
        if stream.closed:
            return
        stream.task = asyncio.get_running_loop().create_task(self.server._handle(stream))

    # -- sending ------------------------------------------------------------------------------
    def _response_headers(self) -> list[tuple[str, str]]:
        return [(":status", "200"), ("content-type", "application/grpc"),
                ("hubble-server-version", self.server.version)]

    def send_headers(self, stream: _Stream) -> None:
        if not stream.headers_sent:
            self.h2.send_headers(stream.id, self._response_headers())
            stream.headers_sent = True
            self.reset_ping_strikes = True

    async def writable(self, stream: _Stream) -> int:
        """Wait until the stream may send (flow-control window > 0, transport not paused)."""
        while True:
            if stream.closed or self.closed:
                raise _StreamGone
            if self.paused:
                await self.resumed.wait()
                continue
            stream.window.clear()
            try:
                window = self.h2.local_flow_control_window(stream.id)
            except (h2.exceptions.StreamClosedError, KeyError):
                raise _StreamGone from None
            if window > 0:
                return window
            await stream.window.wait()

    async def send(self, stream: _Stream, data: bytes) -> None:
        """Send bytes as DATA frames, waiting for the client's window; never buffers beyond it.

        DATA frames are framed here rather than by h2 (about 5x cheaper per frame); h2 keeps the
        flow-control bookkeeping, which is all it tracks for DATA on an open stream.
        """
        self.send_headers(stream)
        self.flush()
        view = memoryview(data)
        pos, end = 0, len(data)
        sid = stream.id.to_bytes(4, "big")
        while pos < end:
            window = await self.writable(stream)
            n = min(window, end - pos)
            try:
                h2_stream = self.h2._get_stream_by_id(stream.id)
            except (h2.exceptions.StreamClosedError, KeyError):
                raise _StreamGone from None
            if h2_stream.closed:
                raise _StreamGone
            max_frame = self.h2.max_outbound_frame_size
            stop = pos + n
            parts = []
            while pos < stop:
                chunk = min(max_frame, stop - pos)
                parts.append(chunk.to_bytes(3, "big") + b"\x00\x00" + sid)
                parts.append(view[pos:pos + chunk])
                pos += chunk
            self.h2.outbound_flow_control_window -= n
            h2_stream.outbound_flow_control_window -= n
            self.reset_ping_strikes = True
            assert self.transport is not None
            if self.transport.is_closing():
                raise _StreamGone
            self.transport.write(b"".join(parts))

    def send_trailers(self, stream: _Stream, code: int, message: str = "") -> None:
        if stream.closed or self.closed:
            return
        trailers = [("grpc-status", str(int(code)))]
        if message:
            trailers.append(("grpc-message", encode_grpc_message(message)))
        headers = trailers if stream.headers_sent else self._response_headers() + trailers
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.h2.send_headers(stream.id, headers, end_stream=True)
        stream.headers_sent = True
        stream.closed = True
        self.streams.pop(stream.id, None)
        self.server._followers.discard(stream)
        self.flush()


class HubbleServer:
    """The simulated node-local Hubble server (see the module docstring)."""

    def __init__(self, socket_path: str | None = None, tcp: str | tuple[str, int] | None = None,
                 tls: TLSConfig | None = None, version: str = "1.19.4", ring_capacity: int = 4095,
                 node: str = "sim-1", keepalive_min_time: float = 300.0, permit_without_stream: bool = False,
                 lost_event_interval: float = 1.0, follow_backlog: int = 2, seed: int = 1,
                 truth: GroundTruth | None = None) -> None:
        if socket_path is None and tcp is None:
            raise ValueError("HubbleServer needs socket_path and/or tcp")
        self.socket_path = socket_path
        self.tcp = _parse_tcp(tcp)
        self.tls = tls
        self.version = version.lstrip("v")
        self.factory = FlowFactory(node=node, version=self.version, seed=seed)
        self.node = node
        self.ring = Ring(ring_capacity)
        self.keepalive_min_time = keepalive_min_time
        self.permit_without_stream = permit_without_stream
        self.lost_event_interval = lost_event_interval
        self.follow_backlog = follow_backlog
        self.truth = truth if truth is not None else GroundTruth()
        self.faults = Faults()
        self.stats: dict[str, int] = {"connections": 0, "goaway_too_many_pings": 0, "streams_reset_by_client": 0,
                                      "getflows_calls": 0, "restarts": 0}
        self.tcp_port: int | None = None
        self.seen_flows = 0
        self._stamper = Stamper(node, with_uuid=self.factory.version >= (1, 14, 0))
        self._start_ns = time.time_ns()
        self._rate_samples: deque[tuple[float, int]] = deque()
        self._conns: set[_Connection] = set()
        self._followers: set[_Stream] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._new_data: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None
        self._namespaces: set[str] = set()
        self._bench: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    def start(self, timeout: float = 10.0) -> HubbleServer:
        """Start listening (background thread with its own event loop)."""
        with self._lock:
            if self._running:
                return self
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(target=loop.run_forever, name="hubble-sim", daemon=True)
            self._thread.start()
            try:
                asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout)
            except BaseException:
                self._shutdown_loop()
                raise
            self._start_ns = time.time_ns()
            self._running = True
        log.info("simulator: Hubble %s listening on %s", self.version, ", ".join(self.addresses()))
        return self

    def addresses(self) -> list[str]:
        out = []
        if self.socket_path:
            out.append(f"unix://{self.socket_path}")
        if self.tcp is not None:
            host = f"[{self.tcp[0]}]" if ":" in self.tcp[0] else self.tcp[0]
            out.append(f"{host}:{self.tcp_port}" + (" (TLS)" if self.tls else ""))
        return out

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop: UNAVAILABLE trailers on open streams, GOAWAY, close, remove the socket."""
        self._stop(graceful=True, timeout=timeout)

    def kill(self, timeout: float = 5.0) -> None:
        """Abrupt stop: sockets closed without trailers or GOAWAY; a stale unix socket file stays."""
        self._stop(graceful=False, timeout=timeout)

    def restart(self, downtime: float = 0.0) -> None:
        """Stop, reset like an agent restart (seen_flows 0, ring emptied, uptime 0), start again."""
        self.stop()
        self.reset()
        if downtime > 0:
            time.sleep(downtime)
        self.stats["restarts"] += 1
        self.start()

    def reset(self) -> None:
        """Forget all events (only while stopped or from the loop thread)."""
        self.ring.clear()
        self.seen_flows = 0
        self._rate_samples.clear()
        self._start_ns = time.time_ns()

    def _stop(self, graceful: bool, timeout: float) -> None:
        with self._lock:
            if not self._running or self._loop is None:
                if graceful and self.socket_path:  # after a kill(): clean up the stale socket
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.socket_path)
                return
            self._running = False
            try:
                asyncio.run_coroutine_threadsafe(self._close(graceful), self._loop).result(timeout)
            except Exception as exc:  # pragma: no cover - best effort
                log.warning("simulator: error while stopping: %s", exc)
            self._shutdown_loop()
        if graceful and self.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
        loop.close()
        self._loop = None
        self._thread = None

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._new_data = asyncio.Event()
        self._progress = asyncio.Event()
        if self.socket_path:
            directory = os.path.dirname(self.socket_path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            try:
                if stat.S_ISSOCK(os.stat(self.socket_path).st_mode):
                    os.unlink(self.socket_path)  # stale socket of a previous (killed) instance
            except FileNotFoundError:
                pass
            srv = await loop.create_unix_server(lambda: _Connection(self), self.socket_path)
            os.chmod(self.socket_path, 0o660)
            self._servers.append(srv)
        if self.tcp is not None:
            ctx = self._ssl_context() if self.tls else None
            srv = await loop.create_server(lambda: _Connection(self), self.tcp[0], self.tcp[1], ssl=ctx,
                                           family=socket.AF_INET6 if ":" in self.tcp[0] else socket.AF_INET)
            self.tcp_port = srv.sockets[0].getsockname()[1]
            self._servers.append(srv)

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.tls is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.tls.cert, self.tls.key)
        ctx.set_alpn_protocols(["h2"])
        if self.tls.client_ca:
            ctx.load_verify_locations(self.tls.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def _close(self, graceful: bool) -> None:
        for srv in self._servers:
            srv.close()
        self._servers.clear()
        for conn in list(self._conns):
            if graceful:
                for stream in list(conn.streams.values()):
                    conn.send_trailers(stream, Status.UNAVAILABLE, "server is shutting down")
                with contextlib.suppress(Exception):
                    conn.h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR)
                conn.flush()
                if conn.transport is not None:
                    conn.transport.close()
            else:
                conn.abort()
            conn.connection_lost(None)
        self._followers.clear()

    # -- producing events ---------------------------------------------------------------------
    def compile(self, spec: EventSpec, index: int = 0) -> CompiledSpec:
        """Pre-serialize a spec for this server's node and version."""
        compiled = self.factory.compile(spec, index)
        for occ in compiled.occurrences:
            for t in occ:
                assert t.flow is not None
                for ep in (t.flow.source, t.flow.destination):
                    if ep.namespace:
                        self._namespaces.add(ep.namespace)
        return compiled

    def _call(self, fn: Callable[..., Any], *args: Any) -> bool:
        loop = self._loop
        if not self._running or loop is None:
            return False
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            return False
        return True

    def emit(self, items: Iterable[tuple[CompiledSpec, int]]) -> bool:
        """Produce events (thread-safe): ``count`` occurrences of each compiled spec, stamped now.

        Returns False (and produces nothing) while the server is stopped, like a down agent.
        """
        batch = [(c, n) for c, n in items if n > 0]
        return bool(batch) and self._call(self._produce, batch)

    def sync(self, timeout: float = 5.0) -> None:
        """Wait until every event emitted so far is in the ring (for tests)."""
        loop = self._loop
        if self._running and loop is not None:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout)

    def emit_lost(self, source: str, count: int, cpu: int | None = None) -> bool:
        """Write a LostEvent of ``source`` (perf_event_ring_buffer / observer_events_queue) into the ring."""
        if source not in LOST_SOURCES:
            raise ValueError(f"unknown lost-event source {source!r}")
        return count > 0 and self._call(self._produce_lost, source, count, cpu)

    def _produce(self, batch: list[tuple[CompiledSpec, int]]) -> None:
        now = time.time_ns()
        for compiled, count in batch:
            flows = self._stamper.produce(self.ring, compiled, count, now)
            self.seen_flows += flows
            self.truth.add(compiled.truth, count, [t.event_type for t in compiled.occurrences[0]])
        self._notify()

    def _produce_lost(self, source: str, count: int, cpu: int | None) -> None:
        now = time.time_ns()
        if source == "perf_event_ring_buffer" and cpu is None:
            cpu = 0
        aggregated = source == "observer_events_queue"  # 1.19 rate-limits these with first/last
        msg = self.factory.lost_message(LOST_SOURCES[source], count, now, cpu=cpu,
                                        first_ns=now - int(self.lost_event_interval * 1e9) if aggregated else None,
                                        last_ns=now)
        self.ring.append((now, LOST_TEMPLATE, None, msg))
        self.truth.add_lost(source, count)
        self._notify()

    def _notify(self) -> None:
        mono = time.monotonic()
        samples = self._rate_samples
        if not samples or mono - samples[-1][0] >= 1.0:
            samples.append((mono, self.seen_flows))
            while samples and mono - samples[0][0] > 60.0:
                samples.popleft()
        ev = self._new_data
        if ev is not None:
            self._new_data = asyncio.Event()
            ev.set()

    def status(self) -> dict[str, Any]:
        """ServerStatus fields (thread-safe enough for tests: plain reads)."""
        mono = time.monotonic()
        rate = 0.0
        samples = self._rate_samples
        if samples:
            t0, s0 = samples[0]
            if mono - t0 > 0.5:
                rate = (self.seen_flows - s0) / (mono - t0)
        return {"num_flows": len(self.ring), "max_flows": self.ring.capacity, "seen_flows": self.seen_flows,
                "uptime_ns": time.time_ns() - self._start_ns, "version": self.version, "flows_rate": rate}

    # -- benchmark ----------------------------------------------------------------------------
    def bench(self, n: int, trace_every: int = 4, mix: BenchMix | None = None) -> threading.Event:
        """Produce exactly ``n`` matching flows (drops, verdicts, L7) plus one trace per ``trace_every``
        of them, as fast as the slowest follow reader takes them; returns an Event set when done."""
        done = threading.Event()
        mix = mix or BenchMix()
        units: list[tuple[FlowTemplate, list[tuple[str, tuple[Any, ...]]]]] = []
        for i, spec in enumerate(mix.matching):
            compiled = self.compile(spec, 1000 + i)
            for occ in compiled.occurrences:
                for j, t in enumerate(occ):
                    units.append((t, compiled.truth if j == 0 else []))
        traces = [occ[0] for occ in self.compile(mix.trace, 999).occurrences]
        sequence: list[tuple[FlowTemplate, list[Any], bool]] = []
        ti = 0
        for k, (t, truth) in enumerate(units * 2):
            sequence.append((t, truth, True))
            if trace_every and k % trace_every == trace_every - 1:
                sequence.append((traces[ti % len(traces)], [], False))
                ti += 1
        self._bench = {"n": n, "done": done, "produced": 0, "started": None, "finished": None}
        if not self._call(lambda: asyncio.ensure_future(self._bench_task(n, sequence, done))):
            raise RuntimeError("server is not running")
        return done

    def bench_stats(self) -> dict[str, Any]:
        """Produced count, start/finish (monotonic seconds) of the current benchmark."""
        return {k: v for k, v in self._bench.items() if k != "done"}

    def _bench_truth(self, sequence: list[tuple[FlowTemplate, list[Any], bool]], pending: list[int]) -> None:
        for idx, cnt in enumerate(pending):
            if cnt:
                t, truth, _ = sequence[idx]
                self.truth.add(truth, cnt, [t.event_type])
                pending[idx] = 0

    async def _bench_task(self, n: int, sequence: list[tuple[FlowTemplate, list[Any], bool]],
                          done: threading.Event) -> None:
        mix = CompiledSpec(EventSpec("trace"), [(t,) for t, _, _ in sequence], [])
        is_match = [m for _, _, m in sequence]
        length = len(sequence)
        per_cycle = sum(is_match)
        pending = [0] * length
        flushed = 0.0
        ts_ns, ts = 0, b""
        produced = 0
        cap = self.ring.capacity
        while not self._followers:
            await asyncio.sleep(0.005)
        self._bench["started"] = time.monotonic()
        while produced < n:
            lag = self.ring.write - min((s.pos for s in self._followers), default=self.ring.write)
            room = cap // 2 - lag
            if room < min(64, cap // 4):
                assert self._progress is not None
                ev = self._progress
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ev.wait(), 0.05)
                continue
            # occurrences to produce: whole cycles of the mix, then a walk for the exact remainder
            k = mix.next_index
            remaining = n - produced
            budget = min(room, 4096)
            cycles = min(budget // length, remaining // per_cycle)
            counts = [cycles] * length
            c, matched = cycles * length, cycles * per_cycle
            while c < budget and matched < remaining:
                idx = (k + c) % length
                counts[idx] += 1
                matched += is_match[idx]
                c += 1
            now = time.time_ns()
            if now - ts_ns > 5_000_000:  # one timestamp per 5 ms keeps the per-template formats warm
                ts_ns, ts = now, timestamp(now)
            flows = self._stamper.produce(self.ring, mix, c, ts_ns, ts)
            self.seen_flows += flows
            for idx, cnt in enumerate(counts):
                pending[idx] += cnt
            produced += matched
            self._bench["produced"] = produced
            self._notify()
            if produced >= n or time.monotonic() - flushed > 0.25:
                self._bench_truth(sequence, pending)
                flushed = time.monotonic()
            await asyncio.sleep(0)
        self._bench["finished"] = time.monotonic()
        done.set()

    # -- RPC handlers -------------------------------------------------------------------------
    async def _handle(self, stream: _Stream) -> None:
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
            path = stream.path
            service, _, method = path.lstrip("/").partition("/")
            if service == SERVICE:
                handler = {"GetFlows": self._get_flows, "ServerStatus": self._server_status,
                           "GetNodes": self._get_nodes, "GetNamespaces": self._get_namespaces,
                           "GetAgentEvents": self._idle_events, "GetDebugEvents": self._idle_events}.get(method)
                if handler is None:
                    conn.send_trailers(stream, Status.UNIMPLEMENTED,
                                       f"unknown method {method} for service {service}")
                    return
                await handler(stream, payload)
            elif service == "grpc.health.v1.Health" and method in ("Check", "Watch"):
                await self._health(stream, payload, watch=method == "Watch")
            else:
                conn.send_trailers(stream, Status.UNIMPLEMENTED, f"unknown service {service}")
        except _StreamGone:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not kill the loop
            log.exception("simulator: handler error on %s", stream.path)
            conn.send_trailers(stream, Status.INTERNAL, f"simulator error: {exc}")
        finally:
            self._followers.discard(stream)

    async def _unary(self, stream: _Stream, message: bytes) -> None:
        await stream.conn.send(stream, frame(message))
        stream.conn.send_trailers(stream, Status.OK)

    async def _server_status(self, stream: _Stream, payload: bytes) -> None:
        st = self.status()
        resp = observer_pb2.ServerStatusResponse(
            num_flows=st["num_flows"], max_flows=st["max_flows"], seen_flows=st["seen_flows"],
            uptime_ns=st["uptime_ns"], version=st["version"])
        if self.factory.version >= (1, 15, 0):
            resp.flows_rate = st["flows_rate"]
        await self._unary(stream, resp.SerializeToString())

    async def _get_nodes(self, stream: _Stream, payload: bytes) -> None:
        stream.conn.send_trailers(stream, Status.UNIMPLEMENTED, "GetNodes not implemented")

    async def _get_namespaces(self, stream: _Stream, payload: bytes) -> None:
        resp = observer_pb2.GetNamespacesResponse(
            namespaces=[observer_pb2.Namespace(namespace=ns) for ns in sorted(self._namespaces)])
        await self._unary(stream, resp.SerializeToString())

    async def _idle_events(self, stream: _Stream, payload: bytes) -> None:
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

    async def _health(self, stream: _Stream, payload: bytes, watch: bool) -> None:
        service = ""
        if payload[:1] == b"\x0a":
            length = payload[1]
            service = payload[2:2 + length].decode("utf-8", "replace")
        if service not in ("", HEALTH_SERVICE_NAME):
            stream.conn.send_trailers(stream, Status.NOT_FOUND, "unknown service")
            return
        serving = b"\x08\x01"
        if not watch:
            await self._unary(stream, serving)
            return
        await stream.conn.send(stream, frame(serving))
        while not stream.closed:
            stream.window.clear()
            await stream.window.wait()

    def _field_mask(self, req: observer_pb2.GetFlowsRequest) -> list[str]:
        v = self.factory.version
        paths: list[str] = []
        if v >= (1, 16, 0):
            paths = list(req.field_mask.paths)
        if not paths and (1, 14, 0) <= v < (1, 19, 0):
            paths = list(req.experimental.field_mask.paths)
        return paths

    async def _get_flows(self, stream: _Stream, payload: bytes) -> None:
        conn = stream.conn
        self.stats["getflows_calls"] += 1
        try:
            req = observer_pb2.GetFlowsRequest.FromString(payload)
        except DecodeError as exc:
            conn.send_trailers(stream, Status.INTERNAL, f"grpc: error unmarshalling request: {exc}")
            return
        faults = self.faults
        if faults.getflows_status is not None:
            conn.send_trailers(stream, faults.getflows_status, faults.getflows_message)
            return
        if req.first and req.follow:
            conn.send_trailers(stream, Status.INVALID_ARGUMENT, "first cannot be specified with follow")
            return
        paths = self._field_mask(req)
        mask = None
        mask_key: frozenset[str] = frozenset()
        if paths:
            mask = field_mask_pb2.FieldMask(paths=paths)
            if not mask.IsValidForDescriptor(flow_pb2.Flow.DESCRIPTOR):
                conn.send_trailers(stream, Status.INVALID_ARGUMENT, f"invalid fieldmask: {paths}")
                return
            mask_key = frozenset(paths)
        predicate = compile_filters(req.whitelist, req.blacklist)
        since_ns = req.since.ToNanoseconds() if req.HasField("since") else None
        until_ns = req.until.ToNanoseconds() if req.HasField("until") else None
        ring = self.ring
        number = req.number
        cache: dict[FlowTemplate, bool] = {LOST_TEMPLATE: True}  # lost events are never filtered

        def matches(t: FlowTemplate) -> bool:
            ok = cache.get(t)
            if ok is None:
                assert t.flow is not None
                ok = cache[t] = predicate(t.flow)
            return ok

        if req.first and since_ns is None:
            pos = ring.oldest
        elif req.follow and number == 0 and since_ns is None:
            pos = max(ring.oldest, ring.write - self.follow_backlog)
        elif since_ns is not None:
            pos = ring.position_since(since_ns)
        elif req.first:
            pos = ring.oldest
        else:  # the last `number` matching flows (0: the whole buffer)
            pos, found = ring.write, 0
            while pos > ring.oldest and (number == 0 or found < number):
                t = ring.get(pos - 1)[1]
                if not t.is_lost and matches(t):
                    found += 1
                pos -= 1
        stream.pos = pos
        stream.follow = req.follow
        if req.follow:
            self._followers.add(stream)
        end = None if req.follow else ring.write
        await self._stream_flows(stream, end, number if (req.first or not req.follow) else 0, until_ns,
                                 cache, matches, mask, mask_key)

    async def _stream_flows(self, stream: _Stream, end: int | None, number: int, until_ns: int | None,
                            cache: dict[FlowTemplate, bool], matches: Callable[[FlowTemplate], bool], mask: Any,
                            mask_key: frozenset[str]) -> None:
        conn, ring, stamper = stream.conn, self.ring, self._stamper
        new_style_lost = self.factory.version >= (1, 19, 0)
        interval_ns = int(self.lost_event_interval * 1e9)
        pending_lost, first_lost, last_lost, last_lost_sent = 0, 0, 0, -(1 << 62)
        flows_sent = 0
        finished = False
        mask_cache: dict[FlowTemplate, tuple[Any, ...]] = {}
        while not finished:
            if stream.closed:
                raise _StreamGone
            limit = ring.write if end is None else min(end, ring.write)
            out: list[bytes] = []
            oldest = ring.oldest
            if stream.pos < oldest:  # the writer lapped this reader
                lost = oldest - stream.pos
                stream.pos = oldest
                now = time.time_ns()
                if new_style_lost:
                    if not pending_lost:
                        first_lost = now
                    pending_lost += lost
                    last_lost = now
                else:
                    out.append(self.factory.lost_message(3, 1, now) * lost)
                    self._count_ring_lost(stream, lost)
            if pending_lost:
                now = time.time_ns()
                if now - last_lost_sent >= interval_ns:
                    out.append(self.factory.lost_message(3, pending_lost, now, first_ns=first_lost,
                                                         last_ns=last_lost))
                    self._count_ring_lost(stream, pending_lost)
                    pending_lost, last_lost_sent = 0, now
            if stream.pos >= limit and not out:
                if end is not None and stream.pos >= end:
                    break
                ev = self._new_data
                assert ev is not None
                if ring.write > stream.pos:
                    continue
                timeout = None
                if pending_lost:
                    timeout = max(0.0, (last_lost_sent + interval_ns - time.time_ns()) / 1e9)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ev.wait(), timeout)
                continue
            window = await conn.writable(stream)
            budget = min(max(window, 16384), _BATCH_MAX_BYTES)
            size = sum(len(b) for b in out)
            data, m, pos = ring.data, ring.mask, stream.pos
            stop = min(limit, pos + _BATCH_MAX_EVENTS)
            append = out.append
            get = cache.get
            if mask is None and not number and until_ns is None:  # the hot path: filter only
                while pos < stop and size < budget:
                    e = data[pos & m]
                    pos += 1
                    ok = get(e[1])  # type: ignore[index]
                    if ok is None:
                        ok = matches(e[1])  # type: ignore[index]
                    if ok:
                        wire = e[3]  # type: ignore[index]
                        append(wire)
                        size += len(wire)
            else:
                while pos < stop and size < budget:
                    e = data[pos & m]
                    pos += 1
                    t = e[1]  # type: ignore[index]
                    if t.is_lost:
                        append(e[3])  # type: ignore[index]
                        size += len(e[3])  # type: ignore[index]
                        continue
                    if until_ns is not None and e[0] > until_ns:  # type: ignore[index]
                        finished = True
                        break
                    if matches(t):
                        wire = e[3]  # type: ignore[index]
                        if mask is not None:
                            mc = mask_cache.get(t)
                            if mc is None or mc[0] is not e[2]:  # type: ignore[index]
                                mc = mask_cache[t] = (e[2], *stamper.masked_parts(t, e[2], mask_key, mask))  # type: ignore[index]
                            off = mc[3]
                            wire = mc[1] + wire[off:off + 36] + mc[2] if off >= 0 else mc[1]
                        append(wire)
                        size += len(wire)
                        flows_sent += 1
                        if number and flows_sent >= number:
                            finished = True
                            break
            stream.pos = pos
            if self._progress is not None and self._bench:
                ev = self._progress
                self._progress = asyncio.Event()
                ev.set()
            if out and await self._send_with_faults(stream, out):
                return
        conn.send_trailers(stream, Status.OK)

    def _count_ring_lost(self, stream: _Stream, count: int) -> None:
        stream.lost_sent += count
        self.truth.add_lost("hubble_ring_buffer", count)

    async def _send_with_faults(self, stream: _Stream, out: list[bytes]) -> bool:
        """Send a batch of framed messages applying fault injection; True when the RPC is over."""
        conn, faults = stream.conn, self.faults
        limits = [x for x in (faults.stall_after, faults.corrupt_after, faults.close_after) if x is not None]
        if not limits:
            stream.messages_sent += len(out)
            await conn.send(stream, b"".join(out))
            return False
        room = max(0, min(limits) - stream.messages_sent)
        head, tail = out[:room], out[room:]
        if head:
            stream.messages_sent += len(head)
            await conn.send(stream, b"".join(head))
        if not tail:
            return False
        sent = stream.messages_sent
        if faults.close_after is not None and sent >= faults.close_after:
            conn.abort()
            raise _StreamGone
        if faults.stall_after is not None and sent >= faults.stall_after:
            while not stream.closed:
                stream.window.clear()
                await stream.window.wait()
            raise _StreamGone
        if faults.corrupt_after is not None and sent >= faults.corrupt_after:
            faults.corrupt_after = None  # one bad message per injection
            if faults.corrupt_kind == "length":  # a prefix announcing 2 GiB, a few bytes, OK trailers
                await conn.send(stream, b"\x00\x7f\xff\xff\xff" + tail[0][5:64])
                conn.send_trailers(stream, Status.OK)
                return True
            if faults.corrupt_kind == "truncated":  # half a message, then OK trailers
                bad = tail[0]
                await conn.send(stream, bad[:5] + bad[5:5 + max(1, (len(bad) - 5) // 2)])
                conn.send_trailers(stream, Status.OK)
                return True
            garbage = b"\x0a\xff\xff\xff\xff\x0f" + varint(12345) + b"\xff" * 7
            stream.messages_sent += 1
            await conn.send(stream, frame(garbage))
            stream.messages_sent += len(tail)
            await conn.send(stream, b"".join(tail))
        return False
