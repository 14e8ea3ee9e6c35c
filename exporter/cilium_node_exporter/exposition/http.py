"""HTTP endpoints: /metrics, /healthz (process alive), /readyz (serving HTTP), / (landing page).

Readiness deliberately ignores source health: a Hubble or kubelet outage must not make the
DaemonSet pod NotReady and stall a rollout; ``cilium_node_exporter_source_up`` reports it.

The port is open on a node's network, so whatever peers do, memory, threads and shutdown stay bounded.
The server is waitress (requests are read by one event loop, complete requests run on a fixed pool
of worker threads) serving prometheus_client's WSGI app (gzip, ``name[]`` filtering, OpenMetrics
negotiation, OPTIONS and 405 answers). Around it, :class:`_Server` adds what waitress lacks:

- at most :data:`MAX_CONNECTIONS` connections; a new one beyond that evicts the connection that has
  waited longest (at least :data:`EVICT_AFTER`) without sending a request, so idle or dripping peers
  cannot lock Prometheus out; when every connection is in use, new ones wait in the listen backlog;
- :data:`REQUEST_DEADLINE`: a connection must deliver a complete request within this time of opening or
  of its previous answer, however slowly it drips bytes, else it is closed;
- request headers of at most :data:`MAX_HEADER_BYTES` (431 beyond), no request bodies (413);
- answers that clients do not read are bounded: /metrics answers 503 while more than
  :data:`MAX_PENDING` bytes wait to be sent, and the deadline closes such connections;
- the kernel's full listen backlog; dual-stack ``[::]`` when the host is empty;
- optional TLS (mutual when a client CA is given) and HTTP basic auth with bcrypt hashes
  (:mod:`.web_auth`);
- a stop that closes every connection at once and gives in-flight scrapes :data:`STOP_GRACE` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from cilium_node_exporter.exposition.web_auth import BasicAuth, TlsConfig

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256  # Prometheus HA pairs, kubelet probes and a few people with curl need a handful
THREADS = 4  # scrapes serialise on the sources anyway; more threads would only add memory
REQUEST_DEADLINE = 10.0  # seconds to deliver a whole request (Prometheus sends one at once)
EVICT_AFTER = 0.1  # a connection that sent no request for this long may be closed to admit a new one
MAX_PENDING = 32 * 2**20  # answers not yet read by their clients, all connections together (then 503)
MAX_HEADER_BYTES = 16 * 1024  # a Prometheus scrape sends ~300 bytes of headers
MAX_RESPONSE_BUFFER = 64 * 2**20  # responses stay in memory (never temp files on a read-only root fs)
STOP_GRACE = 3.0  # an in-flight scrape may finish (a source read is bounded by its own timeout)
STOP_FLUSH = 0.5  # a finished answer may still be sent to a client that reads it
LOOP_TICK = 0.1

LANDING = """<!doctype html>
<html><head><title>cilium-node-exporter</title></head>
<body><h1>cilium-node-exporter</h1>
<p>Per-node Cilium drops, policy verdicts, Hubble loss and cilium-agent memory.</p>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>
<li><a href="/readyz">/readyz</a></li></ul></body></html>
"""
_ALLOW = [("Allow", "OPTIONS,GET,HEAD")]
_TEXT = ("Content-Type", "text/plain; charset=utf-8")


def make_app(registry: CollectorRegistry, auth: BasicAuth | None = None,
             pending: Callable[[], int] = lambda: 0) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: /metrics from prometheus_client, the small pages, auth, and errors through our logs.
    ``pending`` tells how many answer bytes wait to be read by clients (503 beyond :data:`MAX_PENDING`)."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if method not in ("GET", "HEAD", "OPTIONS"):
            start_response("405 Method Not Allowed", [*_ALLOW, _TEXT])
            return [b"method not allowed\n"]
        if method == "OPTIONS":
            start_response("200 OK", [*_ALLOW, ("Content-Length", "0")])
            return [b""]
        if path in ("/healthz", "/readyz"):  # probes carry no credentials; these pages reveal nothing
            start_response("200 OK", [_TEXT])
            return [b"ok\n"]
        if auth is not None and not auth.allows(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [_TEXT, ("WWW-Authenticate", 'Basic realm="cilium-node-exporter"')])
            return [b"unauthorized\n"]
        if path == "/metrics":
            if pending() > MAX_PENDING:
                start_response("503 Service Unavailable", [_TEXT, ("Retry-After", "1")])
                return [b"too many answers are waiting to be read\n"]
            try:
                return metrics({**environ, "REQUEST_METHOD": "GET"}, start_response)
            except Exception:
                log.exception("scrape failed")
                start_response("500 Internal Server Error", [_TEXT])
                return [b"scrape failed\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [LANDING.encode()]
        start_response("404 Not Found", [_TEXT])
        return [b"not found\n"]

    return app


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``host``: an empty host or ``::`` listens on every interface, dual-stack
    (IPv6 with IPv4-mapped addresses) where the kernel allows it, else IPv4 only; any other host is
    resolved and bound in its own family."""
    if host in ("", "::"):
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        except OSError as exc:  # IPv6 disabled in the kernel (ipv6.disable=1)
            if host or exc.errno not in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                raise
            return _bind(socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", port))
        with contextlib.suppress(OSError):  # some kernels force IPV6_V6ONLY; then IPv6 only
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        return _bind(sock, ("::", port))
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return _bind(sock, address)


def _bind(sock: socket.socket, address: tuple[Any, ...]) -> socket.socket:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class _Channel(HTTPChannel):
    """One connection; ``waiting_since`` is when it opened or last finished an answer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting_since = time.monotonic()

    def service(self) -> None:
        super().service()
        self.waiting_since = time.monotonic()

    def handle_error(self) -> None:
        """Peers that reset, time out or fail a TLS handshake are routine: one debug line, no traceback."""
        log.debug("http: connection from %s closed after an error", _peer(self), exc_info=True)
        self.handle_close()

    # --- TLS: waitress reads and writes non-blocking sockets; a TLS socket may need more bytes first --
    def handle_read(self) -> None:
        if not isinstance(self.socket, ssl.SSLSocket):
            super().handle_read()
            return
        data = b""
        try:
            data = self.socket.recv(self.adj.recv_bytes)
            while data and self.socket.pending():
                data += self.socket.recv(self.socket.pending())
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            if not data:
                return
        except (OSError, ValueError) as exc:  # bad handshake, wrong client certificate, reset
            log.debug("http: TLS connection from %s closed: %s", _peer(self), exc)
            self.handle_close()
            return
        if data:
            self.last_activity = time.time()
            self.received(data)
        else:
            self.handle_close()

    def send(self, data: bytes, do_close: bool = True) -> int:
        if isinstance(self.socket, ssl.SSLSocket):
            try:
                return self.socket.send(data)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return 0
            except (OSError, ValueError):
                if do_close:
                    self.handle_close()
                return 0
        return int(super().send(data, do_close))


def _peer(channel: Any) -> str:
    addr = getattr(channel, "addr", None)
    return str(addr[0]) if isinstance(addr, tuple) and addr else "?"


class _Server(TcpWSGIServer):
    """waitress's TCP server with the connection cap, eviction, request deadline and TLS described above."""

    channel_class = _Channel
    tls: TlsConfig | None = None
    max_connections = MAX_CONNECTIONS
    request_deadline = REQUEST_DEADLINE
    pending_bytes = 0  # answer bytes not yet sent, all connections together (updated every loop turn)
    _at_cap = False

    def readable(self) -> bool:
        # waitress stops accepting at its connection_limit (set out of reach here); instead a connection
        # beyond the cap evicts the one that has waited longest without a request being served.
        self.maintenance(time.time())
        if len(self.active_channels) >= self.max_connections and not self._evictable():
            return False  # every connection is in use: new ones wait in the listen backlog
        return bool(self.accepting)

    def _evictable(self) -> list[_Channel]:
        """Connections with nothing in progress (no request being served, no answer being sent) that have
        waited at least :data:`EVICT_AFTER` seconds for a request."""
        cutoff = time.monotonic() - EVICT_AFTER
        return [c for c in self.active_channels.values()
                if not c.requests and not c.total_outbufs_len and c.waiting_since < cutoff]

    def _admit(self) -> bool:
        """Make room for one more connection; False when every open connection is being served."""
        if len(self.active_channels) < self.max_connections:
            return True
        if not self._at_cap:
            log.warning("http: %d connections open (the cap): the longest-waiting ones are closed to admit new "
                        "ones", len(self.active_channels))
            self._at_cap = True
        idle = self._evictable()
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.waiting_since)
        log.debug("http: closing the connection from %s to admit a new one", _peer(oldest))
        oldest.handle_close()
        return True

    def maintenance(self, now: float) -> None:
        """Close connections that did not deliver a whole request within the deadline."""
        cutoff = time.monotonic() - self.request_deadline
        pending = 0
        for channel in list(self.active_channels.values()):
            if not channel.requests and channel.waiting_since < cutoff:
                channel.handle_close()
            else:
                pending += channel.total_outbufs_len
        self.pending_bytes = pending
        if self._at_cap and len(self.active_channels) < self.max_connections // 2:
            log.info("http: connections below the cap again (%d open)", len(self.active_channels))
            self._at_cap = False

    def handle_accept(self) -> None:
        try:
            pair = self.accept()
        except OSError:  # the peer left before we accepted (ECONNABORTED) or fds ran out
            log.debug("http: accept failed", exc_info=True)
            return
        if pair is None:
            return
        conn, addr = pair
        if not self._admit():
            conn.close()
            return
        if self.tls is not None:
            try:
                conn = self.tls.context().wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError):
                conn.close()
                return
        self.channel_class(self, conn, addr, self.adj, map=self._map)

    def handle_error(self) -> None:
        log.error("http: unexpected error in the listener", exc_info=True)


