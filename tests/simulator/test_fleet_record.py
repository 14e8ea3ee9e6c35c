"""The fleet recorded in virtual time: the same series whatever the machine's speed, and what a scrape shows."""

from __future__ import annotations

import threading
import time

from cilium_node_simulator.clock import VirtualClock
from cilium_node_simulator.fleet import JOB, ClusterSpec
from cilium_node_simulator.fleet_record import EPOCH, record
from cilium_node_simulator.fleet_scenario import builtin_fleets, load_fleet
from tests.e2e.fleet_replay import pack_names


def spec(name: str, scenario: str, nodes: int) -> ClusterSpec:
    return ClusterSpec(name, load_fleet(builtin_fleets()[scenario]), nodes)


def test_virtual_clock_sleepers_wake_only_when_time_reaches_them() -> None:
    clock = VirtualClock(1000.0)
    stop = threading.Event()
    woke: list[float] = []
    thread = threading.Thread(target=lambda: (clock.wait(stop, 30.0), woke.append(clock.monotonic())))
    thread.start()
    clock.wait_idle([thread])
    time.sleep(0.2)  # real time passes: nothing happens
    assert woke == [] and clock.time() == 1000.0
    clock.advance(29.0)
    clock.wait_idle([thread])
    assert woke == []
    clock.advance(30.0)
    thread.join(5)
    assert woke == [30.0]


def test_recording_twice_gives_the_same_series_and_a_down_exporter_is_up_0() -> None:
    """Nothing in a recording depends on wall-clock time (a runtime reading the machine's clock fails here)."""
    clusters = [spec("gone", "exporters-gone", 3)]
    keep = pack_names()  # not the process's own metrics, not the pods' random uids
    first = record(clusters, 1200, 60.0, keep=keep)
    time.sleep(0.5)
    second = record(clusters, 1200, 60.0, keep=keep)
    assert first.series.keys() == second.series.keys()
    assert first.series == second.series
    up = {dict(labels)["node"]: values for (name, labels), values in first.series.items()
          if name == "up" and dict(labels)["job"] == JOB}
    assert len(up) == 3 and all(v[0] == 1.0 for v in up.values())
    assert any(0.0 in v for v in up.values()), up  # the scenario takes exporters down
    flows = [v for (name, _), v in first.series.items() if name == "cilium_node_hubble_flows_seen_total"]
    assert flows and all(v[-1] is None or v[-1] > v[1] for v in flows)  # counters move with virtual time


def test_container_start_times_are_read_from_the_virtual_clock() -> None:
    """Every start time the fleet serves lies inside the recording's virtual time (a pod model, a fake or a
    runtime that reads the machine's clock serves today's date: the pack's birth and restart rules read it)."""
    duration = 1200.0
    rec = record([spec("gone", "exporters-gone", 3), spec("rollout", "bad-rollout", 4)], duration, 60.0,
                 keep=pack_names())
    starts = {(name, dict(labels)["node"]): [v for v in values if v is not None]
              for (name, labels), values in rec.series.items() if name.endswith("_start_time_seconds")}
    assert any(name.startswith("cilium_node_agent") for name, _ in starts), sorted(starts)
    outside = {k: v for k, v in starts.items() if not all(EPOCH <= s <= EPOCH + duration for s in v)}
    assert starts and not outside, outside
