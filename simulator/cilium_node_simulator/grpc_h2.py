"""gRPC over HTTP/2 on ``h2`` (not grpcio): connections, streams, flow control, keepalive policy, listeners.

It speaks gRPC with prior knowledge (h2c) on a unix socket, and optionally over TCP with TLS (ALPN
``h2``, mTLS with a client CA), on its own asyncio loop in a background thread. Nothing here knows
Hubble: a :class:`GrpcH2Server` subclass answers each RPC in :meth:`GrpcH2Server.handle`. Like
grpc-go, response headers go out with the first message (a stream that never sends gets a
trailers-only response at its end), and the server enforces grpc-go's keepalive policy
(``keepalive.EnforcementPolicy`` defaults: MinTime 5 min, no pings without streams, GOAWAY
``too_many_pings`` after 2 strikes), which the Hubble server uses unchanged (no keepalive options in
``pkg/hubble`` or ``daemon``, 1.14-1.19).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from cilium_node_simulator.grpc_wire import MessageReader, MessageTooLarge, Status, encode_grpc_message

log = logging.getLogger(__name__)

MAX_PING_STRIKES = 2
PING_WITHOUT_STREAM_MIN = 7200.0  # grpc-go: pings without streams are fine once per 2 hours


@dataclass
class TLSConfig:
    """Server certificate and key (PEM files); ``client_ca`` enables mTLS (client cert required)."""

    cert: str
    key: str
    client_ca: str | None = None


class StreamGone(Exception):
    """The client reset the stream or the connection went away."""


def parse_tcp(tcp: str | tuple[str, int] | None) -> tuple[str, int] | None:
    if tcp is None or isinstance(tcp, tuple):
        return tcp
    host, _, port = tcp.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port)


class H2Stream:
    """One HTTP/2 stream (= one RPC) on a connection; ``call`` holds the RPC's own state."""

    def __init__(self, conn: H2Connection, stream_id: int, path: str) -> None:
        self.conn = conn
        self.id = stream_id
        self.path = path
        self.reader = MessageReader()
        self.requests: list[tuple[bool, bytes]] = []
        self.headers_sent = False
        self.closed = False
        self.window = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.call: Any = None

    def wake(self) -> None:
        self.window.set()


class H2Connection(asyncio.Protocol):
    """One client connection: h2 state machine, stream dispatch, keepalive policy."""

    def __init__(self, server: GrpcH2Server) -> None:
        self.server = server
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2Stream] = {}
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
        self.server.conns.add(self)
        self.server.stats["connections"] += 1
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 16 << 20})
        self.h2.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.conns.discard(self)
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

    def _drop_stream(self, stream: H2Stream) -> None:
        stream.closed = True
        stream.wake()
        self.streams.pop(stream.id, None)
        self.server.stream_closed(stream)
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()

    def _handle_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers or [])
            stream = H2Stream(self, event.stream_id, str(headers.get(":path", "")))
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

    def _http_error(self, stream: H2Stream, status: str) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.send_headers(stream.id, [(":status", status)], end_stream=True)
        stream.closed = True
        stream.task = None
        self.streams.pop(stream.id, None)

    def _dispatch(self, stream: H2Stream) -> None:
        if stream.closed:
            return
        stream.task = asyncio.get_running_loop().create_task(self.server.handle(stream))

    # -- sending ------------------------------------------------------------------------------
    def _response_headers(self) -> list[tuple[str, str]]:
        return [(":status", "200"), ("content-type", "application/grpc"), *self.server.response_metadata()]

    def send_headers(self, stream: H2Stream) -> None:
        if not stream.headers_sent:
            self.h2.send_headers(stream.id, self._response_headers())
            stream.headers_sent = True
            self.reset_ping_strikes = True

    async def writable(self, stream: H2Stream) -> int:
        """Wait until the stream may send (flow-control window > 0, transport not paused)."""
        while True:
            if stream.closed or self.closed:
                raise StreamGone
            if self.paused:
                await self.resumed.wait()
                continue
            stream.window.clear()
            try:
                window = self.h2.local_flow_control_window(stream.id)
            except (h2.exceptions.StreamClosedError, KeyError):
                raise StreamGone from None
            if window > 0:
                return window
            await stream.window.wait()

    async def send(self, stream: H2Stream, data: bytes) -> None:
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
                raise StreamGone from None
            if h2_stream.closed:
                raise StreamGone
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
                raise StreamGone
            self.transport.write(b"".join(parts))

    def send_trailers(self, stream: H2Stream, code: int, message: str = "") -> None:
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
        self.server.stream_closed(stream)
        self.flush()


