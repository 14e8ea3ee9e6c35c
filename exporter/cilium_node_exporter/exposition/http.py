"""HTTP endpoints: /metrics, /healthz (process alive), /readyz (serving HTTP), / (landing page).

Readiness deliberately ignores source health: a Hubble or kubelet outage must not make the
DaemonSet pod NotReady and stall a rollout; ``cilium_node_exporter_source_up`` reports it. Liveness fails
only for what a restart of the container cures (:class:`Serving` ``liveness``: a socket mount whose file
the agent replaced).

The port is open on a node's network, so whatever peers do, memory, threads and shutdown stay bounded.
The server is waitress (requests are read by one event loop, complete requests run on a fixed pool
of worker threads) serving prometheus_client's WSGI app (gzip, ``name[]`` filtering, OpenMetrics
negotiation, OPTIONS and 405 answers). Around it, :class:`_Server` adds what waitress lacks:

- at most :data:`MAX_CONNECTIONS` connections over all listeners; a new one beyond that evicts the
  connection that has waited longest (at least :data:`EVICT_AFTER`) without sending a request, so idle or
  dripping peers cannot lock Prometheus out; when every connection is in use, new ones wait in the listen
  backlog;
- :data:`REQUEST_DEADLINE`: a connection must deliver a complete request within this time of opening or
  of its previous answer, however slowly it drips bytes, else it is closed;
- request headers of at most :data:`MAX_HEADER_BYTES` (431 beyond), no request bodies (413);
- answers that clients do not read are bounded: /metrics answers 503 while more than
  :data:`MAX_PENDING` bytes wait to be sent, and the deadline closes such connections;
- the kernel's full listen backlog; dual-stack ``[::]`` when the host is empty; several listen addresses;
- the web configuration file (:mod:`.web_config`: TLS, mutual TLS, basic auth with :mod:`.web_auth`,
  response headers, a rate limit); health listeners that serve only /healthz and /readyz, in plain HTTP
  without auth, for kubelet probes when the main listener asks for client certificates;
- a scrape budget: the scrape-time sources must answer within the scraper's
  ``X-Prometheus-Scrape-Timeout-Seconds`` (else ``--scrape-timeout``) minus ``--scrape-timeout-offset``
  (:data:`~cilium_node_exporter.aggregation.state.SCRAPE_DEADLINE`);
- a stop that closes every connection at once and gives in-flight scrapes :data:`STOP_GRACE` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from cilium_node_exporter.aggregation.state import SCRAPE_DEADLINE
from cilium_node_exporter.exposition.web_auth import BasicAuth, TokenBucket
from cilium_node_exporter.exposition.web_config import WebConfigFile, peer_allowed

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256  # Prometheus HA pairs, kubelet probes and a few people with curl need a handful
MAX_HEALTH_CONNECTIONS = 16  # the health listeners (kubelet probes only), apart from the cap above
THREADS = 4  # scrapes serialise on the sources anyway; more threads would only add memory
REQUEST_DEADLINE = 10.0  # seconds to deliver a whole request (Prometheus sends one at once)
EVICT_AFTER = 0.1  # a connection that sent no request for this long may be closed to admit a new one
MAX_PENDING = 32 * 2**20  # answers not yet read by their clients, all connections together (then 503)
MAX_HEADER_BYTES = 16 * 1024  # a Prometheus scrape sends ~300 bytes of headers
MAX_RESPONSE_BUFFER = 64 * 2**20  # responses stay in memory (never temp files on a read-only root fs)
STOP_GRACE = 3.0  # an in-flight scrape may finish (a source read is bounded by its own timeout)
STOP_FLUSH = 0.5  # a finished answer may still be sent to a client that reads it
LOOP_TICK = 0.1
AT_CAP_LOG_EVERY = 300.0  # the "connections at the cap" warning at most once per this many seconds
SCRAPE_TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"
MIN_BUDGET = 0.1

LANDING = """<!doctype html>
<html><head><title>cilium-node-exporter</title></head>
<body><h1>cilium-node-exporter</h1>
<p>Per-node Cilium drops, policy verdicts, Hubble loss and cilium-agent memory.</p>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>
<li><a href="/readyz">/readyz</a></li></ul></body></html>
"""
_ALLOW = [("Allow", "OPTIONS,GET,HEAD")]
_TEXT = ("Content-Type", "text/plain; charset=utf-8")
HEALTH_PATHS = ("/healthz", "/readyz")


@dataclass
class Serving:
    """What the endpoint needs besides the registry: the web configuration (None: plain HTTP, no auth), the
    scrape budget (``--scrape-timeout``, ``--scrape-timeout-offset``) and the liveness check (a problem only
    a restart cures, or None)."""

    web: WebConfigFile | None = None
    scrape_timeout: float = 10.0
    scrape_timeout_offset: float = 0.5
    liveness: Callable[[], str | None] = lambda: None
    auth: BasicAuth | None = field(init=False, default=None)
    rate_limit: TokenBucket | None = field(init=False, default=None)
    _rate_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.web is not None:
            web = self.web
            self.auth = BasicAuth(lambda: web.current().config.users)
            limit = web.current().config.rate_limit  # read at start, as the toolkit does
            if limit is not None:
                self.rate_limit = TokenBucket(1.0 / limit.interval, max(limit.burst, 1))

    def budget(self, environ: dict[str, Any]) -> float:
        """Seconds the scrape-time sources may take for this scrape."""
        timeout = self.scrape_timeout
        text = environ.get(SCRAPE_TIMEOUT_HEADER)
        if text:
            try:
                given = float(text)
            except ValueError:
                given = math.nan
            if math.isfinite(given) and given > 0:
                timeout = given
        return max(MIN_BUDGET, timeout - self.scrape_timeout_offset)

    def rate_limited(self) -> bool:
        if self.rate_limit is None:
            return False
        with self._rate_lock:
            return not self.rate_limit.take()

    def headers(self) -> list[tuple[str, str]]:
        return list(self.web.current().config.headers.items()) if self.web is not None else []

    @property
    def users(self) -> bool:
        return self.web is not None and bool(self.web.current().config.users)


def make_app(registry: CollectorRegistry, serving: Serving | None = None,
             pending: Callable[[], int] = lambda: 0) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: /metrics from prometheus_client, the small pages, auth, and errors through our logs.
    ``pending`` tells how many answer bytes wait to be read by clients (503 beyond :data:`MAX_PENDING`)."""
    serving = serving or Serving()
    metrics = make_wsgi_app(registry)
    health = make_health_app(serving)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        extra = serving.headers()

        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *extra], exc_info) if exc_info else \
                start_response(status, [*headers, *extra])

        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if method not in ("GET", "HEAD", "OPTIONS") or path in HEALTH_PATHS:  # probes carry no credentials
            return health(environ, respond)
        if method == "OPTIONS":
            respond("200 OK", [*_ALLOW, ("Content-Length", "0")])
            return [b""]
        if serving.rate_limited():
            respond("429 Too Many Requests", [_TEXT, ("Retry-After", "1")])
            return [b"too many requests\n"]
        if serving.users and serving.auth is not None:
            refused = serving.auth.check(environ.get("HTTP_AUTHORIZATION"), environ.get("REMOTE_ADDR", ""))
            if refused == "throttled":
                respond("429 Too Many Requests", [_TEXT, ("Retry-After", "1")])
                return [b"too many password checks, retry later\n"]
            if refused is not None:
                respond("401 Unauthorized", [_TEXT, ("WWW-Authenticate", 'Basic realm="cilium-node-exporter"')])
                return [b"unauthorized\n"]
        if path == "/metrics":
            if pending() > MAX_PENDING:
                respond("503 Service Unavailable", [_TEXT, ("Retry-After", "1")])
                return [b"too many answers are waiting to be read\n"]
            token = SCRAPE_DEADLINE.set(time.monotonic() + serving.budget(environ))
            try:
                return metrics({**environ, "REQUEST_METHOD": "GET"}, respond)
            except Exception:
                log.exception("scrape failed")
                respond("500 Internal Server Error", [_TEXT])
                return [b"scrape failed\n"]
            finally:
                SCRAPE_DEADLINE.reset(token)
        if path == "/":
            respond("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [LANDING.encode()]
        respond("404 Not Found", [_TEXT])
        return [b"not found\n"]

    return app


def make_health_app(serving: Serving) -> Callable[..., Iterable[bytes]]:
    """/healthz (503 when ``serving.liveness`` names a problem) and /readyz; 405 for other methods, 404 for
    other paths."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if method not in ("GET", "HEAD", "OPTIONS"):
            start_response("405 Method Not Allowed", [*_ALLOW, _TEXT])
            return [b"method not allowed\n"]
        if method == "OPTIONS":
            start_response("200 OK", [*_ALLOW, ("Content-Length", "0")])
            return [b""]
        if path == "/healthz":
            problem = serving.liveness()
            if problem is not None:
                start_response("503 Service Unavailable", [_TEXT])
                return [f"{problem}\n".encode()]
        if path in HEALTH_PATHS:
            start_response("200 OK", [_TEXT])
            return [b"ok\n"]
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
        self._peer_checked = False  # client_allowed_sans, checked once the TLS handshake is done

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
        if data and not self._peer_checked:
            self._peer_checked = True
            web = getattr(self.server, "web", None)
            tls = web.current().config.tls if web is not None else None
            if tls is not None and not peer_allowed(self.socket.getpeercert(), tls.client_allowed_sans):
                log.debug("http: TLS connection from %s closed: no allowed SAN in the client certificate",
                          _peer(self))
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
    """waitress's TCP server with the connection cap, eviction, request deadline and TLS described above.
    The servers of one :class:`MetricsServer` share ``active_channels`` (and so the cap)."""

    channel_class = _Channel
    web: WebConfigFile | None = None  # TLS when its configuration has tls_server_config
    max_connections = MAX_CONNECTIONS
    request_deadline = REQUEST_DEADLINE
    pending_bytes = 0  # answer bytes not yet sent, all connections together (updated every loop turn)
    _at_cap = False
    _at_cap_logged = -math.inf

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
            self._at_cap = True
            now = time.monotonic()
            if now - self._at_cap_logged >= AT_CAP_LOG_EVERY:  # peers choose how often the cap is crossed
                self._at_cap_logged = now
                log.warning("http: %d connections open (the cap): the longest-waiting ones are closed to admit "
                            "new ones", len(self.active_channels))
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
            log.debug("http: connections below the cap again (%d open)", len(self.active_channels))
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
        if self.web is not None:
            context = self.web.current().context
            if context is not None:
                try:
                    conn = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                except (OSError, ValueError):
                    conn.close()
                    return
        self.channel_class(self, conn, addr, self.adj, map=self._map)

    def handle_error(self) -> None:
        log.error("http: unexpected error in the listener", exc_info=True)


Address = tuple[str, int]


class MetricsServer:
    """The exporter's HTTP endpoint: the main listeners (everything) and the health listeners (/healthz,
    /readyz only, plain HTTP), one event loop and one worker pool; :meth:`serve` then :meth:`stop`."""

    def __init__(self, listen: Sequence[Address], registry: CollectorRegistry, serving: Serving | None = None,
                 health: Sequence[Address] = ()) -> None:
        self.serving = serving or Serving()
        self._map: dict[int, Any] = {}
        self._dispatcher = ThreadedTaskDispatcher()
        self._dispatcher.set_thread_count(THREADS)
        self._servers: list[_Server] = []
        self._health_servers: list[_Server] = []
        app = make_app(registry, self.serving, lambda: self.pending_bytes)
        health_app = make_health_app(self.serving)
        shared: dict[int, Any] = {}
        health_shared: dict[int, Any] = {}
        try:
            for host, port in listen:
                self._servers.append(self._server(host, port, app, shared, tls=self.serving.web is not None))
            for host, port in health:
                server = self._server(host, port, health_app, health_shared, tls=False)
                server.max_connections = MAX_HEALTH_CONNECTIONS
                self._health_servers.append(server)
        except BaseException:
            for server in self.all_servers:
                server.socket.close()
            raise
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="http", daemon=True)

    def _server(self, host: str, port: int, app: Callable[..., Iterable[bytes]], shared: dict[int, Any], *,
                tls: bool) -> _Server:
        sock = listen_socket(host, port)
        try:
            adj = Adjustments(
                sockets=[sock], threads=THREADS, backlog=socket.SOMAXCONN, connection_limit=2**30,
                max_request_header_size=MAX_HEADER_BYTES, max_request_body_size=0, ident="",
                inbuf_overflow=MAX_HEADER_BYTES * 2, outbuf_overflow=MAX_RESPONSE_BUFFER,
                outbuf_high_watermark=MAX_RESPONSE_BUFFER, cleanup_interval=1, channel_timeout=3600,
                asyncore_use_poll=True, expose_tracebacks=False, log_socket_errors=False,
                url_scheme="https" if tls and self.serving.web is not None and self.serving.web.tls else "http")
            server = _Server(app, map=self._map, _sock=sock, dispatcher=self._dispatcher, adj=adj,
                             bind_socket=False, sockinfo=(sock.family, socket.SOCK_STREAM, 0, sock.getsockname()))
        except BaseException:
            sock.close()
            raise
        server.active_channels = shared
        server.web = self.serving.web if tls else None
        return server

    @property
    def all_servers(self) -> list[_Server]:
        return [*self._servers, *self._health_servers]

    @property
    def pending_bytes(self) -> int:
        return self._servers[0].pending_bytes if self._servers else 0

    @property
    def addresses(self) -> list[Address]:
        """(host, port) of each main listener, as bound."""
        return [_address(s) for s in self._servers]

    @property
    def health_addresses(self) -> list[Address]:
        return [_address(s) for s in self._health_servers]

    @property
    def address(self) -> Address:
        """(host, port) of the first main listener."""
        return self.addresses[0]

    def serve(self) -> None:
        """Start the event loop thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every connection that has no request in progress, give in-flight scrapes
        :data:`STOP_GRACE` seconds; returns within that (the worker threads are daemons)."""
        self._stopping.set()
        if self._servers or self._health_servers:
            self.all_servers[0].pull_trigger()
        self._thread.join(STOP_GRACE + 1.0)

    def _channels(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for server in self.all_servers:
            seen.update(server.active_channels)
        return list(seen.values())

    def _loop(self) -> None:
        stop_at: float | None = None
        while True:
            if self._stopping.is_set():
                now = time.monotonic()
                if stop_at is None:
                    stop_at = now
                    for server in self.all_servers:
                        server.accepting = False
                        wasyncore.dispatcher.close(server)  # the listening socket; the trigger stays
                if self._drained(now - stop_at):
                    break
            try:
                wasyncore.loop(timeout=LOOP_TICK, map=self._map, use_poll=True, count=1)
            except Exception:  # never expected: waitress handles errors per connection
                log.exception("http: event loop error")
        for channel in self._channels():
            channel.handle_close()
        wasyncore.close_all(self._map)
        self._dispatcher.shutdown(cancel_pending=True, timeout=0.1)

    def _drained(self, elapsed: float) -> bool:
        busy = False
        for channel in self._channels():
            if channel.requests:
                busy = True
            elif not channel.total_outbufs_len or elapsed > STOP_FLUSH:
                channel.handle_close()
            else:
                busy = True
        return not busy or elapsed > STOP_GRACE


def _address(server: _Server) -> Address:
    host, port = server.socket.getsockname()[:2]
    return str(host), int(port)
