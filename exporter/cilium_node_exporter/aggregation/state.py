"""Everything the exposition reads, in one object that sources write into."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cilium_node_exporter.aggregation.agent import AgentDatapath
from cilium_node_exporter.aggregation.containers import ContainerMemory, ContainerPod
from cilium_node_exporter.aggregation.datapath import DatapathCounters
from cilium_node_exporter.aggregation.health import SourceHealth, StreamGap
from cilium_node_exporter.aggregation.hubble_status import HubbleStatus
from cilium_node_exporter.aggregation.memory import AgentMemory
from cilium_node_exporter.aggregation.settings import CiliumSettings

log = logging.getLogger(__name__)

# The monotonic time by which this scrape's scrape-time sources must have answered (the exposition sets it
# from the scraper's timeout; None outside a scrape budget). Sources read it in :meth:`ExporterState.refresh`.
SCRAPE_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("scrape_deadline", default=None)
REFRESH_GRACE = 0.2  # past the deadline, for a read cut at it to record its outcome (within the timeout offset)


@dataclass
class ExporterState:
    """Shared state: sources write, the collector reads at scrape time.

    ``refreshers`` are callables that scrape-time sources (kubelet, agent) register; the
    collector calls them before reading (:meth:`refresh`: all at once, each within the scrape's
    budget and its own timeout, with a short cache). ``optional`` are the enabled sources that may be
    unavailable on a node (``--sources=auto``).
    """

    sources: tuple[str, ...]
    envelope: tuple[int, int]
    optional: frozenset[str] = frozenset()
    datapath: DatapathCounters = field(default_factory=DatapathCounters)
    hubble_status: HubbleStatus | None = None
    hubble_gap: StreamGap = field(default_factory=StreamGap)
    health: dict[str, SourceHealth] = field(default_factory=dict)
    refreshers: list[Callable[[], None]] = field(default_factory=list)
    # Written by the kubelet / apiserver sources, per component (aggregation.containers), by the agent
    # metrics source (aggregation.agent) and by the settings source (aggregation.settings).
    memory: dict[str, ContainerMemory] = field(default_factory=dict)
    pods: dict[str, ContainerPod] = field(default_factory=dict)
    agent_datapath: AgentDatapath | None = None
    settings: CiliumSettings | None = None
    envelope_override: tuple[int, int] | None = None  # from the node annotation, when enabled
    envelope_mode: str = "static"  # contract.ENVELOPE_MODES (--memory-envelope-mode)
    agent_memory: AgentMemory | None = None  # the agent's memory by part (agent metrics source)
    machine_memory: int | None = None  # the node's total memory (kubelet Summary node block)

    def __post_init__(self) -> None:
        for name in self.sources:
            self.health.setdefault(name, SourceHealth(name, optional=name in self.optional))

    def refresh(self) -> None:
        """Run the scrape-time refreshers concurrently (the scrape waits for the slowest, not for the sum) until
        :data:`SCRAPE_DEADLINE`, or one after the other without a deadline (a collection that is no HTTP scrape);
        a failing one never breaks the scrape. A refresher still running at the
        deadline is left to finish on its own: it bounds its read by the same deadline (scrape_time)."""
        refreshers = list(self.refreshers)
        deadline = SCRAPE_DEADLINE.get()
        if deadline is None or len(refreshers) < 2:  # no budget (an in-process collection): one after the other
            for refresh in refreshers:
                _guarded(refresh)
            return
        threads = []
        for refresh in refreshers[1:]:
            thread = threading.Thread(target=contextvars.copy_context().run, args=(_guarded, refresh),
                                      name="refresh", daemon=True)
            thread.start()
            threads.append(thread)
        _guarded(refreshers[0])
        for thread in threads:  # a read cut at the deadline still records its outcome within the grace
            thread.join(None if deadline is None else max(0.0, deadline + REFRESH_GRACE - time.monotonic()))


def _guarded(refresh: Callable[[], None]) -> None:
    try:
        refresh()
    except Exception:  # a source bug must not take /metrics down
        log.exception("refresh failed in %r", refresh)
