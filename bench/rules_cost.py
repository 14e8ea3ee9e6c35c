"""Samples the rule pack and the dashboards touch, measured with Debian's Prometheus on a backfilled TSDB.

One node (cluster c1, node n1) with every series of the metric contract (agent and Hubble sources, 8 drop
reasons x 2 directions per drop family, as in the alert-pack review) scraped every 30 s for 3 days and 2 hours,
written with ``promtool tsdb create-blocks-from openmetrics``. The pack's recorded series are written the
same way at their group's interval, as far back as any rule or dashboard reads them (hourly tiles: 30 days).
Prometheus then serves the TSDB, and every rule expression and every dashboard query is run once at the end
of the data with ``stats=all``; the figure is ``totalQueryableSamples``.

- Rules: samples per node per evaluation cycle (30 s, kube-prometheus-stack's evaluationInterval), per group
  and in total; a group with a longer ``interval`` counts its share (2m: a quarter).
- Dashboards: samples per query and per panel at the dashboard's default time range (step as Grafana picks it
  for the panel's width), for one node, and at 200 nodes (x200 for the Fleet and SLO dashboards, which read
  every node; the node detail reads one).

    python -m bench.rules_cost                          # the pack as generated now
    python -m bench.rules_cost --rules OLD.rules.yaml   # another rule file (e.g. git show <rev>:alerts/rules/...)
    python -m bench.rules_cost --no-dashboards

Takes about a minute and ~400 MB of temporary disk; needs Debian's prometheus and promtool.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from alerts import generate as rules
from cilium_node_exporter import contract as c
from cilium_node_exporter.mixin.config import duration_seconds
from cilium_node_simulator.exporter_process import free_port
from cilium_node_simulator.stack import Supervisor
from dashboards import generate as dashboards
from dashboards.queries import iter_panels, substitute

SCRAPE = 30  # seconds: scrape and global evaluation interval
RAW_HISTORY = 3 * 86400 + 2 * 3600
NODES = 200
NODE = {"job": "cilium-node-exporter", "instance": "10.0.0.1:9969", "namespace": "monitoring",
        "pod": "cilium-node-exporter-abcde", "cluster": "c1", "node": "n1"}
REASONS = ("POLICY_DENIED", "CT_MAP_INSERTION_FAILED", "FIB_LOOKUP_FAILED", "STALE_OR_UNROUTABLE_IP",
           "UNSUPPORTED_L3_PROTOCOL", "DROP_EP_NOT_READY", "NAT_NOT_NEEDED", "REASON_250")
DIRECTIONS = ("ingress", "egress")
LOST_SOURCES = ("perf_event_ring_buffer", "observer_events_queue", "hubble_ring_buffer")


# --- the node's raw series ----------------------------------------------------------------------------------
def raw_series() -> list[tuple[str, dict[str, str], str, float]]:
    """(metric, labels, type, per-scrape increment or value) for one node."""
    out: list[tuple[str, dict[str, str], str, float]] = []

    def add(metric: c.Metric | str, type_: str, value: float, **labels: str) -> None:
        name = metric.name if isinstance(metric, c.Metric) else metric
        out.append((name, {**NODE, **labels}, type_, value))

    for reason in REASONS:
        for direction in DIRECTIONS:
            add(c.DROPS, "counter", 3, reason=reason, direction=direction)
            add(c.DATAPATH_DROPPED, "counter", 30, reason=reason, direction=direction)
    for direction in DIRECTIONS:
        add(c.DATAPATH_FORWARDED, "counter", 30000, direction=direction)
        for match in ("l3-only", "l3-l4", "l7/http"):
            for action in ("forwarded", "dropped"):
                add(c.POLICY_VERDICTS, "counter", 60, direction=direction, match=match, action=action)
    for method, action in (("GET", "forwarded"), ("POST", "dropped")):
        for direction in DIRECTIONS:
            add(c.L7_REQUESTS, "counter", 30, protocol="http", method=method, direction=direction, action=action)
    for source in LOST_SOURCES:
        add(c.LOST_EVENTS, "counter", 0.1, source=source)
    add(c.FLOWS_SEEN, "counter", 3000)
    for metric, value in ((c.AGENT_WORKING_SET, 3e8), (c.AGENT_RSS, 2.8e8), (c.AGENT_USAGE, 3.2e8),
                          (c.AGENT_LIMIT, 1e9), (c.ENVELOPE_LOWER, 2e8), (c.ENVELOPE_UPPER, 5e8),
                          (c.AGENT_START_TIME, 1e6),
                          (c.ENVOY_WORKING_SET, 1e8), (c.ENVOY_RSS, 9e7), (c.ENVOY_USAGE, 1.1e8), (c.ENVOY_LIMIT, 5e8),
                          (c.ENVOY_START_TIME, 1e6), (c.AGENT_LAST_TERMINATED_TIMESTAMP, 9e5),
                          (c.ENVOY_LAST_TERMINATED_TIMESTAMP, 9e5), (c.BUFFER_FLOWS, 4095), (c.BUFFER_CAPACITY, 4095)):
        add(metric, "gauge", value)
    add(c.AGENT_RESTARTS, "counter", 0)
    add(c.ENVOY_RESTARTS, "counter", 0)
    add(c.AGENT_LAST_TERMINATED_REASON, "gauge", 1, reason="Error")
    add(c.ENVOY_LAST_TERMINATED_REASON, "gauge", 1, reason="Completed")
    for map_name in ("cilium_ct4_global", "cilium_ct_any4_global", "cilium_snat_v4_external", "cilium_policy_01234"):
        add(c.BPF_MAP_PRESSURE, "gauge", 0.3, map_name=map_name)
    for source in c.SOURCES:
        add(c.SOURCE_UP, "gauge", 1, source=source)
    add(c.SOURCE_ERRORS, "counter", 0.01, source="kubelet", reason="timeout")
    for kind in c.EVENT_KINDS:
        add(c.EVENTS, "counter", 300, kind=kind)
    add(c.HUBBLE_RECONNECTS, "counter", 0)
    add(c.HUBBLE_DISCONNECTED, "counter", 0)
    add(c.LABEL_OVERFLOW, "counter", 0, label="endpoint_namespace")
    add(c.CILIUM_INFO, "gauge", 1, version="1.16.6", envoy_mode="external", kube_proxy_replacement="true",
        monitor_aggregation="medium")
    for event in ("drop", "policy_verdict", "trace"):
        add(c.AGENT_NOTIFICATIONS_ENABLED, "gauge", 1, event=event)
        add(c.HUBBLE_MONITOR_EVENTS, "gauge", 1, event=event)
    for kind in ("rate", "burst"):
        add(c.AGENT_EVENTS_RATE_LIMIT, "gauge", 0, kind=kind)
    add(c.DATAPATH_RATELIMIT_DROPPED, "counter", 0)
    for metric, labels in ((c.BUILD_INFO, {"version": "0.9.0"}), (c.HUBBLE_INFO, {"version": "1.16.6"}),
                           (c.AGENT_INFO, {"agent_namespace": "kube-system", "agent_pod": "cilium-x",
                                           "agent_uid": "u"}),
                           (c.ENVOY_INFO, {"envoy_namespace": "kube-system", "envoy_pod": "cilium-envoy-x",
                                           "envoy_uid": "v"})):
        add(metric, "gauge", 1, **labels)
    add("up", "gauge", 1)
    # kube-state-metrics and Prometheus' own TSDB metric (not per node, counted with the node here)
    out.append(("kube_node_info", {"job": "kube-state-metrics", "cluster": "c1", "node": "n1"}, "gauge", 1))
    ds = {"job": "kube-state-metrics", "cluster": "c1", "namespace": "monitoring", "daemonset": "cilium-node-exporter"}
    for metric in ("kube_daemonset_status_number_unavailable", "kube_daemonset_status_updated_number_scheduled",
                   "kube_daemonset_status_number_available"):
        out.append((metric, ds, "gauge", 0 if "unavailable" in metric else 200))
    out.append(("prometheus_tsdb_lowest_timestamp_seconds", {"job": "prometheus", "instance": "p:9090"}, "gauge", 0))
    return out


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def write_openmetrics(path: Path, series: Iterator[tuple[str, dict[str, str], str, float, int, int]],
                      end: int) -> int:
    """(name, labels, type, value or increment, history s, step s) -> an OpenMetrics file; samples written."""
    by_family: dict[str, list] = defaultdict(list)
    for name, labels, kind, value, history, step in series:
        by_family[name].append((labels, kind, value, history, step))
    count = 0
    with path.open("w") as f:
        for name, items in by_family.items():
            kind = items[0][1]
            family = name.removesuffix("_total") if kind == "counter" else name
            f.write(f"# TYPE {family} {kind}\n")
            for labels, _, value, history, step in items:
                text = _labels(labels)
                start = end - history - (end - history) % step
                for i, t in enumerate(range(start, end + 1, step)):
                    v = value * i if kind == "counter" else value
                    f.write(f"{name}{text} {v:g} {t}\n")
                    count += 1
        f.write("# EOF\n")
    return count


# --- recorded series of the pack -----------------------------------------------------------------------------
_RANGE = re.compile(r"([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)(?:\{[^}]*\})?\[([0-9a-z]+)(?::[0-9a-z]*)?\]")


def groups_of(rule_file: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(rule_file.read_text())["groups"]


def record_labels(name: str) -> list[dict[str, str]]:
    """The label sets a recorded series has for the backfilled node, from its level prefix."""
    level = name.split(":", 1)[0]
    node = {"cluster": "c1", "node": "n1"}
    if level == "node_reason":
        return [{**node, "reason": r} for r in REASONS]
    if level == "node_source":
        return [{**node, "source": s} for s in LOST_SOURCES]
    if level == "node_cause":
        return []  # a healthy node is not blind
    if level == "cluster":
        return [{"cluster": "c1"}]
    if level == "node":
        return [node]
    return [{}]


def history_needed(groups: list[dict[str, Any]], dashboard_ranges: dict[str, int]) -> dict[str, int]:
    """Seconds of history each recorded series needs: the longest range a rule or dashboard reads it over,
    plus the longest dashboard time range it is drawn over, plus an hour."""
    need: dict[str, int] = defaultdict(lambda: 3600)
    texts = [r["expr"] for g in groups for r in g["rules"]]
    for text in texts:
        for name, window in _RANGE.findall(text):
            need[name] = max(need[name], int(duration_seconds(window)) + 3600)
    for name, seconds in dashboard_ranges.items():
        need[name] = max(need[name], seconds + 3600)
    return need


# --- Prometheus -------------------------------------------------------------------------------------------
class Prometheus:
    """Debian's Prometheus on the backfilled TSDB (no scrapes), on a free loopback port."""

    def __init__(self, data: Path, workdir: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        (workdir / "prometheus.yml").write_text("global: {}\n")
        self.sup = Supervisor(workdir)
        self.sup.start("prometheus", [
            "prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
            f"--web.listen-address={self.url.removeprefix('http://')}", "--storage.tsdb.retention.time=90d",
            "--query.max-samples=500000000", "--log.level=warn"])
        if not self.sup.wait_http("prometheus", self.url + "/-/ready", 120):
            raise RuntimeError(f"prometheus did not start, see {self.sup.log_path('prometheus')}")

    def samples(self, expr: str, at: int, range_: tuple[int, int] | None = None) -> int:
        params = {"query": expr, "stats": "all"}
        if range_ is None:
            path, params["time"] = "/api/v1/query", str(at)
        else:
            path = "/api/v1/query_range"
            params.update(start=str(at - range_[0]), end=str(at), step=str(range_[1]))
        with urllib.request.urlopen(self.url + path + "?" + urllib.parse.urlencode(params), timeout=300) as r:
            doc = json.load(r)
        if doc.get("status") != "success":
            raise RuntimeError(f"{expr}: {doc}")
        return int(doc["data"]["stats"]["samples"]["totalQueryableSamples"])

    def stop(self) -> None:
        self.sup.stop_all(60)


# --- dashboards ---------------------------------------------------------------------------------------------
NICE_STEPS = (15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def dashboard_targets() -> list[dict[str, Any]]:
    """Every panel target at its dashboard's default time range, with Grafana's step for the panel width
    (about 80 px per grid column on a 1920 px screen) and ``$__rate_interval`` = max(4 x scrape, step + scrape)."""
    out = []
    for uid, doc in dashboards.build_all().items():
        span = int(duration_seconds(doc["time"]["from"].removeprefix("now-")))
        for panel in iter_panels(doc):
            for target in panel.get("targets", []):
                minimum = int(duration_seconds(target["interval"])) if target.get("interval") else SCRAPE
                step = next(s for s in NICE_STEPS if s >= max(span / (panel["gridPos"]["w"] * 80), minimum))
                expr = substitute(target["expr"], {
                    "node": "n1", "cluster": "c1", "__range": f"{span}s", "__range_s": str(span), "__to": "0",
                    "__from": "0", "__rate_interval": f"{max(4 * SCRAPE, step + SCRAPE)}s"})
                out.append({"uid": uid, "panel": panel["title"], "expr": expr, "instant": bool(target.get("instant")),
                            "span": span, "step": step})
    return out


def dashboard_ranges(targets: list[dict[str, Any]]) -> dict[str, int]:
    """Recorded series -> the longest time range a dashboard range query draws it over (+ ranges it reads)."""
    need: dict[str, int] = defaultdict(int)
    for t in targets:
        for name in re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", t["expr"]):
            need[name] = max(need[name], 0 if t["instant"] else t["span"])
        for name, window in _RANGE.findall(t["expr"]):
            need[name] = max(need[name], int(duration_seconds(window)) + (0 if t["instant"] else t["span"]))
    return need


# --- main --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", type=Path, help="rule file to measure (default: the pack as generated now)")
    ap.add_argument("--no-dashboards", action="store_true", help="measure the rules only")
    ap.add_argument("--keep", action="store_true", help="keep the temporary TSDB and print its path")
    args = ap.parse_args(argv)
    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install prometheus")
    workdir = Path(tempfile.mkdtemp(prefix="rules-cost-"))
    rule_file = args.rules or workdir / "pack.rules.yaml"
    if not args.rules:
        rule_file.write_text(rules.render_rules())
    groups = groups_of(rule_file)
    targets = [] if args.no_dashboards else dashboard_targets()
    need = history_needed(groups, dashboard_ranges(targets))
    end = (int(time.time()) // 3600 - 1) * 3600  # an hour ago: inside the head block's reach of queries

    def series() -> Iterator[tuple[str, dict[str, str], str, float, int, int]]:
        for name, labels, kind, value in raw_series():
            yield name, labels, kind, value, RAW_HISTORY, SCRAPE
        for group in groups:
            step = int(duration_seconds(group.get("interval", f"{SCRAPE}s")))
            for rule in group["rules"]:
                if "record" not in rule:
                    continue
                for labels in record_labels(rule["record"]):
                    yield (rule["record"], {**labels, **rule.get("labels", {})}, "gauge", 1.0,
                           need[rule["record"]], step)

    t0 = time.monotonic()
    data = workdir / "data"
    written = 0
    # promtool writes one block per 2 hours of its input and reads the input once per block: the dense days
    # and the sparse weeks (hourly tiles, period SLIs) go in separate files.
    for part, keep in (("dense", lambda h: h <= RAW_HISTORY), ("sparse", lambda h: h > RAW_HISTORY)):
        om = workdir / f"{part}.om"
        written += write_openmetrics(om, (s for s in series() if keep(s[4])), end)
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)], check=True,
                       capture_output=True, timeout=1800)
        om.unlink()
    print(f"backfilled {written:,} samples ({len(raw_series())} raw series, 1 node) in {time.monotonic() - t0:.0f} s")
    prom = Prometheus(data, workdir)
    try:
        report_rules(prom, groups, end, rule_file)
        if targets:
            report_dashboards(prom, targets, end)
    finally:
        prom.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def per_node(expr: str) -> bool:
    """Whether an expression reads per-node series (its cost grows with the nodes); the others read one
    series per Prometheus or per cluster (kube-state-metrics, prometheus_tsdb_*, vector())."""
    return "cilium_node" in expr or re.search(r"\bup\{", expr) is not None


