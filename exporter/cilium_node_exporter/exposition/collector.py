"""The custom collector: builds every family fresh at scrape time from :class:`ExporterState`.

No value can break the exposition: every sample is converted to a float here, and one that is not a
finite number (a 401-digit integer, NaN, infinity) or is a negative counter is left out and counted in
``cilium_node_exporter_samples_dropped_total{family}``, while the rest of the scrape is served. A family
builder that fails loses its remaining families, is logged once and counted the same way (its name as
``family``). The sources already refuse such values where they parse them; this is the last line.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from cilium_node_exporter import contract as c
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.exposition.datapath import datapath_families, health_families

log = logging.getLogger(__name__)

FamilyBuilder = Callable[[ExporterState], Iterable[Metric]]


class ExporterCollector(Collector):
    """Runs the scrape-time refreshers, then yields every family of the contract."""

    def __init__(self, state: ExporterState, builders: Iterable[FamilyBuilder] = ()) -> None:
        self.state = state
        self.builders: list[FamilyBuilder] = [datapath_families, *builders, health_families]
        self.dropped: Counter[str] = Counter()
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        self.state.refresh()
        for build in self.builders:
            yield from self._build(build)
        with self._lock:
            dropped = dict(self.dropped)
        if dropped:
            family = CounterMetricFamily(c.SAMPLES_DROPPED.family, c.SAMPLES_DROPPED.help,
                                         labels=list(c.SAMPLES_DROPPED.labels))
            for name, count in sorted(dropped.items()):
                family.add_metric([name], count)
            yield family

    def _build(self, build: FamilyBuilder) -> Iterator[Metric]:
        name = getattr(build, "__name__", "builder")
        families = iter(build(self.state))
        while True:
            try:
                family = next(families)
            except StopIteration:
                self._failing.discard(name)
                return
            except Exception:  # a bug must cost its own families, not the scrape
                if name not in self._failing:
                    log.exception("building the %s failed; they are left out of this scrape", name)
                    self._failing.add(name)
                with self._lock:
                    self.dropped[name] += 1
                return
            yield self._representable(family)

    def _representable(self, family: Metric) -> Metric:
        counter = family.type == "counter"
        bad = False
        for sample in family.samples:  # the common case costs a type check and two comparisons per sample
            value = sample.value
            if type(value) is not float or not math.isfinite(value) or (counter and value < 0):
                bad = True
                break
        if not bad:
            return family
        kept = []
        for sample in family.samples:
            try:
                value = float(sample.value)
            except (OverflowError, TypeError, ValueError):
                value = math.nan
            if math.isfinite(value) and not (counter and value < 0):
                kept.append(sample._replace(value=value))
            else:
                with self._lock:
                    self.dropped[family.name + ("_total" if counter else "")] += 1
        log.debug("left out %d sample(s) of %s: not representable", len(family.samples) - len(kept), family.name)
        family.samples = kept
        return family


class WebAuthCollector(Collector):
    """``cilium_node_exporter_web_auth_failures_total`` while basic auth is configured (``enabled()``)."""

    def __init__(self, failures: Callable[[], dict[str, int]], enabled: Callable[[], bool]) -> None:
        self.failures = failures
        self.enabled = enabled

    def collect(self) -> Iterator[Metric]:
        if not self.enabled():
            return
        counts = self.failures()
        family = CounterMetricFamily(c.WEB_AUTH_FAILURES.family, c.WEB_AUTH_FAILURES.help,
                                     labels=list(c.WEB_AUTH_FAILURES.labels))
        for reason in c.WEB_AUTH_FAILURE_REASONS:
            family.add_metric([reason], counts.get(reason, 0))
        yield family