class GrpcH2Server:
    """Listeners, the event loop thread and lifecycle; subclasses answer RPCs in :meth:`handle`."""

    def __init__(self, socket_path: str | None = None, tcp: str | tuple[str, int] | None = None,
                 tls: TLSConfig | None = None, keepalive_min_time: float = 300.0,
                 permit_without_stream: bool = False) -> None:
        if socket_path is None and tcp is None:
            raise ValueError("a server needs socket_path and/or tcp")
        self.socket_path = socket_path
        self.tcp = parse_tcp(tcp)
        self.tls = tls
        self.keepalive_min_time = keepalive_min_time
        self.permit_without_stream = permit_without_stream
        self.stats: dict[str, int] = {"connections": 0, "goaway_too_many_pings": 0, "streams_reset_by_client": 0}
        self.tcp_port: int | None = None
        self.conns: set[H2Connection] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._lock = threading.Lock()

    # -- what subclasses provide --------------------------------------------------------------
    async def handle(self, stream: H2Stream) -> None:
        """Answer one RPC (``stream.path``, ``stream.requests``)."""
        stream.conn.send_trailers(stream, Status.UNIMPLEMENTED, f"unknown method {stream.path}")

    def response_metadata(self) -> list[tuple[str, str]]:
        """Extra response headers (after ``:status`` and ``content-type``)."""
        return []

    def stream_closed(self, stream: H2Stream) -> None:
        """A stream ended (trailers sent, reset by the client or its connection gone)."""

    def on_listen(self) -> None:
        """Called on the loop thread before the listeners open."""

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    def start(self, timeout: float = 10.0) -> GrpcH2Server:
        """Start listening (background thread with its own event loop)."""
        with self._lock:
            if self._running:
                return self
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(target=loop.run_forever, name="grpc-h2-sim", daemon=True)
            self._thread.start()
            try:
                asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout)
            except BaseException:
                self._shutdown_loop()
                raise
            self._running = True
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

    def _stop(self, graceful: bool, timeout: float) -> None:
        with self._lock:
            if not self._running or self._loop is None:
                if graceful and self.socket_path:  # after a kill(): clean up the stale socket
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.socket_path)
                return
            self._running = False
            loop = self._loop
            try:
                asyncio.run_coroutine_threadsafe(self._close(graceful), loop).result(timeout)
            except (Exception, concurrent.futures.CancelledError) as exc:  # e.g. the loop died meanwhile
                log.warning("simulator: error while stopping: %r", exc)
            self._shutdown_loop()
        if graceful and self.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = None
        self._thread = None
        if loop is not None:
            shutdown_loop(loop, thread)

    def detach_loop(self) -> tuple[asyncio.AbstractEventLoop | None, threading.Thread | None]:
        """On the loop thread: forget the running loop (the caller shuts it down with :func:`shutdown_loop`
        from another thread); the server is stopped and can be started again with a new loop."""
        loop, thread = self._loop, self._thread
        self._loop, self._thread, self._running = None, None, False
        return loop, thread

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self.on_listen()
        if self.socket_path:
            directory = os.path.dirname(self.socket_path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            try:
                if stat.S_ISSOCK(os.stat(self.socket_path).st_mode):
                    os.unlink(self.socket_path)  # stale socket of a previous (killed) instance
            except FileNotFoundError:
                pass
            srv = await loop.create_unix_server(lambda: H2Connection(self), self.socket_path)
            os.chmod(self.socket_path, 0o660)  # 0660 [v1.16.15 pkg/api/const.go:15] (root:root in official images)
            self._servers.append(srv)
        if self.tcp is not None:
            ctx = self._ssl_context() if self.tls else None
            srv = await loop.create_server(lambda: H2Connection(self), self.tcp[0], self.tcp[1], ssl=ctx,
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
        self.close_now(graceful)

    def close_now(self, graceful: bool) -> None:
        """On the loop thread: close the listeners and every connection (abruptly unless ``graceful``)."""
        for srv in self._servers:
            srv.close()
        self._servers.clear()
        for conn in list(self.conns):
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

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop thread; False while the server is not running."""
        loop = self._loop
        if not self._running or loop is None:
            return False
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            return False
        return True

    def sync(self, timeout: float = 5.0) -> None:
        """Wait until everything scheduled on the loop so far has run."""
        loop = self._loop
        if self._running and loop is not None:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout)


def shutdown_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread | None) -> None:
    """Cancel every task of ``loop``, stop it and join its thread (from another thread)."""

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
