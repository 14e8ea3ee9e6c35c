"""The custom collector: builds every family fresh at scrape time from :class:`ExporterState`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.exposition.datapath import datapath_families, health_families

FamilyBuilder = Callable[[ExporterState], Iterable[Metric]]


class ExporterCollector(Collector):
    """Runs the scrape-time refreshers, then yields every family of the contract."""

    def __init__(self, state: ExporterState, builders: Iterable[FamilyBuilder] = ()) -> None:
        self.state = state
        self.builders: list[FamilyBuilder] = [datapath_families, *builders, health_families]

    def collect(self) -> Iterator[Metric]:
        self.state.refresh()
        for build in self.builders:
            yield from build(self.state)