class MetricsServer:
    """The exporter's HTTP endpoint on one listening socket; :meth:`serve` then :meth:`stop`."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, *, tls: TlsConfig | None = None,
                 auth: BasicAuth | None = None) -> None:
        self._sock = listen_socket(host, port)
        try:
            adj = Adjustments(
                sockets=[self._sock], threads=THREADS, backlog=socket.SOMAXCONN, connection_limit=2**30,
                max_request_header_size=MAX_HEADER_BYTES, max_request_body_size=0, ident="",
                inbuf_overflow=MAX_HEADER_BYTES * 2, outbuf_overflow=MAX_RESPONSE_BUFFER,
                outbuf_high_watermark=MAX_RESPONSE_BUFFER, cleanup_interval=1, channel_timeout=3600,
                asyncore_use_poll=True, expose_tracebacks=False, log_socket_errors=False,
                url_scheme="https" if tls else "http")
            self._map: dict[int, Any] = {}
            self._dispatcher = ThreadedTaskDispatcher()
            self._dispatcher.set_thread_count(THREADS)
            app = make_app(registry, auth, lambda: self._server.pending_bytes)
            self._server = _Server(app, map=self._map, _sock=self._sock,
                                   dispatcher=self._dispatcher, adj=adj, bind_socket=False,
                                   sockinfo=(self._sock.family, socket.SOCK_STREAM, 0, self._sock.getsockname()))
        except BaseException:
            self._sock.close()
            raise
        self._server.tls = tls
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound."""
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def serve(self) -> None:
        """Start the event loop thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every connection that has no request in progress, give in-flight scrapes
        :data:`STOP_GRACE` seconds; returns within that (the worker threads are daemons)."""
        self._stopping.set()
        self._server.pull_trigger()
        self._thread.join(STOP_GRACE + 1.0)

    def _loop(self) -> None:
        stop_at: float | None = None
        while True:
            if self._stopping.is_set():
                now = time.monotonic()
                if stop_at is None:
                    stop_at = now
                    self._server.accepting = False
                    wasyncore.dispatcher.close(self._server)  # the listening socket; the trigger stays
                if self._drained(now - stop_at):
                    break
            try:
                wasyncore.loop(timeout=LOOP_TICK, map=self._map, use_poll=True, count=1)
            except Exception:  # never expected: waitress handles errors per connection
                log.exception("http: event loop error")
        for channel in list(self._server.active_channels.values()):
            channel.handle_close()
        wasyncore.close_all(self._map)
        self._dispatcher.shutdown(cancel_pending=True, timeout=0.1)

    def _drained(self, elapsed: float) -> bool:
        busy = False
        for channel in list(self._server.active_channels.values()):
            if channel.requests:
                busy = True
            elif not channel.total_outbufs_len or elapsed > STOP_FLUSH:
                channel.handle_close()
            else:
                busy = True
        return not busy or elapsed > STOP_GRACE
