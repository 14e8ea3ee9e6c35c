"""Everything the exposition reads, in one object that sources write into."""

from __future__ import annotations

import logging
import threading
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


@dataclass
class ExporterState:
    """Shared state: sources write, the collector reads at scrape time.

    ``refreshers`` are callables that scrape-time sources (kubelet, agent) register; the
    collector calls them before reading, so those sources are read synchronously per scrape,
    each with its own timeout and short cache. ``optional`` are the enabled sources that may be
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
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for name in self.sources:
            self.health.setdefault(name, SourceHealth(name, optional=name in self.optional))

    def refresh(self) -> None:
        """Run the scrape-time refreshers; a failing one never breaks the scrape."""
        with self._refresh_lock:
            for refresh in self.refreshers:
                try:
                    refresh()
                except Exception:  # a source bug must not take /metrics down
                    log.exception("refresh failed in %r", refresh)
