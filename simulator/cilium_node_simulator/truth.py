"""Ground truth: what the exporter's metric contract should count for the events the simulator produced.

Label tuples use the contract's label values (``contract.py``):
- ``drops[(reason, direction)]`` - type-1 flows (``reason`` = DropReason name or ``REASON_<n>``)
- ``verdicts[(direction, match, action)]`` - type-5 flows except host-sourced (identity 1) and health
  (identity 4, either side) ones, plus one per L7 *request* with ``match = l7/http|l7/dns``
- ``verdicts_health[...]`` - the type-5 verdicts involving the health identity (excluded by default)
- ``l7_requests[(protocol, method, direction, action)]`` - L7 requests (``method`` ``""`` for DNS)
- ``lost[source]`` - ``num_events_lost`` summed: perf/observer losses written into the ring, and
  ``hubble_ring_buffer`` losses actually sent to slow readers (all streams together)
- ``seen_flows_total`` - every flow produced (all types, all server incarnations); the server's
  current ``seen_flows`` is in ``HubbleServer.status()``
- ``flows_by_type[event_type]``
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GroundTruth:
    """Thread-safe counters; read them through :meth:`snapshot` while the simulator runs."""

    drops: Counter[tuple[str, str]] = field(default_factory=Counter)
    verdicts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    verdicts_health: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    l7_requests: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    flows_by_type: Counter[int] = field(default_factory=Counter)
    seen_flows_total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, truth: list[tuple[str, tuple[Any, ...]]], occurrences: int, flow_types: list[int]) -> None:
        """Record ``occurrences`` of a compiled spec (its truth entries and per-flow event types)."""
        with self._lock:
            for name, key in truth:
                getattr(self, name)[key] += occurrences
            for event_type in flow_types:
                self.flows_by_type[event_type] += occurrences
            self.seen_flows_total += occurrences * len(flow_types)

    def add_lost(self, source: str, count: int) -> None:
        with self._lock:
            self.lost[source] += count

    def snapshot(self) -> GroundTruth:
        """A consistent copy (compare two snapshots to get what happened in between)."""
        with self._lock:
            copied = GroundTruth(**{name: copy.copy(getattr(self, name)) for name in (
                "drops", "verdicts", "verdicts_health", "l7_requests", "lost", "flows_by_type")},
                seen_flows_total=self.seen_flows_total)
        return copied

    def total(self, name: str) -> int:
        with self._lock:
            return sum(getattr(self, name).values())
