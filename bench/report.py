#!/usr/bin/env python3
"""How long `cilium-node-exporter report` takes for a 28-day, 200-node fleet against a local Prometheus.

Backfills Debian's Prometheus with the simulated fleet (``cilium_node_simulator.history.large_fleet``: raw
series via promtool, then the rule pack's recorded series the report reads), runs the report once per format
and prints the times. The backfill takes several minutes; the report is what is measured.

    python bench/report.py [--nodes 200] [--days 28] [--step 300] [--keep DIR]

``--step`` is both the scrape and the rule interval of the simulated history (300 s keeps the backfill
affordable; the report's hourly queries read every sample, so their cost grows with 300 / your interval).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report_measure import run_report  # noqa: E402

from alerts.generate import build_groups  # noqa: E402
from cilium_node_exporter.report.series import RECORDED  # noqa: E402
from cilium_node_simulator.backfill import backfill_fleet  # noqa: E402
from cilium_node_simulator.history import large_fleet  # noqa: E402
from cilium_node_simulator.stack import pick_port  # noqa: E402


def tsdb_samples(tsdb: Path) -> str:
    """Samples, series and blocks of the TSDB (``promtool tsdb list``)."""
    rows = subprocess.run(["promtool", "tsdb", "list", str(tsdb)], capture_output=True, text=True).stdout
    blocks = [line.split() for line in rows.splitlines()[1:] if line.strip()]
    samples = sum(int(b[4]) for b in blocks)
    series = max((int(b[6]) for b in blocks), default=0)
    return f"{samples / 1e6:.1f}M samples, {series} series, in {len(blocks)} blocks"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def truth_check(fleet: Any, report: dict[str, Any]) -> str:
    """The packet-exact drop SLI against the fleet model's own counts (its nodes' packets and unexpected drops
    in the hours they were scraped), not the report's code."""
    errors = packets = 0.0
    for n in fleet.nodes:
        if not n.agent_source:
            continue
        for h in fleet.present_hours(n, fleet.start, fleet.end):
            errors += sum(n.unexpected(h - 3600, h).values())
            packets += n.packets_in(h - 3600, h)
    got = next(s for c in report["clusters"] for s in c["slos"] if s["key"] == "drop-ratio")
    return (f"ground truth: {errors:.0f} unexpected drops in {packets:.4g} packets, SLI {1 - errors / packets:.7f}; "
            f"the report: {got['bad']:.0f} in {got['good'] + got['bad']:.4g}, SLI {got['achieved']:.7f} "
            f"(verdict {report['verdict']['status']}, {report['verdict']['coverage'] * 100:.2f} % covered)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--days", type=int, default=28)
    p.add_argument("--step", type=int, default=300)
    p.add_argument("--keep", type=Path, help="keep the TSDB and the reports in this directory (run again with the "
                                             "same directory: the raw series are not written again)")
    args = p.parse_args()
    start = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())
    fleet = large_fleet(start, args.nodes, args.days, args.step)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="cne-bench-report-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pack = [r for g in build_groups() for r in g["rules"] if "record" in r]
    print(f"backfilling {args.nodes} nodes x {args.days} days, one sample every {args.step} s ...", flush=True)
    started = time.monotonic()
    done = backfill_fleet(workdir, fleet, pack, RECORDED, args.step, pick_port(0))
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in done.timings.items())
    print(f"backfill: {time.monotonic() - started:.0f} s ({steps}); the TSDB holds {tsdb_samples(workdir / 'tsdb')}",
          flush=True)
    try:
        end = datetime.fromtimestamp(fleet.end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        begin = datetime.fromtimestamp(fleet.start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for fmt in ("json", "html"):
            out = workdir / f"report.{'json' if fmt == 'json' else 'html'}"
            prom_cpu = cpu_seconds(done.prom.proc.pid) if done.prom.proc else 0.0
            t0 = time.monotonic()
            run = run_report(["--prometheus-url", done.prom.url, "--from", begin, "--to", end, "--format", fmt,
                              "-o", str(out), "-q"])
            elapsed = time.monotonic() - t0
            prom_cpu = (cpu_seconds(done.prom.proc.pid) if done.prom.proc else 0.0) - prom_cpu
            if run.code not in (0, 5):  # 5: written, partial data
                print(run.stderr, file=sys.stderr)
                return 1
            line = (f"report --format {fmt}: {elapsed:.1f} s for {args.nodes} nodes x {args.days} days; CPU: "
                    f"Prometheus {prom_cpu:.1f} s, the report {run.cpu_s:.1f} s, peak RSS {run.peak_rss_mib:.0f} MiB; "
                    f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            if fmt == "json":
                print(truth_check(fleet, json.loads(out.read_text())), flush=True)
                stats = json.loads(out.read_text())["query_stats"]
                line += (f" ({stats['queries']} queries, {stats['points'] / 1e6:.2f}M points, "
                         f"{stats['seconds_waiting']:.1f} s waiting on Prometheus, summed over parallel queries)")
            else:
                line += f" ({out.stat().st_size / 1e6:.1f} MB)"
            print(line, flush=True)
    finally:
        done.prom.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
