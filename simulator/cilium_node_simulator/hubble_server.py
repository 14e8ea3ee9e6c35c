"""A simulated node-local Hubble server that behaves like one Cilium release (1.14 to 1.19).

The release (:mod:`.releases`) decides the flows' fields, where GetFlows reads a field mask and how it
validates and copies it (:mod:`.fieldmask`), the lost-event form, the version string
(``cilium v1.16.15+g<sha>``) and the ``hubble-server-version`` header (1.18+). Transport is
:mod:`.grpc_h2`; the RPCs are :mod:`.observer` and :mod:`.getflows`; fault injection :mod:`.faults`;
benchmark production :mod:`.bench`. An emulated 1.14 agent *dies* when its field-mask copy panics, as
the real one does (no panic recovery in Hubble's gRPC server, :mod:`.fieldmask`): streams abort, connections
are refused for ``crash_downtime`` seconds, then a fresh agent (empty ring) listens again; every
death is counted in ``stats["crashes"]`` and ``truth.crashes``.

Using it (tests, ``bench/hubble_stream.py``)::

    from cilium_node_simulator.hubble_server import HubbleServer
    from cilium_node_simulator.events import EventSpec

    server = HubbleServer(socket_path="/tmp/x/hubble.sock", version="1.16.15")
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
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from cilium_node_simulator.bench import BenchMix, BenchProducer
from cilium_node_simulator.events import LOST_SOURCES, CompiledSpec, EventSpec
from cilium_node_simulator.faults import Faults
from cilium_node_simulator.flows import LOST_TEMPLATE, FlowFactory
from cilium_node_simulator.getflows import GetFlowsCall
from cilium_node_simulator.grpc_h2 import GrpcH2Server, H2Stream, TLSConfig, shutdown_loop
from cilium_node_simulator.observer import dispatch
from cilium_node_simulator.releases import parse_version
from cilium_node_simulator.ring import Ring
from cilium_node_simulator.stamper import Stamper
from cilium_node_simulator.truth import GroundTruth

__all__ = ["BenchMix", "Faults", "HubbleServer", "TLSConfig"]

log = logging.getLogger(__name__)


class HubbleServer(GrpcH2Server):
    """The simulated node-local Hubble server of one Cilium release (see the module docstring)."""

    def __init__(self, socket_path: str | None = None, tcp: str | tuple[str, int] | None = None,
                 tls: TLSConfig | None = None, version: str = "1.19.4", ring_capacity: int = 4095,
                 node: str = "sim-1", keepalive_min_time: float = 300.0, permit_without_stream: bool = False,
                 lost_event_interval: float = 1.0, follow_backlog: int = 2, seed: int = 1,
                 truth: GroundTruth | None = None, crash_downtime: float | None = 3.0) -> None:
        super().__init__(socket_path, tcp, tls, keepalive_min_time, permit_without_stream)
        self.version = parse_version(version)
        self.release = self.version.release
        self.factory = FlowFactory(node=node, version=self.version, seed=seed)
        self.node = node
        self.seed = seed
        self.ring = Ring(ring_capacity)
        self.lost_event_interval = lost_event_interval
        self.follow_backlog = follow_backlog
        self.crash_downtime = crash_downtime
        self.truth = truth if truth is not None else GroundTruth()
        self.faults = Faults()
        self.stats.update({"getflows_calls": 0, "masked_getflows": 0, "restarts": 0, "crashes": 0})
        self.seen_flows = 0
        self.stamper = Stamper(node)
        self.followers: set[GetFlowsCall] = set()
        self.namespaces: set[str] = set()
        self.new_data: asyncio.Event | None = None
        self.progress: asyncio.Event | None = None
        self._start_ns = time.time_ns()
        self._rate_samples: deque[tuple[float, int]] = deque()
        self._bench: BenchProducer | None = None
        self._wanted = False  # started and not stopped by the caller (a crashed agent comes back)
        self._stopping = threading.Event()  # cuts a crashed agent's downtime short

    # -- GrpcH2Server -------------------------------------------------------------------------
    async def handle(self, stream: H2Stream) -> None:
        await dispatch(self, stream)

    def response_metadata(self) -> list[tuple[str, str]]:
        return [("hubble-server-version", self.version.semver)] if self.release.version_header else []

    def stream_closed(self, stream: H2Stream) -> None:
        if stream.call is not None:
            self.followers.discard(stream.call)

    def on_listen(self) -> None:
        self.new_data = asyncio.Event()
        self.progress = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> HubbleServer:
        self._wanted = True
        self._stopping.clear()
        was_running = self.running
        super().start(timeout)
        if not was_running:
            self._start_ns = time.time_ns()
            log.info("simulator: Hubble %s (Cilium %s) listening on %s", self.version.text, self.release.name,
                     ", ".join(self.addresses()))
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._wanted = False
        self._stopping.set()
        super().stop(timeout)

    def kill(self, timeout: float = 5.0) -> None:
        self._wanted = False
        self._stopping.set()
        super().kill(timeout)

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

    def crash(self, why: str) -> None:
        """The emulated agent process dies (on the loop thread, from a handler): every connection is
        aborted, the listeners close (the stale socket refuses connections) and the ring is gone; after
        ``crash_downtime`` a fresh agent comes back (kubelet restarts it; None: down until :meth:`start`)."""
        log.warning("simulator: cilium-agent %s died: %s (restart in %ss)", self.version.text, why,
                    self.crash_downtime)
        self.stats["crashes"] += 1
        self.truth.add_crash()
        self.close_now(graceful=False)
        self.followers.clear()
        self.reset()
        loop, thread = self.detach_loop()
        threading.Thread(target=self._come_back, args=(loop, thread), name="hubble-sim-restart",
                         daemon=True).start()

    def _come_back(self, loop: asyncio.AbstractEventLoop | None, thread: threading.Thread | None) -> None:
        if loop is not None:
            shutdown_loop(loop, thread)
        if self.crash_downtime is None or self._stopping.wait(self.crash_downtime):
            return
        with self._lock:
            if not self._wanted or self.running:
                return
        self.start()

    # -- producing events ---------------------------------------------------------------------
    def compile(self, spec: EventSpec, index: int = 0) -> CompiledSpec:
        """Pre-serialize a spec for this server's node and release."""
        compiled = self.factory.compile(spec, index)
        for occ in compiled.occurrences:
            for t in occ:
                assert t.flow is not None
                for ep in (t.flow.source, t.flow.destination):
                    if ep.namespace:
                        self.namespaces.add(ep.namespace)
        return compiled

    def emit(self, items: Iterable[tuple[CompiledSpec, int]]) -> bool:
        """Produce events (thread-safe): ``count`` occurrences of each compiled spec, stamped now.

        Returns False (and produces nothing) while the server is stopped, like a down agent.
        """
        batch = [(c, n) for c, n in items if n > 0]
        return bool(batch) and self.call_soon(self._produce, batch)

    def emit_lost(self, source: str, count: int, cpu: int | None = None) -> bool:
        """Write a LostEvent of ``source`` (perf_event_ring_buffer / observer_events_queue) into the ring."""
        if source not in LOST_SOURCES:
            raise ValueError(f"unknown lost-event source {source!r}")
        return count > 0 and self.call_soon(self._produce_lost, source, count, cpu)

    def _produce(self, batch: list[tuple[CompiledSpec, int]]) -> None:
        now = time.time_ns()
        for compiled, count in batch:
            counts = compiled.counts(count)
            flows = self.stamper.produce(self.ring, compiled, count, now)
            self.seen_flows += flows
            for occ, truth, n in zip(compiled.occurrences, compiled.truths, counts, strict=True):
                self.truth.add(truth, n, [t.event_type for t in occ])
        self.notify()

    def _produce_lost(self, source: str, count: int, cpu: int | None) -> None:
        now = time.time_ns()
        if source == "perf_event_ring_buffer" and cpu is None:
            cpu = 0
        aggregated = source == "observer_events_queue"  # 1.19 rate-limits these with first/last
        code = LOST_SOURCES[source]
        msg = self.factory.lost_message(code, count, now, cpu=cpu,
                                        first_ns=now - int(self.lost_event_interval * 1e9) if aggregated else None,
                                        last_ns=now)
        self.ring.append((now, LOST_TEMPLATE, None, msg))
        self.truth.add_lost(code, count)
        self.notify()

    def notify(self) -> None:
        """New events are in the ring: wake the readers (loop thread)."""
        mono = time.monotonic()
        samples = self._rate_samples
        if not samples or mono - samples[-1][0] >= 1.0:
            samples.append((mono, self.seen_flows))
            while samples and mono - samples[0][0] > 60.0:
                samples.popleft()
        ev = self.new_data
        if ev is not None:
            self.new_data = asyncio.Event()
            ev.set()

    def progressed(self) -> None:
        """A reader advanced (wakes a benchmark producer waiting for room; loop thread)."""
        if self.progress is not None and self._bench is not None:
            ev = self.progress
            self.progress = asyncio.Event()
            ev.set()

    def status(self) -> dict[str, Any]:
        """ServerStatus fields (thread-safe enough for tests: plain reads) and the crash count."""
        mono = time.monotonic()
        rate = 0.0
        samples = self._rate_samples
        if samples:
            t0, s0 = samples[0]
            if mono - t0 > 0.5:
                rate = (self.seen_flows - s0) / (mono - t0)
        return {"num_flows": len(self.ring), "max_flows": self.ring.capacity, "seen_flows": self.seen_flows,
                "uptime_ns": time.time_ns() - self._start_ns, "version": self.version.text, "flows_rate": rate,
                "crashes": self.stats["crashes"]}

    # -- benchmark ----------------------------------------------------------------------------
    def bench(self, n: int, trace_every: int = 4, mix: BenchMix | None = None) -> threading.Event:
        """Produce exactly ``n`` matching flows (drops, verdicts, L7) plus one trace per ``trace_every``
        of them, as fast as the slowest follow reader takes them; returns an Event set when done."""
        producer = BenchProducer(self, n, trace_every, mix)
        self._bench = producer
        if not self.call_soon(lambda: asyncio.ensure_future(producer.run())):
            raise RuntimeError("server is not running")
        return producer.done

    def bench_stats(self) -> dict[str, Any]:
        """Produced count, start/finish (monotonic seconds) of the current benchmark."""
        return dict(self._bench.stats) if self._bench is not None else {}
