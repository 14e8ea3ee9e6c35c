"""A simulated fleet's exposition recorded in virtual time, as Prometheus would have scraped it.

The fleet (:class:`~cilium_node_simulator.fleet.Fleet`, every node's real exporter state and registry) runs on a
:class:`~cilium_node_simulator.clock.VirtualClock` at speed 1: scenario seconds are the clock's seconds. Every
``step`` seconds the recorder advances the clock, waits until every node's timeline has played up to that
instant, and reads what a scrape would have returned: each present exporter's exposition with its target
labels (job, instance, cluster, node, namespace) and ``up`` 1, ``up`` 0 for an exporter that is down (no
answer), nothing for an absent one (no target), and each cluster's kube-state-metrics series. How fast the
machine is changes how long recording takes, never what is recorded: the alert pack's verdict on these series
(promtool, :mod:`tests.e2e.fleet_replay`) is the same on an idle and on a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from cilium_node_simulator.clock import VirtualClock
from cilium_node_simulator.fleet import JOB, KSM_JOB, ClusterSpec, Fleet

Key = tuple[str, tuple[tuple[str, str], ...]]
# 2023-11-14T22:13:20Z: any fixed instant (promtool's unit tests start their series at 0 anyway).
EPOCH = 1_700_000_000.0


@dataclass
class Recording:
    """Values per series on a grid of ``steps`` instants ``step`` seconds apart (None: no sample then)."""

    step: float
    steps: int
    series: dict[Key, list[float | None]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, labels: dict[str, str], index: int, value: float) -> None:
        key = (name, tuple(sorted(labels.items())))
        values = self.series.get(key)
        if values is None:
            values = self.series[key] = [None] * self.steps
        values[index] = value

    def names(self) -> set[str]:
        return {name for name, _ in self.series}


def _samples(families: Iterable[Any]) -> Iterable[tuple[str, dict[str, str], float]]:
    for family in families:
        for s in family.samples:
            yield s.name, s.labels, float(s.value)


def _exposed(registry: CollectorRegistry) -> Iterable[Any]:
    """The families a scrape of ``registry`` exposes (what generate_latest writes, without the text round trip)."""
    return registry.collect()


def _merge(scraped: dict[str, str], target: dict[str, str]) -> dict[str, str]:
    """Prometheus' honor_labels: false: a scraped label that a target label overrides becomes exported_<name>."""
    out = {(f"exported_{k}" if k in target else k): v for k, v in scraped.items()}
    out.update(target)
    return out


def record(clusters: Sequence[ClusterSpec], duration: float, step: float = 30.0, seed: int = 1,
           keep: set[str] | None = None) -> Recording:
    """Play ``clusters`` for ``duration`` scenario seconds and record every ``step`` seconds (``keep``: the
    metric names to keep, default all)."""
    began = time.monotonic()
    clock = VirtualClock(EPOCH)
    fleet = Fleet(clusters, speed=1.0, seed=seed, clock=clock, tick=step)
    fleet.address = "fleet.invalid:9969"
    steps = int(duration // step) + 1
    rec = Recording(step, steps)
    fleet.start()
    threads = [n.runtime.thread for n in fleet.nodes.values() if n.runtime.thread is not None]
    rec.timings["setup"] = time.monotonic() - began
    render = wait = 0.0
    try:
        for index in range(steps):
            t0 = time.monotonic()
            clock.advance(index * step)
            clock.wait_idle(threads)
            t1 = time.monotonic()
            wait += t1 - t0
            _scrape(fleet, rec, index, keep)
            render += time.monotonic() - t1
    finally:
        for node in fleet.nodes.values():
            node.runtime.stop(timeout=0)
        clock.release()
        for thread in threads:
            thread.join(5)
    rec.timings |= {"play": wait, "render": render, "total": time.monotonic() - began}
    return rec


def _scrape(fleet: Fleet, rec: Recording, index: int, keep: set[str] | None) -> None:
    """What one round of scrapes of every target returns at the clock's current time."""
    nodes = fleet.nodes
    for target in fleet.targets():
        labels = {k: v for k, v in target["labels"].items() if not k.startswith("__")}
        path = target["labels"]["__metrics_path__"].strip("/").split("/")
        if labels["job"] == JOB:
            node = nodes[(path[1], path[2])]
            up = node.exporter == "up"
            rec.add("up", labels, index, 1.0 if up else 0.0)
            families = _exposed(node.registry) if up else ()
        elif labels["job"] == KSM_JOB:
            families = text_string_to_metric_families(fleet.ksm(path[1]) or "")
            rec.add("up", labels, index, 1.0)
        else:  # pragma: no cover - the fleet has no other job
            continue
        for name, scraped, value in _samples(families):
            if keep is None or name in keep:
                rec.add(name, _merge(scraped, labels), index, value)
