"""A real Prometheus backfilled with the review fleet's month (shared by the report tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alerts.generate import build_groups
from cilium_node_exporter.report.series import RECORDED
from cilium_node_simulator.backfill import Backfilled, backfill_fleet
from cilium_node_simulator.history import Fleet, review_fleet
from tests.support.procs import free_port

PERIOD_START = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())  # February 2026: 28 days
RULE_INTERVAL = 300


def backfill(workdir: Path, fleet: Fleet | None = None) -> tuple[Backfilled, Fleet]:
    """The review fleet's raw series, then the pack's recorded series the report reads; Prometheus running."""
    fleet = fleet or review_fleet(PERIOD_START)
    pack = [r for g in build_groups() for r in g["rules"] if "record" in r]
    return backfill_fleet(workdir, fleet, pack, RECORDED, RULE_INTERVAL, free_port()), fleet
