"""Sources: the Hubble stream, the kubelet, the API server, the agent's metrics endpoint and the node's
Cilium settings.

Each source writes into :class:`~cilium_node_exporter.aggregation.state.ExporterState` and
never imports the exposition. Heavy dependencies are imported only for enabled sources.
"""

from __future__ import annotations

from typing import Protocol

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import Config


class Source(Protocol):
    """A running source: ``start`` returns at once; ``stop`` ends its threads within a second."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


def build_sources(config: Config, state: ExporterState) -> list[Source]:
    """Instantiate the enabled sources (imports are local so unused sources cost no memory)."""
    sources: list[Source] = []
    if "hubble" in config.sources:
        from cilium_node_exporter.sources.hubble.stream import HubbleSource

        sources.append(HubbleSource(config, state))
    if "kubelet" in config.sources:
        from cilium_node_exporter.sources.kubelet import KubeletSource

        sources.append(KubeletSource(config, state))
    if "apiserver" in config.sources:
        from cilium_node_exporter.sources.apiserver import ApiServerSource

        sources.append(ApiServerSource(config, state))
    if "agent" in config.sources:
        from cilium_node_exporter.sources.agent import AgentMetricsSource

        sources.append(AgentMetricsSource(config, state))
    if "settings" in config.sources:
        from cilium_node_exporter.sources.settings import SettingsSource

        sources.append(SettingsSource(config, state))
    return sources
