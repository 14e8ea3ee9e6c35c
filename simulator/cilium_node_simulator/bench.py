"""Benchmark production: exactly N matching flows, as fast as the slowest follow reader takes them.

It produces only while a follow GetFlows stream is open and never laps the slowest follow reader
(no ring loss), so a benchmark measures the client; traces a whitelist filters out are mixed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cilium_node_simulator.events import CompiledSpec, EventSpec, TruthEntry
from cilium_node_simulator.flows import FlowTemplate
from cilium_node_simulator.grpc_wire import timestamp

if TYPE_CHECKING:
    from cilium_node_simulator.hubble_server import HubbleServer

# One unit of the benchmark sequence: a flow template, its ground-truth entries, whether it matches.
Unit = tuple[FlowTemplate, list[TruthEntry], bool]


@dataclass
class BenchMix:
    """Specs of the benchmark mix: matching drops/verdicts/L7 flows plus traces a whitelist filters out."""

    matching: list[EventSpec] = field(default_factory=lambda: [
        EventSpec("drop", reason=133, direction=1), EventSpec("drop", reason=155, direction=2),
        EventSpec("verdict", action=1, match=2, direction=2), EventSpec("verdict", action=2, match=0),
        EventSpec("verdict", action=5, match=4, direction=1), EventSpec("http", method="GET"),
        EventSpec("http", method="POST", action=2)])
    trace: EventSpec = field(default_factory=lambda: EventSpec("trace"))


class BenchProducer:
    """One benchmark run on ``server`` (started by :meth:`.hubble_server.HubbleServer.bench`)."""

    def __init__(self, server: HubbleServer, n: int, trace_every: int = 4, mix: BenchMix | None = None) -> None:
        self.server = server
        self.n = n
        self.done = threading.Event()
        self.stats: dict[str, Any] = {"n": n, "produced": 0, "started": None, "finished": None}
        mix = mix or BenchMix()
        units: list[tuple[FlowTemplate, list[TruthEntry]]] = []
        for i, spec in enumerate(mix.matching):
            compiled = server.compile(spec, 1000 + i)
            for occ, truth in zip(compiled.occurrences, compiled.truths, strict=True):
                for j, t in enumerate(occ):
                    units.append((t, truth if j == 0 else []))
        traces = [occ[0] for occ in server.compile(mix.trace, 999).occurrences]
        self.sequence: list[Unit] = []
        ti = 0
        for k, (t, truth) in enumerate(units * 2):
            self.sequence.append((t, truth, True))
            if trace_every and k % trace_every == trace_every - 1:
                self.sequence.append((traces[ti % len(traces)], [], False))
                ti += 1

    def _flush_truth(self, pending: list[int]) -> None:
        for idx, cnt in enumerate(pending):
            if cnt:
                t, truth, _ = self.sequence[idx]
                self.server.truth.add(truth, cnt, [t.event_type])
                pending[idx] = 0

    async def run(self) -> None:
        server, sequence, n = self.server, self.sequence, self.n
        mix = CompiledSpec(EventSpec("trace"), [(t,) for t, _, _ in sequence])
        is_match = [m for _, _, m in sequence]
        length = len(sequence)
        per_cycle = sum(is_match)
        pending = [0] * length
        flushed = 0.0
        ts_ns, ts = 0, b""
        produced = 0
        cap = server.ring.capacity
        while not server.followers:
            await asyncio.sleep(0.005)
        self.stats["started"] = time.monotonic()
        while produced < n:
            lag = server.ring.write - min((s.pos for s in server.followers), default=server.ring.write)
            room = cap // 2 - lag
            if room < min(64, cap // 4):
                ev = server.progress
                assert ev is not None
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
            flows = server.stamper.produce(server.ring, mix, c, ts_ns, ts)
            server.seen_flows += flows
            for idx, cnt in enumerate(counts):
                pending[idx] += cnt
            produced += matched
            self.stats["produced"] = produced
            server.notify()
            if produced >= n or time.monotonic() - flushed > 0.25:
                self._flush_truth(pending)
                flushed = time.monotonic()
            await asyncio.sleep(0)
        self.stats["finished"] = time.monotonic()
        self.done.set()
