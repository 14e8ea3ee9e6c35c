#!/usr/bin/env python3
"""The report's own cost against fleet size: wall time, CPU seconds and peak RSS of the report process for a
28-day month at 200 and 1,000 nodes (and the ratios, which should be about the node ratio: linear).

Prometheus is replaced by a loopback HTTP server that speaks its query API and answers every hourly query
with one series per node (per node and source or version, per cluster and reason where the query groups so)
of generated values: what a real Prometheus would send for the month, without the hours of backfill a
1,000-node TSDB would take (bench/report.py times the report against Debian's Prometheus at 200 nodes). A
tenth of the nodes have cilium-envoy above its near-limit ratio for a few hours a day, so the per-minute
Envoy step runs. The server's time is wall time, not the report's CPU (measured with wait4 on the report
process alone).

    python bench/report_scale.py [--nodes 200 1000] [--days 28] [--format json]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socketserver
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from report_measure import run_report  # noqa: E402

START = 1_769_904_000  # 2026-02-01T00:00Z
REASONS = [f"REASON_{i}" for i in range(18)] + ["CT_MAP_INSERTION_FAILED", "POLICY_DENIED"]


def values_for(expr: str, node_i: int, hours: list[float]) -> list[list[object]]:
    """Generated hourly values for one node (deterministic), by what the expression reads."""
    if "envoy_memory_working_set" in expr and "> bool" in expr:
        kind = "envoy_bad"
    elif "envoy_memory_working_set" in expr and ") / max by" in expr:
        kind = "envoy_peak"
    elif "restarts" in expr:
        kind = "restarts"
    elif "start_time" in expr or "terminated_timestamp" in expr:
        kind = "time"
    elif "count_over_time" in expr:
        kind = "count"
    elif "notifications_enabled" in expr or "monitor_events" in expr or "source_up" in expr:
        kind = "one"
    else:
        kind = "value"
    out = []
    for h in hours:
        hour_of_day = int(h // 3600) % 24
        if kind == "envoy_peak":
            v = 0.95 if node_i % 10 == 0 and 10 <= hour_of_day <= 12 else 0.5
        elif kind == "envoy_bad":
            v = 0.3
        elif kind == "restarts":
            v = float(node_i % 3)
        elif kind == "time":
            v = float(START - 86400)
        elif kind == "count":
            v = 12.0
        elif kind == "one":
            v = 1.0
        else:
            v = 1000.0 + (node_i * 7 + hour_of_day) % 13
        out.append([h, f"{v:g}"])
    return out


class FakePrometheus(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    nodes = 200

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if "/status/" in self.path:
            self._answer(b'{"status":"success","data":{}}')
            return
        self.do_POST()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode()) if length else {}
        form.update(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))
        expr = form.get("query", [""])[0]
        if self.path.startswith("/api/v1/query_range"):
            start, end, step = (float(form[k][0]) for k in ("start", "end", "step"))
            hours = [start + i * step for i in range(int((end - start) // step) + 1)]
            result = []
            if "by (cluster, reason)" in expr:
                result = [{"metric": {"cluster": "c1", "reason": r}, "values": values_for(expr, i, hours)}
                          for i, r in enumerate(REASONS)]
            elif "by (cluster, source)" in expr:
                result = [{"metric": {"cluster": "c1", "source": s}, "values": values_for(expr, 1, hours)}
                          for s in ("perf_event_ring_buffer", "observer_events_queue")]
            elif "by (cluster)" in expr:
                result = [{"metric": {"cluster": "c1"}, "values": values_for(expr, 1, hours)}]
            elif "by (cluster, node, source)" in expr:
                result = [{"metric": {"cluster": "c1", "node": f"node-{i:04d}", "source": s},
                           "values": values_for(expr, i, hours)}
                          for i in range(self.nodes) for s in ("agent", "hubble", "kubelet")]
            elif "by (cluster, node, version)" in expr:
                result = [{"metric": {"cluster": "c1", "node": f"node-{i:04d}", "version": "1.17.2"},
                           "values": values_for(expr, i, hours)} for i in range(self.nodes)]
            elif "by (cluster, node)" in expr:
                nodes = range(self.nodes)
                if 'node=~"' in expr:  # the Envoy step: only the nodes it names
                    named = expr.split('node=~"', 1)[1].split('"', 1)[0].replace("\\\\", "\\").split("|")
                    nodes = [int(n.rsplit("-", 1)[1]) for n in named]
                result = [{"metric": {"cluster": "c1", "node": f"node-{i:04d}"}, "values": values_for(expr, i, hours)}
                          for i in nodes]
            self._answer(json.dumps({"status": "success", "data": {"resultType": "matrix",
                                                                   "result": result}}).encode())
            return
        result = []
        if expr.startswith("count by (cluster) (count_over_time("):
            result = [{"metric": {"cluster": "c1"}, "value": [START, "1"]}]
        elif "count by (cluster, reason)" in expr:
            result = [{"metric": {"cluster": "c1", "reason": r}, "value": [START, "3"]} for r in REASONS]
        kind = "matrix" if expr.startswith("ALERTS") else "vector"
        self._answer(json.dumps({"status": "success", "data": {"resultType": kind, "result": result}}).encode())

    def log_message(self, *args: object) -> None:
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def run(nodes: int, days: int, fmt: str) -> dict[str, float]:
    handler = type("P", (FakePrometheus,), {"nodes": nodes})
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    end = START + days * 86400
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"r.{fmt}"
        started = time.monotonic()
        done = run_report(["--prometheus-url", url, "--from", str(START), "--to", str(end), "--format", fmt, "-o",
                           str(out), "-q", "--min-coverage", "0"])
        wall = time.monotonic() - started
        server.shutdown()
        server.server_close()
        if done.code != 0:
            raise SystemExit(f"report failed for {nodes} nodes: {done.stderr[-2000:]}")
        size = out.stat().st_size
    return {"nodes": nodes, "wall_s": wall, "cpu_s": done.cpu_s, "peak_rss_mib": done.peak_rss_mib,
            "output_mib": size / 2**20}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--days", type=int, default=28)
    p.add_argument("--format", default="json", choices=("json", "html", "markdown"))
    args = p.parse_args()
    rows = [run(n, args.days, args.format) for n in args.nodes]
    print(f"report --format {args.format}, {args.days} days, loopback API server (load average "
          f"{os.getloadavg()[0]:.1f} at the end)")
    print(f"{'nodes':>6} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13} {'output MiB':>11}")
    for r in rows:
        print(f"{r['nodes']:>6} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} {r['peak_rss_mib']:>13.0f} "
              f"{r['output_mib']:>11.1f}")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"ratios {b['nodes']}/{a['nodes']} nodes = {b['nodes'] / a['nodes']:.1f}: "
              f"CPU {b['cpu_s'] / a['cpu_s']:.2f}, peak RSS {b['peak_rss_mib'] / a['peak_rss_mib']:.2f}; "
              f"RSS per node {(b['peak_rss_mib'] - a['peak_rss_mib']) / (b['nodes'] - a['nodes']) * 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
