"""What deciding the fleet scenarios in virtual time costs (tests/e2e/fleet_replay.py): recording 310 nodes'
exposition on a virtual clock, promtool evaluating the shipped default pack over it, Alertmanager fed step by step.

Prints each stage's wall time, the CPU seconds of this process and of its children (promtool, Alertmanager), the
recording's size, and the load average (the stages' wall times stretch on a loaded machine; what they decide
does not).

    .venv/bin/python bench/fleet_replay.py
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e import fleet_replay


def main() -> int:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        result = fleet_replay.replay(Path(tmp))
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    rec = result.recording
    samples = sum(1 for values in rec.series.values() for v in values if v is not None)
    print(f"fleet replay: {sum(c.nodes for c in fleet_replay.CLUSTERS)} nodes, {rec.steps} steps of {rec.step:g} s, "
          f"{len(rec.series)} series, {samples} samples")
    for stage, seconds in result.timings.items():
        print(f"  {stage:22} {seconds:7.1f} s wall")
    print(f"  CPU: this process {me.ru_utime + me.ru_stime:.1f} s, children (promtool, alertmanager) "
          f"{kids.ru_utime + kids.ru_stime:.1f} s; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