def report_rules(prom: Prometheus, groups: list[dict[str, Any]], end: int, rule_file: Path) -> None:
    print(f"\nRules ({rule_file.name}): samples per evaluation and per {SCRAPE} s cycle, for one node; "
          "'fixed' = expressions that do not grow with the nodes")
    print(f"{'group':45} {'interval':>8} {'rules':>5} {'per eval':>10} {'per cycle':>10} {'fixed':>8}")
    total = fixed_total = 0.0
    heaviest: list[tuple[int, str]] = []
    for group in groups:
        interval = int(duration_seconds(group.get("interval", f"{SCRAPE}s")))
        per_eval = fixed = 0
        for rule in group["rules"]:
            n = prom.samples(rule["expr"], end)
            per_eval += n
            fixed += 0 if per_node(rule["expr"]) else n
            heaviest.append((n, rule.get("record") or rule.get("alert")))
        cycle = SCRAPE / interval
        total += (per_eval - fixed) * cycle
        fixed_total += fixed * cycle
        print(f"{group['name']:45} {interval:>7}s {len(group['rules']):>5} {per_eval:>10,} {per_eval * cycle:>10,.0f}"
              f" {fixed * cycle:>8,.0f}")
    print(f"per node per {SCRAPE} s cycle: {total:,.0f} samples (+ {fixed_total:,.0f} fixed per Prometheus)")
    print(f"at {NODES} nodes: {total * NODES + fixed_total:,.0f} samples per {SCRAPE} s cycle")
    print("heaviest expressions (per evaluation): " + ", ".join(f"{name} {n:,}" for n, name in
                                                               sorted(heaviest, reverse=True)[:5]))


def report_dashboards(prom: Prometheus, targets: list[dict[str, Any]], end: int) -> None:
    print(f"\nDashboards at their default time range: samples per panel (1 node, and at {NODES} nodes)")
    per_panel: dict[tuple[str, str], int] = defaultdict(int)
    for t in targets:
        n = prom.samples(t["expr"], end, None if t["instant"] else (t["span"], t["step"]))
        per_panel[(t["uid"], t["panel"])] += n
    worst = 0
    for (uid, panel), n in sorted(per_panel.items(), key=lambda kv: -kv[1]):
        scale = 1 if uid == "cilium-node-detail" else NODES
        worst = max(worst, n * scale)
        print(f"  {uid:20} {panel[:70]:70} {n:>10,} {n * scale:>14,}")
    print(f"largest panel at {NODES} nodes: {worst:,} samples")


if __name__ == "__main__":
    raise SystemExit(main())
