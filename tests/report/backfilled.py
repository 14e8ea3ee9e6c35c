"""A real Prometheus backfilled with the review fleet's month (shared by the report tests)."""

from __future__ import annotations

import random
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alerts.generate import build_groups
from cilium_node_exporter.report.series import RECORDED
from cilium_node_simulator.backfill import Prometheus, create_blocks, record, split, verify, write_windows
from cilium_node_simulator.history import Fleet, review_fleet
from tests.support.procs import free_port

PERIOD_START = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())  # February 2026: 28 days
RULE_INTERVAL = 300


@dataclass
class Backfilled:
    prom: Prometheus
    fleet: Fleet
    timings: dict[str, float]


def recording_rules(config: dict | None = None) -> tuple[list[dict], list[dict]]:
    """The rule pack's recording rules that the report reads, and all of the pack's recording rules."""
    pack = [r for g in build_groups(config) for r in g["rules"] if "record" in r]
    wanted = set(RECORDED)
    while True:  # and the recorded series those read, so that the original expressions can be verified
        more = {r2["record"] for r in pack if r["record"] in wanted for r2 in pack
                if re.search(r"(?<![\w:])" + re.escape(r2["record"]) + r"(?![\w:])", r["expr"])}
        if more <= wanted:
            break
        wanted |= more
    return [r for r in pack if r["record"] in wanted], pack


def backfill(workdir: Path, fleet: Fleet | None = None, config: dict | None = None) -> Backfilled:
    """Raw series from the fleet model, then the recorded series; Prometheus running on the result."""
    fleet = fleet or review_fleet(PERIOD_START)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    tsdb = workdir / "tsdb"
    windows = ((w, fleet.samples(w, w + 7200)) for w in range(fleet.start - fleet.start % 7200, fleet.end + 1, 7200))
    files = write_windows(windows, workdir / "raw")
    timings["generate"] = time.monotonic() - t0
    t0 = time.monotonic()
    create_blocks(files, tsdb)
    timings["raw blocks"] = time.monotonic() - t0
    prom = Prometheus(tsdb, free_port())
    prom.start()
    t0 = time.monotonic()
    rules, pack = recording_rules(config)
    recorded = record(prom, rules, fleet.start, fleet.end, RULE_INTERVAL, pack)
    timings["evaluate rules"] = time.monotonic() - t0
    t0 = time.monotonic()
    files = write_windows(split(recorded, fleet.start, fleet.end), workdir / "recorded")
    create_blocks(files, workdir / "recorded-blocks")
    prom.stop()
    for block in (workdir / "recorded-blocks").iterdir():
        shutil.move(str(block), tsdb / block.name)
    prom.start()
    timings["recorded blocks"] = time.monotonic() - t0
    t0 = time.monotonic()
    rng = random.Random(7)
    times = sorted(fleet.start + RULE_INTERVAL * rng.randrange(1, (fleet.end - fleet.start) // RULE_INTERVAL)
                   for _ in range(12))
    problems = verify(prom, rules, times)
    timings["verify"] = time.monotonic() - t0
    assert not problems, "backfilled recording rules differ from the rule pack's expressions:\n" + "\n".join(
        problems[:20])
    return Backfilled(prom, fleet, timings)
