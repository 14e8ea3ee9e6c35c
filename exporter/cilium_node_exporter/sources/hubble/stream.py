"""The Hubble source: a resumable GetFlows stream plus ServerStatus polling.

Transport: grpcio with the single-threaded unary-stream mode (messages are handed to the
calling thread without per-message thread hand-offs), raw bytes out of grpc (no deserializer)
and our own decode (:mod:`.decode`). BDP probing is off and the stream window fixed, so a fast
server cannot make grpcio buffer hundreds of MB; Hubble's ring then reports what we miss as
HUBBLE_RING_BUFFER lost events, which are counted.

Every gap is accounted: time without a live stream goes to the disconnected-seconds counter,
reconnects are counted, and a reconnect resumes with ``since`` = the last counted event time
(minus a small margin for out-of-order timestamps) while recently counted uuids (and lost-event
identities) are skipped, so nothing is counted twice.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from typing import Any

import grpc
import grpc.experimental

from cilium_node_exporter.aggregation.health import SourceHealth
from cilium_node_exporter.aggregation.hubble_status import HubbleStatus
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_exporter.config import Config
from cilium_node_exporter.sources.hubble.decode import Decoded, FlowCounter, MalformedMessage, lost_identity
from cilium_node_exporter.sources.hubble.request import NO_MASK, MaskPlan, build_request, mask_plan

log = logging.getLogger(__name__)

GET_FLOWS = "/observer.Observer/GetFlows"
SERVER_STATUS = "/observer.Observer/ServerStatus"
# Hubble's grpc-go server answers pings more often than every 5 minutes with GOAWAY too_many_pings.
KEEPALIVE_TIME_MS = 330_000
KEEPALIVE_TIMEOUT_MS = 20_000
STREAM_WINDOW_BYTES = 4 * 1024 * 1024
RESUME_MARGIN_NS = 250_000_000  # resume this much before the last counted event (per-CPU timestamp disorder)
RECENT_CAPACITY = 65_536  # >= Hubble's largest ring (65535): every replayable event fits
CONNECT_TIMEOUT = 5.0
STALLED = "GetFlows stream stalled"
STATUS_TIMEOUT = 5.0
# A GetFlows call counts as live (source up, reconnect counted, backoff reset) once it delivers a message or
# stays open this long: a server that answers every call at once with an error status (UNIMPLEMENTED,
# RESOURCE_EXHAUSTED, ...) must not flap source_up, inflate reconnects or log two lines per retry.
LIVE_AFTER = 1.0
# A ServerStatus poll is late when more than twice the interval plus this many seconds passed since the previous
# one: the process (or this thread) was not running on time (SIGSTOP, CPU throttling, a loaded node), so the
# stream thread may not have read what the server sent meanwhile either.
POLL_SLACK = 1.0


class Backoff:
    """Jittered exponential backoff: 0.5 s doubling up to ``maximum``, full jitter on the upper half."""

    def __init__(self, maximum: float, base: float = 0.5) -> None:
        self.maximum = max(maximum, base)
        self.base = base
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.maximum, self.base * (2 ** self.attempt))
        self.attempt += 1
        return delay / 2 + random.uniform(0, delay / 2)

    def reset(self) -> None:
        self.attempt = 0


class ResumeState:
    """Where to resume after a reconnect, and which replayed events were already counted."""

    def __init__(self, capacity: int = RECENT_CAPACITY) -> None:
        self.last_time_ns: int | None = None
        self.count_at_last_time = 0
        # Identities are kept as 64-bit hashes (uuids or lost-event tuples): a collision would need
        # two of at most 65,536 recent events to share one, about 1e-10.
        self._order: deque[tuple[int, int]] = deque()
        self._seen: set[int] = set()
        self.capacity = capacity
        self.replaying = False
        self._skip_at_last_time = 0
        self._boundary_ns = 0

    def since_ns(self) -> int | None:
        """The ``since`` of the next request (None before anything was counted)."""
        if self.last_time_ns is None:
            return None
        return max(0, self.last_time_ns - RESUME_MARGIN_NS)

    def start_replay(self) -> None:
        """A new stream starts: events up to the last counted time may be replays."""
        self.replaying = self.last_time_ns is not None
        self._boundary_ns = self.last_time_ns or 0
        self._skip_at_last_time = self.count_at_last_time

    def is_duplicate(self, uuid: str, time_ns: int, key: object | None) -> bool:
        """True when this event was counted on an earlier stream."""
        if key is not None:
            return hash(key) in self._seen
        if uuid:
            return hash(uuid) in self._seen
        if not self.replaying or time_ns > self._boundary_ns:
            return False
        if time_ns < self._boundary_ns:  # an old server without uuids: skip what precedes the boundary
            return True
        if self._skip_at_last_time > 0:
            self._skip_at_last_time -= 1
            return True
        return False

    def counted(self, decoded: Decoded) -> None:
        """Remember a counted event."""
        t = decoded.time_ns
        source = decoded.dedupe_key if decoded.dedupe_key is not None else decoded.uuid
        if source:
            ident = hash(source)
            order = self._order
            self._seen.add(ident)
            order.append((t, ident))
            # A resumed stream replays only events newer than since = last - margin: older
            # identities can go (bounded by the rate, and by the ring's largest capacity).
            horizon = (self.last_time_ns or 0) - RESUME_MARGIN_NS
            while order and (len(order) > self.capacity or order[0][0] < horizon):
                self._seen.discard(order.popleft()[1])
        if decoded.kind == "lost" or t == 0:
            return
        if self.last_time_ns is None or t > self.last_time_ns:
            if self.replaying and t > self._boundary_ns + RESUME_MARGIN_NS:
                self.replaying = False
            self.last_time_ns = t
            self.count_at_last_time = 1
        elif t == self.last_time_ns:
            self.count_at_last_time += 1


def _refuses_mask(code: grpc.StatusCode, details: str) -> bool:
    """The server refused our field mask. Cilium answers ``invalid fieldmask`` as a plain Go error, which
    grpc-go sends as UNKNOWN (``pkg/hubble/observer/local_observer.go`` GetFlows, 1.14-1.19); accept
    INVALID_ARGUMENT too, in case a release or a proxy (Hubble Relay) maps it properly."""
    return code == grpc.StatusCode.INVALID_ARGUMENT or (code == grpc.StatusCode.UNKNOWN
                                                        and "fieldmask" in details.lower())


def _reason_for(code: grpc.StatusCode | None, details: str) -> str:
    text = (details or "").lower()
    if "ssl" in text or "tls" in text or "handshake" in text or "certificate" in text:
        return "tls"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return "auth"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "timeout"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, None):
        return "connect"
    return "protocol"


class HubbleSource:
    """Streams counted events from the node's Hubble server into the shared state."""

    name = "hubble"

    def __init__(self, config: Config, state: ExporterState) -> None:
        self.config = config
        self.state = state
        self.health: SourceHealth = state.health["hubble"]
        self.counter = FlowCounter(state.datapath, count_health_verdicts=config.count_health_verdicts,
                                   extra_labels=config.extra_labels, label_cap=config.label_cap,
                                   label_idle_expiry=config.label_idle_expiry)
        self.resume = ResumeState()
        self.version = ""
        self._refused_version: str | None = None  # a server version that refused our masked request
        self._stop = threading.Event()
        self._call: Any = None
        self._call_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._channel: grpc.Channel | None = None
        self._last_message = time.monotonic()
        self._last_poll = time.monotonic()
        self._seen_baseline: int | None = None
        self._stall_suspected = False
        self._stream_started_ns = 0
        self._ever_live = False
        self._live = False
        self._opened_at = 0.0
        self._decode_problem_logged = False

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        for target, name in ((self._stream_loop, "hubble-stream"), (self._status_loop, "hubble-status")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._cancel_call()
        for thread in self._threads:
            thread.join(timeout=2.0)
        if self._channel is not None:
            self._channel.close()

    # --- channel ---------------------------------------------------------------------------
    def _target(self) -> str:
        addr = self.config.hubble_address
        return "unix:" + addr[len("unix://"):] if addr.startswith("unix://") else addr

    def _make_channel(self) -> grpc.Channel:
        options: list[tuple[str, Any]] = [
            (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.enable_retries", 0),
            ("grpc.primary_user_agent", "cilium-node-exporter"),
        ]
        cfg = self.config
        target = self._target()
        if target.startswith("unix:") or not (cfg.hubble_tls_ca or cfg.hubble_tls_cert):
            return grpc.insecure_channel(target, options=options)
        creds = grpc.ssl_channel_credentials(
            root_certificates=_read(cfg.hubble_tls_ca), private_key=_read(cfg.hubble_tls_key),
            certificate_chain=_read(cfg.hubble_tls_cert))
        if cfg.hubble_tls_server_name:
            options.append(("grpc.ssl_target_name_override", cfg.hubble_tls_server_name))
        return grpc.secure_channel(target, creds, options=options)

    def _channel_or_new(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = self._make_channel()
        return self._channel

    def _reset_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None

    def _cancel_call(self) -> None:
        with self._call_lock:
            if self._call is not None:
                self._call.cancel()

    # --- status ----------------------------------------------------------------------------
    def _server_status(self, channel: grpc.Channel) -> observer_pb2.ServerStatusResponse:
        rpc = channel.unary_unary(SERVER_STATUS,
                                  request_serializer=observer_pb2.ServerStatusRequest.SerializeToString,
                                  response_deserializer=observer_pb2.ServerStatusResponse.FromString)
        return rpc(observer_pb2.ServerStatusRequest(), timeout=STATUS_TIMEOUT)

    def _status_loop(self) -> None:
        while not self._stop.wait(self.config.hubble_status_interval):
            channel = self._channel
            if channel is None:
                self.state.hubble_status = None
                continue
            try:
                status = self._server_status(channel)
            except (grpc.RpcError, ValueError) as exc:  # ValueError: channel closed meanwhile
                self.state.hubble_status = None
                log.debug("ServerStatus failed: %s", exc)
                continue
            self._record_status(status)
            self._check_stall(status)

    def _record_status(self, status: observer_pb2.ServerStatusResponse) -> None:
        self.version = status.version
        self.state.hubble_status = HubbleStatus(seen_flows=status.seen_flows, num_flows=status.num_flows,
                                                max_flows=status.max_flows, version=status.version[:64])

    def _check_stall(self, status: observer_pb2.ServerStatusResponse) -> None:
        """Reconnect a live stream that delivers nothing while the observer provably has events for it.

        Keepalive pings cannot be frequent (Hubble's server allows one per 5 minutes), so the
        application checks: no message for ``hubble_stall_timeout`` while ``seen_flows`` grew makes
        a stall suspected; it is confirmed only by a later poll that is on time (the stream thread had
        a whole interval to run) and still saw no message, and then a short non-follow probe must find
        events the server has for us (a quiet node with nothing to count is not a stall). After a pause
        of the process (SIGSTOP, throttling) the first poll is late: the stream is then reading its
        backlog, not stalled.
        """
        now = time.monotonic()
        on_time = now - self._last_poll <= 2 * self.config.hubble_status_interval + POLL_SLACK
        if not self.state.hubble_gap.connected or self._last_message > self._last_poll:
            self._seen_baseline = status.seen_flows
            self._last_poll = now
            self._stall_suspected = False
            return
        self._last_poll = now
        idle = now - self._last_message
        grew = self._seen_baseline is not None and status.seen_flows > self._seen_baseline
        if idle < self.config.hubble_stall_timeout or not grew:
            self._stall_suspected = False
            return
        if not (self._stall_suspected and on_time):
            self._stall_suspected = True  # the stream gets one more on-time interval to show progress
            return
        self._stall_suspected = False
        if self._probe_has_events():
            log.warning("Hubble stream stalled: nothing received for %.0fs while the server has matching "
                        "events; reconnecting", idle)
            self.health.fail("timeout", STALLED)
            self._cancel_call()
        else:
            self._last_message = now  # quiet node: nothing matched, the stream is healthy
            self._seen_baseline = status.seen_flows

    def _probe_has_events(self) -> bool:
        """A short non-follow GetFlows since the last counted event: does the server have any for us?"""
        channel = self._channel
        if channel is None:
            return False
        since = max(self.resume.last_time_ns or 0, self._stream_started_ns) + 1
        req = build_request(plan=self._plan(self.version), since_ns=since, follow=False)
        rpc = channel.unary_stream(GET_FLOWS, request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
                                   response_deserializer=observer_pb2.GetFlowsResponse.FromString)
        call = rpc(req, timeout=STATUS_TIMEOUT)
        try:
            for resp in call:
                if resp.WhichOneof("response_types") == "flow":
                    return True
        except (grpc.RpcError, ValueError):
            return False
        finally:
            call.cancel()
        return False

    # --- stream ----------------------------------------------------------------------------
    def _stream_loop(self) -> None:
        backoff = Backoff(self.config.hubble_backoff_max)
        gap = self.state.hubble_gap
        while not self._stop.is_set():
            try:
                delivered = self._run_stream()
            except Exception as exc:  # never let the source thread die: report, back off, retry
                log.exception("unexpected error in the Hubble stream")
                self.health.fail("protocol", f"unexpected error: {type(exc).__name__}: {exc}")
                self._reset_channel()
                delivered = False
            gap.stream_down()
            if self._stop.is_set():
                break
            if delivered:
                backoff.reset()
            self._stop.wait(backoff.next())

    def _run_stream(self) -> bool:
        """One connect-and-stream attempt; returns True when the stream had gone live."""
        socket_path = self._target()[len("unix:"):] if self._target().startswith("unix:") else None
        if socket_path is not None and not os.path.exists(socket_path):
            self.health.fail("connect", f"Hubble socket {socket_path} does not exist (is the Cilium agent "
                             "running with Hubble enabled, and /var/run/cilium mounted?)")
            return False
        try:
            channel = self._channel_or_new()
        except OSError as exc:  # a TLS file missing or unreadable (mounted secret not there yet)
            self.health.fail("tls", f"cannot read a Hubble TLS file (--hubble-tls-ca/-cert/-key): {exc}")
            return False
        try:
            grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT)
            status = self._server_status(channel)
        except grpc.FutureTimeoutError:
            self.health.fail("connect", f"cannot connect to Hubble at {self.config.hubble_address}")
            self._reset_channel()
            return False
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            self.health.fail(_reason_for(code, details), f"ServerStatus failed: {code.name}: {details}")
            self._reset_channel()
            return False
        self._record_status(status)
        self.resume.start_replay()
        plan = self._plan(status.version)
        req = build_request(plan=plan, since_ns=self.resume.since_ns())
        rpc = channel.unary_stream(GET_FLOWS, request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
                                   response_deserializer=None)
        with self._call_lock:
            if self._stop.is_set():
                return False
            self._live = False
            call = self._call = rpc(req)
        self._opened_at = self._last_message = time.monotonic()
        self._seen_baseline = status.seen_flows
        self._stream_started_ns = time.time_ns()
        confirm = threading.Timer(LIVE_AFTER, self._confirm_live, args=(call,))
        confirm.daemon = True
        confirm.start()
        try:
            try:
                self._consume(call)
            finally:
                confirm.cancel()
                with self._call_lock:
                    self._call = None
            if not self._stop.is_set():
                self.health.fail("connect", "Hubble closed the GetFlows stream")
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if plan is not NO_MASK and _refuses_mask(code, details) and not self._stop.is_set():
                self._refuse(status.version, plan, details)
                return self._live
            if not self._stop.is_set():
                if not (code == grpc.StatusCode.CANCELLED and self.health.last_problem == ("timeout", STALLED)):
                    what = "GetFlows stream ended" if self._live else "GetFlows failed"
                    self.health.fail(_reason_for(code, details), f"{what}: {code.name}: {details}")
                if code == grpc.StatusCode.UNAVAILABLE:
                    self._reset_channel()
        return self._live

    def _plan(self, version: str) -> MaskPlan:
        """The field mask for ``version``; none for a server version that refused one."""
        if version == self._refused_version:
            return NO_MASK
        return mask_plan(version, self.config.extra_labels)

    def _refuse(self, version: str, plan: MaskPlan, details: str) -> None:
        """A server refused the masked request: use no mask with this server version (never loop on it)."""
        self._refused_version = version
        self.health.fail("rejected", f"Hubble {version or '(unknown version)'} refused the GetFlows request "
                         f"({details or 'INVALID_ARGUMENT'}); retrying without a field mask "
                         f"({plan.where} mask of {len(plan.paths)} paths)")

    def _confirm_live(self, call: Any) -> None:
        """The current call delivered a message or stayed open ``LIVE_AFTER``: the stream is up."""
        with self._call_lock:
            if self._live or self._call is not call or self._stop.is_set():
                return
            self._live = True
        # The time since the call opened was connected time: credit it.
        self.state.hubble_gap.stream_up(reconnect=self._ever_live, since=self._opened_at)
        self._ever_live = True
        self.health.ok()
        log.info("GetFlows stream open (Hubble %s%s)", self.version or "unknown version",
                 ", resuming" if self.resume.replaying else "")

    def _consume(self, call: Any) -> None:
        handle = self.counter.handle
        resume = self.resume
        counted = resume.counted
        health = self.health
        live = self._live
        for data in call:
            self._last_message = time.monotonic()
            if not live:
                self._confirm_live(call)
                live = True
            try:
                decoded = self._decode_for_dedupe(data) if resume.replaying else handle(data)
            except MalformedMessage as exc:
                health.errors["decode"] += 1
                if not self._decode_problem_logged:
                    log.warning("undecodable message from Hubble (%d bytes): %s; skipped and counted in "
                                "cilium_node_exporter_source_errors_total{reason=\"decode\"}", len(data), exc)
                    self._decode_problem_logged = True
                continue
            if decoded is not None:
                counted(decoded)

    def _decode_for_dedupe(self, data: bytes) -> Decoded | None:
        """While replaying after a reconnect: peek identity first, count only what is new."""
        try:
            resp = observer_pb2.GetFlowsResponse.FromString(data)
        except Exception as exc:
            raise MalformedMessage(str(exc)) from None
        which = resp.WhichOneof("response_types")
        if which == "flow":
            t = resp.flow.time
            uuid, time_ns, key = resp.flow.uuid, t.seconds * 1_000_000_000 + t.nanos, None
        elif which == "lost_events":
            t = resp.time
            time_ns = t.seconds * 1_000_000_000 + t.nanos
            uuid = ""
            key = lost_identity(resp)
            if key is None:
                return self.counter.handle(data)
        else:
            return self.counter.handle(data)
        if self.resume.is_duplicate(uuid, time_ns, key):
            return None
        return self.counter.handle(data)


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()
