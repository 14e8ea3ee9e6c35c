"""A fleet in one simulator process, scraped by Debian's Prometheus with the rule pack: what both cost.

Starts ``cilium-node-exporter simulate --fleet N`` (one cluster playing a fleet scenario) and Prometheus
(1 s scrape and evaluation, file_sd from the fleet's targets file, the rule pack rendered by
``python -m alerts.generate --preset P --out DIR``), waits until every node is scraped, lets it run, and prints
from that one run:

- the fleet process: CPU (share of one core over the measured interval), VmRSS and VmHWM, threads;
- Prometheus: CPU share, head series, ingested samples/s, the scrape duration of the fleet's targets;
- per rule group, from Prometheus's own /metrics: ``prometheus_rule_group_last_duration_seconds`` and
  ``prometheus_rule_group_last_evaluation_samples`` (mean of the samples read over the interval) and the group's
  interval, so the evaluation cost of the pack at N nodes (bench/rules_cost.py prices one node on a multi-day
  TSDB; here the TSDB holds only the run's minutes, so windows longer than the run read less than in production).

    .venv/bin/python bench/fleet.py [--nodes 200] [--scenario bad-rollout] [--seconds 60] [--preset accelerated]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from cilium_node_simulator import stack
from cilium_node_simulator.exporter_process import free_port
from cilium_node_simulator.stack import Supervisor

TICKS = os.sysconf("SC_CLK_TCK")


def get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def status(pid: int) -> dict[str, int]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"^{k}:\s+(\d+)", text, re.M).group(1)) for k in ("VmRSS", "VmHWM", "Threads")}


def query(prom: str, expr: str) -> list[dict]:
    body = get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return json.loads(body)["data"]["result"]


def self_metric(prom: str, name: str) -> float:
    """The sum of a family's samples in Prometheus's own /metrics (it does not scrape itself here)."""
    values = re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", get(f"{prom}/metrics").decode(), re.M)
    return sum(float(v) for v in values) if values else float("nan")


def rule_metrics(prom: str) -> dict[tuple[str, str], float]:
    """(metric, rule group) -> value from Prometheus's own /metrics."""
    out: dict[tuple[str, str], float] = {}
    pattern = re.compile(r'^(prometheus_rule_group_(?:last_duration_seconds|last_evaluation_samples|interval_seconds|'
                         r'iterations_total))\{rule_group="[^"]*;([^"]+)"\} (\S+)$', re.M)
    for name, group, value in pattern.findall(get(f"{prom}/metrics").decode()):
        out[(name, group)] = float(value)
    return out


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--scenario", default="bad-rollout", help="fleet scenario (simulate --fleet --list-scenarios)")
    parser.add_argument("--seconds", type=float, default=60, help="measured interval once every node is scraped")
    parser.add_argument("--preset", default="accelerated", help="rule pack preset for alerts.generate")
    parser.add_argument("--rules-dir", default="", help="load these *.rules.yaml instead (e.g. another branch's "
                        "pack rendered with alerts.generate --out)")
    args = parser.parse_args()
    if stack.missing_binaries(stack.PROMETHEUS):
        raise SystemExit("prometheus missing: install Debian's prometheus (make system-deps)")
    with tempfile.TemporaryDirectory(prefix="cne-bench-fleet-") as tmp:
        work = Path(tmp)
        rules = Path(args.rules_dir) if args.rules_dir else work / "rules"
        rule_files = sorted(rules.glob("*.rules.yaml")) if args.rules_dir else stack.render_pack(rules, args.preset)
        sd = work / "sd"
        sd.mkdir()
        prom_port = free_port()
        config = stack.prometheus_config(sd, rule_files)
        fleet_argv = [sys.executable, "-m", "cilium_node_exporter", "simulate", "--fleet", str(args.nodes),
                      "--scenario", args.scenario, "--targets-file", str(sd / "fleet.json")]
        sup = Supervisor(work / "logs")
        try:
            fleet = sup.start("fleet", fleet_argv)
            prom_url = stack.start_monitoring(sup, work, config, None, prom_port=prom_port, am_port=0).prometheus
            prom = sup.procs["prometheus"]
            started = time.monotonic()
            wait(lambda: (sd / "fleet.json").exists(), 120, "the fleet's targets file")
            fleet_ready = time.monotonic() - started
            up = 'count(up{job="cilium-node-exporter"} == 1)'

            def scraped() -> bool:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    result = query(prom_url, up)
                    return bool(result) and int(float(result[0]["value"][1])) >= args.nodes
                return False

            wait(scraped, 120, f"{args.nodes} nodes scraped")
            all_up = time.monotonic() - started
            time.sleep(5)
            cpu0 = {name: cpu_seconds(p.pid) for name, p in (("fleet", fleet), ("prometheus", prom))}
            appended0 = self_metric(prom_url, "prometheus_tsdb_head_samples_appended_total")
            t0 = time.monotonic()
            samples: dict[str, list[float]] = defaultdict(list)
            durations: dict[str, list[float]] = defaultdict(list)
            intervals: dict[str, float] = {}
            while time.monotonic() - t0 < args.seconds:
                for (name, group), value in rule_metrics(prom_url).items():
                    if name.endswith("samples"):
                        samples[group].append(value)
                    elif name.endswith("duration_seconds"):
                        durations[group].append(value)
                    elif name.endswith("interval_seconds"):
                        intervals[group] = value
                time.sleep(1)
            elapsed = time.monotonic() - t0
            cpu1 = {name: cpu_seconds(p.pid) for name, p in (("fleet", fleet), ("prometheus", prom))}
            st = status(fleet.pid)
            head = self_metric(prom_url, "prometheus_tsdb_head_series")
            appended = (self_metric(prom_url, "prometheus_tsdb_head_samples_appended_total") - appended0) / elapsed
            scrape = query(prom_url, 'avg(scrape_duration_seconds{job="cilium-node-exporter"})')
            scrape_max = query(prom_url, 'max(max_over_time(scrape_duration_seconds{job="cilium-node-exporter"}[30s]))')
            down = query(prom_url, 'count(up{job="cilium-node-exporter"} == 0)')
        finally:
            sup.stop_all(15)
        pack = f"rules from {args.rules_dir}" if args.rules_dir else f"preset {args.preset}"
        print(f"fleet: {args.nodes} nodes of {args.scenario!r}, {pack}, measured over {elapsed:.0f} s "
              f"(targets file after {fleet_ready:.1f} s, all scraped after {all_up:.1f} s)")
        for name in ("fleet", "prometheus"):
            share = (cpu1[name] - cpu0[name]) / elapsed
            print(f"  {name:10} CPU {100 * share:5.1f} % of one core"
                  + (f", {1000 * share / args.nodes:.2f} ms per node per second" if name == "fleet" else ""))
        print(f"  fleet      VmRSS {st['VmRSS'] / 1024:.0f} MiB, VmHWM {st['VmHWM'] / 1024:.0f} MiB, "
              f"{st['Threads']} threads")

        def value(result: list[dict]) -> float:
            return float(result[0]["value"][1]) if result else 0.0

        print(f"  prometheus head series {head:.0f}, {appended:.0f} samples/s appended (scrapes and rules)")
        print(f"  scrapes of the fleet: duration avg {1000 * value(scrape):.1f} ms, max "
              f"{1000 * value(scrape_max):.0f} ms (last 30 s), targets down {value(down):.0f}; "
              f"load average {os.getloadavg()[0]:.1f}")
        print("\n  per rule group: last_duration_seconds (wall clock) and last_evaluation_samples (samples the group's "
              "rules returned)")
        print(f"  {'rule group':44} {'interval':>8} {'eval ms (mean/max)':>20} {'samples/eval':>13} {'per node':>9}")
        total_ms = total_samples = 0.0
        for group in sorted(samples):
            mean_samples = sum(samples[group]) / len(samples[group])
            ms = [1000 * d for d in durations[group]]
            total_ms += sum(ms) / len(ms) / intervals.get(group, 1.0)
            total_samples += mean_samples / intervals.get(group, 1.0)
            print(f"  {group:44} {intervals.get(group, 0):7.0f}s {sum(ms) / len(ms):10.1f} / {max(ms):7.1f} "
                  f"{mean_samples:13.0f} {mean_samples / args.nodes:9.0f}")
        print(f"  {'all groups, per second of evaluation':44} {'':8} {total_ms:10.1f} ms/s {total_samples:17.0f} "
              f"{total_samples / args.nodes:9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
